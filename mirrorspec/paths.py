"""The one destination-path mapping every provider must honour.

`destination(prefix, layout, source_registry, repository)` is
`[prefix/][host-segment/]repository`. In the scoped layout the host segment is the source
host, lower-cased, with `:port` written `_port` (a colon is not allowed in a repository
name). Docker Hub is normalised to `docker.io` and official images get `library/`, so
`redis`, `docker.io/redis` and `index.docker.io/library/redis` all land in one place.

skopeo's own naming is never used: `--scoped` embeds `host:port` verbatim (an invalid
reference) and the unscoped mode keeps only the last path component, so `charts/platform`
and `other/platform` would collide (research/sync.md §1.1).
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = [
    "DOCKER_HUB",
    "MAX_NAME",
    "Layout",
    "destination",
    "host_segment",
    "is_layout_host",
    "layout_host",
    "normalize_registry",
    "normalize_repository",
    "valid_repository",
]

# distribution/reference `Parse`: the name of a reference, registry host included, is at most
# `NameTotalLengthMax` = 255 characters (ErrNameTooLong, "repository name must not be more than
# 255 characters"); skopeo, docker and containerd parse references with it, so a longer
# destination could be planned but never copied or pulled.
MAX_NAME = 255

Layout = Literal["scoped", "flat"]

# The stand-in host of an `oci-layout:` source: not a registry host (a colon not followed by a
# port), so it can never be mistaken for one, and one per layout directory.
LAYOUT_SCHEME = "oci-layout:"

DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = {
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
}

# OCI distribution-spec repository name grammar (path components joined by '/').
_REPOSITORY = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


def normalize_registry(host: str) -> str:
    """Lower-case a registry host and fold Docker Hub's aliases into `docker.io`."""
    host = host.strip().lower().rstrip("/")
    for scheme in ("https://", "http://", "oci://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


def normalize_repository(registry: str, repository: str) -> str:
    """Docker Hub's official images live under `library/`; elsewhere the name is kept."""
    repository = repository.strip("/")
    if normalize_registry(registry) == DOCKER_HUB and "/" not in repository:
        return f"library/{repository}"
    return repository


def host_segment(registry: str) -> str:
    """The path segment a source host becomes in the scoped layout (`host:5000` → `host_5000`)."""
    return normalize_registry(registry).replace(":", "_")


def layout_host(directory: str) -> str:
    """The stand-in host of the `oci-layout: <directory>` source (`oci-layout:<directory>`)."""
    return normalize_registry(LAYOUT_SCHEME + directory.strip().rstrip("/"))


def is_layout_host(host: str) -> bool:
    """True for the stand-in host of an `oci-layout:` source."""
    return host.startswith(LAYOUT_SCHEME)


def valid_repository(name: str) -> bool:
    """True when `name` is a valid OCI repository path."""
    return bool(_REPOSITORY.match(name))


def destination(prefix: str | None, layout: Layout, source_registry: str, repository: str) -> str:
    """Where `source_registry/repository` lands in a target, without the target's host."""
    parts = [prefix.strip("/")] if prefix else []
    # A layout's paths already hold what the layout target's own layout gave them (the host
    # segment when scoped), so a layout source adds none: a two-step mirror lands where a
    # direct one would.
    if layout == "scoped" and not is_layout_host(source_registry):
        parts.append(host_segment(source_registry))
    parts.append(normalize_repository(source_registry, repository))
    return "/".join(parts)
