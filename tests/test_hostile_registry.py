"""A registry that lies, loops or floods (tests/testbed/hostile.py) against RegistryClient and
the resolver: every case ends in one RegistryError (or ResolveError) line that names the host
and what was wrong, in bounded time and memory, and credentials never go to another host.

The flood cases also run through `mirrorspec plan` in a subprocess under a memory limit, so a
client that buffered a 50 MB body would fail the test rather than merely use the memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from testbed.hostile import HostileRegistry, Reply, Request, endless

from mirrorspec import RunContext, parse_spec
from mirrorspec.errors import RegistryError, ResolveError
from mirrorspec.oci import RegistryClient
from mirrorspec.resolve import HELM_CONFIG_MEDIA_TYPE, resolve

JSON = {"Content-Type": "application/json"}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CANARY = "canary-Hostile-Pa55-91c2"
MIRRORSPEC = Path(sys.executable).with_name("mirrorspec")
MEMORY_LIMIT = 512 << 20


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tags_body(tags: object, name: object = "r") -> bytes:
    return json.dumps({"name": name, "tags": tags}).encode()


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileRegistry]]:
    started: list[HostileRegistry] = []

    def start(route: Callable[[Request], Reply], address: str = "127.0.0.1") -> HostileRegistry:
        started.append(HostileRegistry(route, address).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


def client_of(server: HostileRegistry, **options: object) -> RegistryClient:
    settings: dict[str, object] = {"insecure": True, "retries": 0, "timeout": 10, **options}
    return RegistryClient(server.host, **settings)  # type: ignore[arg-type]


def refused(server: HostileRegistry, call: Callable[[RegistryClient], object], **options: object) -> str:
    """The one-line message of the RegistryError `call` must raise; it names the host."""
    with client_of(server, **options) as client, pytest.raises(RegistryError) as caught:
        call(client)
    message = str(caught.value)
    assert "\n" not in message
    assert server.host in message, message
    assert caught.value.registry == server.host
    assert len(message) < 400, message
    return message


# --- tag lists --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        (b'{"name": "r", "tags": ["v1", ', "invalid tag list for r: not JSON"),
        (b"\xff\xfe{}", "invalid tag list for r: not JSON"),
        (b'["v1", "v2"]', "invalid tag list for r: not a JSON object"),
        (tags_body("v1"), "invalid tag list for r: 'tags' is not a list"),
        (tags_body([1, 2]), "invalid tag list for r: 1 is not a tag"),
        (tags_body(["v1", "../../v2/x"]), "invalid tag list for r: '../../v2/x' is not a tag"),
        (tags_body(["v1", "x" * 129]), "is not a tag"),
        (tags_body(["v1"], name="other/repo"), "invalid tag list for r: it is for 'other/repo'"),
        (tags_body(["v1"], name=["r"]), "invalid tag list for r: it is for"),
    ],
    ids=[
        "truncated",
        "not-utf8",
        "array",
        "tags-string",
        "tags-numbers",
        "path-in-tag",
        "long-tag",
        "name",
        "name-list",
    ],
)
def test_malformed_tag_lists_are_one_line_errors(
    hostile: Callable[..., HostileRegistry], body: bytes, expect: str
) -> None:
    server = hostile(lambda request: Reply(200, JSON, body))
    message = refused(server, lambda client: client.list_tags("r"))
    assert expect in message


def test_tags_null_and_a_proxy_prefixed_name_are_accepted(hostile: Callable[..., HostileRegistry]) -> None:
    """What real registries do must keep working: distribution's null, a name with a proxy's
    prefix added or the request's prefix left out."""
    answers = {
        "/v2/r/tags/list": tags_body(None),
        "/v2/library/redis/tags/list": tags_body(["7"], "cache/library/redis"),
        "/v2/docker-remote/library/redis/tags/list": tags_body(["8"], "library/redis"),
    }
    server = hostile(lambda request: Reply(200, JSON, answers[request.path]))
    with client_of(server) as client:
        assert client.list_tags("r") == []
        assert client.list_tags("library/redis") == ["7"]
        assert client.list_tags("docker-remote/library/redis") == ["8"]


def test_an_endless_tag_list_is_cut_at_the_page_limit(hostile: Callable[..., HostileRegistry]) -> None:
    # 50 MB, chunked: no Content-Length to refuse it by, so the counting read must.
    body = endless(b'"v1", ' * 10_000, 50 << 20)
    server = hostile(lambda request: Reply(200, JSON, body))
    message = refused(server, lambda client: client.list_tags("r"))
    assert "the tag list of r on" in message
    assert "is larger than max_bytes=8388608" in message


