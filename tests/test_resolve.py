"""mirrorspec.resolve against real distribution registries from the test bed.

One seeded upstream (module scope) serves the selection and Helm-closure tests; tests that count
requests or need a second registry get fresh servers. Docker Hub normalisation is checked with a
stand-in client, since nothing here may reach the internet.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import requests.adapters
from testbed import (
    CHART_CONFIG_MEDIA_TYPE,
    RegistryServer,
    push_chart,
    push_image,
    request_log,
    start_registry,
)

from mirrorspec import RunContext, parse_spec
from mirrorspec.errors import ResolveError
from mirrorspec.oci import Manifest
from mirrorspec.plan import Artifact, Note
from mirrorspec.resolve import Resolution, resolve

CANARY = "canary-Src-Pa55-4b1d"


def _spec(sources: Sequence[dict[str, Any]], credentials: dict[str, Any] | None = None) -> str:
    """A spec (JSON is YAML) with the given sources; the target is never contacted by resolve."""
    doc: dict[str, Any] = {
        "version": 1,
        "sources": list(sources),
        "targets": [{"name": "lab", "type": "registry", "registry": "127.0.0.1:9"}],
    }
    if credentials:
        doc["credentials"] = credentials
    return json.dumps(doc, indent=2)


def _resolve(text: str) -> Resolution:
    ctx = RunContext(parse_spec(text), workers=4)
    try:
        return resolve(ctx)
    finally:
        ctx.close()


def _rows(resolution: Resolution) -> list[tuple[str, str, str | None]]:
    return [(a.repository, a.tag, a.dependency_of) for a in resolution.artifacts]


def _notes(resolution: Resolution, level: str) -> list[str]:
    return [n.message for n in resolution.notes if n.level == level]


class Upstream:
    """The shared upstream: `digests[(repository, tag)]` as the registry computed them."""

    def __init__(self, server: RegistryServer) -> None:
        self.server = server
        self.host = server.host
        self.digests: dict[tuple[str, str], str] = {}

    def image(self, repository: str, tag: str) -> None:
        self.digests[(repository, tag)] = push_image(self.server, repository, tag)

    def chart(self, repository: str, version: str, deps: Sequence[tuple[str, str]] = ()) -> None:
        dependencies = [
            {"name": name, "version": constraint, "repository": f"oci://{self.host}/charts"}
            for name, constraint in deps
        ]
        digest = push_chart(self.server, repository, version, dependencies=dependencies)
        self.digests[(repository, version.replace("+", "_"))] = digest

    def ref(self, repository: str, tag: str) -> str:
        return f"{self.host}/{repository}:{tag}"

    def source(self, *repositories: dict[str, Any]) -> dict[str, Any]:
        return {"registry": self.host, "insecure": True, "repositories": list(repositories)}

    def artifact(self, repository: str, tag: str, dependency_of: str | None = None) -> Artifact:
        return Artifact(self.host, repository, tag, self.digests[(repository, tag)], dependency_of)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    with start_registry(tmp_path_factory.mktemp("resolve-upstream")) as server:
        up = Upstream(server)
        for tag in ("1.0.0", "1.2.0", "v1.3.0", "1.4.0-rc.1", "1.5.0_build.7", "2.0.0", "latest"):
            up.image("images/app", tag)
        for version in ("1.9.0", "2.0.0", "2.1.0", "2.2.0-rc.1", "3.0.0"):
            up.chart("charts/common", version)
        up.chart("charts/redis", "17.9.0", [("common", "^1.0.0")])
        for version in ("18.0.1", "18.0.4", "18.1.0"):
            up.chart("charts/redis", version, [("common", "^2.0.0")])
        up.chart("charts/platform", "1.0.0", [("redis", "~17.9.0")])
        up.chart("charts/platform", "1.2.0", [("redis", "~18.0.0")])
        up.chart("charts/platform", "2.0.0", [("redis", "~18.1.0")])
        up.chart("charts/stale", "1.0.0", [("common", "^9.0.0")])
        mixed = [
            {"name": "postgresql", "version": "12.x", "repository": "https://charts.example.com"},
            {"name": "local", "version": "0.1.0", "repository": "file://../x"},
            {"name": "bare", "version": "1.0.0", "repository": ""},
            {"name": "common", "version": "~2.1.0", "repository": f"oci://{up.host}/charts"},
        ]
        up.digests[("charts/mixed", "1.0.0")] = push_chart(
            server, "charts/mixed", "1.0.0", dependencies=mixed
        )
        yield up


# --- selection --------------------------------------------------------------------------------


def test_versions_select_exactly_the_matching_tags_with_their_real_digests(upstream: Upstream) -> None:
    result = _resolve(_spec([upstream.source({"name": "images/app", "versions": ">=1.2.0 <2.0.0"})]))
    # v-prefixed and `_`-build tags count as semver; the prerelease, 1.0.0, 2.0.0, latest do not match
    assert list(result.artifacts) == [
        upstream.artifact("images/app", "1.2.0"),
        upstream.artifact("images/app", "v1.3.0"),
        upstream.artifact("images/app", "1.5.0_build.7"),
    ]
    assert len({a.digest for a in result.artifacts}) == 3
    assert result.notes == ()


def test_a_selector_that_matches_nothing_is_a_warning_naming_repository_and_selector(
    upstream: Upstream,
) -> None:
    result = _resolve(
        _spec(
            [
                upstream.source(
                    {"name": "images/app", "versions": ">=9.0.0"},
                    {"name": "charts/common", "tags": ["nope-*"]},
                    {"name": "charts/stale", "versions": "1.0.0", "helm-dependencies": True},
                )
            ]
        )
    )
    assert _rows(result) == [("charts/stale", "1.0.0", None)]
    warnings = _notes(result, "warning")
    assert len(warnings) == 3, warnings
    by_repo = {
        repo: [w for w in warnings if f"{upstream.host}/{repo}" in w]
        for repo in ("images/app", "charts/common")
    }
    assert any(">=9.0.0" in w for w in by_repo["images/app"])
    assert any("nope-*" in w for w in by_repo["charts/common"])
    # the dependency range that matches nothing says whose dependency it is
    assert any("^9.0.0" in w and upstream.ref("charts/stale", "1.0.0") in w for w in by_repo["charts/common"])


def test_a_missing_upstream_repository_is_a_resolve_error_naming_it(upstream: Upstream) -> None:
    spec = _spec(
        [upstream.source({"name": "images/app", "tags": ["*"]}, {"name": "no/such/repo", "tags": ["*"]})]
    )
    with pytest.raises(ResolveError) as caught:
        _resolve(spec)
    assert f"{upstream.host}/no/such/repo" in str(caught.value)


# --- Helm dependency closure ------------------------------------------------------------------


def test_helm_closure_follows_each_chart_version_recursively(upstream: Upstream) -> None:
    result = _resolve(
        _spec([upstream.source({"name": "charts/platform", "versions": "<2.0.0", "helm-dependencies": True})])
    )
    platform_1, platform_12 = (
        upstream.ref("charts/platform", "1.0.0"),
        upstream.ref("charts/platform", "1.2.0"),
    )
    redis_18 = {upstream.ref("charts/redis", "18.0.1"), upstream.ref("charts/redis", "18.0.4")}
    by_key = {(a.repository, a.tag): a for a in result.artifacts}
    assert sorted(by_key) == sorted(
        [
            ("charts/platform", "1.0.0"),
            ("charts/platform", "1.2.0"),
            ("charts/redis", "17.9.0"),  # platform 1.0.0 → ~17.9.0
            ("charts/redis", "18.0.1"),  # platform 1.2.0 → ~18.0.0 (not 18.1.0)
            ("charts/redis", "18.0.4"),
            ("charts/common", "1.9.0"),  # redis 17.9.0 → ^1.0.0
            ("charts/common", "2.0.0"),  # redis 18.0.x → ^2.0.0 (not 2.2.0-rc.1 nor 3.0.0)
            ("charts/common", "2.1.0"),
        ]
    )
    for (repository, tag), artifact in by_key.items():
        assert artifact.registry == upstream.host
        assert artifact.digest == upstream.digests[(repository, tag)]
    assert by_key[("charts/platform", "1.0.0")].dependency_of is None
    assert by_key[("charts/platform", "1.2.0")].dependency_of is None
    assert by_key[("charts/redis", "17.9.0")].dependency_of == platform_1
    assert by_key[("charts/redis", "18.0.1")].dependency_of == platform_12
    assert by_key[("charts/redis", "18.0.4")].dependency_of == platform_12
    assert by_key[("charts/common", "1.9.0")].dependency_of == upstream.ref("charts/redis", "17.9.0")
    assert by_key[("charts/common", "2.0.0")].dependency_of in redis_18
    assert by_key[("charts/common", "2.1.0")].dependency_of in redis_18
    assert _notes(result, "warning") == []


def test_a_tag_asked_for_directly_and_needed_as_a_dependency_is_not_a_dependency(upstream: Upstream) -> None:
    result = _resolve(
        _spec(
            [
                upstream.source(
                    {"name": "charts/platform", "versions": "1.2.0", "helm-dependencies": True},
                    {"name": "charts/redis", "tags": ["18.0.4"]},
                    {"name": "charts/common", "versions": "2.1.0"},
                )
            ]
        )
    )
    platform = upstream.ref("charts/platform", "1.2.0")
    rows = _rows(result)
    assert ("charts/redis", "18.0.4", None) in rows
    assert ("charts/redis", "18.0.1", platform) in rows
    assert ("charts/common", "2.1.0", None) in rows
    (common_20,) = [r for r in rows if r[:2] == ("charts/common", "2.0.0")]
    assert common_20[2] in {upstream.ref("charts/redis", "18.0.1"), upstream.ref("charts/redis", "18.0.4")}
    # each tag is reported once
    assert len(rows) == len({r[:2] for r in rows}) == 5


def test_helm_dependencies_newest_keeps_only_the_newest_match(upstream: Upstream) -> None:
    result = _resolve(
        _spec(
            [upstream.source({"name": "charts/platform", "versions": "1.2.0", "helm-dependencies": "newest"})]
        )
    )
    assert list(result.artifacts) == [
        upstream.artifact("charts/common", "2.1.0", upstream.ref("charts/redis", "18.0.4")),
        upstream.artifact("charts/platform", "1.2.0"),
        upstream.artifact("charts/redis", "18.0.4", upstream.ref("charts/platform", "1.2.0")),
    ]


def test_non_oci_dependencies_are_info_notes_not_mirrored(upstream: Upstream) -> None:
    result = _resolve(
        _spec([upstream.source({"name": "charts/mixed", "versions": "1.0.0", "helm-dependencies": True})])
    )
    mixed = upstream.ref("charts/mixed", "1.0.0")
    assert _rows(result) == [("charts/common", "2.1.0", mixed), ("charts/mixed", "1.0.0", None)]
    infos = _notes(result, "info")
    assert len(infos) == 3, infos
    for name, where in (
        ("postgresql", "https://charts.example.com"),
        ("local", "file://../x"),
        ("bare", "nowhere"),
    ):
        (note,) = [n for n in infos if f"'{name}'" in n]
        assert mixed in note and where in note and "not mirrored" in note
    assert _notes(result, "warning") == []
    assert all("example.com" not in a.registry for a in result.artifacts)


def test_helm_dependencies_on_a_plain_image_is_a_note_not_an_error(upstream: Upstream) -> None:
    result = _resolve(
        _spec([upstream.source({"name": "images/app", "tags": ["latest"], "helm-dependencies": True})])
    )
    assert list(result.artifacts) == [upstream.artifact("images/app", "latest")]
    assert result.notes == (
        Note("info", f"{upstream.ref('images/app', 'latest')}: not a Helm chart, no dependencies to follow"),
    )


def test_a_dependency_on_another_registry_is_resolved_there_anonymously(
    registry_factory: Callable[..., RegistryServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The chart's registry needs credentials (and a CA of its own); the dependency lives on a
    # second registry that is not in `sources`: TLS + token auth that lets anonymous users pull.
    origin = registry_factory(tls=True, users={"alice": CANARY})
    other = registry_factory(tls=True, token=True, users={"bob": "bob-pw"}, anonymous_pull=True)
    assert other.token_issuer is not None
    lib = {v: push_chart(other, "shared/charts/lib", v) for v in ("1.0.0", "1.1.0", "2.0.0")}
    dependency = [{"name": "lib", "version": "^1.0.0", "repository": f"oci://{other.host}/shared/charts"}]
    app = push_chart(origin, "charts/app", "1.0.0", dependencies=dependency)
    # Only the dependency host lacks a `ca-bundle`, so it is verified with the default trust
    # store: make that store this test's CA, for this test only.
    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", str(other.ca_file))
    monkeypatch.setenv("ORIGIN_PASSWORD", CANARY)
    other.token_issuer.reset_requests()
    before = len(request_log(other))

    spec = _spec(
        [
            {
                "registry": origin.host,
                "credentials": "origin",
                "ca-bundle": str(origin.ca_file),
                "repositories": [{"name": "charts/app", "versions": "1.0.0", "helm-dependencies": True}],
            }
        ],
        credentials={"origin": {"username": "alice", "password": {"env": "ORIGIN_PASSWORD"}}},
    )
    result = _resolve(spec)

    app_ref = f"{origin.host}/charts/app:1.0.0"
    assert len(result.artifacts) == 3
    assert set(result.artifacts) == {
        Artifact(origin.host, "charts/app", "1.0.0", app, None),
        Artifact(other.host, "shared/charts/lib", "1.0.0", lib["1.0.0"], app_ref),
        Artifact(other.host, "shared/charts/lib", "1.1.0", lib["1.1.0"], app_ref),
    }
    assert "GET /v2/shared/charts/lib/tags/list" in request_log(other)[before:]
    # every token the other registry's realm issued was for an anonymous client
    issued = other.token_issuer.requests
    assert issued and all(r.user is None and r.status == 200 for r in issued)


# --- efficiency -------------------------------------------------------------------------------


def test_each_tag_list_is_fetched_once_and_digests_come_from_head(
    registry_factory: Callable[..., RegistryServer],
) -> None:
    server = registry_factory()
    common = [{"name": "common", "version": "^2.0.0", "repository": f"oci://{server.host}/charts"}]
    for version in ("2.0.0", "2.1.0"):
        push_chart(server, "charts/common", version)
    for repository, version in (("charts/x", "1.0.0"), ("charts/x", "1.1.0"), ("charts/y", "1.0.0")):
        push_chart(server, repository, version, dependencies=common)
    for tag in ("a", "b"):
        push_image(server, "images/plain", tag)
    before = len(request_log(server))

    result = _resolve(
        _spec(
            [
                {
                    "registry": server.host,
                    "insecure": True,
                    "repositories": [
                        {"name": "charts/x", "versions": ">=1.0.0", "helm-dependencies": True},
                        {"name": "charts/y", "versions": ">=1.0.0", "helm-dependencies": True},
                        {"name": "images/plain", "tags": ["*"]},
                    ],
                }
            ]
        )
    )
    assert len(result.artifacts) == 7
    log = request_log(server)[before:]
    counts = Counter(log)
    for repository in ("charts/common", "charts/x", "charts/y", "images/plain"):
        assert counts[f"GET /v2/{repository}/tags/list"] == 1, log
    # plain images: one HEAD per tag, never a manifest or blob GET
    assert counts["HEAD /v2/images/plain/manifests/a"] == 1
    assert counts["HEAD /v2/images/plain/manifests/b"] == 1
    assert not [line for line in log if re.match(r"GET /v2/images/plain/(manifests|blobs)/", line)]
    # three chart versions need common ^2.0.0: its digests and configs are still read once each
    # (DESIGN: requests are cached per run)
    heads = [line for line in log if line.startswith("HEAD ")]
    assert len(heads) == len(set(heads)) == 7, heads
    manifest_gets = [line for line in log if re.match(r"GET /v2/.*/manifests/", line)]
    assert len(manifest_gets) == len(set(manifest_gets)) == 5, manifest_gets
    assert all("@" not in line and "/manifests/sha256:" in line for line in manifest_gets)


# --- Docker Hub, without the network ---------------------------------------------------------


class _FakeHub:
    """Stands in for every RegistryClient so that nothing leaves this machine."""

    def __init__(self, charts: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
        self.charts = charts or {}
        self.calls: list[tuple[str, str, str]] = []
        self.configs: dict[str, bytes] = {}

    def list_tags(self, repository: str) -> list[str]:
        self.calls.append(("tags", repository, ""))
        return sorted({tag for repo, tag in self.charts if repo == repository} | {"7.2.4", "7.2.5"})

    def digest(self, repository: str, tag: str) -> str:
        self.calls.append(("digest", repository, tag))
        return "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()

    def manifest(self, repository: str, reference: str) -> Manifest:
        self.calls.append(("manifest", repository, reference))
        media_type = "application/vnd.oci.image.config.v1+json"
        for (repo, tag), chart in self.charts.items():
            if repo == repository and self.digest(repo, tag) == reference:
                media_type = CHART_CONFIG_MEDIA_TYPE
                self.configs[reference] = json.dumps(chart).encode()
        body = {"config": {"mediaType": media_type, "digest": reference}}
        return Manifest(reference, "application/vnd.oci.image.manifest.v1+json", json.dumps(body).encode())

    def blob(self, repository: str, digest: str) -> bytes:
        return self.configs[digest]


@pytest.mark.parametrize(
    ("registry", "name"),
    [("docker.io", "redis"), ("index.docker.io", "library/redis"), ("registry-1.docker.io", "redis")],
)
def test_docker_hub_is_normalised_to_docker_io_and_library(
    registry: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = _FakeHub()
    ctx = RunContext(
        parse_spec(_spec([{"registry": registry, "repositories": [{"name": name, "tags": ["7.2.4"]}]}])),
        workers=2,
    )
    monkeypatch.setattr(ctx, "client", lambda endpoint: hub)
    result = resolve(ctx)
    (artifact,) = result.artifacts
    assert (artifact.registry, artifact.repository, artifact.tag) == ("docker.io", "library/redis", "7.2.4")
    assert ("tags", "library/redis", "") in hub.calls


def test_docker_hub_dependencies_land_at_the_same_normalised_path(monkeypatch: pytest.MonkeyPatch) -> None:
    deps = [
        {"name": "redis", "version": "7.2.4", "repository": "oci://registry-1.docker.io/bitnamicharts"},
        {"name": "redis", "version": "7.2.5", "repository": "oci://docker.io"},
    ]
    hub = _FakeHub({("acme/app", "1.0.0"): {"name": "app", "version": "1.0.0", "dependencies": deps}})
    spec = _spec(
        [
            {
                "registry": "docker.io",
                "repositories": [{"name": "acme/app", "versions": "1.0.0", "helm-dependencies": True}],
            }
        ]
    )
    ctx = RunContext(parse_spec(spec), workers=2)
    monkeypatch.setattr(ctx, "client", lambda endpoint: hub)
    result = resolve(ctx)
    assert [(a.registry, a.repository, a.tag, a.dependency_of) for a in result.artifacts] == [
        ("docker.io", "acme/app", "1.0.0", None),
        ("docker.io", "bitnamicharts/redis", "7.2.4", "docker.io/acme/app:1.0.0"),
        # an official (un-namespaced) name on Docker Hub is `library/…`, as for spec sources
        ("docker.io", "library/redis", "7.2.5", "docker.io/acme/app:1.0.0"),
    ]
