"""mirrorspec.oci against real distribution registries (plain, TLS + htpasswd, token auth) from
the test bed, plus tiny fake servers for what distribution never does (Link pagination, a HEAD
without Docker-Content-Digest, 429/5xx, cross-host redirects)."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from testbed import (
    CHART_CONFIG_MEDIA_TYPE,
    RegistryServer,
    access_records,
    add_tags,
    delete_tag,
    push_chart,
    push_image,
    retag,
)

from mirrorspec.errors import RegistryError
from mirrorspec.oci import MANIFEST_ACCEPT, Manifest, RegistryClient
from mirrorspec.oci.auth import _parse_challenges

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CANARY = "canary-Pa55w0rd-7f3e"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def assert_clean(exc: BaseException) -> None:
    """No secret in the message, the repr or any chained cause."""
    seen: BaseException | None = exc
    while seen is not None:
        assert CANARY not in str(seen)
        assert CANARY not in repr(seen)
        seen = seen.__cause__ or seen.__context__


# --- a tiny fake registry ------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    at: float


Responder = Callable[[Seen, int], tuple[int, dict[str, str], bytes]]


@dataclass
class FakeServer:
    respond: Responder
    requests: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                seen = Seen(self.command, self.path, dict(self.headers.items()), time.monotonic())
                fake.requests.append(seen)
                status, headers, body = fake.respond(seen, len(fake.requests))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def fake() -> Iterator[Callable[[Responder], FakeServer]]:
    servers: list[FakeServer] = []

    def make(respond: Responder) -> FakeServer:
        servers.append(FakeServer(respond).start())
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


JSON = {"Content-Type": "application/json"}


# --- helpers for the real registries --------------------------------------------------------


def client_for(server: RegistryServer, **kwargs: Any) -> RegistryClient:
    options: dict[str, Any] = {"retries": 1, "backoff": 0.01}
    if server.tls:
        options["ca_bundle"] = str(server.ca_file)
    else:
        options["insecure"] = True
    options.update(kwargs)
    return RegistryClient(server.host, **options)


def alice(server: RegistryServer) -> dict[str, Any]:
    return {"username": "alice", "password": server.users["alice"]}


@pytest.fixture(scope="module")
def plain_hello(plain_registry: RegistryServer) -> str:
    return push_image(plain_registry, "test/hello", "v1", seed="plain")


# --- plain HTTP registry --------------------------------------------------------------------


def test_head_digest_equals_what_skopeo_pushed(plain_registry: RegistryServer, plain_hello: str) -> None:
    with client_for(plain_registry) as client:
        assert client.digest("test/hello", "v1") == plain_hello
        assert client.digest("test/hello", plain_hello) == plain_hello


def test_manifest_by_tag_and_by_digest(plain_registry: RegistryServer, plain_hello: str) -> None:
    with client_for(plain_registry) as client:
        by_tag = client.manifest("test/hello", "v1")
        by_digest = client.manifest("test/hello", plain_hello)
    assert isinstance(by_tag, Manifest)
    assert by_tag.digest == plain_hello == sha256(by_tag.body)
    assert by_tag.media_type == OCI_MANIFEST
    assert len(by_tag.json()["layers"]) == 1
    assert by_digest == by_tag


def test_docker_schema2_is_not_rewritten_to_schema1(plain_registry: RegistryServer) -> None:
    # Without the schema2 Accept type, 2.8.2 would serve a schema1 rewrite with another digest.
    pushed = push_image(plain_registry, "test/docker", "v1", docker_format=True)
    with client_for(plain_registry) as client:
        manifest = client.manifest("test/docker", "v1")
        assert client.digest("test/docker", "v1") == pushed
    assert manifest.media_type == DOCKER_MANIFEST
    assert manifest.digest == pushed == sha256(manifest.body)


def test_missing_things(plain_registry: RegistryServer, plain_hello: str) -> None:
    with client_for(plain_registry) as client:
        assert client.digest("test/hello", "no-such-tag") is None
        with pytest.raises(RegistryError) as manifest_404:
            client.manifest("test/hello", "no-such-tag")
        with pytest.raises(RegistryError) as tags_404:
            client.list_tags("test/never-pushed")
    assert manifest_404.value.status == 404
    assert "not found" in str(manifest_404.value)
    assert tags_404.value.status == 404
    assert tags_404.value.repository == "test/never-pushed"
    assert tags_404.value.registry == plain_registry.host


def test_retag_changes_the_digest(plain_registry: RegistryServer) -> None:
    first = push_image(plain_registry, "test/moving", "latest", seed="one")
    with client_for(plain_registry) as client:
        assert client.digest("test/moving", "latest") == first
        second = retag(plain_registry, "test/moving", "latest", seed="two")
        assert second != first
        assert client.digest("test/moving", "latest") == second


def test_300_tags_come_in_one_unpaginated_response(plain_registry: RegistryServer) -> None:
    push_image(plain_registry, "test/many", "base")
    wanted = {f"t{i:03d}" for i in range(300)}
    add_tags(plain_registry, "test/many", "base", sorted(wanted))
    before = len(access_records(plain_registry))
    with client_for(plain_registry) as client:
        tags = client.list_tags("test/many")
    assert tags == sorted(wanted | {"base"})
    calls = [r for r in access_records(plain_registry)[before:] if "/tags/list" in r.uri]
    assert [(r.method, r.uri, r.status) for r in calls] == [("GET", "/v2/test/many/tags/list", 200)]


def test_emptied_repository_lists_no_tags(plain_registry: RegistryServer) -> None:
    push_image(plain_registry, "test/emptied", "only")
    delete_tag(plain_registry, "test/emptied", "only")
    with client_for(plain_registry) as client:
        assert client.list_tags("test/emptied") == []  # distribution sends "tags": null
        assert client.digest("test/emptied", "only") is None


def test_chart_config_blob_is_fetched_and_verified(plain_registry: RegistryServer) -> None:
    deps = [{"name": "redis", "version": "~18.0.0", "repository": "oci://example.test/charts"}]
    digest = push_chart(plain_registry, "charts/app", "1.2.3+build.4", dependencies=deps)
    with client_for(plain_registry) as client:
        manifest = client.manifest("charts/app", "1.2.3_build.4")
        config = manifest.json()["config"]
        blob = client.blob("charts/app", config["digest"])
        with pytest.raises(RegistryError, match="larger than max_bytes=16"):
            client.blob("charts/app", config["digest"], max_bytes=16)
    assert manifest.digest == digest
    assert config["mediaType"] == CHART_CONFIG_MEDIA_TYPE
    assert sha256(blob) == config["digest"]
    meta = json.loads(blob)
    assert (meta["name"], meta["version"], meta["apiVersion"]) == ("app", "1.2.3+build.4", "v2")
    assert meta["dependencies"] == deps


def test_invalid_names_are_rejected_before_any_request(plain_registry: RegistryServer) -> None:
    before = len(access_records(plain_registry))
    with client_for(plain_registry) as client:
        for call in (
            lambda: client.list_tags("Test/Upper"),
            lambda: client.digest("test/hello", "../../v2"),
            lambda: client.blob("test/hello", "sha256:../x"),
        ):
            with pytest.raises(RegistryError, match="invalid"):
                call()
    assert len(access_records(plain_registry)) == before


# --- TLS + htpasswd -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_hello(tls_registry: RegistryServer) -> str:
    return push_image(tls_registry, "test/secure", "v1", seed="tls")


def test_tls_with_ca_bundle_and_credentials(
    tls_registry: RegistryServer, tls_hello: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The machine's REQUESTS_CA_BUNDLE must not override the CA bundle we were given.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    with client_for(tls_registry, **alice(tls_registry)) as client:
        client.ping()
        assert client.list_tags("test/secure") == ["v1"]
        assert client.digest("test/secure", "v1") == tls_hello


def test_tls_without_ca_fails_with_a_tls_message(tls_registry: RegistryServer) -> None:
    client = RegistryClient(tls_registry.host, **alice(tls_registry), retries=1)
    with client, pytest.raises(RegistryError) as info:
        client.ping()
    assert str(info.value) == (
        f"TLS certificate of {tls_registry.host} is not trusted (unknown authority): "
        "set ca-bundle to the CA that signed it"
    )
    assert info.value.status is None


def test_tls_insecure_skips_verification(tls_registry: RegistryServer, tls_hello: str) -> None:
    with RegistryClient(tls_registry.host, **alice(tls_registry), insecure=True) as client:
        assert client.digest("test/secure", "v1") == tls_hello


def test_htpasswd_wrong_password_and_missing_credentials(tls_registry: RegistryServer) -> None:
    with client_for(tls_registry, username="alice", password=CANARY) as client:
        with pytest.raises(RegistryError) as wrong:
            client.list_tags("test/secure")
        assert CANARY not in repr(client)
    with client_for(tls_registry) as client, pytest.raises(RegistryError) as anonymous:
        client.list_tags("test/secure")
    assert str(wrong.value) == f"unauthorized: check the credentials for {tls_registry.host}"
    assert wrong.value.status == 401
    assert_clean(wrong.value)
    assert "requires credentials" in str(anonymous.value)
    assert anonymous.value.status == 401


# --- token auth -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_hello(token_registry: RegistryServer) -> str:
    push_image(token_registry, "test/other", "v1")
    return push_image(token_registry, "test/token", "v1", seed="token")


def issuer_of(server: RegistryServer) -> Any:
    assert server.token_issuer is not None
    return server.token_issuer


def test_token_anonymous_is_denied_clearly(token_registry: RegistryServer, token_hello: str) -> None:
    with client_for(token_registry) as client, pytest.raises(RegistryError) as info:
        client.list_tags("test/token")
    assert info.value.status == 401
    assert "denied pull of test/token to anonymous access" in str(info.value)


def test_token_is_fetched_once_and_reused(token_registry: RegistryServer, token_hello: str) -> None:
    issuer = issuer_of(token_registry)
    issuer.reset_requests()
    before = len(access_records(token_registry))
    with client_for(token_registry, **alice(token_registry)) as client:
        assert client.list_tags("test/token") == ["v1"]
        assert client.digest("test/token", "v1") == token_hello
        manifest = client.manifest("test/token", "v1")
        client.blob("test/token", manifest.json()["config"]["digest"])
        assert [r.scopes for r in issuer.requests] == [("repository:test/token:pull",)]
        # A second repository needs its own scope, but not another 401: the realm is known.
        assert client.digest("test/other", "v1") is not None
    assert [r.user for r in issuer.requests] == ["alice", "alice"]
    statuses = [r.status for r in access_records(token_registry)[before:]]
    assert statuses.count(401) == 1
    assert len(statuses) == 6  # 401, tags, HEAD, GET manifest, GET blob, HEAD other


def test_token_cache_is_shared_by_threads(token_registry: RegistryServer, token_hello: str) -> None:
    issuer = issuer_of(token_registry)
    issuer.reset_requests()
    client = client_for(token_registry, **alice(token_registry), pool_size=8)
    with client, ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(lambda _: client.digest("test/token", "v1"), range(32)))
    assert set(digests) == {token_hello}
    assert issuer.request_count == 1


def test_invalid_token_is_refreshed_once(token_registry: RegistryServer, token_hello: str) -> None:
    issuer = issuer_of(token_registry)
    issuer.reset_requests()
    issuer.issue_invalid(1)
    with client_for(token_registry, **alice(token_registry)) as client:
        assert client.digest("test/token", "v1") == token_hello
    assert issuer.request_count == 2

    issuer.reset_requests()
    issuer.issue_invalid(10)
    try:
        client = client_for(token_registry, **alice(token_registry))
        with client, pytest.raises(RegistryError) as info:
            client.digest("test/token", "v1")
    finally:
        issuer.issue_invalid(0)
    assert info.value.status == 401
    assert issuer.request_count == 2  # one refresh, no loop


def test_token_wrong_password_names_the_token_service(token_registry: RegistryServer) -> None:
    client = client_for(token_registry, username="alice", password=CANARY)
    with client, pytest.raises(RegistryError) as info:
        client.ping()
    message = str(info.value)
    assert message.startswith(f"unauthorized: check the credentials for {token_registry.host}")
    assert "token service 127.0.0.1:" in message
    assert_clean(info.value)


# --- fake servers: what distribution never does ---------------------------------------------


def test_link_pagination_relative_and_absolute(fake: Callable[[Responder], FakeServer]) -> None:
    def respond(seen: Seen, n: int) -> tuple[int, dict[str, str], bytes]:
        if seen.path == "/v2/r/tags/list":
            link = '</v2/r/tags/list?last=c&n=2>; rel="next"'
            return 200, {**JSON, "Link": link}, b'{"name":"r","tags":["c","a"]}'
        if seen.path == "/v2/r/tags/list?last=c&n=2":
            link = f'<http://{server.host}/v2/r/tags/list?last=e&n=2>; rel="next"'
            return 200, {**JSON, "Link": link}, b'{"name":"r","tags":["e","b"]}'
        if seen.path == "/v2/r/tags/list?last=e&n=2":
            return 200, JSON, b'{"name":"r","tags":["d","a"]}'
        return 404, JSON, b"{}"

    server = fake(respond)
    with RegistryClient(server.host, insecure=True, retries=0) as client:
        assert client.list_tags("r") == ["a", "b", "c", "d", "e"]
    assert [s.path for s in server.requests] == [
        "/v2/r/tags/list",
        "/v2/r/tags/list?last=c&n=2",
        "/v2/r/tags/list?last=e&n=2",
    ]


def test_link_to_another_host_is_refused(fake: Callable[[Responder], FakeServer]) -> None:
    def respond(seen: Seen, n: int) -> tuple[int, dict[str, str], bytes]:
        link = '<http://evil.example/v2/r/tags/list?last=a>; rel="next"'
        return 200, {**JSON, "Link": link}, b'{"name":"r","tags":["a"]}'

    server = fake(respond)
    client = RegistryClient(server.host, insecure=True, retries=0)
    with client, pytest.raises(RegistryError, match="another host"):
        client.list_tags("r")
    assert len(server.requests) == 1


def test_head_without_digest_header_falls_back_to_get(fake: Callable[[Responder], FakeServer]) -> None:
    body = b'{"schemaVersion":2,"mediaType":"' + OCI_MANIFEST.encode() + b'","layers":[]}'

    def respond(seen: Seen, n: int) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": OCI_MANIFEST}, body

    server = fake(respond)
    with RegistryClient(server.host, insecure=True, retries=0) as client:
        assert client.digest("r", "v1") == sha256(body)
    assert [(s.method, s.headers.get("Accept")) for s in server.requests] == [
        ("HEAD", MANIFEST_ACCEPT),
        ("GET", MANIFEST_ACCEPT),
    ]


def test_blob_with_wrong_content_is_rejected(fake: Callable[[Responder], FakeServer]) -> None:
    def respond(seen: Seen, n: int) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/octet-stream"}, b"tampered"

    server = fake(respond)
    client = RegistryClient(server.host, insecure=True, retries=0)
    with client, pytest.raises(RegistryError, match="does not match its digest"):
        client.blob("r", sha256(b"original"))


def test_retry_after_is_honoured(fake: Callable[[Responder], FakeServer]) -> None:
    def respond(seen: Seen, n: int) -> tuple[int, dict[str, str], bytes]:
        if n == 1:
            return 429, {**JSON, "Retry-After": "1"}, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}'
        return 200, JSON, b'{"name":"r","tags":["v1"]}'

    server = fake(respond)
    with RegistryClient(server.host, insecure=True, retries=3, backoff=0.01) as client:
        assert client.list_tags("r") == ["v1"]
    assert len(server.requests) == 2
    assert server.requests[1].at - server.requests[0].at >= 0.95


def test_5xx_exhausting_retries_reports_the_status(fake: Callable[[Responder], FakeServer]) -> None:
    def respond(seen: Seen, n: int) -> tuple[int, dict[str, str], bytes]:
        return 503, JSON, b'{"errors":[{"code":"UNAVAILABLE","message":"down for maintenance"}]}'

    server = fake(respond)
    client = RegistryClient(server.host, insecure=True, retries=2, backoff=0.01)
    with client, pytest.raises(RegistryError) as info:
        client.list_tags("r")
    assert len(server.requests) == 3
    assert info.value.status == 503
    assert info.value.repository == "r"
    assert "after 2 retries" in str(info.value)
    assert "UNAVAILABLE: down for maintenance" in str(info.value)


def test_redirect_to_another_host_drops_authorization(fake: Callable[[Responder], FakeServer]) -> None:
    blob = b'{"config":true}'

    def storage(seen: Seen, n: int) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/octet-stream"}, blob

    def registry(seen: Seen, n: int) -> tuple[int, dict[str, str], bytes]:
        if "Authorization" not in seen.headers:
            return 401, {**JSON, "WWW-Authenticate": 'Basic realm="fake"'}, b"{}"
        return 307, {"Location": f"http://{bucket.host}/blob?sig=1"}, b""

    bucket = fake(storage)
    server = fake(registry)
    with RegistryClient(server.host, username="u", password=CANARY, insecure=True, retries=0) as client:
        assert client.blob("r", sha256(blob)) == blob
    assert server.requests[-1].headers["Authorization"].startswith("Basic ")
    assert [s.path for s in bucket.requests] == ["/blob?sig=1"]
    assert "Authorization" not in bucket.requests[0].headers


def test_bearer_flow_with_access_token_and_quoted_commas(fake: Callable[[Responder], FakeServer]) -> None:
    secret_token = "tok-" + CANARY

    def realm(seen: Seen, n: int) -> tuple[int, dict[str, str], bytes]:
        # Only `access_token`, no `token`, no `expires_in`: all allowed by the token spec.
        return 200, JSON, json.dumps({"access_token": secret_token}).encode()

    def registry(seen: Seen, n: int) -> tuple[int, dict[str, str], bytes]:
        if seen.headers.get("Authorization") != f"Bearer {secret_token}":
            challenge = (
                f'Bearer realm="http://{issuer.host}/token",service="fake, registry",'
                'scope="repository:r:push,pull"'
            )
            return 401, {**JSON, "WWW-Authenticate": challenge}, b"{}"
        # A registry that echoes the token back in an error must not leak it.
        error = {"errors": [{"code": "DENIED", "message": f"bad token {secret_token}"}]}
        return 400, JSON, json.dumps(error).encode()

    issuer = fake(realm)
    server = fake(registry)
    client = RegistryClient(server.host, insecure=True, retries=0)
    with client, pytest.raises(RegistryError) as info:
        client.list_tags("r")
    assert info.value.status == 400
    assert "bad token ***" in str(info.value)
    assert secret_token not in str(info.value)
    assert_clean(info.value)
    token_request = issuer.requests[0]
    assert "service=fake%2C+registry" in token_request.path
    assert "scope=repository%3Ar%3Apull%2Cpush" in token_request.path


def test_connection_refused_is_one_clear_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for insecure in (False, True):
        # insecure must not fall back to http over a refusal: it would only double the wait
        client = RegistryClient(f"127.0.0.1:{port}", retries=0, insecure=insecure)
        with client, pytest.raises(RegistryError) as info:
            client.ping()
        assert str(info.value) == f"cannot connect to 127.0.0.1:{port}: Connection refused (https)"
        assert info.value.status is None


def test_read_timeout_is_one_clear_line(fake: Callable[[Responder], FakeServer]) -> None:
    def respond(seen: Seen, n: int) -> tuple[int, dict[str, str], bytes]:
        time.sleep(0.5)
        return 200, JSON, b"{}"

    server = fake(respond)
    client = RegistryClient(server.host, insecure=True, retries=0, timeout=0.2)
    with client, pytest.raises(RegistryError) as info:
        client.ping()
    message = str(info.value)
    expected = f"no answer from {server.host} within 0.2s (response headers; 1 attempt, "
    assert message.startswith(expected), message


def test_www_authenticate_parsing() -> None:
    header = (
        'Bearer realm="https://auth.example/token?a=1,b=2",service="reg\\"istry",'
        'scope="repository:team/app:pull,push repository:other:pull", '
        'Basic realm="x", Negotiate abc=='
    )
    challenges = _parse_challenges(header)
    assert [c.scheme for c in challenges] == ["bearer", "basic", "negotiate"]
    assert dict(challenges[0].params) == {
        "realm": "https://auth.example/token?a=1,b=2",
        "service": 'reg"istry',
        "scope": "repository:team/app:pull,push repository:other:pull",
    }
    assert dict(challenges[1].params) == {"realm": "x"}
    assert dict(challenges[2].params) == {"": "abc=="}


def test_api_host_maps_docker_hub_only() -> None:
    assert RegistryClient("docker.io").api_host == "registry-1.docker.io"
    assert RegistryClient("ghcr.io").api_host == "ghcr.io"
    assert RegistryClient("127.0.0.1:5000").api_host == "127.0.0.1:5000"