def test_a_declared_oversized_tag_list_is_refused_unread(hostile: Callable[..., HostileRegistry]) -> None:
    server = hostile(lambda request: Reply(200, {**JSON, "Content-Length": str(50 << 20)}, b"{}"))
    message = refused(server, lambda client: client.list_tags("r"))
    assert "is larger than max_bytes=8388608" in message


def test_five_million_tags_over_pages_stop_at_the_tag_limit(hostile: Callable[..., HostileRegistry]) -> None:
    def route(request: Request) -> Reply:
        page = int(request.path.partition("page=")[2] or 0)
        tags = [f"p{page}-{i}" for i in range(100_000)]
        link = f'</v2/r/tags/list?page={page + 1}>; rel="next"'
        return Reply(200, {**JSON, "Link": link}, tags_body(tags))

    server = hostile(route)
    message = refused(server, lambda client: client.list_tags("r"))
    assert "lists more than 500,000 tags for r" in message
    assert len(server.requests) == 6


def test_a_link_back_to_the_same_page_is_a_loop(hostile: Callable[..., HostileRegistry]) -> None:
    server = hostile(
        lambda request: Reply(200, {**JSON, "Link": '</v2/r/tags/list>; rel="next"'}, tags_body(["a"]))
    )
    message = refused(server, lambda client: client.list_tags("r"))
    assert "sent a pagination loop for tags of r" in message
    assert len(server.requests) == 1


def test_links_that_change_but_bring_nothing_new_stop_soon(hostile: Callable[..., HostileRegistry]) -> None:
    def route(request: Request) -> Reply:
        n = len(server.requests)
        return Reply(200, {**JSON, "Link": f'</v2/r/tags/list?last=a&n={n}>; rel="next"'}, tags_body(["a"]))

    server = hostile(route)
    message = refused(server, lambda client: client.list_tags("r"))
    assert "pages of tags for r without a new tag: a pagination loop" in message
    assert len(server.requests) == 11  # the first page, then 10 that added nothing


def test_a_tag_list_sent_a_byte_at_a_time_hits_a_deadline(hostile: Callable[..., HostileRegistry]) -> None:
    def drip() -> Iterator[bytes]:
        while True:  # each byte well inside the read timeout, so only a deadline can end it
            time.sleep(0.02)
            yield b" "

    server = hostile(lambda request: Reply(200, JSON, drip()))
    message = refused(server, lambda client: client.list_tags("r"), timeout=0.2)
    assert "the tag list of r from" in message
    assert "did not arrive within 2s" in message


# --- manifests --------------------------------------------------------------------------------


def test_an_oversized_manifest_is_refused(hostile: Callable[..., HostileRegistry]) -> None:
    body = endless(b" " * 65536, 50 << 20)
    server = hostile(lambda request: Reply(200, {"Content-Type": OCI_MANIFEST}, body))
    message = refused(server, lambda client: client.manifest("r", "v1"))
    assert "manifest r:v1 on" in message
    assert "larger than max_bytes=4194304" in message


def test_a_manifest_that_does_not_match_its_digest_header_is_refused(
    hostile: Callable[..., HostileRegistry],
) -> None:
    served = b'{"schemaVersion":2,"mediaType":"' + OCI_MANIFEST.encode() + b'","layers":[]}'
    claimed = sha256(b"something else")
    headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": claimed}
    server = hostile(lambda request: Reply(200, headers, b"" if request.method == "HEAD" else served))
    message = refused(server, lambda client: client.manifest("r", "v1"))
    assert f"(Docker-Content-Digest {claimed})" in message
    assert f"does not match its digest (got {sha256(served)})" in message


# --- redirects --------------------------------------------------------------------------------


def test_a_redirect_to_itself_ends(hostile: Callable[..., HostileRegistry]) -> None:
    server = hostile(lambda request: Reply(302, {"Location": request.path}, b""))
    message = refused(server, lambda client: client.list_tags("r"))
    assert message == f"too many redirects from {server.host}"
    assert len(server.requests) == 11


def test_a_redirect_ping_pong_between_two_hosts_ends(hostile: Callable[..., HostileRegistry]) -> None:
    other = hostile(lambda request: Reply(302, {"Location": f"{server.url}{request.path}"}, b""), "127.0.0.2")
    server = hostile(lambda request: Reply(302, {"Location": f"{other.url}{request.path}"}, b""))
    message = refused(server, lambda client: client.ping(), username="u", password=CANARY)
    assert message == f"too many redirects from {server.host}"
    assert len(server.requests) + len(other.requests) == 11


