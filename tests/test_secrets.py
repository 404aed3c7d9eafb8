"""Secrets never leave: one canary per credential kind, looked for everywhere a run can put it.

Each case is one kind of credential, driven through the real CLI in a subprocess with `-vv`
(debug logs) — plan (JSON), apply --yes, audit (JSON), render skopeo, render terraform (to a
file), terraform-external — plus failing runs whose error would be tempting to fill with the
secret (a wrong password answered 401, a literal password refused by validate). Every canary
of every kind, in each form it could travel in (as is, JSON-escaped, URL-quoted, and base64 of
itself and of `user:secret` — HTTP Basic auth and skopeo's auth file encode it so), must be
absent from:

- stdout and stderr of every run;
- every file written (plan and audit JSON, skopeo YAML, the rendered .tf.json), and every
  file left in TMPDIR (a test-owned
  directory: the `mirrorspec-*` workspace with skopeo's auth files must be gone too);
- `/proc/<pid>/cmdline` of every descendant process, sampled while each command runs;
- `/proc/<pid>/environ` of the skopeo children: a judgement call — the environment is
  readable only by the same user, but skopeo needs none of these values (it reads the auth
  file), so mirrorspec hands it an environment without cloud credentials and without any
  variable holding a secret it has read, and this test holds it to that.

Kinds: a source registry's basic auth from `{env}`, from `{file}`, and from a token-auth
registry (bearer tokens fetched with the password); the Docker Hub and cr.seqera.io logins an
ECR target stores in Secrets Manager for pull-through cache, and a Secrets Manager secret the
spec names by `aws-secret-arn` (handed to ECR, never read); the logins an ACR target sends
in import requests (its credential sets name Key Vault secrets, whose values mirrorspec never
reads); the Harbor admin password and the upstream logins written into Harbor registry
endpoints; the lab registry's push password; and cloud credentials in the environment
(`AWS_SECRET_ACCESS_KEY`, really used to sign the ECR bed's requests; `AZURE_CLIENT_SECRET`,
present but unused: the ACR bed's token comes from an injected credential). What registries
and clouds hand out during a run is checked too: ECR's authorization token, ACR's refresh
token and the Azure AD access token. Each case then checks that its secrets were really used
(copies made, the secret stored, the import request carrying the login), so that their
absence means something.

The CLI runs in a subprocess as `python -c LAUNCHER`: `mirrorspec.cli.main` unchanged, with
its `RunContext` pointed at the provider bed the way `test_audit_providers.py` does in-process
(registry overrides; the ACR emulator's ARM client). AWS needs no factory: boto3 reaches the
ECR emulator through `AWS_ENDPOINT_URL` with the canary secret key.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import provider_beds as beds
import pytest
import requests
from emulators.acr import TOKEN_USER, AcrEmulator
from emulators.ecr import EcrEmulator
from testbed import RegistryServer, push_image, start_registry

TESTS = Path(__file__).resolve().parent
AAD_TOKEN = "emulator-aad-token-5b2e91"  # the ACR emulator's (checked when the bed starts)

AWS_CANARY = "aws-secret-canary-0c6e9b2d47"
AWS_PROFILE_CANARY = "aws-dr-profile-canary-8e1f5a3b90"
AZURE_CANARY = "azure-client-secret-canary-3d9a7c1e52"
# Characters JSON and URLs escape: the escaped forms differ from the raw value.
TOKEN_CANARY = 'token-canary-"q\\7b4e0f'
SM_CANARY = "secrets-manager-canary-4b8e1d7f20"  # in a secret the spec names by ARN
WRONG_CANARY = "wrong-password-canary-6a2d8f1c03"
LITERAL_CANARY = "literal-password-canary-95b0e7d4a1"
USERS = {
    beds.DOCKERHUB_CANARY: "hub-bot",
    beds.SEQERA_CANARY: "seqera-bot",
    beds.HARBOR_CANARY: "admin",
    beds.LAB_CANARY: "lab-bot",
    TOKEN_CANARY: "tok-bot",
    WRONG_CANARY: "seqera-bot",
    LITERAL_CANARY: "seqera-bot",
    AWS_CANARY: "AKIAEXAMPLECANARY",
    AWS_PROFILE_CANARY: "AKIAEXAMPLEDR",
    AZURE_CANARY: "00000000-0000-0000-0000-00000000c11e",
    SM_CANARY: "hub-arn-bot",
    # What registries and clouds hand out during a run is secret too.
    beds.ECR_TOKEN: "AWS",  # GetAuthorizationToken's password for the ECR endpoint
    AcrEmulator.refresh_token: TOKEN_USER,  # the ACR login server's refresh token
    AAD_TOKEN: TOKEN_USER,  # the Azure AD access token (the emulator's static one)
}


def forms(secret: str) -> set[str]:
    """How `secret` could appear: as is, escaped for JSON and URLs, base64 (Basic auth)."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        secret,
        json.dumps(secret)[1:-1],
        urllib.parse.quote(secret, safe=""),
        b64(secret),
        b64(f"{USERS[secret]}:{secret}"),
    }


