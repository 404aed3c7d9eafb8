"""The command line (`mirrorspec/cli.py`) as a user runs it: the installed console script in a
subprocess, against real registries (plain HTTP upstream; TLS + htpasswd destination).

Each test mirrors into its own prefix of the shared destination, so "nothing was copied"
means "no repository under that prefix".
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from testbed import RegistryServer, push_image

import mirrorspec
from mirrorspec import providers

MIRRORSPEC = str(Path(sys.executable).with_name("mirrorspec"))
PASSWORD = "wonderland-pw"  # the tls_registry fixture's user alice
REPOSITORY = f"cli-{uuid.uuid4().hex[:8]}/backend"
TAGS = ("v1.0.0", "v1.1.0")

SPEC = """\
version: 1
credentials:
  dest:
    username: alice
    password: {{env: DEST_PASSWORD}}
sources:
  - registry: {source}
    insecure: true
    repositories:
      - name: {repository}
        tags: ["v1.*"]
targets:
{targets}
"""

LAB_TARGET = """\
  - name: lab
    type: registry
    registry: {destination}
    prefix: {prefix}
    credentials: dest
    ca-bundle: {ca_file}
"""

# Minimal target blocks of the types the spec knows; `plan` must refuse those without a provider.
OTHER_TARGETS = {
    "ecr": """\
  - name: aws-prod
    type: ecr
    registry: 123456789012.dkr.ecr.eu-west-1.amazonaws.com
""",
    "acr": """\
  - name: azure-prod
    type: acr
    subscription: 00000000-0000-0000-0000-000000000000
    resource-group: registries
    registry: mycompany
""",
    "harbor": """\
  - name: dc1
    type: harbor
    url: https://harbor.internal.example.com
    project: vendor
""",
}


def run(
    *args: str, env: dict[str, str] | None = None, python_module: bool = False
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mirrorspec"] if python_module else [MIRRORSPEC]
    environment = {k: v for k, v in os.environ.items() if k != "MIRRORSPEC_DEBUG"}
    environment["DEST_PASSWORD"] = PASSWORD
    environment.update(env or {})
    proc = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env=environment,
        stdin=subprocess.DEVNULL,  # never a terminal
        timeout=120,
        check=False,
    )
    if "MIRRORSPEC_DEBUG" not in environment:
        assert "Traceback" not in proc.stderr, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    return proc


@dataclass
class Bed:
    source: RegistryServer
    destination: RegistryServer
    prefix: str
    spec: Path

    def copied(self) -> list[str]:
        """Repositories under this test's prefix at the destination."""
        found: list[str] = []
        last = ""
        while True:  # distribution pages the catalog (at most 1000 a page)
            resp = requests.get(
                f"{self.destination.url}/v2/_catalog",
                params={"n": "1000", "last": last},
                auth=("alice", PASSWORD),
                verify=str(self.destination.ca_file),
                timeout=10,
            )
            resp.raise_for_status()
            page: list[str] = resp.json()["repositories"] or []
            found += page
            if "next" not in resp.headers.get("Link", "") or not page:
                return sorted(r for r in found if r.startswith(f"{self.prefix}/"))
            last = page[-1]

    def tags(self, repository: str) -> list[str]:
        resp = requests.get(
            f"{self.destination.url}/v2/{repository}/tags/list",
            auth=("alice", PASSWORD),
            verify=str(self.destination.ca_file),
            timeout=10,
        )
        resp.raise_for_status()
        return sorted(resp.json()["tags"])


@pytest.fixture(scope="module")
def upstream(plain_registry: RegistryServer) -> RegistryServer:
    for tag in (*TAGS, "v2.0.0"):
        push_image(plain_registry, REPOSITORY, tag, seed=tag)
    return plain_registry


def write_spec(path: Path, source: RegistryServer, targets: str) -> Path:
    path.write_text(SPEC.format(source=source.host, repository=REPOSITORY, targets=targets.rstrip("\n")))
    return path


@pytest.fixture
def bed(upstream: RegistryServer, tls_registry: RegistryServer, tmp_path: Path) -> Bed:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    lab = LAB_TARGET.format(destination=tls_registry.host, prefix=prefix, ca_file=tls_registry.ca_file)
    return Bed(upstream, tls_registry, prefix, write_spec(tmp_path / "spec.yaml", upstream, lab))