# --- token realms -----------------------------------------------------------------------------


def bearer_registry(realm: str, accepted: str) -> Callable[[Request], Reply]:
    def route(request: Request) -> Reply:
        if request.headers.get("Authorization") == f"Bearer {accepted}":
            return Reply(200, JSON, tags_body(["v1"]))
        challenge = f'Bearer realm="{realm}",service="hostile",scope="repository:r:pull"'
        return Reply(401, {**JSON, "WWW-Authenticate": challenge}, b'{"errors":[{"code":"UNAUTHORIZED"}]}')

    return route


def test_credentials_never_go_to_a_realm_on_another_host(hostile: Callable[..., HostileRegistry]) -> None:
    # The realm would hand out a token for the password, and only for it.
    def realm(request: Request) -> Reply:
        if "Authorization" in request.headers:
            return Reply(200, JSON, b'{"token": "for-the-password"}')
        return Reply(401, JSON, b"{}")

    issuer = hostile(realm, "127.0.0.2")
    server = hostile(bearer_registry(f"{issuer.url}/token", "for-the-password"))
    message = refused(server, lambda client: client.list_tags("r"), username="alice", password=CANARY)
    assert message == (
        f"unauthorized: the credentials for {server.host} were not sent to its token service "
        "(its realm host '127.0.0.2' is not 127.0.0.1), and it refused anonymous access"
    )
    assert [r.path.split("?")[0] for r in issuer.requests] == ["/token"]
    assert "Authorization" not in issuer.requests[0].headers
    assert "account=" not in issuer.requests[0].path
    assert CANARY not in message


def test_an_anonymous_token_from_another_host_is_used_with_a_warning(
    hostile: Callable[..., HostileRegistry], caplog: pytest.LogCaptureFixture
) -> None:
    issuer = hostile(
        lambda request: Reply(200, JSON, b'{"token": "anonymous", "expires_in": 1e400}'), "127.0.0.2"
    )
    server = hostile(bearer_registry(f"{issuer.url}/token", "anonymous"))
    with (
        caplog.at_level(logging.WARNING, logger="mirrorspec.oci"),
        client_of(server, username="alice", password=CANARY) as client,
    ):
        assert client.list_tags("r") == ["v1"]
        assert client.list_tags("r") == ["v1"]
    assert all("Authorization" not in r.headers for r in issuer.requests)
    assert len(issuer.requests) == 1  # the token is cached despite an absurd expires_in
    warnings = [r.getMessage() for r in caplog.records]
    reason = "its realm host '127.0.0.2' is not 127.0.0.1"
    assert warnings == [
        f"{server.host}: credentials not sent to its token service ({reason}); reading anonymously"
    ]


def test_an_oversized_token_answer_is_refused(hostile: Callable[..., HostileRegistry]) -> None:
    issuer = hostile(lambda request: Reply(200, JSON, endless(b"x" * 65536, 50 << 20)))
    server = hostile(bearer_registry(f"{issuer.url}/token", "never"))
    message = refused(server, lambda client: client.list_tags("r"))
    assert "the token from 127.0.0.1:" in message
    assert "larger than max_bytes=1048576" in message


@pytest.mark.parametrize(
    ("registry", "realm", "allowed"),
    [
        ("docker.io", "https://auth.docker.io/token", True),
        ("registry.gitlab.com", "https://gitlab.com/jwt/auth", True),
        ("ghcr.io", "https://ghcr.io/token", True),
        ("harbor.example.com:8443", "https://harbor.example.com/service/token", True),
        ("registry.example.com", "https://sso.example.com/auth", True),
        ("ghcr.io", "https://evil.io/token", False),
        ("registry.example.com", "https://example.com.evil.net/auth", False),
        ("registry.example.com", "http://registry.example.com/auth", False),
        ("127.0.0.1:5000", "https://127.0.0.2/token", False),
        ("harbor.example.com", "https://harbor.example.com@evil.net/token", False),
    ],
)
def test_which_realms_may_receive_credentials(registry: str, realm: str, allowed: bool) -> None:
    with RegistryClient(registry, username="u", password=CANARY) as client:
        refusal = client._auth._realm_refusal(realm)
    assert (refusal is None) == allowed, refusal


# --- hostile Helm charts, through the resolver ------------------------------------------------