FORMS = {form: secret for secret in USERS for form in forms(secret)}


def leaks(text: str) -> list[str]:
    return sorted({f"{FORMS[form]!r} as {form!r}" for form in FORMS if form in text})


# Runs the real CLI with its RunContext pointed at a bed described by $MIRRORSPEC_TEST_BED
# (removed from the environment before anything runs, so that no child inherits it).
LAUNCHER = """
import json, os, sys
from functools import partial
from mirrorspec import cli, cli_common
from mirrorspec import terraform_external as terraform
from mirrorspec.context import Endpoint, RunContext

bed = json.loads(os.environ.pop("MIRRORSPEC_TEST_BED"))
kwargs = {"registry_overrides": {h: Endpoint(**e) for h, e in bed["overrides"].items()}}
if bed.get("acr"):
    from azure.core.credentials import AccessToken
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient
    from mirrorspec.providers.acr.clients import AZURE_CREDENTIAL, AZURE_MANAGEMENT

    class Token:
        def get_token(self, *scopes, **kw):
            return AccessToken(bed["acr"]["token"], 2**31 - 1)

    kwargs["client_factories"] = {
        AZURE_CREDENTIAL: lambda ctx, target: Token(),
        AZURE_MANAGEMENT: lambda ctx, sub, target: ContainerRegistryManagementClient(
            Token(), sub, base_url=bed["acr"]["url"], connection_verify=bed["acr"]["ca"],
            api_version="2023-07-01", polling_interval=0, retry_total=0,
        ),
    }
cli_common.RunContext = terraform.RunContext = partial(RunContext, **kwargs)
cli.main(sys.argv[1:])
"""


@dataclass
class Observed:
    """Descendant processes seen while a command ran: pid → (cmdline, environ)."""

    processes: dict[int, tuple[str, str]] = field(default_factory=dict)


def descendants(root: int) -> list[int]:
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = []
        try:
            listings = list(Path(f"/proc/{parent}/task").glob("*/children"))  # per forking thread
        except OSError:  # gone
            continue
        for listing in listings:
            try:
                children += [int(pid) for pid in listing.read_text().split()]
            except OSError:
                continue
        found += children
        frontier += children
    return found


def watch(pid: int, seen: Observed, stop: threading.Event) -> None:
    while not stop.is_set():
        for child in descendants(pid):
            if child in seen.processes:
                continue
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                environ = Path(f"/proc/{child}/environ").read_bytes()
            except OSError:
                continue
            # Between fork and exec a child still shows our argv and environment: sample it
            # again once it runs its own program.
            if cmdline and LAUNCHER.encode() not in cmdline:
                seen.processes[child] = (
                    cmdline.replace(b"\0", b" ").decode(errors="replace"),
                    environ.replace(b"\0", b"\n").decode(errors="replace"),
                )
        stop.wait(0.002)


