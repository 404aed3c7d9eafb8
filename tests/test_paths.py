"""The one destination-path mapping: `[prefix/][host-segment/]repository` for every provider."""

from __future__ import annotations

import pytest

from mirrorspec.paths import (
    Layout,
    destination,
    host_segment,
    normalize_registry,
    normalize_repository,
    valid_repository,
)

# (prefix, layout, source registry, repository, expected destination)
DESTINATIONS = [
    # scoped: the source host is a path segment
    (None, "scoped", "public.cr.seqera.io", "charts/platform", "public.cr.seqera.io/charts/platform"),
    (
        "vendor",
        "scoped",
        "quay.io",
        "jetstack/cert-manager-controller",
        "vendor/quay.io/jetstack/cert-manager-controller",
    ),
    # flat: the repository path alone, kept whole
    (None, "flat", "public.cr.seqera.io", "charts/platform", "charts/platform"),
    (
        "mirror",
        "flat",
        "cr.seqera.io",
        "private/nf-tower-enterprise/backend",
        "mirror/private/nf-tower-enterprise/backend",
    ),
    # a prefix written with slashes around it, or nested
    ("/vendor/", "scoped", "quay.io", "org/app", "vendor/quay.io/org/app"),
    ("a/b/", "flat", "quay.io", "org/app", "a/b/org/app"),
    ("", "flat", "quay.io", "org/app", "org/app"),
    # Docker Hub: every spelling of the host and of an official image lands in one place
    (None, "scoped", "docker.io", "redis", "docker.io/library/redis"),
    (None, "scoped", "docker.io", "library/redis", "docker.io/library/redis"),
    (None, "scoped", "index.docker.io", "redis", "docker.io/library/redis"),
    (None, "scoped", "registry-1.docker.io", "redis", "docker.io/library/redis"),
    (None, "scoped", "registry.hub.docker.com", "library/redis", "docker.io/library/redis"),
    (None, "scoped", "Docker.IO", "redis", "docker.io/library/redis"),
    ("vendor", "flat", "index.docker.io", "redis", "vendor/library/redis"),
    # user images on Docker Hub are not official: no library/
    (None, "scoped", "docker.io", "bitnami/redis", "docker.io/bitnami/redis"),
    # elsewhere a single-component name stays as it is
    (None, "scoped", "quay.io", "redis", "quay.io/redis"),
    # a port becomes _port (a colon cannot appear in a repository path)
    (None, "scoped", "localhost:5000", "team/app", "localhost_5000/team/app"),
    ("m", "scoped", "registry.internal:8443", "app", "m/registry.internal_8443/app"),
    # the host is lower-cased
    (None, "scoped", "Registry.Example.COM", "team/app", "registry.example.com/team/app"),
    (None, "scoped", "REGISTRY.EXAMPLE.COM:5000", "app", "registry.example.com_5000/app"),
]


@pytest.mark.parametrize(
    ("prefix", "layout", "registry", "repository", "expected"),
    DESTINATIONS,
    ids=[f"{c[1]}:{c[0]}:{c[2]}/{c[3]}" for c in DESTINATIONS],
)
def test_destination(
    prefix: str | None, layout: Layout, registry: str, repository: str, expected: str
) -> None:
    assert destination(prefix, layout, registry, repository) == expected


@pytest.mark.parametrize("layout", ["scoped", "flat"])
def test_nested_repository_paths_are_never_shortened(layout: Layout) -> None:
    """skopeo's unscoped mode keeps only `platform`; two charts named platform would collide."""
    ours = destination("vendor", layout, "public.cr.seqera.io", "charts/platform")
    theirs = destination("vendor", layout, "public.cr.seqera.io", "other/platform")
    assert ours.endswith("/charts/platform")
    assert theirs.endswith("/other/platform")
    assert ours != theirs


def test_flat_layout_can_collide_across_hosts_scoped_cannot() -> None:
    """Why the spec refuses overlapping destinations in flat layout (see test_spec)."""
    assert destination("m", "flat", "docker.io", "redis") == destination(
        "m", "flat", "quay.io", "library/redis"
    )
    assert destination("m", "scoped", "docker.io", "redis") != destination(
        "m", "scoped", "quay.io", "library/redis"
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("registry.hub.docker.com", "docker.io"),
        ("Quay.IO", "quay.io"),
        ("https://ghcr.io/", "ghcr.io"),
        ("oci://ghcr.io", "ghcr.io"),
        ("localhost:5000", "localhost:5000"),
    ],
)
def test_normalize_registry(host: str, expected: str) -> None:
    assert normalize_registry(host) == expected


@pytest.mark.parametrize(
    ("host", "segment"),
    [("localhost:5000", "localhost_5000"), ("HOST:5000", "host_5000"), ("index.docker.io", "docker.io")],
)
def test_host_segment(host: str, segment: str) -> None:
    assert host_segment(host) == segment


@pytest.mark.parametrize(
    ("registry", "repository", "expected"),
    [
        ("docker.io", "redis", "library/redis"),
        ("docker.io", "/redis/", "library/redis"),
        ("docker.io", "library/redis", "library/redis"),
        ("docker.io", "bitnami/redis", "bitnami/redis"),
        ("quay.io", "redis", "redis"),
        ("ghcr.io", "org/charts/platform", "org/charts/platform"),
    ],
)
def test_normalize_repository(registry: str, repository: str, expected: str) -> None:
    assert normalize_repository(registry, repository) == expected


@pytest.mark.parametrize(
    "name",
    [
        "redis",
        "library/redis",
        "charts/platform",
        "private/nf-tower-enterprise/backend",
        "a/b/c/d",
        "my.repo",
        "my_repo",
        "my__repo",
        "my--repo",
        "v2",
        "0",
    ],
)
def test_valid_repository(name: str) -> None:
    assert valid_repository(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Redis",
        "library/Redis",
        "/redis",
        "redis/",
        "a//b",
        "-redis",
        "redis-",
        ".redis",
        "a..b",
        "a___b",
        "a._b",
        "redis:7",
        "redis@sha256",
        "my repo",
        "docker.io/redis:latest",
    ],
)
def test_invalid_repository(name: str) -> None:
    assert not valid_repository(name)