def chart_registry(config: bytes) -> Callable[[Request], Reply]:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": HELM_CONFIG_MEDIA_TYPE, "digest": sha256(config), "size": len(config)},
            "layers": [],
        }
    ).encode()

    def route(request: Request) -> Reply:
        if request.path.endswith("/tags/list"):
            return Reply(200, JSON, tags_body(["1.0.0"], "charts/app"))
        if "/manifests/" in request.path:
            headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha256(manifest)}
            return Reply(200, headers, b"" if request.method == "HEAD" else manifest)
        if "/blobs/" in request.path:
            return Reply(200, {"Content-Type": "application/octet-stream"}, config)
        return Reply(404, JSON, b"{}")

    return route


@pytest.mark.parametrize(
    ("config", "expect"),
    [
        (b"[1, 2]", None),
        (b"not json", "unreadable Helm chart config: Expecting value"),
        (json.dumps({"dependencies": "redis"}).encode(), "'dependencies' is not a list"),
        (json.dumps({"dependencies": ["redis"]}).encode(), "a dependency is not a mapping"),
        (json.dumps({"dependencies": [{"name": 7, "repository": "oci://x"}]}).encode(), "is not a string"),
    ],
    ids=["array", "not-json", "deps-string", "dep-string", "dep-name-number"],
)
def test_hostile_chart_configs_are_resolve_errors(
    hostile: Callable[..., HostileRegistry], config: bytes, expect: str | None
) -> None:
    server = hostile(chart_registry(config))
    spec = {
        "version": 1,
        "sources": [
            {
                "registry": server.host,
                "insecure": True,
                "repositories": [{"name": "charts/app", "versions": "1.x", "helm-dependencies": True}],
            }
        ],
        "targets": [{"name": "lab", "type": "registry", "registry": "127.0.0.1:9"}],
    }
    ctx = RunContext(parse_spec(json.dumps(spec)), workers=2)
    try:
        if expect is None:  # not a mapping at all: no dependencies to follow
            assert [a.tag for a in resolve(ctx).artifacts] == ["1.0.0"]
            return
        with pytest.raises(ResolveError) as caught:
            resolve(ctx)
    finally:
        ctx.close()
    message = str(caught.value)
    assert message.startswith(f"{server.host}/charts/app:1.0.0: ")
    assert expect in message
    assert "\n" not in message


# --- the same floods through the CLI, under a memory limit ------------------------------------

SPEC = """\
version: 1
sources:
  - registry: {host}
    insecure: true
    repositories:
      - name: r
        all-tags: true
targets:
  - name: lab
    type: registry
    registry: {host}
    insecure: true
    prefix: mirror
"""


@pytest.mark.parametrize("case", ["endless-tag-list", "huge-401", "endless-manifest", "endless-redirect"])
def test_floods_end_in_one_line_under_a_memory_limit(
    hostile: Callable[..., HostileRegistry], tmp_path: Path, case: str
) -> None:
    flood = 300 << 20  # more than the child may hold beside its own ~100 MB

    def route(request: Request) -> Reply:
        if case == "huge-401":
            return Reply(401, {"WWW-Authenticate": 'Basic realm="x"'}, endless(b"x" * 65536, flood))
        if case == "endless-redirect":
            # requests itself would read a redirect's body whole before following it
            return Reply(302, {"Location": request.path}, endless(b"x" * 65536, flood))
        if request.path.endswith("/tags/list"):
            if case == "endless-tag-list":
                return Reply(200, JSON, endless(b'"v1", ' * 10_000, flood))
            return Reply(200, JSON, tags_body(["v1"]))
        if "/manifests/" in request.path and request.method == "HEAD":
            return Reply(200, {"Content-Type": OCI_MANIFEST}, b"")  # no digest header: GET follows
        return Reply(200, {"Content-Type": OCI_MANIFEST}, endless(b" " * 65536, flood))

    server = hostile(route)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(host=server.host), encoding="utf-8")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    env = {k: v for k, v in os.environ.items() if k != "MIRRORSPEC_DEBUG"}
    result = subprocess.run(
        [str(MIRRORSPEC), "plan", str(spec)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        preexec_fn=limit,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("error: "), lines[0]
    assert "internal error" not in lines[0] and "Traceback" not in result.stderr
    assert server.host in lines[0]
    expect = {
        "endless-tag-list": "is larger than max_bytes=8388608",
        "huge-401": "requires credentials",
        "endless-manifest": "is larger than max_bytes=4194304",
        "endless-redirect": "too many redirects from",
    }[case]
    assert expect in lines[0], lines[0]
