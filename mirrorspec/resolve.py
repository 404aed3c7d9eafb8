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

Work is a pipeline per repository (`_Resolver`, on `read_lanes`): a repository's digests are
asked for as soon as its tags are listed and selected, not after every other listing, and each
digest goes at once to `on_digest` (the plan's destination checks). Reads are bounded by each
registry's reads limit (`oci/read_limit.py`), not by `--workers`. Every listing and digest is
fetched once per run. Helm dependencies still go level by level (a chart's dependencies are
the next level's wants), and each level's results are read in a fixed order, so the
artifacts, the notes and the first error do not depend on which answer came first.

Each chart version is followed once, so resolution always ends; dependencies that lead back
to a chart version already on the path (A → B → A, or A → A) are refused as a cycle, named
chart by chart, at the spec's repository entry that led there. Chart configs and manifests
come from upstream and are treated as untrusted: any shape other than the documented one is
a `ResolveError` naming the chart, never a crash.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from . import chart_images, paths, versions
from .context import RunContext
from .errors import RegistryError, ResolveError
from .host_settings import entry_hint, reached_without_entry
from .plan import Artifact, ChartImages, Note
from .read_lanes import Lanes, Once, Tracker

__all__ = ["HELM_CONFIG_MEDIA_TYPE", "Resolution", "resolve"]

HELM_CONFIG_MEDIA_TYPE = "application/vnd.cncf.helm.config.v1+json"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolution:
    artifacts: tuple[Artifact, ...]
    notes: tuple[Note, ...]
    # Every tag list read, by (registry, repository): where signatures' tags are found
    # (`referrers.py`) without reading them again.
    tags: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    charts: tuple[ChartImages, ...] = ()  # the images of charts with chart-images: true


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
    # Where it came from, for errors: the spec's (source, repository) indexes and, for a
    # dependency, the chart version that asked for it. Not part of identity.
    root: tuple[int, int] = field(default=(0, 0), compare=False)
    parent: tuple[str, str, str] | None = field(default=None, compare=False)


def resolve(
    ctx: RunContext,
    *,
    skip: frozenset[str] = frozenset(),
    lanes: Lanes | None = None,
    on_digest: OnDigest | None = None,
) -> Resolution:
    """Resolve every source repository of the spec, and the Helm dependencies they ask for.

    `skip` names source repositories ("host/repository") that no target needs resolved —
    those every chosen target serves on demand through a pull-through cache. Reads run on
    `lanes` (the caller's, so that its own reads share them; else the resolution's own), and
    `on_digest` hears of every tag's digest as soon as it is known (from a lane's thread).
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
            root=(s, r),
        )
        for s, source in enumerate(ctx.spec.sources)
        for r, repo in enumerate(source.repositories)
    ]
    wants = [w for w in wants if f"{w.registry}/{w.repository}" not in skip]
    if lanes is None:
        with Lanes(ctx) as own:
            resolution = _Resolver(ctx, own, on_digest).run(wants)
    else:
        resolution = _Resolver(ctx, lanes, on_digest).run(wants)
    deps = sum(1 for a in resolution.artifacts if a.dependency_of)
    log.info(
        "resolved %d upstream tag(s) from %d repository(ies), %d via Helm dependencies",
        len(resolution.artifacts),
        len(wants),
        deps,
    )
    return resolution


# Called with (registry, repository, tag, digest) as soon as a tag's digest is known, from a
# lane's thread: the engine starts the tag's destination checks there (`engine.plan`).
OnDigest = Callable[[str, str, str, str], None]


@dataclass(frozen=True)
class _Chart:
    """What a chart version's config says about its dependencies: (name, repository, version)
    of each; None when the manifest is not a Helm chart's."""

    dependencies: tuple[tuple[str, str, str], ...] | None


class _Resolver:
    """Resolution as a pipeline per repository (`read_lanes`): each want's tag list, once
    listed, is selected and its digests asked for at once; each digest, once known, goes to
    `on_digest` and, for a chart whose dependencies are followed, its config is read. Levels
    remain only for Helm dependencies (a chart's dependencies are the next level's wants), and
    after each level the results are read in the order the phases used to run in, so that the
    outcome, the notes and the first error are the same whatever order the answers came in:
    tag lists by repository, selections and digests by want, charts by want."""

    def __init__(self, ctx: RunContext, lanes: Lanes, on_digest: OnDigest | None) -> None:
        self.ctx = ctx
        self.lanes = lanes
        self.on_digest = on_digest
        self.lock = threading.Lock()
        self.listings: dict[tuple[str, str], Once[list[str]]] = {}
        self.digests: dict[tuple[str, str, str], Once[str]] = {}
        self.charts: dict[tuple[str, str, str], Once[_Chart]] = {}
        self.followed: set[tuple[str, str, str, str]] = set()
        self.notes: list[Note] = []
        # chart version -> the versions its dependencies selected; and which spec entry
        # first reached each chart version
        self.edges: dict[tuple[str, str, str], set[tuple[str, str, str]]] = {}
        self.root_of: dict[tuple[str, str, str], tuple[int, int]] = {}

    def run(self, roots: list[_Want]) -> Resolution:
        found: dict[tuple[str, str, str], Artifact] = {}
        imaged: dict[tuple[str, str, str], chart_images.ChartVersion] = {}
        seen: set[_Want] = set()
        level = roots
        while level:
            level = [w for w in dict.fromkeys(level) if w not in seen]
            seen.update(level)
            chosen: list[Once[tuple[list[str], Note | None]]] = [Once() for _ in level]
            tracker = Tracker()
            with self.lanes.batch():  # 1,000 tag lists queued at once, not one by one
                for want, selection in zip(level, chosen, strict=True):
                    self._start(tracker, want, selection)
            tracker.wait()
            # As the phases ran: every listing, then every selection, then every digest.
            repos = sorted({(w.registry, w.repository) for w in level})
            for repo in repos:
                self.listings[repo].get()
            selected: list[tuple[_Want, str]] = []
            for want, selection in zip(level, chosen, strict=True):
                tags, note = selection.get()
                if note is not None:
                    self.notes.append(note)
                selected += [(want, tag) for tag in tags]
            for want, tag in selected:
                self.digests[(want.registry, want.repository, tag)].get()
            next_level: list[_Want] = []
            charts: list[tuple[_Want, str]] = []
            for want, tag in selected:
                key = (want.registry, want.repository, tag)
                self.root_of.setdefault(key, want.root)
                if want.parent is not None:
                    self.edges.setdefault(want.parent, set()).add(key)
                digest = self.digests[key].get()
                # A tag asked for directly is not "a dependency" even if a chart needs it too.
                if key not in found or (found[key].dependency_of and not want.dependency_of):
                    found[key] = Artifact(*key, digest, want.dependency_of)
                self._want_images(imaged, want, key, digest)
                if want.follow != "none" and (*key, want.follow) not in self.followed:
                    self.followed.add((*key, want.follow))
                    charts.append((want, tag))
            self._refuse_cycles()
            for want, tag in charts:
                chart = self.charts[(want.registry, want.repository, tag)].get()
                next_level.extend(self._dependencies(want, tag, chart))
            level = next_level
        records: tuple[ChartImages, ...] = ()
        image_hosts: tuple[str, ...] = ()
        if imaged:  # after the closure: every chart version whose images are wanted is known
            images = chart_images.wanted_images(self.ctx, self.lanes, list(imaged.values()), self.on_digest)
            for artifact in images.artifacts:  # an image the spec selects itself stays the spec's
                found.setdefault((artifact.registry, artifact.repository, artifact.tag), artifact)
            self.notes.extend(images.notes)
            records = images.charts
            image_hosts = images.hosts
        artifacts = sorted(
            found.values(),
            key=lambda a: (a.registry, a.repository, _order(a.tag)),
        )
        # Once per host, after the notes of every level: the hosts whose tags were listed, and
        # those the charts' images were read from.
        hosts = [*(registry for registry, _ in self.listings), *image_hosts]
        reached = reached_without_entry(self.ctx.spec, hosts)
        listed = self.listings.items()
        lists = {repo: tuple(once.get()) for repo, once in listed if once.done and once.error is None}
        return Resolution(tuple(artifacts), (*self.notes, *reached), tags=lists, charts=records)

    def _want_images(
        self,
        imaged: dict[tuple[str, str, str], chart_images.ChartVersion],
        want: _Want,
        key: tuple[str, str, str],
        digest: str,
    ) -> None:
        """Remember a chart version whose images its spec entry (`chart-images: true`) wants."""
        s, r = want.root
        if not self.ctx.spec.sources[s].repositories[r].chart_images:
            return
        known = imaged.get(key)
        if known is None or (want.dependency_of is None and not known.selected):
            imaged[key] = chart_images.ChartVersion(*key, digest, want.dependency_of is None, want.root)

    # -- the pipeline: each step starts the next as soon as its answer is in -----------------

    def _once(
        self, table: dict[Any, Once[Any]], key: Any, tracker: Tracker, registry: str, fn: Callable[[], Any]
    ) -> Once[Any]:
        """`table[key]`, computed once by `fn` on `registry`'s lane."""
        with self.lock:
            once = table.get(key)
            first = once is None
            if once is None:
                once = table[key] = Once()
        if first:
            assert once is not None
            self.lanes.submit(tracker, registry, lambda: once.compute(fn))
        return once

    def _start(self, tracker: Tracker, want: _Want, selection: Once[tuple[list[str], Note | None]]) -> None:
        repo = (want.registry, want.repository)

        def listed(listing: Once[list[str]]) -> None:
            if listing.error is not None:
                return  # raised after the level, in repository order
            selection.compute(lambda: self._select(want, listing.get()))
            if selection.error is not None:
                return
            tags, _ = selection.get()
            for tag in tags:
                self._ask_digest(tracker, want, (*repo, tag))

        self._once(self.listings, repo, tracker, want.registry, lambda: self._tags_of(*repo)).then(listed)

    def _ask_digest(self, tracker: Tracker, want: _Want, key: tuple[str, str, str]) -> None:
        def digested(digest: Once[str]) -> None:
            if digest.error is not None or want.follow == "none":
                return  # an error is raised after the level, in want order
            value = digest.get()
            self._once(self.charts, key, tracker, want.registry, lambda: self._chart(*key, value))

        self._once(self.digests, key, tracker, want.registry, lambda: self._digest(*key)).then(digested)

    def _refuse_cycles(self) -> None:
        cycle = _find_cycle(self.edges, list(self.root_of))
        if cycle is None:
            return
        s, r = self.root_of[cycle[0]]
        spec = self.ctx.spec
        source = spec.sources[s]
        where = spec.location_of(("sources", s, "repositories", r))
        entry = f"sources[{s}] › repositories[{r}] (name='{source.repositories[r].name}')"
        chain = " → ".join(f"{registry}/{repository}:{tag}" for registry, repository, tag in cycle)
        raise ResolveError(
            f"{where + ': ' if where else ''}{entry}: Helm chart dependencies form a cycle: {chain} "
            "(charts cannot contain themselves; set helm-dependencies: false to stop following them)"
        )

    def _tags_of(self, registry: str, repository: str) -> list[str]:
        client = self.ctx.client(self.ctx.source_endpoint(registry))
        try:
            return client.list_tags(repository)
        except RegistryError as exc:
            hint = entry_hint(self.ctx.spec, registry, exc.status)
            raise ResolveError(f"cannot list tags of {registry}/{repository}: {exc}{hint}") from None

    def _select(self, want: _Want, tags: list[str]) -> tuple[list[str], Note | None]:
        """The tags `want` selects, and a note when there are none."""
        try:
            selected = versions.select_tags(
                tags,
                versions=want.versions,
                globs=want.globs,
                regex=want.regex,
                all_tags=want.all_tags,
                newest_only=want.newest_only,
            )
        except ValueError as exc:  # the spec validated it; only a runaway tag-regex gets here
            s, r = want.root
            where = self.ctx.spec.location_of(("sources", s, "repositories", r))
            name = self.ctx.spec.sources[s].repositories[r].name
            raise ResolveError(
                f"{where + ': ' if where else ''}sources[{s}] › repositories[{r}] (name='{name}') › "
                f"tag-regex: {exc} ({want.registry}/{want.repository})"
            ) from None
        if not selected:
            what = want.versions or want.regex or ", ".join(want.globs or ()) or "all tags"
            via = f" (dependency of {want.dependency_of})" if want.dependency_of else ""
            return selected, Note(
                "warning",
                f"{want.registry}/{want.repository}{via}: no tag matches '{what}' among {len(tags)} tags",
            )
        return selected, None

    def _digest(self, registry: str, repository: str, tag: str) -> str:
        client = self.ctx.client(self.ctx.source_endpoint(registry))
        digest = client.digest(repository, tag)
        if digest is None:
            # Listed a moment ago, gone now: the upstream is changing under us.
            raise ResolveError(f"{registry}/{repository}:{tag} was listed but has no manifest")
        if self.on_digest is not None:
            self.on_digest(registry, repository, tag, digest)
        return digest

    def _chart(self, registry: str, repository: str, tag: str, digest: str) -> _Chart:
        """The dependencies one chart version's config lists (a manifest and a blob read)."""
        client = self.ctx.client(self.ctx.source_endpoint(registry))
        ref = f"{registry}/{repository}:{tag}"

        def unreadable(what: str) -> ResolveError:
            return ResolveError(f"{ref}: {what}")

        try:
            manifest = client.manifest(repository, digest).json()
        except ValueError as exc:
            raise unreadable(f"unreadable manifest: {exc}") from None
        config = manifest.get("config")
        config = config if isinstance(config, dict) else {}
        if config.get("mediaType") != HELM_CONFIG_MEDIA_TYPE:
            return _Chart(None)
        config_digest = config.get("digest")
        if not isinstance(config_digest, str):
            raise unreadable("unreadable Helm chart config: the manifest names no config digest")
        try:
            chart: Any = json.loads(client.blob(repository, config_digest))
        except ValueError as exc:  # UnicodeDecodeError included
            raise unreadable(f"unreadable Helm chart config: {exc}") from None
        listed = chart.get("dependencies") if isinstance(chart, dict) else None
        if not isinstance(listed, list | None):
            raise unreadable("unreadable Helm chart config: 'dependencies' is not a list")
        dependencies: list[tuple[str, str, str]] = []
        for dep in listed or []:
            if not isinstance(dep, dict):
                raise unreadable("unreadable Helm chart config: a dependency is not a mapping")
            name, source, constraint = (
                dep.get("name"),
                dep.get("repository") or "",
                dep.get("version") or "*",
            )
            if not (isinstance(name, str) and isinstance(source, str) and isinstance(constraint, str)):
                raise unreadable(
                    "unreadable Helm chart config: a dependency's name, version or repository is not a string"
                )
            dependencies.append((name, source, constraint))
        return _Chart(tuple(dependencies))

    def _dependencies(self, want: _Want, tag: str, chart: _Chart) -> list[_Want]:
        """The `oci://` dependencies of one chart version, as wants for the next level."""
        ref = f"{want.registry}/{want.repository}:{tag}"
        if chart.dependencies is None:
            self.notes.append(Note("info", f"{ref}: not a Helm chart, no dependencies to follow"))
            return []
        deps: list[_Want] = []
        key = (want.registry, want.repository, tag)
        for name, repository, constraint in chart.dependencies:
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
            registry = paths.normalize_registry(host)
            repository = paths.normalize_repository(host, "/".join(p for p in (path.strip("/"), name) if p))
            if paths.is_layout_host(want.registry):  # looked up in the same layout, offline
                layout = want.registry
                registry, repository, note = _in_layout(self.ctx, layout, ref, name, registry, repository)
                if note is not None:
                    self.notes.append(note)
                    continue
            deps.append(
                _Want(
                    registry=registry,
                    repository=repository,
                    versions=constraint,
                    follow=want.follow,
                    dependency_of=ref,
                    newest_only=want.follow == "newest",
                    root=want.root,
                    parent=key,
                )
            )
        return deps


def _in_layout(
    ctx: RunContext, layout: str, ref: str, name: str, host: str, repository: str
) -> tuple[str, str, Note | None]:
    """Where a dependency `host/repository` of the layout chart `ref` is in that layout
    (`layout_source.layout_path`); a note instead when it is not there."""
    from .layout_source import layout_path  # reads a layout: not at import

    path, looked = layout_path(ctx, layout, host, repository)
    if path is not None:
        return layout, path, None
    return (
        layout,
        "",
        Note(
            "warning",
            f"{ref}: dependency '{name}' ({host}/{repository}) is not in the layout (looked for "
            f"{' and '.join(looked)}); not mirrored",
        ),
    )


def _find_cycle(
    edges: dict[tuple[str, str, str], set[tuple[str, str, str]]], starts: list[tuple[str, str, str]]
) -> list[tuple[str, str, str]] | None:
    """The first cycle a depth-first walk from `starts` meets, as a path that ends where it
    began; None if there is none. Iterative: a chain of dependencies may be long."""
    on_path, done = set(), set()
    for start in starts:
        if start in done:
            continue
        path = [start]
        on_path.add(start)
        stack = [iter(sorted(edges.get(start, ())))]
        while stack:
            for child in stack[-1]:
                if child in on_path:
                    return [*path[path.index(child) :], child]
                if child not in done:
                    path.append(child)
                    on_path.add(child)
                    stack.append(iter(sorted(edges.get(child, ()))))
                    break
            else:
                stack.pop()
                node = path.pop()
                on_path.discard(node)
                done.add(node)
    return None


def _order(tag: str) -> tuple[int, Any]:
    key = versions.parse_tag_version(tag)
    return (0, key) if key is not None else (1, tag)
