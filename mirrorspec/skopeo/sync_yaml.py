"""`render skopeo`: the plan's copies as `skopeo sync` YAML, for teams that run skopeo themselves.

skopeo sync names destinations `DEST/<last component of the repository>` unless `--scoped`,
which breaks on `host:port` (research/sync.md §1.1). So repositories are grouped by their
destination *directory*: each group is one YAML document synced to that directory, which
reproduces the DESIGN destination paths exactly. Version constraints are written as
`images-by-semver` only for skopeo >= 1.15 (older versions ignore the key and exit 0);
otherwise, and for Helm dependencies, as explicit tag lists. Credentials are never written:
each document says which auth file option to pass.
"""

from __future__ import annotations

import io
import posixpath
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML

from .. import paths
from ..chart_images import is_pinned
from ..context import RunContext
from ..plan import Artifact
from ..spec import Target

__all__ = ["SyncDocument", "skopeo_documents", "to_yaml"]


class SyncDocument:
    """One `skopeo sync --src yaml` input and the destination directory it syncs to."""

    def __init__(self, source: str, destination: str, config: dict[str, Any], note: str) -> None:
        self.source = source
        self.destination = destination
        self.config = config
        self.note = note

    def command(self, filename: str) -> str:
        return (
            f"skopeo sync --all --src yaml --dest docker --dest-authfile DEST_AUTH.json "
            f"{filename} {self.destination}"
        )


def skopeo_documents(
    ctx: RunContext,
    target: Target,
    artifacts: Sequence[Artifact],
    *,
    endpoint_host: str,
    semver_capable: bool,
) -> list[SyncDocument]:
    groups: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for artifact in artifacts:
        dest = target.destination(ctx.spec, artifact.registry, artifact.repository)
        directory = posixpath.dirname(dest)
        # A chart's image pinned by digest has no such tag upstream: skopeo sync takes the
        # digest itself in an `images` list (skopeo-sync(1), "images ... along with image with
        # digest"), and pushes it by digest.
        tag = artifact.digest if is_pinned(artifact.tag) else artifact.tag
        groups[(artifact.registry, directory)][artifact.repository].append(tag)
    constraints = {
        (
            paths.normalize_registry(s.registry),
            paths.normalize_repository(s.registry, r.name),
        ): r.versions
        for s in ctx.spec.sources
        for r in s.repositories
        if r.versions
    }
    documents = []
    for (registry, directory), repos in sorted(groups.items()):
        source = next((s for s in ctx.spec.sources if paths.normalize_registry(s.registry) == registry), None)
        block: dict[str, Any] = {}
        images = {}
        by_semver = {}
        for repo, tags in sorted(repos.items()):
            constraint = constraints.get((registry, repo))
            # skopeo reads tags with Masterminds' semver.NewVersion, which rejects Helm's `_`
            # build tags: a range would silently skip them, so such repositories stay explicit.
            if (
                semver_capable
                and constraint
                and not _has_dependency_tags(artifacts, registry, repo)
                and not any("_" in tag for tag in tags)
            ):
                by_semver[repo] = constraint
            else:
                images[repo] = sorted(set(tags))
        if images:
            block["images"] = images
        if by_semver:
            block["images-by-semver"] = by_semver
        if source is not None and source.insecure:
            block["tls-verify"] = False
        note = "no source credentials"
        if source is not None and source.credentials:
            note = f"source credentials '{source.credentials}': pass them with --src-authfile SRC_AUTH.json"
        destination = f"{endpoint_host}/{directory}" if directory else endpoint_host
        documents.append(SyncDocument(registry, destination, {registry: block}, note))
    return documents


def _has_dependency_tags(artifacts: Sequence[Artifact], registry: str, repo: str) -> bool:
    return any(a.dependency_of for a in artifacts if a.registry == registry and a.repository == repo)


def to_yaml(documents: Sequence[SyncDocument]) -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    out = io.StringIO()
    for i, document in enumerate(documents, 1):
        filename = f"sync-{i}.yaml"
        out.write(f"# {filename}: {document.note}\n# run: {document.command(filename)}\n")
        yaml.dump(document.config, out)
        if i < len(documents):
            out.write("---\n")
    return out.getvalue()