@dataclass
class Runner:
    workdir: Path
    env: dict[str, str]
    bed_config: dict[str, Any]
    target: str
    bed: beds.Bed
    prefix: str  # of the registry target's copies
    skopeo_seen: int = 0

    @property
    def tmp(self) -> Path:
        return Path(self.env["TMPDIR"])

    def __call__(self, *argv: str, exit_code: int = 0, stdin: str = "") -> str:
        env = {**self.env, "MIRRORSPEC_TEST_BED": json.dumps(self.bed_config)}
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "-vv", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.workdir,
        )
        seen, stop = Observed(), threading.Event()
        watcher = threading.Thread(target=watch, args=(proc.pid, seen, stop), daemon=True)
        watcher.start()
        try:
            stdout, stderr = proc.communicate(stdin, timeout=240)
        finally:
            stop.set()
            watcher.join()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        what = " ".join(argv[:2])
        assert proc.returncode == exit_code, f"{what}: exit {proc.returncode}\n{stdout}\n{stderr}"
        assert "Traceback" not in stderr, stderr
        assert leaks(stdout) == [], f"{what} stdout"
        assert leaks(stderr) == [], f"{what} stderr"
        for pid, (cmdline, environ) in seen.processes.items():
            assert leaks(cmdline) == [], f"{what}: argv of child {pid}: {cmdline}"
            if "skopeo" in cmdline:  # others (`uname -p`, run by the platform module) are not ours
                assert leaks(environ) == [], f"{what}: environment of child {pid} ({cmdline})"
        self.skopeo_seen += sum("skopeo" in cmdline for cmdline, _ in seen.processes.values())
        leftovers = sorted(str(p.relative_to(self.tmp)) for p in self.tmp.rglob("*"))
        assert leftovers == [], f"{what} left {leftovers} in TMPDIR"
        return stdout + stderr

    def files_clean(self, before: set[Path]) -> list[str]:
        """Every file written in the work directory since `before` (rendered output, saved
        JSON documents) is free of secrets; returns their names."""
        written = sorted(p for p in self.workdir.iterdir() if p.is_file() and p not in before)
        for path in written:
            assert leaks(path.read_text(errors="replace")) == [], path
        return [p.name for p in written]


# --- the beds ----------------------------------------------------------------------------


def endpoint_json(endpoint: Any) -> dict[str, Any]:
    assert endpoint.auth is None  # overrides carry where and how, never credentials
    return {"host": endpoint.host, "insecure": endpoint.insecure, "ca_bundle": endpoint.ca_bundle}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return beds.seed(tmp_path_factory.mktemp("secrets-seed"))


