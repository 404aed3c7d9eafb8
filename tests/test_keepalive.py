"""Every connection reused: a plan over many repositories opens about as many TCP connections per
registry as it has requests in flight, not one per request (issue 15, item 1).

The real CLI plans against a real TLS + htpasswd `docker-registry`, reached through a
`ConnectionCounter` per role (source, destination) so that each registry host's connections are
counted. Before the fix, HEAD answers (a digest check), 401s and 404s were closed unread and
`requests` dropped their sockets: one new TLS connection per HEAD.

What keeps a hostile server from abusing the drain (`DeadlineResponse.drain`): an unread body
is read only up to 64 KiB and for a second, so an endless or dripping 401/404 body ends in a
closed connection, as before, not in a long read. Also here: the first request to a registry
learns its auth scheme for all threads, and a CA bundle is loaded once per run.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from testbed import MANIFEST_ACCEPT, RegistryServer, access_records, push_image
from testbed.counting import ConnectionCounter
from testbed.hostile import HostileRegistry, Reply, Request, endless

from mirrorspec.errors import RegistryError
from mirrorspec.oci import RegistryClient, Transport
from mirrorspec.oci.read_limit import ceiling_for

MIRRORSPEC = str(Path(sys.executable).with_name("mirrorspec"))
USER, PASSWORD = "alice", "wonderland-pw"  # the tls_registry fixture's user
REPOSITORIES = 60
READS = 4  # the plan's reads in flight per registry to start with (--reads)
# RunContext gives each registry a pool of one connection per read its limit may grow to
POOL = ceiling_for(READS)
# Connections beyond the pool a client may honestly open: the https probe of a fresh client and
# a socket the server closed while idle. Far below the requests of the plan (3 per repository).
SLACK = 2


@pytest.fixture(scope="module")
def many(tls_registry: RegistryServer) -> str:
    """`REPOSITORIES` repositories `<prefix>/repo-NN` with tags 1.0.0 and 2.0.0, by blob mounts
    and manifest PUTs (a skopeo run each would take minutes); their prefix."""
    prefix = f"ka{uuid.uuid4().hex[:8]}"
    base = f"{prefix}/base"
    push_image(tls_registry, base, "1.0.0", seed=prefix, user=USER)
    session = requests.Session()
    session.trust_env = False
    session.auth = (USER, PASSWORD)
    session.verify = str(tls_registry.ca_file)
    got = session.get(f"{tls_registry.url}/v2/{base}/manifests/1.0.0", headers={"Accept": MANIFEST_ACCEPT})
    got.raise_for_status()
    manifest = json.loads(got.content)
    blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]

    def make(i: int) -> None:
        repository = f"{prefix}/repo-{i:02d}"
        for digest in blobs:
            mounted = session.post(
                f"{tls_registry.url}/v2/{repository}/blobs/uploads/", params={"mount": digest, "from": base}
            )
            assert mounted.status_code == 201, mounted.text
        for tag in ("1.0.0", "2.0.0"):
            put = session.put(
                f"{tls_registry.url}/v2/{repository}/manifests/{tag}",
                data=got.content,
                headers={"Content-Type": got.headers["Content-Type"]},
            )
            assert put.status_code == 201, put.text

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(make, range(REPOSITORIES)))
    session.close()
    return prefix


@pytest.fixture
def counters(tls_registry: RegistryServer) -> Iterator[tuple[ConnectionCounter, ConnectionCounter]]:
    """Two counting relays to the one registry: the plan's source and its destination."""
    source, destination = ConnectionCounter(tls_registry.host), ConnectionCounter(tls_registry.host)
    with source.start(), destination.start():
        yield source, destination