def one_line(text: str) -> str:
    assert text.count("\n") == 1 and text.endswith("\n"), text
    return text.rstrip("\n")


# --- apply / sync --------------------------------------------------------------------------------


def test_apply_without_yes_off_a_terminal_refuses_and_copies_nothing(bed: Bed) -> None:
    proc = run("apply", str(bed.spec))

    assert proc.returncode == 1
    assert (
        one_line(proc.stderr) == "error: refusing to apply without confirmation: not a terminal; pass --yes"
    )
    assert "v1.0.0, v1.1.0" in proc.stdout  # the plan is shown before asking
    assert bed.copied() == []


def test_sync_dry_run_copies_nothing_and_sync_copies(bed: Bed) -> None:
    dry = run("sync", str(bed.spec), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "2 tag(s) to copy" in dry.stdout
    assert bed.copied() == []

    real = run("sync", str(bed.spec))
    assert real.returncode == 0, real.stderr
    assert "2 of 2 tag(s) copied and verified" in real.stdout
    (repository,) = bed.copied()
    assert repository.endswith(f"/{REPOSITORY}")
    assert bed.tags(repository) == list(TAGS)
    # progress goes to stderr, one line per tag; the only other line a clean run may print is
    # the warning of a transient failure that the copier retried
    progress = [line for line in real.stderr.splitlines() if not line.startswith("WARNING ")]
    assert sorted(line.split()[1] for line in progress) == ["copied", "copied"]
    others = [line for line in real.stderr.splitlines() if line not in progress]
    assert all(line.startswith("WARNING mirrorspec.copy: retrying ") for line in others), others

    assert run("plan", str(bed.spec), "--detailed-exitcode").returncode == 0


# --- plan / audit formats ----------------------------------------------------------------------


def test_plan_markdown_is_a_table_of_the_copies(bed: Bed) -> None:
    proc = run("plan", str(bed.spec), "--format", "markdown")

    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "## mirrorspec plan"
    header = lines.index("| copy from | to | tags | why |")
    assert lines[header + 1] == "|---|---|---|---|"
    row = lines[header + 2]
    assert f"`{bed.source.host}/{REPOSITORY}`" in row
    assert f"`{bed.destination.host}/{bed.prefix}/" in row
    assert "| v1.0.0, v1.1.0 | missing |" in row
    assert "v2.0.0" not in proc.stdout
    assert bed.copied() == []


def test_plan_json_is_pure_json_on_stdout(bed: Bed) -> None:
    proc = run("plan", str(bed.spec), "--format", "json")

    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document["version"] == 1
    assert document["empty"] is False
    (target,) = document["targets"]
    assert target["target"] == "lab"
    (copy,) = target["copies"]
    assert [t["tag"] for t in copy["tags"]] == list(TAGS)
    assert proc.stderr == ""


@pytest.mark.parametrize("verbosity", ["-v", "-vv"])
def test_verbose_logging_goes_to_stderr_only(bed: Bed, verbosity: str) -> None:
    proc = run(verbosity, "plan", str(bed.spec), "--format", "json")

    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)  # still nothing but the JSON document
    assert document["targets"][0]["copies"][0]["tags"][0]["tag"] == "v1.0.0"
    logged = proc.stderr.splitlines()
    # every stderr line is a log record ("LEVEL logger: message"), none a piece of the document
    assert all(re.match(r"(DEBUG|INFO|WARNING|ERROR) [\w.]+: ", line) for line in logged), logged
    if verbosity == "-vv":
        assert any(line.startswith("DEBUG ") for line in logged), "-vv logs the HTTP requests"
        assert any(bed.destination.host.split(":")[1] in line for line in logged)
    else:
        assert not any(line.startswith("DEBUG ") for line in logged)


def test_audit_markdown_reports_drift_then_sync(bed: Bed) -> None:
    drift = run("audit", str(bed.spec), "--content", "--format", "markdown")
    assert drift.returncode == 2, drift.stderr
    lines = drift.stdout.splitlines()
    assert lines[:3] == ["## mirrorspec audit", "", "**Drift**"]
    assert "| status | destination | tag | expected | found |" in lines
    assert sum(1 for line in lines if line.startswith("| missing |")) == 2
    assert "0 of 2 tag(s) present." in lines

    assert run("sync", str(bed.spec)).returncode == 0

    in_sync = run("audit", str(bed.spec), "--content", "--format", "markdown")
    assert in_sync.returncode == 0, in_sync.stderr
    lines = in_sync.stdout.splitlines()
    assert lines[:3] == ["## mirrorspec audit", "", "**In sync**"]
    assert "2 of 2 tag(s) present." in lines
    assert not any(line.startswith("| missing |") for line in lines)

    report = json.loads(run("audit", str(bed.spec), "--content", "--format", "json").stdout)
    assert report["in_sync"] is True


