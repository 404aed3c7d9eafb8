"""Tags of a digest the destination holds are put by manifest PUT (`mirrorspec/skopeo/retag.py`),
and the per-registry copy limit adapts (`mirrorspec/skopeo/schedule.py`).

Real skopeo, real docker-registry: a wrapper first on PATH records every skopeo start and runs
the real one, so that the count of skopeo processes is what mirrorspec started; the registries'
access logs say which manifest PUTs they took. A `FaultProxy` refuses our PUTs (by our
User-Agent: skopeo's own manifest PUT goes through) or answers skopeo 429. The limiter is also
driven by hand, with attempt times set on the tasks, so that nothing depends on the clock.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import ssl
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from email.message import Message
from pathlib import Path

import pytest
from copy_helpers import minimal_context
from testbed import AccessRecord, FaultProxy, RegistryServer, access_records, push_image

from mirrorspec.context import Endpoint, RunContext
from mirrorspec.credentials import BasicAuth
from mirrorspec.oci import RegistryClient
from mirrorspec.skopeo.copier import copy_all
from mirrorspec.skopeo.jobs import CopyJob
from mirrorspec.skopeo.process import find_skopeo
from mirrorspec.skopeo.schedule import PER_REGISTRY_MAX, PER_REGISTRY_START, Schedule, default_per_registry

REAL_SKOPEO = shutil.which("skopeo")
ALICE = BasicAuth("alice", "wonderland-pw")  # the tls_registry and token_registry fixtures' user


# Records (source, destination) of each registry-to-registry copy, then runs the real skopeo as
# a child and notes its exit code. close_fds=False: the auth files are inherited descriptors
# (/proc/self/fd/N).
WRAPPER = """\
#!{python}
import json, os, subprocess, sys
from pathlib import Path

real, log = {real!r}, Path({log!r})
args = sys.argv[1:]
refs = [a.split("://", 1)[1] for a in args if a.startswith("docker://")]
if len(refs) != 2:  # --version, or the test bed pushing an image from a directory
    os.execv(real, [real, *args])
