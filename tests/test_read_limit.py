"""Registry reads in flight: a limit per registry of their own, adaptive, and a plan that is a
pipeline per repository (issue 15, items 2 and 3).

The plans run the real CLI against `HostileRegistry` sources and destinations whose routes hold
chosen requests unanswered, so a test can see how many reads are in flight at one moment and
which requests a plan has sent while another is still waiting, without timing anything: it waits
(with generous bounds) for a state, then asserts on it. The 429 tests drive a real
`RegistryClient` and its transport in-process against the same server. The rest checks
`ReadLimit`'s arithmetic.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from cli_runner import run
from testbed.hostile import HostileRegistry, Reply, Request

from mirrorspec.oci import RegistryClient, Transport
from mirrorspec.oci.read_limit import ReadLimit

WAIT = 120.0  # seconds a test waits for a state it expects; generous on a loaded 2-CPU machine
TAG = "1.0.0"


def _digest(path: str) -> str:
    return "sha256:" + hashlib.sha256(path.encode()).hexdigest()


class Upstream:
    """A source registry of `repos` repositories with one tag each; the HEADs of their manifests
    wait at `gate` (open unless closed) and are counted while they wait."""

    def __init__(self, hold: Callable[[Request], bool] = lambda r: False) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.hold = hold
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0

    def route(self, request: Request) -> Reply:
        path = request.path.split("?", 1)[0]
        if path == "/v2/":
            return Reply(200, {"Content-Type": "application/json"}, b"{}")
        if path.endswith("/tags/list"):
            name = path.removeprefix("/v2/").removesuffix("/tags/list")
            self._wait(request)
            body = json.dumps({"name": name, "tags": [TAG]}).encode()
            return Reply(200, {"Content-Type": "application/json"}, body)
        if "/manifests/" in path:
            self._wait(request)
            return Reply(200, {"Docker-Content-Digest": _digest(path), "Content-Type": OCI_MANIFEST})
        return Reply(404, {"Content-Type": "application/json"}, b'{"errors":[]}')

    def _wait(self, request: Request) -> None:
        if not self.hold(request):
            return
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            self.gate.wait(WAIT)
        finally:
            with self.lock:
                self.in_flight -= 1


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _all_but_the_first() -> Callable[[Request], bool]:
    count = iter(range(1 << 30))
    lock = threading.Lock()

    def hold(request: Request) -> bool:
        with lock:
            return next(count) > 0

    return hold


def _empty_destination(request: Request) -> Reply:
    """A registry that holds nothing: every manifest is missing."""
    if request.path.split("?", 1)[0] == "/v2/":
        return Reply(200, {"Content-Type": "application/json"}, b"{}")
    return Reply(404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')


def _spec(tmp_path: Path, source: str, destination: str, repos: int) -> Path:
    entries = "".join(f"      - name: app/r{i:02d}\n        tags: ['{TAG}']\n" for i in range(repos))
    path = tmp_path / "spec.yaml"
    path.write_text(
        f"""\
version: 1
sources:
  - registry: {source}
    insecure: true
    repositories:
{entries}targets:
  - name: lab
    type: registry
    registry: {destination}
    insecure: true