# --- errors ------------------------------------------------------------------------------------


def test_an_unknown_target_names_the_valid_ones(tmp_path: Path) -> None:
    # Two unreachable targets: the name is checked before any registry is called.
    targets = "".join(
        f"  - name: {name}\n    type: registry\n    registry: {name}.invalid\n" for name in ("lab", "edge")
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        SPEC.format(source="upstream.invalid", repository="app", targets=targets.rstrip("\n")).replace(
            "credentials:\n  dest:\n    username: alice\n    password: {env: DEST_PASSWORD}\n", ""
        )
    )

    for command in ("plan", "audit", "sync", "apply"):
        proc = run(command, str(spec), "--target", "nope")
        assert proc.returncode == 1
        assert one_line(proc.stderr) == "error: no target named 'nope' (targets: lab, edge)"
        assert proc.stdout == ""


def test_a_destination_name_no_client_could_pull_is_refused_at_plan(
    upstream: RegistryServer, tls_registry: RegistryServer, tmp_path: Path
) -> None:
    """A source name of 251 characters (host included) is fine upstream; with the target's
    host, prefix and host segment in front it passes 255, the most any reference parser takes
    (distribution/reference NameTotalLengthMax). The plan says so in one line and copies
    nothing, instead of a copy failing in skopeo."""
    repository = "long/" + "x" * (250 - len(upstream.host) - len("long/"))
    push_image(upstream, repository, "v1.0.0", seed="long")
    spec = tmp_path / "spec.yaml"
    lab = LAB_TARGET.format(destination=tls_registry.host, prefix="mirror", ca_file=tls_registry.ca_file)
    spec.write_text(SPEC.format(source=upstream.host, repository=repository, targets=lab.rstrip("\n")))
    for command in ("plan", "apply"):
        proc = run(command, str(spec), "--yes") if command == "apply" else run(command, str(spec))
        assert proc.returncode == 1, proc.stderr
        message = one_line(proc.stderr)
        name = f"{tls_registry.host}/mirror/{upstream.host.replace(':', '_')}/{repository}"
        assert message == (
            f"error: target 'lab': {name[:72]}… is {len(name)} characters; an image name (host and "
            "path) has at most 255, so nothing could copy or pull it: shorten the target's prefix, "
            "use layout: flat, or leave that repository out"
        )