@pytest.fixture(scope="module")
def ecr_emulator() -> Iterator[EcrEmulator]:
    with EcrEmulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def ups(seeded: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[beds.Upstreams]:
    """The upstreams, shared: no case writes to them."""
    with beds.upstreams(seeded, tmp_path_factory.mktemp("upstreams")) as started:
        yield started


@pytest.fixture(scope="module")
def lab(ups: beds.Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[beds.Bed]:
    """The registry target, shared: each case copies under a prefix of its own."""
    with beds.registry_bed(ups, tmp_path_factory.mktemp("lab")) as bed:
        yield bed


@pytest.fixture(scope="module")
def token_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with start_registry(
        tmp_path_factory.mktemp("token"), token=True, users={"tok-bot": TOKEN_CANARY}
    ) as server:
        push_image(server, "team/app", "1.0.0", user="tok-bot")
        yield server


def base_env(tmp_path: Path) -> dict[str, str]:
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    aws = tmp_path / "aws"
    aws.mkdir()
    (aws / "config").write_text("[default]\nregion = eu-west-1\n[profile dr]\nregion = eu-central-1\n")
    (aws / "credentials").write_text(
        f"[dr]\naws_access_key_id = {USERS[AWS_PROFILE_CANARY]}\n"
        f"aws_secret_access_key = {AWS_PROFILE_CANARY}\n"
    )
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_", "MIRRORSPEC_"))}
    return {
        **keep,
        **beds.ENVIRONMENT,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "TMPDIR": str(tmp),
        "AWS_CONFIG_FILE": str(aws / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials"),
        "AWS_ACCESS_KEY_ID": USERS[AWS_CANARY],
        "AWS_SECRET_ACCESS_KEY": AWS_CANARY,
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AZURE_TENANT_ID": "00000000-0000-0000-0000-0000000000aa",
        "AZURE_CLIENT_ID": USERS[AZURE_CANARY],
        "AZURE_CLIENT_SECRET": AZURE_CANARY,
    }


REGISTRY_SPEC = """\
version: 1
credentials:
  upstream:
    username: {user}
    password: {password}
  lab:
    username: lab-bot
    password: {{env: LAB_PASSWORD}}
sources:
  - registry: {source}
    insecure: true
    credentials: upstream
    repositories:
      - name: {repository}
        tags: [{tags}]
targets:
  - name: lab
    type: registry
    registry: {lab}
    ca-bundle: {ca}
    prefix: {prefix}
    credentials: lab
"""


@dataclass(frozen=True)
class Case:
    """One credential kind: the bed it needs, the spec, the runs that must stay clean."""

    kind: str
    bed: str  # registry | token | ecr | acr | harbor
    example: str = ""  # the provider bed's example spec; registry beds write their own
    target: str = "lab"
    password: str = "{env: SEQERA_TOKEN}"  # the source's password reference (registry beds)
    env: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("source basic auth from env", "registry"),
    Case(
        "source basic auth from file",
        "registry",
        password="{file: seqera-token.txt}",
        env={"SEQERA_TOKEN": ""},
    ),
    Case(
        "token-auth source registry",
        "token",
        password="{env: TOKEN_PASSWORD}",
        env={"TOKEN_PASSWORD": TOKEN_CANARY},
    ),
    Case("ECR pull-through secrets + AWS keys", "ecr", "ecr.yaml", "aws-prod"),
    Case("ACR import logins + Azure client secret", "acr", "acr.yaml", "azure-prod"),
    Case("Harbor admin + registry endpoints", "harbor", "harbor.yaml", "dc1"),
]


@pytest.fixture
def runner(
    request: pytest.FixtureRequest,
    ups: beds.Upstreams,
    lab: beds.Bed,
    ecr_emulator: EcrEmulator,
    token_upstream: RegistryServer,
    tmp_path: Path,
) -> Iterator[tuple[Runner, Path]]:
    case: Case = request.param
    env = {**base_env(tmp_path), **case.env}
    (tmp_path / "seqera-token.txt").write_text(beds.SEQERA_CANARY + "\n")
    prefix = f"m{uuid.uuid4().hex[:10]}"
    with ExitStack() as stack:
        config: dict[str, Any] = {"overrides": {}}
        starters: dict[str, Callable[[], AbstractContextManager[beds.Bed]]] = {
            "registry": lambda: nullcontext(lab),
            "token": lambda: nullcontext(lab),
            "ecr": lambda: beds.ecr_bed(ecr_emulator, ups, tmp_path),
            "acr": lambda: beds.acr_bed(ups, tmp_path),
            "harbor": lambda: beds.harbor_bed(ups, tmp_path),
        }
        bed = stack.enter_context(starters[case.bed]())
        if case.bed in ("registry", "token"):
            source, user, repository, tags = (
                (ups.seqera, "seqera-bot", "private/nf-tower-enterprise/backend", '"v25.1.*"')
                if case.bed == "registry"
                else (token_upstream, "tok-bot", "team/app", '"1.0.0"')
            )
            spec = tmp_path / "spec.yaml"
            spec.write_text(
                REGISTRY_SPEC.format(
                    user=user,
                    password=case.password,
                    source=source.host,
                    repository=repository,
                    tags=tags,
                    lab=bed.storage.host,
                    ca=bed.storage.ca_file,
                    prefix=prefix,
                )
            )
        else:
            spec = tmp_path / "spec.yaml"
            spec.write_text((beds.EXAMPLES / case.example).read_text())
            if case.bed == "ecr":  # docker.io cached, so its login is stored in Secrets Manager:
                spec.write_text(re.sub(ECR_VERSIONS, "", spec.read_text()))  # (issue 13)
            config["overrides"] = {h: endpoint_json(e) for h, e in bed.overrides.items()}
        # Only the variables the spec names: what else the user's environment holds is not
        # mirrorspec's to know, and skopeo inherits it (cloud credentials aside).
        text = spec.read_text()
        env = {k: v for k, v in env.items() if k not in beds.ENVIRONMENT or f"env: {k}}}" in text}
        if case.bed == "ecr":
            env["AWS_ENDPOINT_URL"] = ecr_emulator.url
        if case.bed == "acr":
            emu = bed.emulator
            assert emu.credential.token == AAD_TOKEN
            config["acr"] = {"url": emu.url, "ca": str(emu.ca_file), "token": AAD_TOKEN}
        yield Runner(tmp_path, env, config, case.target, bed, prefix), spec


@pytest.mark.parametrize("runner", CASES, ids=[c.kind for c in CASES], indirect=True)
def test_no_secret_reaches_output_files_argv_environment_or_tmpdir(runner: tuple[Runner, Path]) -> None:
    run, spec = runner
    target = run.target
    before = set(run.workdir.iterdir())
    run("validate", str(spec))
    plan = run("plan", str(spec), "--format", "json")
    (run.workdir / "plan.json").write_text(plan)
    run("apply", str(spec), "--yes")
    audit = run("audit", str(spec), "--content", "--format", "json")
    (run.workdir / "audit.json").write_text(audit)
    (run.workdir / "skopeo.yaml").write_text(run("render", "skopeo", str(spec), "--target", target))
    run("render", "terraform", str(spec), "--target", target, "--output", "main.tf.json")
    query = json.dumps({"spec": str(spec), "action": "audit", "content": "true"})
    run("terraform-external", stdin=query)
    assert run.files_clean(before) == ["audit.json", "main.tf.json", "plan.json", "skopeo.yaml"]
    assert leaks((run.workdir / "main.tf.json").read_text()) == []
    assert run.skopeo_seen or run.bed.kind == "harbor", "no skopeo child was sampled"
    used(run.bed, run.prefix)
    if run.bed.kind == "ecr":
        secret_given_by_arn(run, spec)


# The ECR example's version-filtered docker.io repository: with it, docker.io is copied rather
# than cached (a rule would serve the copy's name from Docker Hub), so no secret is stored.
ECR_VERSIONS = r'      - name: bitnami/postgresql\n        versions: "\^16\.0\.0".*\n'


def secret_given_by_arn(run: Runner, spec: Path) -> None:
    """Docker Hub's login as a Secrets Manager secret the spec names by ARN: ECR's rule reads
    it, mirrorspec never does — and where it would need it itself, says so without it."""
    arn = run.bed.emulator.client("secretsmanager").create_secret(
        Name="ecr-pullthroughcache/hub",
        SecretString=json.dumps({"username": USERS[SM_CANARY], "accessToken": SM_CANARY}),
    )["ARN"]
    text = spec.read_text()
    by_env = "  dockerhub:\n    username: {env: DOCKERHUB_USER}\n    password: {env: DOCKERHUB_TOKEN}\n"
    assert by_env in text and "- name: bitnami/postgresql" not in text
    text = text.replace(by_env, f"  dockerhub:\n    aws-secret-arn: {arn}\n")
    # Only what the pull-through cache serves is left from docker.io: no copy needs the login.
    by_arn = run.workdir / "by-arn.yaml"
    by_arn.write_text("\n".join(line for line in text.splitlines() if line.strip()))
    run("apply", str(by_arn), "--yes", "--prune")
    rules = run.bed.emulator.client("ecr").describe_pull_through_cache_rules()["pullThroughCacheRules"]
    (hub,) = [r for r in rules if r["ecrRepositoryPrefix"] == "vendor/docker.io"]
    assert hub["credentialArn"] == arn
    # render skopeo lists docker.io's tags itself, and cannot log in with a secret it never reads
    refused = run("render", "skopeo", str(by_arn), "--target", run.target, exit_code=1)
    assert refused.splitlines()[-1] == (
        "error: credentials 'dockerhub' are provider-native (aws-secret-arn or azure-credential-set); "
        "registry copies need username + password references"
    )


def used(bed: beds.Bed, prefix: str) -> None:
    """The secrets really were used, so their absence from everything above means something."""
    if bed.kind == "registry":  # copies went through: the source and target logins worked
        catalog = requests.get(
            f"{bed.storage.url}/v2/_catalog",
            auth=("lab-bot", beds.LAB_CANARY),
            verify=str(bed.storage.ca_file),
            timeout=10,
        )
        catalog.raise_for_status()
        assert [r for r in catalog.json()["repositories"] if r.startswith(f"{prefix}/")], "nothing was copied"
    elif bed.kind == "ecr":
        secrets = bed.emulator.client("secretsmanager")
        hub = secrets.get_secret_value(SecretId="ecr-pullthroughcache/mirrorspec/aws-prod/docker.io")
        assert json.loads(hub["SecretString"])["accessToken"] == beds.DOCKERHUB_CANARY
    elif bed.kind == "acr":
        carrying = [c for c in bed.emulator.calls if beds.SEQERA_CANARY in str(c.body)]
        assert carrying and {c.operation for c in carrying} == {"Registries_ImportImage"}
    elif bed.kind == "harbor":
        assert bed.emulator.stored_secret("mirrorspec-vendor-cr.seqera.io") == beds.SEQERA_CANARY


# --- failures whose message could carry the secret ------------------------------------------

# (case, what the one-line error must say instead)
FAILURES = [
    (Case("wrong source password (401)", "registry", env={"SEQERA_TOKEN": WRONG_CANARY}), "unauthorized"),
    (
        Case(
            "wrong token-auth password",
            "token",
            password="{env: TOKEN_PASSWORD}",
            env={"TOKEN_PASSWORD": WRONG_CANARY},
        ),
        "rejected them",
    ),
    (Case("wrong push password (401)", "registry", env={"LAB_PASSWORD": WRONG_CANARY}), "unauthorized"),
    (
        Case(
            "wrong Harbor admin password",
            "harbor",
            "harbor.yaml",
            "dc1",
            env={"HARBOR_PASSWORD": WRONG_CANARY},
        ),
        "401",
    ),
    (
        Case("literal password in the spec", "registry", password=f'"{LITERAL_CANARY}"'),
        "a literal password is refused",
    ),
]


@pytest.mark.parametrize(("runner", "says"), FAILURES, ids=[c.kind for c, _ in FAILURES], indirect=["runner"])
def test_a_failure_names_the_problem_never_the_secret(runner: tuple[Runner, Path], says: str) -> None:
    run, spec = runner
    commands = [("plan", str(spec), "--format", "json")]
    if LITERAL_CANARY in spec.read_text():  # refused offline, before any secret is read
        commands.insert(0, ("validate", str(spec)))
    for argv in commands:
        last = run(*argv, exit_code=1).rstrip("\n").splitlines()[-1]
        assert last.startswith("error: ") and says in last, last