source, destination = refs
rc = subprocess.call([real, *args], close_fds=False)
record = {{"source": source, "destination": destination, "rc": rc}}
(log / f"{{os.getpid()}}.json").write_text(json.dumps(record))
sys.exit(rc)
"""


@pytest.fixture(autouse=True)
def _fresh_skopeo_lookup() -> Iterator[None]:
    find_skopeo.cache_clear()
    yield
    find_skopeo.cache_clear()


@pytest.fixture
def skopeo_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[dict[str, object]]]:
    """Installs the wrapper; returns a function listing the skopeo copies started so far."""
    assert REAL_SKOPEO is not None
    bindir, log = tmp_path / "bin", tmp_path / "skopeo-log"
    bindir.mkdir()
    log.mkdir()
    wrapper = bindir / "skopeo"
    wrapper.write_text(WRAPPER.format(python=sys.executable, real=REAL_SKOPEO, log=str(log)))
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    find_skopeo.cache_clear()
    return lambda: [json.loads(p.read_text()) for p in sorted(log.iterdir())]


def context(workers: int = 8) -> RunContext:
    return minimal_context(workers)


def client_of(server: RegistryServer, host: str | None = None) -> RegistryClient:
    return RegistryClient(
        host or server.host,
        username=ALICE.username,
        password=ALICE.password,
        ca_bundle=str(server.ca_file) if server.ca_file else None,
        insecure=not server.tls,
    )


def manifest_puts(records: list[AccessRecord]) -> Counter[str]:
    """Tags whose manifest PUT the registry took (201), by tag."""
    return Counter(
        r.uri.rsplit("/", 1)[1]
        for r in records
        if r.method == "PUT" and "/manifests/" in r.uri and r.status == 201
    )


# --- manifest PUTs, real registries -------------------------------------------------------------


def test_n_tags_sharing_a_digest_run_one_skopeo_and_n_minus_1_puts_with_a_push_token(
    plain_registry: RegistryServer,
    token_registry: RegistryServer,
    skopeo_starts: Callable[[], list[dict[str, object]]],
) -> None:
    repository = f"retag-{uuid.uuid4().hex[:10]}/app"
    digest = push_image(plain_registry, repository, "1.0.0", seed="shared")
    other = push_image(plain_registry, repository, "2.0.0", seed="other")
    sharing = ["1.0.0", "1.0", "1", "latest", "stable"]
    source = Endpoint(plain_registry.host, insecure=True)
    destination = Endpoint(token_registry.host, auth=ALICE, insecure=True)
    dest_repository = f"mirror/{repository}"
    jobs = [
        *(CopyJob(source, repository, digest, destination, dest_repository, tag) for tag in sharing),
        CopyJob(source, repository, other, destination, dest_repository, "2.0.0"),
    ]
    issuer = token_registry.token_issuer
    assert issuer is not None
    before, tokens_before = len(access_records(token_registry)), len(issuer.requests)

    with closing(context()) as ctx:
        results = copy_all(jobs, ctx)

    assert [(r.job.tag, r.error) for r in results] == [(j.tag, None) for j in jobs]
    starts = skopeo_starts()
    # one skopeo per digest, both from the source; no skopeo for the other four tags
    assert sorted(str(s["destination"]).rsplit(":", 1)[1] for s in starts) == ["1.0.0", "2.0.0"]
    assert all(str(s["source"]).startswith(plain_registry.host) for s in starts)
    # every tag's manifest was put exactly once: skopeo's two, and our four
    records = access_records(token_registry)[before:]
    assert manifest_puts(records) == Counter(j.tag for j in jobs)
    # our PUTs carried a token for pull and push, asked for before the first of them: none
    # was challenged
    challenged = [r for r in records if r.method == "PUT" and r.status == 401]
    assert [r for r in challenged if r.uri.rsplit("/", 1)[1] in sharing[1:]] == []
    granted = [r for r in issuer.requests[tokens_before:] if r.user == "alice" and r.status == 200]
    assert any(f"repository:{dest_repository}:pull,push" in r.scopes for r in granted), granted
    with client_of(token_registry) as client:
        assert {t: client.digest(dest_repository, t) for t in sharing} == dict.fromkeys(sharing, digest)


def test_a_digest_the_destination_already_holds_under_another_tag_is_put_without_skopeo(
    plain_registry: RegistryServer,
    tls_registry: RegistryServer,
    skopeo_starts: Callable[[], list[dict[str, object]]],
) -> None:
    repository = f"retag-{uuid.uuid4().hex[:10]}/app"
    digest = push_image(plain_registry, repository, "1.0.0", seed="held")
    dest_repository = f"mirror/{repository}"
    source = Endpoint(plain_registry.host, insecure=True)
    destination = Endpoint(tls_registry.host, auth=ALICE, ca_bundle=str(tls_registry.ca_file))
    with closing(context()) as ctx:  # an earlier run copied the digest under another tag
        first = copy_all([CopyJob(source, repository, digest, destination, dest_repository, "old")], ctx)
    assert [r.error for r in first] == [None]
    assert len(skopeo_starts()) == 1
    before = len(access_records(tls_registry))

    with closing(context()) as ctx:
        results = copy_all([CopyJob(source, repository, digest, destination, dest_repository, "1.0.0")], ctx)

    assert [r.error for r in results] == [None]
    assert len(skopeo_starts()) == 1  # no new one
    records = access_records(tls_registry)[before:]
    assert manifest_puts(records) == Counter(["1.0.0"])
    assert not any("/blobs/" in r.uri for r in records)  # no blob moved or even checked
    with client_of(tls_registry) as client:
        assert client.digest(dest_repository, "1.0.0") == digest


def _tls_of(server: RegistryServer) -> ssl.SSLContext:
    """The registry's own server certificate, for a proxy that serves as it does."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls = server.workdir / "tls"
    context.load_cert_chain(tls / "server.crt", tls / "server.key")
    return context


