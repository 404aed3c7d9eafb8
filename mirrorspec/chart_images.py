"""The container images chart versions deploy, as wanted artifacts (`chart-images: true`).

Called by `resolve` once the charts and their dependency closure are known. For each chart
version of a repository with `chart-images: true` (and each dependency it brought in), the
chart's content layer is read (one manifest GET, one bounded blob GET), its images found
(`charts.discover`, without rendering templates), and each image becomes an `Artifact` like any
other: its host is whatever the chart names (settings from that host's `sources:` entry, if
any: `RunContext.source_endpoint`), its tag's digest comes from a HEAD, as for any tag.

What lands where:

- a reference by tag (`repo:1.2`) lands under that tag; references of several charts to one
  tag are one artifact;
- a reference with a digest (`repo@sha256:…`, `repo:1.2@sha256:…`) is copied by that digest
  and lands under the tag `digest-sha256-<hex>` (`pin_tag`): pulls name the digest, and the tag
  keeps the manifest from a registry's garbage collection of untagged manifests. Not the tag
  the chart names, which upstream may have moved elsewhere since, and not `sha256-<hex>`, the
  OCI 1.1 referrers tag schema's name for the index of the digest's referrers
  (distribution-spec v1.1 "Referrers Tag Schema"). References to one digest are one artifact.

Failures follow how resolution treats a chart's Helm dependencies: a registry that cannot be
read (refused credentials, unreachable) is an error, as a dependency whose tags cannot be
listed is; an image the registry says is not there (404) is a warning note and the rest is
mirrored, as a dependency range that matches no tag is. A chart archive that is unsafe or not a
chart is an error naming the chart (its images cannot be known); a reference only templates
could produce is a note naming chart, file and key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import paths
from .charts import ChartArchiveError, Image, occurrences, parse_reference, read_chart
from .charts.archive import MAX_DECOMPRESSED
from .context import RunContext
from .errors import MirrorspecError, RegistryError, ResolveError
from .host_settings import entry_hint
from .plan import Artifact, ChartImage, ChartImages, Note, Relocation, UnresolvedImage
from .read_lanes import Lanes, Once, Tracker
from .spec import TargetBase

__all__ = [
    "CHART_CONTENT_MEDIA_TYPE",
    "MAX_CHART_LAYER",
    "ChartVersion",
    "Found",
    "image_of",
    "is_pinned",
    "mirror_reference",
    "pin_tag",
    "relocations",
    "wanted_images",
]

log = logging.getLogger(__name__)

HELM_CONFIG_MEDIA_TYPE = "application/vnd.cncf.helm.config.v1+json"  # as resolve's
# helm/helm pkg/registry/constants.go: ChartLayerMediaType.
CHART_CONTENT_MEDIA_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
# The compressed layer, held in memory to be read: no larger than what Helm would decompress
# it to (`charts.archive.MAX_DECOMPRESSED`, Helm's MaxDecompressedChartSize), since gzip
# never shrinks a chart's files below nothing; real charts are kilobytes to a few MiB.
MAX_CHART_LAYER = MAX_DECOMPRESSED
PIN_PREFIX = "digest-"

# (registry, repository, tag, digest) of a tag's digest, as `resolve`'s `on_digest` hears it.
OnDigest = Callable[[str, str, str, str], None]


@dataclass(frozen=True)
class ChartVersion:
    """A chart version whose images are wanted: `registry/repository:tag` at `digest`."""

    registry: str
    repository: str
    tag: str
    digest: str
    selected: bool
    """True when the spec's own entry selected it, not a Helm dependency."""
    entry: tuple[int, int]
    """The spec's (source, repository) indexes that led to it, for errors."""

    @property
    def ref(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"


@dataclass(frozen=True)
class Found:
    """What the charts' images come to: artifacts to mirror, notes, and a record per chart."""

    artifacts: tuple[Artifact, ...]
    notes: tuple[Note, ...]
    charts: tuple[ChartImages, ...]
    hosts: tuple[str, ...] = ()
    """Every registry host an image was read from (for the plan's note on hosts without a
    `sources:` entry: `host_settings.reached_without_entry`)."""


def pin_tag(digest: str) -> str:
    """The destination tag of an image a chart names by digest: `digest-sha256-<hex>`."""
    return PIN_PREFIX + digest.replace(":", "-")


def image_of(record: ChartImage) -> Image:
    """The `charts.Image` a plan's record describes (what `charts.relocate` reads)."""
    parsed = parse_reference(record.reference)
    assert parsed is not None  # the record's reference was parsed from the chart
    registry, repository, _, _ = parsed
    return Image(
        registry,
        repository,
        record.tag,
        record.digest,
        record.origin,
        record.found_in,
        record.key,
        record.shape,
    )


def mirror_reference(host: str, path: str, tag: str | None, digest: str | None) -> str:
    """The reference of an image in a target, with the tag and digest the chart names."""
    reference = f"{host}/{path}"
    if tag:
        reference += f":{tag}"
    if digest:
        reference += f"@{digest}"
    return reference


def _identity(image: Image, ctx: RunContext | None = None, chart_registry: str = "") -> tuple[str, str, str]:
    """One artifact per (repository, digest) when the chart pins one, else per (repository, tag).
    The image of a chart read from an OCI layout is read from that layout, offline, where a
    layout target put it (`layout_source.layout_path`)."""
    registry, repository = image.registry, image.repository
    if ctx is not None and paths.is_layout_host(chart_registry):
        from .layout_source import layout_path  # reads a layout: not at import

        found, looked = layout_path(ctx, chart_registry, registry, repository)
        registry, repository = chart_registry, found or looked[0]
    if image.digest:
        return (registry, repository, pin_tag(image.digest))
    assert image.tag is not None  # parse_reference gives a tag or a digest
    return (registry, repository, image.tag)


@dataclass(frozen=True)
class _Read:
    """One chart version's content, read: every place it names an image; None: not a chart."""

    found: tuple[Image, ...] | None
    unresolved: tuple[UnresolvedImage, ...] = ()


def wanted_images(
    ctx: RunContext, lanes: Lanes, charts: Sequence[ChartVersion], on_digest: OnDigest | None
) -> Found:
    """The images `charts` deploy, their digests, and a record per chart (see the module
    docstring). Reads run on `lanes`, one lane per registry; the outcome does not depend on
    which answer came first (results are read in chart order, then image order)."""
    charts = sorted(charts, key=lambda c: (c.registry, c.repository, c.tag))
    tracker = Tracker()
    with lanes.batch():
        reads = [_start_read(ctx, lanes, tracker, chart) for chart in charts]
    tracker.wait()

    notes: list[Note] = []
    records: list[ChartImages] = []
    users: dict[tuple[str, str, str], list[tuple[ChartVersion, Image]]] = {}
    not_charts: dict[tuple[int, int], list[ChartVersion]] = {}
    charted: set[tuple[int, int]] = set()
    for chart, once in zip(charts, reads, strict=True):
        try:
            read = once.get()
        except RegistryError as exc:  # the registry's (a ResolveError too): name the chart
            if len(exc.args) == 1:
                exc.args = (f"{chart.ref}: cannot read the chart's content: {exc}",)
            raise
        except ResolveError:
            raise
        except MirrorspecError as exc:
            raise ResolveError(f"{chart.ref}: cannot read the chart's content: {exc}") from None
        if read.found is None:
            not_charts.setdefault(chart.entry, []).append(chart)
            continue
        if chart.selected:
            charted.add(chart.entry)
        for image in read.found:
            users.setdefault(_identity(image, ctx, chart.registry), []).append((chart, image))
        for gap in read.unresolved:
            notes.append(
                Note(
                    "warning",
                    f"{chart.ref}: {gap.file} › {gap.key}: {gap.why}; not mirrored "
                    f"(an image only the chart's templates name; in {gap.found_in})",
                )
            )
    _refuse_non_charts(ctx, not_charts, charted, notes)

    # Every distinct image's digest, on its registry's lane.
    keys = sorted(users)
    with lanes.batch():
        digests = [_start_digest(ctx, lanes, tracker, key, users[key][0][1], on_digest) for key in keys]
    tracker.wait()

    artifacts: list[Artifact] = []
    resolved: dict[tuple[str, str, str], str | None] = {}
    for key, asked in zip(keys, digests, strict=True):
        chart, image = users[key][0]
        try:
            digest = asked.get()
        except RegistryError as exc:
            hint = entry_hint(ctx.spec, image.registry, exc.status)
            raise ResolveError(f"{chart.ref}: image {image.reference}: {exc}{hint}") from None
        except MirrorspecError as exc:
            raise ResolveError(f"{chart.ref}: image {image.reference}: {exc}") from None
        resolved[key] = digest
        if digest is None:
            used = len({c.ref for c, _ in users[key]})
            others = f" (and {used - 1} other chart version(s))" if used > 1 else ""
            notes.append(
                Note(
                    "warning",
                    f"{chart.ref}{others}: image {image.reference} ({image.origin}: {image.key}) is not on "
                    f"{image.registry if key[0] == image.registry else 'the layout ' + key[0]}; not mirrored",
                )
            )
            continue
        artifacts.append(Artifact(*key, digest, chart.ref, chart_image=True))

    for chart, once in zip(charts, reads, strict=True):
        read = once.get()
        if read.found is None:
            continue
        records.append(
            ChartImages(
                chart.ref,
                tuple(
                    _record(image, resolved[_identity(image, ctx, chart.registry)]) for image in read.found
                ),
                read.unresolved,
            )
        )
    log.info("%d image(s) from %d chart version(s)", len(artifacts), len(records))
    return Found(tuple(artifacts), tuple(notes), tuple(records), tuple(sorted({k[0] for k in keys})))


def _start_read(ctx: RunContext, lanes: Lanes, tracker: Tracker, chart: ChartVersion) -> Once[_Read]:
    once: Once[_Read] = Once()
    lanes.submit(tracker, chart.registry, lambda: once.compute(lambda: _read(ctx, chart)))
    return once


def _start_digest(
    ctx: RunContext,
    lanes: Lanes,
    tracker: Tracker,
    key: tuple[str, str, str],
    image: Image,
    on_digest: OnDigest | None,
) -> Once[str | None]:
    once: Once[str | None] = Once()
    lanes.submit(tracker, key[0], lambda: once.compute(lambda: _digest(ctx, key, image, on_digest)))
    return once


def _read(ctx: RunContext, chart: ChartVersion) -> _Read:
    """Read one chart version's content layer and find every place it names an image."""
    client = ctx.client(ctx.source_endpoint(chart.registry))
    try:
        manifest: Any = client.manifest(chart.repository, chart.digest).json()
    except ValueError as exc:
        raise ResolveError(f"{chart.ref}: unreadable manifest: {exc}") from None
    config = manifest.get("config") if isinstance(manifest, dict) else None
    if not isinstance(config, dict) or config.get("mediaType") != HELM_CONFIG_MEDIA_TYPE:
        return _Read(None)
    layers = manifest.get("layers")
    content = [
        layer
        for layer in (layers if isinstance(layers, list) else [])
        if isinstance(layer, dict) and layer.get("mediaType") == CHART_CONTENT_MEDIA_TYPE
    ]
    if len(content) != 1 or not isinstance(content[0].get("digest"), str):
        raise ResolveError(
            f"{chart.ref}: a Helm chart's manifest has one {CHART_CONTENT_MEDIA_TYPE} layer; "
            f"this one has {len(content)}"
        )
    size = content[0].get("size")
    if isinstance(size, int) and size > MAX_CHART_LAYER:
        raise ResolveError(
            f"{chart.ref}: the chart archive is {size:,} bytes; mirrorspec reads charts of at most "
            f"{MAX_CHART_LAYER >> 20} MiB (Helm's limit)"
        )
    try:
        data = client.blob(chart.repository, content[0]["digest"], max_bytes=MAX_CHART_LAYER)
        found, unresolved = occurrences(read_chart(data, where=chart.ref))
    except ChartArchiveError as exc:
        raise ResolveError(str(exc)) from None
    return _Read(
        tuple(found),
        tuple(UnresolvedImage(u.chart, u.file, u.key, u.why) for u in unresolved),
    )


def _digest(
    ctx: RunContext, key: tuple[str, str, str], image: Image, on_digest: OnDigest | None
) -> str | None:
    """The manifest digest the image is copied by: its tag's upstream, or the pinned digest
    once the registry confirms it has it; None when the registry says it does not."""
    registry, repository, tag = key
    client = ctx.client(ctx.source_endpoint(registry))
    digest = client.digest(repository, image.digest or tag)
    if digest is not None and image.digest:
        digest = image.digest  # what the chart pins, which the registry has
    if digest is not None and on_digest is not None:
        on_digest(registry, repository, tag, digest)
    return digest


def _refuse_non_charts(
    ctx: RunContext,
    not_charts: dict[tuple[int, int], list[ChartVersion]],
    charted: set[tuple[int, int]],
    notes: list[Note],
) -> None:
    """A spec entry with `chart-images: true` none of whose selected tags is a Helm chart is
    an error at that entry (it can only be known now, from the manifests); a tag that is not
    a chart among others that are (a signature, say) is a note."""
    for entry, versions in sorted(not_charts.items()):
        selected = [v for v in versions if v.selected]
        if selected and entry not in charted:
            s, r = entry
            spec = ctx.spec
            where = spec.location_of(("sources", s, "repositories", r))
            name = spec.sources[s].repositories[r].name
            raise ResolveError(
                f"{where + ': ' if where else ''}sources[{s}] › repositories[{r}] (name='{name}') › "
                f"chart-images: {selected[0].registry}/{selected[0].repository} is not a Helm chart "
                "repository (no selected tag has a Helm chart config); remove chart-images"
            )
        for version in versions:
            notes.append(Note("info", f"{version.ref}: not a Helm chart, no images to find"))


def _record(image: Image, digest: str | None) -> ChartImage:
    return ChartImage(
        reference=image.reference,
        tag=image.tag,
        digest=image.digest,
        source_digest=digest,
        origin=image.origin,
        found_in=image.chart,
        key=image.key,
        shape=image.shape,
    )


def is_pinned(tag: str) -> bool:
    """True for a tag `pin_tag` made: upstream has no such tag, so only a copy by digest
    (skopeo) can bring it, never a registry's own replication or import by tag."""
    return tag.startswith(PIN_PREFIX + "sha256-")


def relocations(
    ctx: RunContext, target: TargetBase, host: str, records: Iterable[ChartImages]
) -> tuple[Relocation, ...]:
    """Per chart version, each mirrored image's reference → its reference in `target` (at
    `host`), by the target's one path mapping (`TargetBase.destination`)."""
    out = []
    layouts = [s.registry for s in ctx.spec.sources if s.oci_layout is not None]
    for record in records:
        mapping: dict[str, str] = {}
        # A chart read from a layout: its images were copied from that layout, to where the
        # copies say (`_identity`), not to where they would land from their own registry.
        layout = next((h for h in layouts if record.chart.startswith(h + "/")), "")
        for image in record.images:
            if image.source_digest is None:
                continue
            found = image_of(image)
            registry, repository, _ = _identity(found, ctx if layout else None, layout)
            path = target.destination(ctx.spec, registry, repository)
            mapping[image.reference] = mirror_reference(host, path, image.tag, image.digest)
        out.append(Relocation(record.chart, mapping))
    return tuple(out)
