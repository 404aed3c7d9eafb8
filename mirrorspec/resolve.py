"""Spec → concrete upstream artifacts (registry, repository, tag, digest), with Helm dependencies.

Tags are listed and filtered here, not by skopeo: Debian's skopeo 1.9.3 silently ignores
`images-by-semver` (research/sync.md §1.1), so versions are always expanded to explicit
tags. Digests come from HEAD requests, which are cheap and do not count as Docker Hub
pulls where GETs would.

Helm charts carry their `Chart.yaml` as the JSON config blob
(`application/vnd.cncf.helm.config.v1+json`), so a chart's dependencies are known from one
manifest GET and one small blob GET, without downloading the chart. Dependencies whose
`repository` is `oci://host/path` are followed recursively and their version ranges
resolved against `host/path/<name>`'s tags.

Work is breadth-first: each level's tag listings, digests and chart configs run
concurrently on the context's worker pool, and every listing is fetched once per run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from . import paths, versions
from .context import RunContext
from .errors import RegistryError, ResolveError
from .plan import Artifact, Note

__all__ = ["HELM_CONFIG_MEDIA_TYPE", "Resolution", "resolve"]

HELM_CONFIG_MEDIA_TYPE = "application/vnd.cncf.helm.config.v1+json"

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Resolution:
    artifacts: tuple[Artifact, ...]
    notes: tuple[Note, ...]


@dataclass(frozen=True)
class _Want:
    registry: str
    repository: str
    versions: str | None = None
    globs: tuple[str, ...] | None = None
    regex: str | None = None
    all_tags: bool = False
    follow: Literal["none", "all", "newest"] = "none"
    dependency_of: str | None = None
    newest_only: bool = False


def resolve(ctx: RunContext, *, skip: frozenset[str] = frozenset()) -> Resolution:
    """Resolve every source repository of the spec, and the Helm dependencies they ask for.

    `skip` names source repositories ("host/repository") that no target needs resolved —
    those every chosen target serves on demand through a pull-through cache.
    """
    wants = [
        _Want(
            registry=paths.normalize_registry(source.registry),
            repository=paths.normalize_repository(source.registry, repo.name),
            versions=repo.versions,
            globs=tuple(repo.tags) if repo.tags is not None else None,
            regex=repo.tag_regex,
            all_tags=repo.all_tags,
            follow=repo.follow_dependencies,
        )
        for source in ctx.spec.sources
        for repo in source.repositories
    ]
    wants = [w for w in wants if f"{w.registry}/{w.repository}" not in skip]
    resolution = _Resolver(ctx).run(wants)
    deps = sum(1 for a in resolution.artifacts if a.dependency_of)
    log.info(
        "resolved %d upstream tag(s) from %d repository(ies), %d via Helm dependencies",
        len(resolution.artifacts),
        len(wants),
        deps,
    )
    return resolution


class _Resolver:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.tags: dict[tuple[str, str], list[str]] = {}
        self.digests: dict[tuple[str, str, str], str] = {}
        self.followed: set[tuple[str, str, str, str]] = set()
        self.notes: list[Note] = []

    def run(self, roots: list[_Want]) -> Resolution:
        found: dict[tuple[str, str, str], Artifact] = {}
        seen: set[_Want] = set()
        level = roots
        with ThreadPoolExecutor(max_workers=self.ctx.workers) as pool:
            while level:
                level = [w for w in dict.fromkeys(level) if w not in seen]
                seen.update(level)
                self._list_tags(pool, {(w.registry, w.repository) for w in level})
                selected = [(w, tag) for w in level for tag in self._select(w)]
                # Several charts may need the same tag: one HEAD (and one config read) per run.
                todo = list(dict.fromkeys((w.registry, w.repository, t) for w, t in selected))
                todo = [k for k in todo if k not in self.digests]
                for key, digest in zip(todo, _parallel(pool, lambda k: self._digest(*k), todo), strict=True):
                    self.digests[key] = digest
                next_level: list[_Want] = []
                charts: list[tuple[_Want, str, str]] = []
                for want, tag in selected:
                    key = (want.registry, want.repository, tag)
                    digest = self.digests[key]
                    # A tag asked for directly is not "a dependency" even if a chart needs it too.
                    if key not in found or (found[key].dependency_of and not want.dependency_of):
                        found[key] = Artifact(*key, digest, want.dependency_of)
                    if want.follow != "none" and (*key, want.follow) not in self.followed:
                        self.followed.add((*key, want.follow))
                        charts.append((want, tag, digest))
                for deps in _parallel(pool, lambda c: self._dependencies(*c), charts):
                    next_level.extend(deps)
                level = next_level
        artifacts = sorted(
            found.values(),
            key=lambda a: (a.registry, a.repository, _order(a.tag)),
        )
        return Resolution(tuple(artifacts), tuple(self.notes))

    def _list_tags(self, pool: ThreadPoolExecutor, repos: set[tuple[str, str]]) -> None:
        todo = sorted(r for r in repos if r not in self.tags)
        for repo, tags in zip(todo, _parallel(pool, lambda r: self._tags_of(*r), todo), strict=True):
            self.tags[repo] = tags

    def _tags_of(self, registry: str, repository: str) -> list[str]:
        client = self.ctx.client(self.ctx.source_endpoint(registry))
        try:
            return client.list_tags(repository)
        except RegistryError as exc:
            raise ResolveError(f"cannot list tags of {registry}/{repository}: {exc}") from None

    def _select(self, want: _Want) -> list[str]:
        tags = self.tags[(want.registry, want.repository)]
        selected = versions.select_tags(
            tags,
            versions=want.versions,
            globs=want.globs,
            regex=want.regex,
            all_tags=want.all_tags,
            newest_only=want.newest_only,
        )
        if not selected:
            what = want.versions or want.regex or ", ".join(want.globs or ()) or "all tags"
            via = f" (dependency of {want.dependency_of})" if want.dependency_of else ""
            self.notes.append(
                Note(
                    "warning",
                    f"{want.registry}/{want.repository}{via}: no tag matches '{what}' among {len(tags)} tags",
                )
            )
        return selected

    def _digest(self, registry: str, repository: str, tag: str) -> str:
        client = self.ctx.client(self.ctx.source_endpoint(registry))
        digest = client.digest(repository, tag)
        if digest is None:
            # Listed a moment ago, gone now: the upstream is changing under us.
            raise ResolveError(f"{registry}/{repository}:{tag} was listed but has no manifest")
        return digest

    def _dependencies(self, want: _Want, tag: str, digest: str) -> list[_Want]:
        """The `oci://` dependencies of one chart version, as wants for the next level."""
        client = self.ctx.client(self.ctx.source_endpoint(want.registry))
        ref = f"{want.registry}/{want.repository}:{tag}"
        manifest = client.manifest(want.repository, digest).json()
        config = manifest.get("config") or {}
        if config.get("mediaType") != HELM_CONFIG_MEDIA_TYPE:
            self.notes.append(Note("info", f"{ref}: not a Helm chart, no dependencies to follow"))
            return []
        try:
            chart: Any = json.loads(client.blob(want.repository, config["digest"]))
        except (ValueError, KeyError) as exc:
            raise ResolveError(f"{ref}: unreadable Helm chart config: {exc}") from None
        deps: list[_Want] = []
        for dep in chart.get("dependencies") or []:
            name, repository, constraint = (
                dep.get("name"),
                dep.get("repository") or "",
                dep.get("version") or "*",
            )
            if not repository.startswith("oci://"):
                self.notes.append(
                    Note(
                        "info",
                        f"{ref}: dependency '{name}' comes from '{repository or 'nowhere'}', "
                        "not an oci:// registry; not mirrored",
                    )
                )
                continue
            host, _, path = repository.removeprefix("oci://").partition("/")
            try:
                versions.VersionConstraint.parse(constraint)
            except ValueError as exc:
                self.notes.append(Note("warning", f"{ref}: dependency '{name}': {exc}; not mirrored"))
                continue
            deps.append(
                _Want(
                    registry=paths.normalize_registry(host),
                    repository=paths.normalize_repository(
                        host, "/".join(p for p in (path.strip("/"), name) if p)
                    ),
                    versions=constraint,
                    follow=want.follow,
                    dependency_of=ref,
                    newest_only=want.follow == "newest",
                )
            )
        return deps


def _order(tag: str) -> tuple[int, Any]:
    key = versions.parse_tag_version(tag)
    return (0, key) if key is not None else (1, tag)


def _parallel(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`fn` over `items` on the pool, results in order; the first error is raised."""
    return list(pool.map(fn, list(items)))
