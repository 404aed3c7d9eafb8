"""Thousands of repositories in a test registry in seconds: copies of one repository that the
registry itself wrote, made in its filesystem storage.

Pushing 10,000 repositories over HTTP (a blob mount per blob and a manifest PUT per tag) takes
minutes on a 2-core runner; a spec that large is about the loader and the planner, not about
pushing. CNCF distribution keeps a repository as links under
`<root>/docker/registry/v2/repositories/<name>/` (`_layers/sha256/<hex>/link`,
`_manifests/revisions/sha256/<hex>/link`, `_manifests/tags/<tag>/current/link`, with the
blobs shared under `blobs/`; registry/storage/paths.go in distribution 2.8) and reads them on
every request, so a copy of that directory is a repository the registry serves like any
other: its tags list, its manifests, its blobs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .registry import RegistryServer

__all__ = ["clone_repository"]


def repositories_root(server: RegistryServer) -> Path:
    return server.workdir / "data" / "docker" / "registry" / "v2" / "repositories"


def clone_repository(server: RegistryServer, source: str, names: Iterable[str]) -> int:
    """Copy repository `source` (already pushed) to each of `names`; the number made.

    Directories and link files are made one by one (~1 ms a repository; `shutil.copytree`
    also copies permissions and times, ~10 ms).
    """
    original = repositories_root(server) / source
    if not (original / "_manifests").is_dir():
        raise FileNotFoundError(f"{source} is not in {server.host}'s storage ({original})")
    directories: list[str] = []
    links: list[tuple[str, bytes]] = []
    for path, _, files in os.walk(original):
        relative = os.path.relpath(path, original)
        directories.append(relative)
        links += [(os.path.join(relative, name), Path(path, name).read_bytes()) for name in files]
    made = 0
    for name in names:
        clone = repositories_root(server) / name
        for relative in directories:
            os.makedirs(clone / relative)
        for relative, content in links:
            (clone / relative).write_bytes(content)
        made += 1
    return made
