"""The copier's scheduling (`mirrorspec/skopeo/schedule.py`): retries, per-registry limits, no-op resyncs.

Nothing here is timed; the benchmarks in `bench/` do that. A fake `skopeo` first on PATH
records each call and then misbehaves (a connection reset once, an auth failure) or runs the
real skopeo and records its exit code, so that what is counted is what mirrorspec asked for.

Where real copies run side by side, a registry may fail one of them for a reason that is not
mirrorspec's and the copier then legitimately retries it; so those tests count the copies
that *succeeded* (each exactly once), never the calls.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from copy_helpers import minimal_context
from spec_text import DEST_LOGIN, lab_target
from testbed import RegistryServer, access_records, push_image

from mirrorspec.context import Endpoint, RunContext
from mirrorspec.credentials import BasicAuth
from mirrorspec.oci import RegistryClient
from mirrorspec.skopeo.copier import copy_all
from mirrorspec.skopeo.failures import is_transient
from mirrorspec.skopeo.jobs import CopyJob, CopyResult, CopySummary
from mirrorspec.skopeo.process import find_skopeo

REAL_SKOPEO = shutil.which("skopeo")
MIRRORSPEC = str(Path(sys.executable).with_name("mirrorspec"))
ALICE = BasicAuth("alice", "wonderland-pw")  # the tls_registry fixture's user


# {behaviour} runs after the call is recorded; `calls` is this call's number (1, 2, ...).
# `run_real()` runs the real skopeo as a child, notes its exit code in the call's record as
# "rc", and exits with it; the call's marker stays in running/ until then.
FAKE_SKOPEO = """\
#!{python}
import json, os, subprocess, sys, time
from pathlib import Path

args = sys.argv[1:]
if args == ["--version"]:
    os.execv({real!r}, [{real!r}, "--version"])
log = Path({log!r})
hosts = sorted({{a.split("://", 1)[1].split("/", 1)[0] for a in args if a.startswith("docker://")}})
marker = log / "running" / str(os.getpid())
marker.write_text(json.dumps(hosts))

def running():
    seen = []
    for path in (log / "running").iterdir():
        try:
            seen.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return seen

calls = len(list((log / "calls").iterdir())) + 1
record = {{"argv": args, "running": running(), "order": time.monotonic()}}
(log / "calls" / f"{{os.getpid()}}.json").write_text(json.dumps(record))

def run_real():
    # close_fds=False: the auth files are inherited descriptors (/proc/self/fd/N)
    rc = subprocess.call([{real!r}, *args], close_fds=False)
    path = log / "calls" / f"{{os.getpid()}}.json"
    path.write_text(json.dumps({{**json.loads(path.read_text()), "rc": rc}}))
    marker.unlink(missing_ok=True)
    sys.exit(rc)

{behaviour}
"""

FAIL_ONCE = """\
marker.unlink()
if calls == 1:
    print('time="2024-05-01T10:00:00Z" level=fatal msg="initializing source docker://x: pinging '
          'container registry x: Get \\\\"https://x/v2/\\\\": read tcp 127.0.0.1:1->127.0.0.1:2: read: '
          'connection reset by peer"', file=sys.stderr)
    sys.exit(1)
run_real()
"""

UNAUTHORIZED = """\
marker.unlink()
print('time="2024-05-01T10:00:00Z" level=fatal msg="initializing source docker://x: reading manifest '
      'sha256:00 in x/app: unauthorized: authentication required"', file=sys.stderr)
sys.exit(1)
"""

REAL = """\
run_real()
"""

# The first four calls wait for each other (as many as two registry pairs at two copies each
# allow; bounded, in case fewer may run at once), then note who else ran meanwhile, then copy.
# Waiting for an observed state, not for a time, so that a loaded machine cannot make calls
# that may run together miss each other.
GATHER_THEN_REAL = """\
deadline = time.monotonic() + 60
while calls <= 4 and len(running()) < 4 and time.monotonic() < deadline:
    time.sleep(0.05)