def test_a_refused_put_falls_back_to_skopeo_and_says_so(
    plain_registry: RegistryServer,
    tls_registry: RegistryServer,
    skopeo_starts: Callable[[], list[dict[str, object]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    repository = f"retag-{uuid.uuid4().hex[:10]}/app"
    digest = push_image(plain_registry, repository, "1.0.0", seed="refused")
    sharing = ["1.0.0", "1.0", "latest"]
    refused: list[str] = []

    def refuse_our_puts(method: str, path: str, headers: Message) -> tuple[int, str, bytes] | None:
        # skopeo's own manifest PUT passes: only mirrorspec's is refused, as a registry whose
        # robot account may push blobs through skopeo's session but not tag would
        if (
            method == "PUT"
            and "/manifests/" in path
            and headers.get("User-Agent", "").startswith("mirrorspec/")
        ):
            refused.append(path.rsplit("/", 1)[1])
            body = b'{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}'
            return 403, "application/json", body
        return None

    proxy = FaultProxy(
        tls_registry.url, ssl_context=_tls_of(tls_registry), backend_ca=str(tls_registry.ca_file)
    )
    with proxy:
        proxy.answer(refuse_our_puts)
        source = Endpoint(plain_registry.host, insecure=True)
        destination = Endpoint(proxy.host, auth=ALICE, ca_bundle=str(tls_registry.ca_file))
        dest_repository = f"mirror/{repository}"
        jobs = [CopyJob(source, repository, digest, destination, dest_repository, tag) for tag in sharing]

        with closing(context()) as ctx, caplog.at_level(logging.INFO, logger="mirrorspec.copy"):
            results = copy_all(jobs, ctx)

        assert [(r.job.tag, r.error) for r in results] == [(t, None) for t in sharing]
        assert sorted(refused) == ["1.0", "latest"]
        # the leader from the source, then each refused tag copied by skopeo within the destination
        starts = sorted((str(s["source"]).split("/", 1)[0], str(s["destination"])) for s in skopeo_starts())
        assert starts == sorted(
            [
                (plain_registry.host, f"{proxy.host}/{dest_repository}:1.0.0"),
                (proxy.host, f"{proxy.host}/{dest_repository}:1.0"),
                (proxy.host, f"{proxy.host}/{dest_repository}:latest"),
            ]
        )
        said = [r.getMessage() for r in caplog.records if "manifest PUT failed" in r.getMessage()]
        assert len(said) == 2 and all("403" in line and "skopeo" in line for line in said), said
        assert all(ALICE.password not in r.getMessage() for r in caplog.records)
        with client_of(tls_registry) as client:
            assert {t: client.digest(dest_repository, t) for t in sharing} == dict.fromkeys(sharing, digest)


def too_many_requests(kind: str) -> tuple[str, bytes]:
    """A registry's answer to a client over its rate limit (Docker Hub's code)."""
    code = "TOOMANYREQUESTS" if kind == "429" else "UNKNOWN"
    return "application/json", json.dumps({"errors": [{"code": code, "message": "slow down"}]}).encode()


def test_injected_429s_halve_the_copy_limit_of_the_host_that_sent_them(
    plain_registry: RegistryServer,
    tls_registry: RegistryServer,
    skopeo_starts: Callable[[], list[dict[str, object]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    repository = f"throttle-{uuid.uuid4().hex[:10]}/app"
    digests = {tag: push_image(plain_registry, repository, tag, seed=tag) for tag in ("1", "2")}
    with FaultProxy(plain_registry.url, error_body=too_many_requests) as proxy:
        proxy.faults(0.0, 0, retry_after=0)
        # skopeo 1.9.3 itself tries a manifest read answered 429 five times in all (seen here:
        # one 429 costs it nothing, eight end the copy after five); so five 429s for one image's
        # manifest end that copy with "toomanyrequests", the word Docker Hub's limit uses
        for _ in range(5):
            proxy.script("before", "429", "GET", f"/v2/{repository}/manifests/{digests['1']}")
        throttling = proxy.host
        source = Endpoint(proxy.host, insecure=True)
        destination = Endpoint(tls_registry.host, auth=ALICE, ca_bundle=str(tls_registry.ca_file))
        jobs = [
            CopyJob(source, repository, d, destination, f"mirror/{repository}", t) for t, d in digests.items()
        ]
        with closing(context()) as ctx, caplog.at_level(logging.WARNING, logger="mirrorspec.copy"):
            results = copy_all(jobs, ctx, backoff=0.01)

        assert [r.error for r in results] == [None, None]
        assert [f.kind for f in proxy.injected] == ["429"] * 5
    assert sum(r.attempts for r in results) == 3  # the throttled copy was retried once
    throttled = [r.getMessage() for r in caplog.records if "is throttling" in r.getMessage()]
    start = PER_REGISTRY_START
    assert throttled == [f"{throttling} is throttling: at most {start // 2} copies at once from now on"]
    assert len([s for s in skopeo_starts() if s["rc"] == 0]) == 2


# --- the adaptive limit, driven by hand ------------------------------------------------------------


def _jobs(count: int) -> list[CopyJob]:
    source, destination = Endpoint("source.test"), Endpoint("dest.test")
    return [
        CopyJob(source, f"r{i}", "sha256:" + f"{i:064x}", destination, f"m/r{i}", "1") for i in range(count)
    ]


def _run_once(schedule: Schedule, seconds: float, error: str | None = None) -> None:
    """Take one task and finish it as if its attempt had taken `seconds`."""
    task = schedule.take()
    assert task is not None
    task.attempt_started -= seconds  # as if it had started that long ago: no clock involved
    schedule.finish(task, error, error is not None)


def test_the_limit_starts_at_8_and_grows_to_24_while_copies_stay_quick() -> None:
    assert default_per_registry(32) == (PER_REGISTRY_START, PER_REGISTRY_MAX) == (8, 24)
    schedule = Schedule(_jobs(100), 8, 0, 0.0, ceiling=24)
    assert schedule.limit("dest.test") == schedule.limit("source.test") == 8
    for _ in range(16):  # slow start: one more at once per quick success
        _run_once(schedule, 10.0)
    assert schedule.limit("dest.test") == schedule.limit("source.test") == 24
    for _ in range(10):
        _run_once(schedule, 10.0)
    assert schedule.limit("dest.test") == 24  # the ceiling


def test_a_slow_copy_stops_the_growth_and_then_it_is_one_per_window() -> None:
    schedule = Schedule(_jobs(100), 8, 0, 0.0, ceiling=24)
    for _ in range(2):
        _run_once(schedule, 10.0)
    assert schedule.limit("dest.test") == 10
    _run_once(schedule, 10.0 * 5)  # saturated: no growth, slow start over
    assert schedule.limit("dest.test") == 10
    for _ in range(9):
        _run_once(schedule, 10.0)
    assert schedule.limit("dest.test") == 10  # one more only after `limit` quick ones in a row
    _run_once(schedule, 10.0)
    assert schedule.limit("dest.test") == 11


def test_throttling_halves_the_limit_never_below_1_and_it_grows_back() -> None:
    schedule = Schedule(_jobs(100), 8, 3, 0.0, ceiling=24)
    throttled = 'reading manifest sha256:00 in x/app: toomanyrequests: rate limit exceeded"'
    limits = []
    for _ in range(5):
        _run_once(schedule, 1.0, throttled)
        limits.append(schedule.limit("dest.test"))
    assert limits == [4, 2, 1, 1, 1]
    for _ in range(3):  # after throttling, one more per `limit` quick successes: 1 → 2 → 3
        _run_once(schedule, 1.0)
    assert schedule.limit("dest.test") == 3


def test_a_fixed_limit_never_grows_and_minus_j_caps_it() -> None:
    schedule = Schedule(_jobs(50), 2, 0, 0.0)
    for _ in range(20):
        _run_once(schedule, 1.0)
    assert schedule.limit("dest.test") == 2
    assert default_per_registry(4) == (4, 4)
    assert default_per_registry(12) == (8, 12)
