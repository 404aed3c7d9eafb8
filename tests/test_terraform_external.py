"""`mirrorspec terraform-external` driven exactly as Terraform's `external` data source drives it.

`terraform_query()` builds stdin the way hashicorp/terraform-provider-external v2.4.0 does
(research/sync.md §4): the `query` map, values always strings, null entries dropped, `{}`
when there is no query; the program runs without a shell in `working_dir`. `terraform_read()`
judges the answer the way the provider does: a non-zero exit is "External Program Execution
Failed" (stdout ignored, stderr shown), and on success stdout must decode into
`map[string]string` — any non-string value fails the whole Terraform plan.

Real registries throughout; their access logs prove that neither action writes anything.
The ECR provider is driven through the same library entry point against its test bed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from emulators.ecr import EcrEmulator
from jsonschema import Draft202012Validator
from testbed import RegistryServer, push_image, request_log, retag, start_registry

from mirrorspec import schemas, terraform_external as terraform
from mirrorspec.context import Endpoint, RunContext
from mirrorspec.providers.ecr.clients import AWS
from mirrorspec.spec import Spec

MIRRORSPEC = str(Path(sys.executable).with_name("mirrorspec"))
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "terraform"
TAGS = ("v1.0.0", "v1.1.0")
ACCOUNT = "123456789012"
ECR_HOST = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
READ_ONLY_OPERATION = re.compile(r"^(Describe|Get|List|BatchGet|BatchCheck)[A-Z]")

SPEC = """\
version: 1
sources:
  - registry: {upstream}
    insecure: true
    repositories:
      - name: app
        tags: ["v1.*"]
targets:
  - name: lab
    type: registry
    registry: {destination}
    prefix: {prefix}
    insecure: true
"""


# --- the harness: Terraform's side of the protocol ----------------------------------------


def terraform_query(query: Mapping[str, str | None] | None) -> str:
    """stdin as the provider writes it: `{}` without a query, null entries dropped."""
    if query is None:
        return "{}"
    for key, value in query.items():
        assert value is None or isinstance(value, str), f"Terraform's query is map(string): {key}"
    return json.dumps({k: v for k, v in query.items() if v is not None})


@dataclass
class Answer:
    ok: bool
    result: dict[str, str]
    error: str


def run_program(stdin: str, *, cwd: Path, options: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run `program = ["mirrorspec", *options, "terraform-external"]` as the provider does: no shell."""
    env = {k: v for k, v in os.environ.items() if k != "MIRRORSPEC_DEBUG"}
    return subprocess.run(
        [MIRRORSPEC, *options, "terraform-external"],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )


def terraform_read(proc: subprocess.CompletedProcess[str]) -> Answer:
    """The provider's verdict, plus what this program promises beyond it."""
    if proc.returncode != 0:
        assert proc.returncode == 1
        assert proc.stdout == "", "nothing on stdout on failure"
        assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1, f"one line: {proc.stderr!r}"
        assert "Traceback" not in proc.stderr
        return Answer(False, {}, proc.stderr.rstrip("\n"))
    decoded = json.loads(proc.stdout)
    assert isinstance(decoded, dict), "Program output must be a JSON encoded map"
    assert all(isinstance(v, str) for v in decoded.values()), f"map of string values: {decoded}"
    return Answer(True, decoded, "")


def external(query: Mapping[str, str | None] | None, *, cwd: Path, options: Sequence[str] = ()) -> Answer:
    return terraform_read(run_program(terraform_query(query), cwd=cwd, options=options))


# --- beds --------------------------------------------------------------------------------


@dataclass
class Bed:
    upstream: RegistryServer
    destination: RegistryServer
    workdir: Path
    spec: Path
    prefix: str

    @property
    def mirrored(self) -> str:
        return f"{self.prefix}/{self.upstream.host.replace(':', '_')}/app"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryServer, RegistryServer]]:
    workdir = tmp_path_factory.mktemp("tf-registries")
    with start_registry(workdir / "up") as upstream, start_registry(workdir / "down") as destination:
        for tag in (*TAGS, "v2.0.0"):
            push_image(upstream, "app", tag, seed=tag)
        yield upstream, destination