record = log / "calls" / f"{{os.getpid()}}.json"
data = json.loads(record.read_text())
data["running_after"] = running()
record.write_text(json.dumps(data))
run_real()
"""


@dataclass(frozen=True)
class Fake:
    log: Path
    bindir: Path

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted((self.log / "calls").iterdir())]

    def copied(self) -> Counter[tuple[str, str]]:
        """(source, destination) of each call the real skopeo finished with exit 0."""
        return Counter(
            (c["argv"][-2].split("://", 1)[1], c["argv"][-1].split("://", 1)[1])
            for c in self.calls()
            if c.get("rc") == 0
        )


def install_fake_skopeo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, behaviour: str) -> Fake:
    assert REAL_SKOPEO is not None
    bindir, log = tmp_path / "bin", tmp_path / "skopeo-log"
    bindir.mkdir()
    (log / "calls").mkdir(parents=True)
    (log / "running").mkdir()
    script = bindir / "skopeo"
    body = behaviour.format(real=REAL_SKOPEO)
    script.write_text(
        FAKE_SKOPEO.format(python=sys.executable, real=REAL_SKOPEO, log=str(log), behaviour=body)
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    find_skopeo.cache_clear()
    return Fake(log, bindir)


@pytest.fixture(autouse=True)
def _fresh_skopeo_lookup() -> Iterator[None]:
    find_skopeo.cache_clear()
    yield
    find_skopeo.cache_clear()


def context(workers: int = 4) -> RunContext:
    return minimal_context(workers)


@pytest.fixture
def ctx() -> Iterator[RunContext]:
    context_ = context()
    yield context_
    context_.close()


def seed(server: RegistryServer, *tags: str) -> tuple[str, dict[str, str]]:
    repository = f"perf-{uuid.uuid4().hex[:10]}/app"
    return repository, {tag: push_image(server, repository, tag, seed=tag) for tag in tags}


def jobs_between(
    source: Endpoint, destination: Endpoint, repository: str, digests: dict[str, str]
) -> list[CopyJob]:
    return [
        CopyJob(source, repository, digest, destination, f"mirror/{repository}", tag)
        for tag, digest in digests.items()
    ]


def digest_at(server: RegistryServer, repository: str, tag: str) -> str | None:
    if server.tls:
        client = RegistryClient(
            server.host, username=ALICE.username, password=ALICE.password, ca_bundle=str(server.ca_file)
        )
    else:
        client = RegistryClient(server.host, insecure=True)
    with client:
        return client.digest(repository, tag)


def tls_endpoint(server: RegistryServer) -> Endpoint:
    return Endpoint(server.host, auth=ALICE, ca_bundle=str(server.ca_file))


# --- retries ----------------------------------------------------------------------------------


def test_a_connection_reset_is_retried_and_the_copy_then_succeeds(
    ctx: RunContext,
    plain_registry: RegistryServer,
    tls_registry: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repository, digests = seed(plain_registry, "v1")  # the test bed pushes with skopeo: before the fake
    fake = install_fake_skopeo(tmp_path, monkeypatch, FAIL_ONCE)
    source = Endpoint(plain_registry.host, insecure=True)
    jobs = jobs_between(source, tls_endpoint(tls_registry), repository, digests)

    (result,) = copy_all(jobs, ctx, backoff=0.01)

    assert (result.ok, result.error, result.attempts) == (True, None, 2)
    assert len(fake.calls()) == 2
    assert digest_at(tls_registry, f"mirror/{repository}", "v1") == digests["v1"]
    assert CopySummary.of([result]) == CopySummary(copied=1, failed=0, retries=1)


def test_an_auth_failure_is_not_retried(
    ctx: RunContext,
    plain_registry: RegistryServer,
    tls_registry: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repository, digests = seed(plain_registry, "v1")
    fake = install_fake_skopeo(tmp_path, monkeypatch, UNAUTHORIZED)
    source = Endpoint(plain_registry.host, insecure=True)

    (result,) = copy_all(
        jobs_between(source, tls_endpoint(tls_registry), repository, digests), ctx, backoff=0
    )

    assert not result.ok and result.attempts == 1
    assert result.error is not None and "unauthorized: authentication required" in result.error
    assert len(fake.calls()) == 1


def test_real_auth_and_manifest_unknown_failures_are_not_retried(
    ctx: RunContext,
    plain_registry: RegistryServer,
    tls_registry: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The real skopeo's own messages, not ours: a wrong password, and a digest the source lacks.
    repository, digests = seed(plain_registry, "v1")
    fake = install_fake_skopeo(tmp_path, monkeypatch, REAL)
    source = Endpoint(plain_registry.host, insecure=True)
    wrong = Endpoint(
        tls_registry.host, auth=BasicAuth("alice", "not-the-password"), ca_bundle=str(tls_registry.ca_file)
    )
    absent = {"v2": "sha256:" + "0" * 64}
    jobs = [
        *jobs_between(source, wrong, repository, digests),
        *jobs_between(source, tls_endpoint(tls_registry), repository, absent),
    ]

    results = copy_all(jobs, ctx, backoff=0)

    assert [(r.ok, r.attempts) for r in results] == [(False, 1), (False, 1)]
    assert results[0].error is not None and "unauthorized" in results[0].error
    assert results[1].error is not None and "manifest unknown" in results[1].error
    assert len(fake.calls()) == 2


def test_transient_failures_give_up_after_the_retries(
    ctx: RunContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    always_reset = FAIL_ONCE.replace("if calls == 1:", "if True:")
    fake = install_fake_skopeo(tmp_path, monkeypatch, always_reset)
    job = CopyJob(Endpoint("127.0.0.1:9"), "app", "sha256:" + "1" * 64, Endpoint("127.0.0.1:9"), "app", "v1")

    (result,) = copy_all([job], ctx, retries=2, backoff=0)

    assert not result.ok and result.attempts == 3
    assert result.error is not None
    assert result.error.endswith("connection reset by peer (after 3 attempts)")
    assert len(fake.calls()) == 3


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        (
            'Get "https://r/v2/": read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer',
            True,
        ),
        ('Get "https://r/v2/": dial tcp 127.0.0.1:5000: connect: connection refused', True),
        ("reading manifest v1 in r/a: received unexpected HTTP status: 503 Service Unavailable", True),
        ("reading manifest v1 in r/a: received unexpected HTTP status: 500 Internal Server Error", True),
        ("reading blob sha256:0: StatusCode: 502, bad gateway", True),
        ("reading manifest v1 in r/a: toomanyrequests: You have reached your pull rate limit", True),
        ('Get "https://r/v2/": net/http: TLS handshake timeout', True),
        ("writing blob: Patch https://r/v2/a/blobs/uploads/x: unexpected EOF", True),
        ("reading manifest v1 in r/a: unauthorized: authentication required", False),
        (
            "writing blob: initiating layer upload to /v2/a/blobs/uploads/ in r: denied: requested access",
            False,
        ),
        ("reading manifest sha256:0 in r/a: manifest unknown: manifest unknown", False),
        ("reading manifest v1 in r/a: StatusCode: 404, oops", False),
        ('Get "https://r/v2/": x509: certificate signed by unknown authority', False),
        ("invalid reference format", False),
        ("something nobody has seen before", False),
    ],
)
def test_which_skopeo_errors_are_transient(message: str, transient: bool) -> None:
    assert is_transient(message) is transient


# --- per-registry limit -----------------------------------------------------------------------


def test_at_most_per_registry_copies_touch_one_registry_at_once(
    plain_registry: RegistryServer,
    tls_registry: RegistryServer,
    registry_factory: Callable[..., RegistryServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other_source, other_destination = registry_factory(), registry_factory()
    repo_a, digests_a = seed(plain_registry, "a1", "a2", "a3", "a4")
    repo_b, digests_b = seed(other_source, "b1", "b2", "b3", "b4")
    fake = install_fake_skopeo(tmp_path, monkeypatch, GATHER_THEN_REAL)
    jobs = [
        *jobs_between(
            Endpoint(plain_registry.host, insecure=True), tls_endpoint(tls_registry), repo_a, digests_a
        ),
        *jobs_between(
            Endpoint(other_source.host, insecure=True),
            Endpoint(other_destination.host, insecure=True),
            repo_b,
            digests_b,
        ),
    ]
    done: list[CopyResult] = []

    with closing(context(workers=8)) as ctx:
        results = copy_all(jobs, ctx, per_registry=2, on_done=done.append)

    assert [r.error for r in results] == [None] * 8
    assert len(done) == 8
    # every job copied exactly once, from where it was asked (a retried failure adds a call)
    assert fake.copied() == Counter((j.source_ref, j.destination_ref) for j in jobs)
    calls = fake.calls()
    busiest: Counter[str] = Counter()
    most_at_once = 0
    for call in calls:
        for snapshot in (call["running"], call["running_after"]):
            per_host = Counter(host for hosts in snapshot for host in hosts)
            for host, count in per_host.items():
                busiest[host] = max(busiest[host], count)
            most_at_once = max(most_at_once, len(snapshot))
    hosts = {plain_registry.host, tls_registry.host, other_source.host, other_destination.host}
    assert set(busiest) == hosts
    assert max(busiest.values()) <= 2, busiest
    # the limit is per registry, not global: both pairs of registries were copying at once
    assert most_at_once > 2


def test_tags_sharing_a_digest_are_copied_once_then_tagged_by_manifest_put(
    ctx: RunContext,
    plain_registry: RegistryServer,
    tls_registry: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repository, digests = seed(plain_registry, "1.0.0")
    fake = install_fake_skopeo(tmp_path, monkeypatch, REAL)
    source = Endpoint(plain_registry.host, insecure=True)
    same = {"1.0.0": digests["1.0.0"], "1.0": digests["1.0.0"], "latest": digests["1.0.0"]}

    results = copy_all(jobs_between(source, tls_endpoint(tls_registry), repository, same), ctx, backoff=0.01)

    assert [r.error for r in results] == [None, None, None]
    # Successful copies, not calls: a copy that failed and was retried is not a second copy.
    # The digest from the source once; the other tags by a manifest PUT (tests/test_copy_retag.py),
    # no skopeo at all.
    assert fake.copied() == Counter(
        [(f"{plain_registry.host}/{repository}@{digests['1.0.0']}", results[0].job.destination_ref)]
    )
    for tag in same:
        assert digest_at(tls_registry, f"mirror/{repository}", tag) == digests["1.0.0"]


# --- a no-op resync ----------------------------------------------------------------------------


def test_a_no_op_resync_heads_each_tag_once_and_runs_no_skopeo(
    registry_factory: Callable[..., RegistryServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = registry_factory()
    destination = registry_factory(tls=True, users={"alice": "resync-pw"})
    repository = "apps/web"
    for tag in ("1.0.0", "1.1.0", "1.2.0", "2.0.0"):
        push_image(source, repository, tag, seed=tag)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
{DEST_LOGIN}sources:
  - registry: {source.host}
    insecure: true
    repositories:
      - name: {repository}
        versions: ">=1.0.0 <2.0.0"
{lab_target(destination)}"""
    )
    env = {**os.environ, "DEST_PASSWORD": "resync-pw"}

    def sync() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MIRRORSPEC, "sync", str(spec)], capture_output=True, text=True, env=env, timeout=120, check=True
        )

    first = sync()
    assert "3 of 3 tag(s) copied and verified" in first.stdout
    assert "copied 3, failed 0" in first.stdout
    fake = install_fake_skopeo(tmp_path, monkeypatch, REAL)
    env["PATH"] = os.environ["PATH"]
    before = len(access_records(destination))

    second = sync()

    assert "copied and verified" not in second.stdout
    assert fake.calls() == []
    requests = access_records(destination)[before:]
    dest_repo = f"mirror/{source.host.replace(':', '_')}/{repository}"
    heads = [("HEAD", f"/v2/{dest_repo}/manifests/{tag}") for tag in ("1.0.0", "1.1.0", "1.2.0")]
    # What was answered: one HEAD per tag, nothing else (no GET, no blob, no upload).
    answered = [r for r in requests if r.status < 400]
    assert sorted((r.method, r.uri) for r in answered) == heads
    # What was not: the 401 challenges the first, concurrent HEADs meet before the client knows
    # it must send credentials, and a 5xx that the client retries (it is a HEAD answered later).
    challenges = [r for r in requests if r.status == 401]
    assert all(r.method in {"HEAD", "GET"} for r in challenges), challenges
    assert len(challenges) <= len(heads), challenges
    refused = [r for r in requests if r.status >= 400 and r.status != 401]
    assert all(r.status >= 500 and (r.method, r.uri) in heads for r in refused), refused


def test_copies_at_once_go_to_different_repositories(
    plain_registry: RegistryServer,
    tls_registry: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, first_digests = seed(plain_registry, "1.0", "1.1")
    second, second_digests = seed(plain_registry, "2.0", "2.1")
    fake = install_fake_skopeo(tmp_path, monkeypatch, REAL)
    source = Endpoint(plain_registry.host, insecure=True)
    jobs = [
        *jobs_between(source, tls_endpoint(tls_registry), first, first_digests),
        *jobs_between(source, tls_endpoint(tls_registry), second, second_digests),
    ]

    with closing(context(workers=1)) as ctx:
        results = copy_all(jobs, ctx)

    assert [r.job for r in results] == jobs  # results stay in job order
    started = [call["argv"][-1].rsplit(":", 1)[1] for call in sorted(fake.calls(), key=lambda c: c["order"])]
    # The order of *first* starts: a retry of a failed copy starts it again later, but it
    # cannot move the first start of any tag.
    assert list(dict.fromkeys(started)) == ["1.0", "2.0", "1.1", "2.1"]