def test_a_login_only_a_cloud_registry_reads_is_refused_where_mirrorspec_logs_in(tmp_path: Path) -> None:
    """A Key Vault secret is handed to ACR (a credential set), never read by mirrorspec; as a
    registry target's login it is valid syntax but cannot work: one line naming the reference
    kind and what works instead, before any registry is called."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        SPEC.format(
            source="upstream.invalid",
            repository="app",
            targets="  - name: lab\n    type: registry\n    registry: lab.invalid\n    credentials: dest",
        ).replace(
            "{env: DEST_PASSWORD}", "{azure-key-vault-secret: 'https://kv1.vault.azure.net/secrets/pw'}"
        )
    )
    assert run("validate", str(spec)).returncode == 0
    proc = run("plan", str(spec))
    assert proc.returncode == 1
    assert one_line(proc.stderr) == (
        f"error: {spec}:5:15: credentials 'dest' password: {{azure-key-vault-secret: ...}} is read only "
        "by the cloud registry it is handed to, never by mirrorspec; what mirrorspec logs in with "
        "itself (reads, copies) needs {env: VAR} or {file: path}"
    )
    assert proc.stdout == ""


@pytest.mark.parametrize("target_type", sorted(OTHER_TARGETS))
def test_every_target_type_validates_offline_with_or_without_its_provider(
    target_type: str, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        SPEC.format(source="upstream.invalid", repository="app", targets=OTHER_TARGETS[target_type])
    )

    validated = run("validate", str(spec))

    assert validated.returncode == 0, validated.stderr
    assert validated.stdout == f"{spec}: valid (1 source(s), 1 repository(ies), 1 target(s))\n"


def installed_without(provider: str, site: Path) -> dict[str, str]:
    """Environment for a mirrorspec whose installed metadata lacks one provider's entry point.

    The first `mirrorspec-*.dist-info` on sys.path wins, so a copy of ours without that entry
    point, on PYTHONPATH, is what a build shipping without the plugin looks like.
    """
    dist = importlib.metadata.distribution("mirrorspec")
    info = site / f"mirrorspec-{dist.version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(dist.read_text("METADATA") or "")
    kept = [ep for ep in dist.entry_points if not (ep.group == providers.GROUP and ep.name == provider)]
    lines = []
    for group in sorted({ep.group for ep in kept}):
        lines += [f"[{group}]", *(f"{ep.name} = {ep.value}" for ep in kept if ep.group == group), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
    return {"PYTHONPATH": str(site)}


@pytest.mark.parametrize("target_type", sorted(OTHER_TARGETS))
def test_a_target_type_without_a_provider_fails_plan_in_one_line(
    target_type: str, upstream: RegistryServer, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "spec.yaml", upstream, OTHER_TARGETS[target_type])

    # A target's model lives in its provider (issue 14), so a type whose provider is not
    # installed is refused where the spec names it, with the types that are installed.
    proc = run("plan", str(spec), env=installed_without(target_type, tmp_path / "site"))
    assert proc.returncode == 1, proc.stderr
    message = one_line(proc.stderr)
    others = sorted(set(providers.available()) - {target_type})
    assert message.startswith(f"error: {spec}:"), message
    assert message.endswith(f"type '{target_type}' is not one of: {', '.join(others)}"), message
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["plan"], id="missing-spec"),
        pytest.param(["plan", "x.yaml", "--format", "xml"], id="bad-choice"),
        pytest.param(["apply", "x.yaml", "--workers", "0"], id="out-of-range"),
        pytest.param(["frobnicate"], id="unknown-command"),
    ],
)
def test_usage_errors_exit_1_not_2(args: list[str]) -> None:
    # 2 means "changes pending" / "drift"; a typo must never look like that.
    proc = run(*args)
    assert proc.returncode == 1
    assert one_line(proc.stderr).startswith("error: ")


def test_python_dash_m_version() -> None:
    proc = run("--version", python_module=True)
    assert proc.returncode == 0
    assert proc.stdout == f"mirrorspec, version {mirrorspec.__version__}\n"
    assert proc.stderr == ""


# A bug cannot be provoked through the CLI's inputs, so a child process replaces engine.plan
# before calling the real entry point, and the error handler is observed from outside.
BUG = """\
import sys
from mirrorspec import cli, engine

def plan(*args, **kwargs):
    raise {exception}

engine.plan = plan
cli.main(["plan", sys.argv[1]])
"""


def run_with_broken_engine(
    exception: str, spec: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "MIRRORSPEC_DEBUG"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", BUG.format(exception=exception), str(spec)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


@pytest.fixture
def offline_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            version: 1
            sources:
              - registry: upstream.invalid
                repositories:
                  - name: app
                    tags: ["1.0"]
            targets:
              - name: lab
                type: registry
                registry: lab.invalid
            """
        )
    )
    return spec


def test_an_internal_error_is_one_line_that_says_it_is_a_bug(offline_spec: Path) -> None:
    proc = run_with_broken_engine("TypeError('plan() got an unexpected keyword')", offline_spec)

    assert proc.returncode == 1
    assert one_line(proc.stderr) == (
        "internal error (this is a bug in mirrorspec): TypeError: plan() got an unexpected keyword; "
        "set MIRRORSPEC_DEBUG=1 for the traceback"
    )
    assert proc.stdout == ""


def test_mirrorspec_debug_shows_the_traceback_of_a_bug(offline_spec: Path) -> None:
    proc = run_with_broken_engine("TypeError('boom')", offline_spec, env={"MIRRORSPEC_DEBUG": "1"})

    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().endswith("TypeError: boom")


def test_an_interrupt_exits_130(offline_spec: Path) -> None:
    proc = run_with_broken_engine("KeyboardInterrupt()", offline_spec)

    assert proc.returncode == 130
    # click ends the ^C line first, so the message starts on a fresh line at a terminal
    assert proc.stderr.strip() == "interrupted"