@pytest.fixture
def bed(servers: tuple[RegistryServer, RegistryServer], tmp_path: Path) -> Bed:
    upstream, destination = servers
    prefix = f"t{uuid.uuid4().hex[:10]}"  # each test mirrors into its own prefix
    spec = tmp_path / "mirror.yaml"
    spec.write_text(SPEC.format(upstream=upstream.host, destination=destination.host, prefix=prefix))
    return Bed(upstream, destination, tmp_path, spec, prefix)


def sync(bed: Bed) -> None:
    proc = subprocess.run(
        [MIRRORSPEC, "sync", str(bed.spec)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr


def query(action: str, **extra: str | None) -> dict[str, str | None]:
    # The spec path is relative, as in a module: resolved against Terraform's working_dir.
    return {"spec": "mirror.yaml", "action": action, **extra}


def validated(answer: Answer, kind: str) -> Any:
    document = json.loads(answer.result["plan_json"])
    errors = list(Draft202012Validator(schemas.schema(kind)).iter_errors(document))
    assert errors == []
    return document


# --- results ------------------------------------------------------------------------------


def test_changes_pending_then_in_sync(bed: Bed) -> None:
    pending = external(query("plan"), cwd=bed.workdir)

    assert pending.ok, pending.error
    assert set(pending.result) == set(terraform.RESULT_KEYS)
    assert {k: v for k, v in pending.result.items() if k != "plan_json"} == {
        "in_sync": "false",
        "changes": "0",
        "copies": "2",
        "drift": "2",
        "unchecked": "0",
    }
    document = validated(pending, "plan")
    assert document["empty"] is False
    assert [t["tag"] for t in document["targets"][0]["copies"][0]["tags"]] == list(TAGS)

    sync(bed)
    done = external(query("plan"), cwd=bed.workdir)

    assert done.ok, done.error
    assert (done.result["in_sync"], done.result["copies"], done.result["drift"]) == ("true", "0", "0")
    assert validated(done, "plan")["empty"] is True


def test_audit_reports_drift_by_default_and_never_in_sync_unchecked(bed: Bed) -> None:
    missing = external(query("audit", content="true"), cwd=bed.workdir)

    assert missing.ok, missing.error
    assert (missing.result["in_sync"], missing.result["copies"], missing.result["drift"]) == (
        "false",
        "2",
        "2",
    )
    assert validated(missing, "audit")["in_sync"] is False

    # Issue 18, item 4: without `content` the empty mirror is drift too (every tag the target
    # must hold is checked by default); it used to be "in_sync": "true".
    shallow = external(query("audit"), cwd=bed.workdir)
    assert shallow.ok, shallow.error
    assert {k: v for k, v in shallow.result.items() if k != "plan_json"} == {
        "in_sync": "false",
        "changes": "0",
        "copies": "2",
        "drift": "2",
        "unchecked": "0",
    }
    # `rules_only` looks at no tag, and says so: not in sync, no drift found, 2 unchecked.
    rules = external(query("audit", rules_only="true"), cwd=bed.workdir)
    assert rules.ok, rules.error
    assert (rules.result["in_sync"], rules.result["drift"], rules.result["unchecked"]) == ("false", "0", "2")
    (target,) = validated(rules, "audit")["targets"]
    assert (target["content"], target["unchecked"], target["in_sync"]) == (None, 2, False)

    sync(bed)
    retag(bed.destination, bed.mirrored, "v1.0.0", seed="tampered")
    tampered = external(query("audit", content="true", target="lab"), cwd=bed.workdir)

    assert tampered.ok, tampered.error
    assert (tampered.result["in_sync"], tampered.result["drift"]) == ("false", "1")
    checks = validated(tampered, "audit")["targets"][0]["content"]
    assert sorted(c["status"] for c in checks) == ["digest-mismatch", "present"]

    sync(bed)
    repaired = external(query("audit", content="true"), cwd=bed.workdir)
    assert repaired.ok and repaired.result["in_sync"] == "true" and repaired.result["drift"] == "0"
    assert external(query("audit"), cwd=bed.workdir).result["in_sync"] == "true"
    assert external(query("audit", rules_only="true"), cwd=bed.workdir).result["in_sync"] == "false"


def test_null_entries_are_dropped_and_empty_strings_mean_unset(bed: Bed) -> None:
    # `target = var.target` with a null default is dropped by Terraform; "" is sent as is.
    for extra in ({"target": None, "content": None}, {"target": "", "content": ""}):
        answer = external(query("plan", **extra), cwd=bed.workdir)
        assert answer.ok, answer.error
        assert answer.result["copies"] == "2"


def test_it_never_writes_to_a_registry(bed: Bed) -> None:
    before_up, before_down = len(request_log(bed.upstream)), len(request_log(bed.destination))

    for q in (query("plan"), query("audit"), query("audit", content="true")):
        assert external(q, cwd=bed.workdir).ok

    seen = request_log(bed.upstream)[before_up:] + request_log(bed.destination)[before_down:]
    assert seen, "the registries were read"
    assert {line.split()[0] for line in seen} <= {"GET", "HEAD"}, seen


# --- errors: one line on stderr, exit 1, nothing on stdout -----------------------------------


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        pytest.param(terraform_query(None), "error: query has no 'spec'", id="no-query"),
        pytest.param(terraform_query({"action": "plan"}), "error: query has no 'spec'", id="missing-spec"),
        pytest.param(
            terraform_query({"spec": "mirror.yaml", "action": "apply"}),
            "error: query 'action' must be one of: plan, audit; found 'apply'",
            id="unknown-action",
        ),
        pytest.param(
            terraform_query({"spec": "mirror.yaml"}),
            "error: query 'action' must be one of: plan, audit; found nothing",
            id="missing-action",
        ),
        pytest.param(
            json.dumps({"spec": "mirror.yaml", "action": "audit", "content": True}),
            "error: query value 'content' must be a string, found a boolean",
            id="non-string-value",
        ),
        pytest.param(
            json.dumps({"spec": "mirror.yaml", "action": "audit", "content": "yes"}),
            "error: query 'content' must be \"true\" or \"false\", found 'yes'",
            id="content-not-a-boolean-string",
        ),
        pytest.param(
            terraform_query({"spec": "mirror.yaml", "action": "plan", "content": "true"}),
            "error: query 'content' is for action 'audit'",
            id="content-with-plan",
        ),
        pytest.param(
            terraform_query(
                {"spec": "mirror.yaml", "action": "audit", "rules_only": "true", "content": "true"}
            ),
            "error: query 'rules_only' and 'content' cannot both be \"true\"",
            id="rules-only-with-content",
        ),
        pytest.param(
            terraform_query({"spec": "mirror.yaml", "action": "plan", "rules_only": "true"}),
            "error: query 'rules_only' is for action 'audit'",
            id="rules-only-with-plan",
        ),
        pytest.param(
            terraform_query({"spec": "mirror.yaml", "acton": "plan"}),
            "error: unknown query key(s) acton (expected: spec, action, target, content, rules_only)",
            id="unknown-key",
        ),
        pytest.param('{"spec": "mirror.yaml", "action": ', "error: stdin is not JSON", id="invalid-json"),
        pytest.param("", "error: stdin is not JSON", id="empty-stdin"),
        pytest.param('["plan"]', "error: stdin must be a JSON object", id="not-an-object"),
        pytest.param(
            terraform_query({"spec": "mirror.yaml", "action": "plan", "target": "nope"}),
            "error: no target named 'nope' (targets: lab)",
            id="unknown-target",
        ),
        pytest.param(
            terraform_query({"spec": "absent.yaml", "action": "plan"}),
            "error: absent.yaml: cannot read spec: No such file or directory",
            id="spec-not-found",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_1(bed: Bed, stdin: str, message: str) -> None:
    answer = terraform_read(run_program(stdin, cwd=bed.workdir))

    assert not answer.ok
    assert answer.error.startswith(message), answer.error


def test_a_bad_spec_names_its_line(bed: Bed) -> None:
    bed.spec.write_text(bed.spec.read_text().replace("tags:", "tagz:"))

    answer = external(query("audit"), cwd=bed.workdir)

    assert not answer.ok
    assert answer.error.startswith("error: mirror.yaml:7:9: sources[0] ")
    assert "repositories[0] (name='app'): unknown key 'tagz'" in answer.error


def test_an_unreachable_registry_is_one_line(bed: Bed) -> None:
    with socket_closed() as port:
        bed.spec.write_text(bed.spec.read_text().replace(bed.destination.host, f"127.0.0.1:{port}"))
        # --timeout 1: the per-host budget (4 x the timeout) gives up on the closed port after
        # about 4 s, instead of 6 connection attempts over about 17 s; either way one line.
        answer = external(query("plan"), cwd=bed.workdir, options=("--timeout", "1"))

    assert not answer.ok
    assert answer.error.startswith("error: ")
    assert f"127.0.0.1:{port}" in answer.error


class socket_closed:
    """A loopback port that nothing listens on (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        return None


# --- the ECR provider, through the same entry point ----------------------------------------


ECR_SPEC = """\
version: 1
mode: cache
sources:
  - registry: quay.io
    repositories:
      - name: prometheus/node-exporter
        all-tags: true
  - registry: {upstream}
    insecure: true
    repositories:
      - name: app
        tags: ["v1.*"]
targets:
  - name: aws
    type: ecr
    registry: {ecr}
    prefix: vendor
    replicate-to:
      - region: us-east-1
"""


def test_ecr_plan_and_audit_only_read(servers: tuple[RegistryServer, RegistryServer], tmp_path: Path) -> None:
    upstream, _ = servers
    operations: list[str] = []
    with (
        EcrEmulator() as emu,
        start_registry(tmp_path / "ecr", tls=True, users={"AWS": f"{ACCOUNT}-auth-token"}) as ecr,
    ):
        spec_file = tmp_path / "ecr.yaml"
        spec_file.write_text(ECR_SPEC.format(upstream=upstream.host, ecr=ECR_HOST))

        def aws_client(ctx: RunContext, service: str, region: str, profile: str | None) -> Any:
            client = emu.client(service, region=region)
            client.meta.events.register(
                "before-call", lambda model, **_: operations.append(f"{service}:{model.name}")
            )
            return client

        def context(spec: Spec) -> RunContext:
            return RunContext(
                spec,
                client_factories={AWS: aws_client},
                registry_overrides={ECR_HOST: Endpoint(ecr.host, ca_bundle=str(ecr.ca_file))},
            )

        ecr_before = len(request_log(ecr))
        planned = json.loads(
            terraform.external(terraform_query(query_for(spec_file, "plan")), context=context)
        )
        audited = json.loads(
            terraform.external(
                terraform_query(query_for(spec_file, "audit", content="true")), context=context
            )
        )
        ecr_requests = request_log(ecr)[ecr_before:]

    assert all(isinstance(v, str) for v in (*planned.values(), *audited.values()))
    # Missing: a pull-through cache rule, its creation template and our replication rule; the
    # plan also creates the repository the copies go to (a support resource audit does not judge).
    assert {k: v for k, v in planned.items() if k != "plan_json"} == {
        "in_sync": "false",
        "changes": "4",
        "copies": "2",
        "drift": "6",
        "unchecked": "0",
    }
    assert {k: v for k, v in audited.items() if k != "plan_json"} == {
        "in_sync": "false",
        "changes": "3",
        "copies": "2",
        "drift": "5",
        "unchecked": "0",
    }
    for answer, kind in ((planned, "plan"), (audited, "audit")):
        document = json.loads(answer["plan_json"])
        assert list(Draft202012Validator(schemas.schema(kind)).iter_errors(document)) == []
    assert operations, "the provider observed the registry"
    writes = [op for op in operations if not READ_ONLY_OPERATION.match(op.partition(":")[2])]
    assert writes == []
    assert {line.split()[0] for line in ecr_requests} <= {"GET", "HEAD"}


def query_for(spec: Path, action: str, **extra: str) -> dict[str, str | None]:
    return {"spec": str(spec), "action": action, **extra}


# --- the example module --------------------------------------------------------------------


def test_example_module_speaks_this_protocol() -> None:
    main = (EXAMPLE / "main.tf").read_text()
    outputs = (EXAMPLE / "outputs.tf").read_text()

    assert 'program = ["mirrorspec", "terraform-external"]' in main
    query_block = re.search(r"query\s*=\s*\{(.*?)\n\s*\}", main, flags=re.DOTALL)
    assert query_block is not None
    keys = re.findall(r"^\s*(\w+)\s*=", query_block.group(1), flags=re.MULTILINE)
    assert set(keys) <= set(terraform.QUERY_KEYS) and {"spec", "action"} <= set(keys)
    used = set(re.findall(r"(?:data\.external\.mirror|self)\.result\.(\w+)", main + outputs))
    assert used == set(terraform.RESULT_KEYS)
    assert 'data.external.mirror.result.in_sync == "true"' in main
    assert "jsondecode(data.external.mirror.result.plan_json)" in main


needs_terraform = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
# Never phone home (checkpoint), never read a user's CLI config, never prompt.
TERRAFORM_ENV = {"CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": os.devnull, "TF_IN_AUTOMATION": "1"}


def run_terraform(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["terraform", *args, "-no-color"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **TERRAFORM_ENV},
        timeout=120,
        check=False,
    )


@needs_terraform
def test_example_module_is_formatted_hcl() -> None:
    # `terraform fmt` parses every file (a syntax error fails it) and needs no provider.
    proc = run_terraform("fmt", "-check", "-diff", str(EXAMPLE), cwd=EXAMPLE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def stand_in_module(dest: Path) -> None:
    """The example with its one `data "external"` replaced by what needs no download.

    hashicorp/external cannot be installed here (no registry access), so the data source
    becomes `var.result` — the map it would return — and its postcondition moves, verbatim,
    onto a built-in `terraform_data` resource holding that map. Every other line (check
    block, locals, variables, outputs) is the example's own, evaluated by real Terraform.
    """
    main = (EXAMPLE / "main.tf").read_text()
    main = re.sub(r"^terraform \{.*?^\}\n", "", main, flags=re.DOTALL | re.MULTILINE)
    data = re.search(r'^data "external" "mirror" \{.*?^\}\n', main, flags=re.DOTALL | re.MULTILINE)
    assert data is not None
    post = re.search(r"^    postcondition \{.*?^    \}\n", data.group(0), flags=re.DOTALL | re.MULTILINE)
    assert post is not None
    gate = (
        'variable "result" {\n  type = map(string)\n}\n\n'
        'resource "terraform_data" "mirror" {\n  input = var.result\n  lifecycle {\n'
        + post.group(0).replace("self.result", "self.input")
        + "  }\n}\n"
    )
    main = main.replace(data.group(0), gate)
    outputs = (EXAMPLE / "outputs.tf").read_text()
    for name, text in (("main.tf", main), ("outputs.tf", outputs)):
        (dest / name).write_text(text.replace("data.external.mirror.result", "var.result"))
    shutil.copy(EXAMPLE / "variables.tf", dest / "variables.tf")


@needs_terraform
@pytest.mark.parametrize("action", ["plan", "audit"])
def test_example_module_fails_the_plan_on_drift_and_passes_in_sync(bed: Bed, action: str) -> None:
    module = bed.workdir / "module"
    module.mkdir()
    stand_in_module(module)
    init = run_terraform("init", "-input=false", "-backend=false", cwd=module)
    assert init.returncode == 0, init.stdout + init.stderr
    extra = {"content": "true"} if action == "audit" else {}

    def terraform_with(result: dict[str, str], **variables: Any) -> subprocess.CompletedProcess[str]:
        tfvars = module / "run.tfvars.json"
        tfvars.write_text(
            json.dumps({"result": result, "spec": "mirror.yaml", "action": action, **variables})
        )
        return run_terraform("apply", "-input=false", "-auto-approve", f"-var-file={tfvars}", cwd=module)

    drifted = external(query(action, **extra), cwd=bed.workdir)
    assert drifted.ok and drifted.result["in_sync"] == "false"

    failed = terraform_with(drifted.result)
    assert failed.returncode == 1
    assert "Resource postcondition failed" in failed.stderr
    assert f"mirrorspec {action} of mirror.yaml: not in sync (0 native change(s), 2 tag(s)" in " ".join(
        failed.stderr.split()
    )

    warned = terraform_with(drifted.result, fail_on_drift=False)
    assert warned.returncode == 0, warned.stderr
    assert "Check block assertion failed" in warned.stdout + warned.stderr
    outputs = json.loads(run_terraform("output", "-json", cwd=module).stdout)
    destination = f"{bed.destination.host}/{bed.mirrored}"
    assert sorted(outputs["not_in_sync"]["value"]) == [f"{destination}:{tag}" for tag in TAGS]
    assert (outputs["in_sync"]["value"], outputs["drift"]["value"]) == (False, 2)

    sync(bed)
    clean = external(query(action, **extra), cwd=bed.workdir)
    passed = terraform_with(clean.result)
    assert passed.returncode == 0, passed.stderr
    assert "Check block assertion failed" not in passed.stdout + passed.stderr
    outputs = json.loads(run_terraform("output", "-json", cwd=module).stdout)
    assert outputs["in_sync"]["value"] is True
    assert outputs["not_in_sync"]["value"] == []
    assert outputs["document"]["value"]["version"] == 1