"""
    )
    return path


@contextmanager
def _background(fn: Callable[[], CompletedProcess[str]]) -> Iterator[Future[CompletedProcess[str]]]:
    """Run `fn` (the CLI) in a thread for the block."""
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(fn)


def _until(
    condition: Callable[[], bool], what: str, running: Future[CompletedProcess[str]] | None = None
) -> None:
    """Wait for `condition`; fail if it takes too long or the CLI in `running` ends first."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        if running is not None and running.done():
            proc = running.result()
            pytest.fail(f"the CLI ended before {what}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        time.sleep(0.05)


def test_reads_in_flight_reach_their_limit_whatever_the_copy_workers(tmp_path: Path) -> None:
    """`--reads 5 -j 1`: five reads wait at the source at once, never six; `-j` (copies) does
    not bound reads (it did: one at a time with `-j 1`). Every read but the first is held: the
    first teaches the client the registry's auth scheme (the others wait for it), and with no
    other answer the limit cannot grow past 5 while they wait."""
    upstream = Upstream(hold=_all_but_the_first())
    upstream.gate.clear()
    with HostileRegistry(upstream.route) as source, HostileRegistry(_empty_destination) as destination:
        spec = _spec(tmp_path, source.host, destination.host, repos=12)
        argv = ("--timeout", "300", "--reads", "5", "plan", str(spec), "-j", "1")
        with _background(lambda: run(*argv, check=None)) as running:
            _until(lambda: upstream.in_flight == 5, "5 HEADs in flight", running)
            time.sleep(0.5)  # room for a sixth, if the limit let one through
            assert upstream.peak == 5
            upstream.gate.set()
            proc = running.result(timeout=WAIT)
    assert proc.returncode == 0, proc.stderr
    assert "12 tag(s) to copy" in proc.stdout, proc.stdout


def test_destination_checks_start_while_other_repositories_are_still_listed(tmp_path: Path) -> None:
    """A pipeline per repository: one source tag list is held, and the destination is already
    asked about every other repository's tag; the plan then finishes with all twelve. The
    second listing to arrive is the one held: the first teaches the client the registry's
    auth scheme, which the other threads wait for."""
    listings: list[str] = []
    lock = threading.Lock()

    def second_listing(request: Request) -> bool:
        if not request.path.endswith("/tags/list"):
            return False
        with lock:
            listings.append(request.path)
            return len(listings) == 2

    upstream = Upstream(hold=second_listing)
    upstream.gate.clear()
    with HostileRegistry(upstream.route) as source, HostileRegistry(_empty_destination) as destination:
        source_host = source.host
        spec = _spec(tmp_path, source_host, destination.host, repos=12)

        def checked() -> set[str]:
            return {r.path for r in destination.requests if r.method == "HEAD"}

        argv = ("--timeout", "300", "plan", str(spec), "--format", "json")
        with _background(lambda: run(*argv, check=None)) as running:
            _until(
                lambda: len(checked()) == 11, "11 destination checks while one repository is listed", running
            )
            assert upstream.in_flight == 1
            held = listings[1].removeprefix("/v2/").removesuffix("/tags/list")
            assert not any(f"/{held}/" in path for path in checked())
            upstream.gate.set()
            proc = running.result(timeout=WAIT)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    (target,) = plan["targets"]
    copied = [(c["source"], [t["tag"] for t in c["tags"]]) for c in target["copies"]]
    # the plan's order is the spec's repositories', sorted, whatever order the answers came in
    assert copied == [(f"{source_host}/app/r{i:02d}", [TAG]) for i in range(12)]


def _throttling(retry_after: str, first: int) -> tuple[Callable[[Request], Reply], list[tuple[float, str]]]:
    """A route whose first `first` manifest HEADs get 429 with `retry_after` (all at once: the
    first waits for the others), then 200s; and the (time, path) of every HEAD."""
    seen: list[tuple[float, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(first, timeout=WAIT)

    def route(request: Request) -> Reply:
        path = request.path.split("?", 1)[0]
        if "/manifests/" not in path:
            return Reply(200, {"Content-Type": "application/json"}, b"{}")
        with lock:
            seen.append((time.monotonic(), path))
            refused = len(seen) <= first
        if refused:
            barrier.wait()
            return Reply(429, {"Retry-After": retry_after, "Content-Type": "application/json"}, b"{}")
        return Reply(200, {"Docker-Content-Digest": _digest(path), "Content-Type": OCI_MANIFEST})

    return route, seen


def test_a_burst_of_429s_halves_the_reads_limit_once() -> None:
    """Eight reads refused together are one throttling event: 8 → 4, not 8 → 1; all succeed
    on their retry, and the limit grows again."""
    route, _ = _throttling("0", first=8)
    with HostileRegistry(route) as server:
        client = RegistryClient(server.host, insecure=True, transport=Transport(60, reads=8))
        client.ping()  # the auth scheme (none) is learnt: no thread waits for another's answer
        with client, ThreadPoolExecutor(8) as pool:
            digests = list(pool.map(lambda i: client.digest(f"app/r{i}", TAG), range(8)))
    assert all(digests)
    assert client.reads.halvings == 1
    assert client.reads.limit == 5  # 8 → 4, then one step up after 4 answers in a row


def test_retry_after_holds_back_every_read_to_the_registry() -> None:
    """A 429 with `Retry-After: 1` halves the limit, and a read another thread starts after it
    reaches the registry no sooner than a second later (a lower bound: a slow machine only
    makes it later)."""
    route, seen = _throttling("1", first=1)
    with HostileRegistry(route) as server:
        client = RegistryClient(server.host, insecure=True, transport=Transport(60, reads=8))
        client.ping()
        with client, ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.digest, "app/first", TAG)
            _until(lambda: client.reads.halvings == 1, "the 429")
            assert client.reads.limit == 4
            assert client.digest("app/second", TAG)
            assert first.result(timeout=WAIT)
    refused_at = seen[0][0]
    (second_at,) = [at for at, path in seen if path == f"/v2/app/second/manifests/{TAG}"]
    assert second_at >= refused_at + 1.0


def test_the_limit_grows_back_while_the_registry_answers_well() -> None:
    assert ReadLimit(4).ceiling == 4  # by default it grows back to where it started, no further
    limit = ReadLimit(4, ceiling=8)
    assert (limit.limit, limit.ceiling) == (4, 8)
    limit.throttled(time.monotonic(), None)
    assert limit.limit == 2
    for _ in range(2):
        with limit.slot():
            pass
    assert limit.limit == 3  # one step per window of answers
    for _ in range(100):
        with limit.slot():
            pass
    assert limit.limit == 8  # and no further than the ceiling
    assert limit.peak == 1


def test_a_429_to_a_request_sent_before_the_last_halving_does_not_halve_again() -> None:
    limit = ReadLimit(16)
    sent = time.monotonic()
    limit.throttled(sent, None)
    limit.throttled(sent, None)  # the same burst
    assert (limit.limit, limit.halvings) == (8, 1)
    limit.throttled(time.monotonic(), None)  # a request sent after it: a new event
    assert (limit.limit, limit.halvings) == (4, 2)
    for _ in range(10):
        limit.throttled(time.monotonic(), None)
    assert limit.limit == 1  # never below one


def test_reads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReadLimit(0)
    with pytest.raises(ValueError, match="at least 1"):
        Transport(30, reads=0)


def test_the_first_error_is_the_same_whatever_order_the_answers_come_in(tmp_path: Path) -> None:
    """Phases no longer wait for each other, yet a failing plan names the error the phased plan
    named: tag lists first, by repository, then digests. Here r08's tag list fails first in
    time (r03's waits for it) and r01's digest is missing; r03's tag list is what is named."""
    r08_failed = threading.Event()
    first: list[str] = []
    lock = threading.Lock()

    def route(request: Request) -> Reply:
        path = request.path.split("?", 1)[0]
        with lock:
            first.append(path)
            teaching = len(first) == 1  # the first request teaches the auth scheme: never held
        missing = Reply(404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
        if path == "/v2/app/r03/tags/list":
            if not teaching:
                r08_failed.wait(WAIT)
            return missing
        if path == "/v2/app/r08/tags/list":
            r08_failed.set()
            return missing
        if path == f"/v2/app/r01/manifests/{TAG}":
            return missing
        return Upstream().route(request)

    with HostileRegistry(route) as source, HostileRegistry(_empty_destination) as destination:
        spec = _spec(tmp_path, source.host, destination.host, repos=12)
        proc = run("--timeout", "300", "plan", str(spec), check=1)
        host = source.host
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot list tags of {host}/app/r03: "), line