def test_plan_reuses_connections(
    tls_registry: RegistryServer,
    many: str,
    counters: tuple[ConnectionCounter, ConnectionCounter],
    tmp_path: Path,
) -> None:
    source, destination = counters
    repositories = "".join(
        f'      - name: {many}/repo-{i:02d}\n        versions: ">=1.0.0 <2.0.0"\n'
        for i in range(REPOSITORIES)
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
version: 1
credentials:
  lab:
    username: {USER}
    password: {{env: LAB_PASSWORD}}
sources:
  - registry: {source.host}
    credentials: lab
    ca-bundle: {tls_registry.ca_file}
    repositories:
{repositories}targets:
  - name: lab
    type: registry
    registry: {destination.host}
    prefix: mirror-{many}
    credentials: lab
    ca-bundle: {tls_registry.ca_file}
"""
    )
    before = len(access_records(tls_registry))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MIRRORSPEC_")}
    environment["LAB_PASSWORD"] = PASSWORD
    proc = subprocess.run(
        [MIRRORSPEC, "--reads", str(READS), "plan", str(spec), "-j", "2"],
        capture_output=True,
        text=True,
        env=environment,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{REPOSITORIES} tag(s) to copy" in proc.stdout, proc.stdout[-2000:]

    served = access_records(tls_registry)[before:]
    # source: a tag list and a HEAD per repository; destination: a HEAD (404) per repository
    assert len(served) >= 3 * REPOSITORIES
    assert source.accepted <= POOL + SLACK, (source.accepted, len(served))
    assert destination.accepted <= POOL + SLACK, (destination.accepted, len(served))
    # The scheme (basic) is learnt once per registry and then sent up front: one 401 per host.
    assert [r.status for r in served].count(401) <= 2


# --- what is drained and what is not, against a hostile registry -----------------------------

JSON = {"Content-Type": "application/json"}
DIGEST = "sha256:" + "a" * 64
NOT_FOUND = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'


@pytest.fixture
def hostile_counted() -> Iterator[
    Callable[[Callable[[Request], Reply]], tuple[HostileRegistry, ConnectionCounter]]
]:
    """`start(route)`: a hostile registry and a connection counter in front of it."""
    started: list[HostileRegistry | ConnectionCounter] = []

    def start(route: Callable[[Request], Reply]) -> tuple[HostileRegistry, ConnectionCounter]:
        server = HostileRegistry(route).start()
        counter = ConnectionCounter(server.host).start()
        started.extend((server, counter))
        return server, counter

    yield start
    for each in reversed(started):
        each.stop()


def test_small_unread_bodies_keep_the_connection(
    hostile_counted: Callable[[Callable[[Request], Reply]], tuple[HostileRegistry, ConnectionCounter]],
) -> None:
    def route(request: Request) -> Reply:
        if "/manifests/present" in request.path:
            return Reply(
                200,
                {
                    "Content-Type": "application/vnd.oci.image.manifest.v1+json",
                    "Docker-Content-Digest": DIGEST,
                },
            )
        if request.path.startswith("/v2/gone/"):
            return Reply(404, JSON, NOT_FOUND)  # a body to drain on GET
        if request.path == "/v2/moved/tags/list":
            return Reply(307, {"Location": "/v2/moved/tags/list?here"}, b"<a>moved</a>" * 100)
        if request.path == "/v2/moved/tags/list?here":
            return Reply(200, JSON, b'{"name":"moved","tags":["v1"]}')
        return Reply(404, JSON, NOT_FOUND)

    server, counter = hostile_counted(route)
    with RegistryClient(counter.host, insecure=True, retries=0, timeout=10) as client:
        for _ in range(10):
            assert client.digest("r", "present") == DIGEST  # HEAD 200
            assert client.digest("r", "absent") is None  # HEAD 404
            with pytest.raises(RegistryError, match="not found"):
                client.list_tags("gone")  # GET 404 with a body nobody reads
        # a redirect's body is drained too (the tag list then comes over the same connection)
        assert client.list_tags("moved") == ["v1"]
    assert len(server.requests) == 32
    # the https probe of an insecure client (refused: plain HTTP), then one connection
    assert counter.accepted <= 2, counter.accepted


def dripping(interval: float) -> Iterator[bytes]:
    """A body that never ends, a byte every `interval` seconds (each well inside a timeout)."""
    while True:
        yield b"x"
        time.sleep(interval)


@pytest.mark.parametrize("case", ["endless-404", "dripping-401", "large-declared-404"])
def test_a_hostile_unread_body_is_not_drained_for_long(
    hostile_counted: Callable[[Callable[[Request], Reply]], tuple[HostileRegistry, ConnectionCounter]],
    case: str,
) -> None:
    def route(request: Request) -> Reply:
        if case == "endless-404":
            return Reply(404, JSON, endless(b"x" * 65536, 1 << 30))
        if case == "dripping-401":
            return Reply(401, {**JSON, "WWW-Authenticate": 'Basic realm="r"'}, dripping(0.2))
        return Reply(404, {**JSON, "Content-Length": str(1 << 30)}, b"")  # declared, never sent

    server, counter = hostile_counted(route)
    outcome: list[BaseException | None] = []

    def digests() -> None:
        # A 30 s timeout: a body would get 300 s. The drain must give up long before.
        with RegistryClient(counter.host, insecure=True, retries=0, timeout=30) as client:
            try:
                for _ in range(3):
                    try:
                        client.list_tags("r")
                    except RegistryError as exc:
                        assert "not found" in str(exc) or "requires credentials" in str(exc), exc
                outcome.append(None)
            except BaseException as exc:  # reported below, in the test's thread
                outcome.append(exc)

    worker = threading.Thread(target=digests, daemon=True)
    worker.start()
    worker.join(60)  # generous: three drains of at most a second each
    assert not worker.is_alive(), "a hostile body was drained for as long as the body deadline"
    assert outcome == [None], outcome
    assert len(server.requests) >= 3
    # Each of those connections was closed rather than drained to its end and reused.
    assert counter.accepted >= 3


# --- auth learnt once, CA bundles loaded once ----------------------------------------------------


def test_the_first_wave_of_threads_takes_one_401(tls_registry: RegistryServer, many: str) -> None:
    before = len(access_records(tls_registry))
    client = RegistryClient(
        tls_registry.host, username=USER, password=PASSWORD, ca_bundle=str(tls_registry.ca_file), pool_size=8
    )
    with client, ThreadPoolExecutor(8) as pool:
        tags = list(pool.map(lambda i: client.list_tags(f"{many}/repo-{i:02d}"), range(32)))
    assert tags == [["1.0.0", "2.0.0"]] * 32
    statuses = [r.status for r in access_records(tls_registry)[before:]]
    assert statuses.count(401) == 1, statuses
    assert statuses.count(200) == 32


def test_a_token_is_fetched_once_per_scope_across_threads(token_registry: RegistryServer) -> None:
    """8 threads reading 4 repositories of a token-auth registry: one 401 teaches the realm,
    then one token request per repository scope, shared by every thread."""
    prefix = f"ka{uuid.uuid4().hex[:8]}"
    repositories = [f"{prefix}/app-{i}" for i in range(4)]
    digests = {r: push_image(token_registry, r, "v1", seed=r, user=USER) for r in repositories}
    issuer = token_registry.token_issuer
    assert issuer is not None
    issuer.reset_requests()
    before = len(access_records(token_registry))
    client = RegistryClient(
        token_registry.host, username=USER, password=token_registry.users[USER], insecure=True, pool_size=8
    )
    wanted = [repositories[i % 4] for i in range(32)]
    with client, ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda r: client.digest(r, "v1"), wanted))
    assert got == [digests[r] for r in wanted]
    scopes = sorted(scope for request in issuer.requests for scope in request.scopes)
    assert scopes == sorted(f"repository:{r}:pull" for r in repositories)
    statuses = [r.status for r in access_records(token_registry)[before:]]
    assert statuses.count(401) == 1, statuses
    assert statuses.count(200) == 32


def test_a_ca_bundle_is_loaded_once_per_run(tls_registry: RegistryServer, tmp_path: Path) -> None:
    """Two registry hosts trusted through one CA bundle: the run reads the bundle for its first
    connection, not for every new one, so a bundle rewritten afterwards changes nothing for
    the rest of the run; a new run (a new transport) reads it again."""
    bundle = tmp_path / "ca.crt"
    bundle.write_bytes(tls_registry.ca_file.read_bytes())
    transport = Transport(30)
    first = ConnectionCounter(tls_registry.host).start()
    second = ConnectionCounter(tls_registry.host).start()
    try:
        options = {"username": USER, "password": PASSWORD, "ca_bundle": str(bundle)}
        with RegistryClient(first.host, transport=transport, **options) as client:  # type: ignore[arg-type]
            client.ping()
        bundle.write_text("not a certificate\n")
        with RegistryClient(second.host, transport=transport, **options) as client:  # type: ignore[arg-type]
            client.ping()  # a new connection, to another host, verified with the bundle as loaded
        assert second.accepted >= 1
        other_run = RegistryClient(second.host, transport=Transport(30), **options)  # type: ignore[arg-type]
        with other_run, pytest.raises(RegistryError):
            other_run.ping()
    finally:
        first.stop()
        second.stop()


def test_a_shared_tls_context_is_never_written(tls_registry: RegistryServer, tmp_path: Path) -> None:
    """urllib3 writes the ALPN list and the verification mode into the context it is given, on
    every new connection; on a context shared by threads that races OpenSSL's `SSL_new` copying
    the list (python/cpython#141012: a freed list, a garbage ClientHello, a Go registry's
    "unexpected message" alert, once in CI). The run's context takes those writes as no-ops,
    and still offers http/1.1 in its handshakes."""
    bundle = tmp_path / "ca.crt"
    bundle.write_bytes(tls_registry.ca_file.read_bytes())
    transport = Transport(30)
    context = transport.tls.for_verify(str(bundle))
    assert context is not None
    native_writes: list[bytes] = []
    native = context._set_alpn_protocols  # type: ignore[attr-defined]  # ssl's C-level setter

    def spy(protocols: bytes) -> None:
        native_writes.append(protocols)
        native(protocols)

    context._set_alpn_protocols = spy  # type: ignore[attr-defined]
    counters = [ConnectionCounter(tls_registry.host).start() for _ in range(2)]
    try:
        options = {"username": USER, "password": PASSWORD, "ca_bundle": str(bundle)}
        clients = [RegistryClient(c.host, transport=transport, **options) for c in counters]  # type: ignore[arg-type]
        with ThreadPoolExecutor(8) as pool:
            for done in [pool.submit(client.ping) for client in clients for _ in range(16)]:
                done.result()
        for client in clients:
            client.close()
        opened = sum(c.accepted for c in counters)
    finally:
        for counter in counters:
            counter.stop()
    assert opened >= 4, opened  # new TLS connections were made from the shared context
    assert native_writes == []
    assert context.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ValueError, match="keeps its"):
        context.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError, match="keeps its"):
        context.set_alpn_protocols(["h2"])
    host, port = tls_registry.host.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"
