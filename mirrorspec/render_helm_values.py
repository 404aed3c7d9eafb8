"""`mirrorspec render helm-values`: the values override that points a chart's images at a target.

The chart version must be one the spec mirrors with `chart-images: true` (selected by its
repository entry, or a Helm dependency of such a chart). Resolution runs as for `plan` (upstream
reads only, never the target), and the override is the plan's relocation of that chart
(`chart_images.relocations`) written back in the chart's own shapes (`charts.relocate`), for
`helm install -f`. Images the override cannot place (named only by the annotation or a hint, not
upstream, or only in templates) are notes on stderr, each with what to do.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from ruamel.yaml import YAML

from . import chart_images, engine, paths, providers
from .charts import relocate
from .context import RunContext
from .errors import MirrorspecError
from .plan import Note
from .resolve import resolve

__all__ = ["RenderedValues", "parse_chart", "render"]


@dataclass(frozen=True)
class RenderedValues:
    text: str
    """The override, YAML."""
    notes: tuple[Note, ...]


def parse_chart(text: str) -> tuple[str, str, str]:
    """(registry, repository, tag) of `--chart HOST/REPOSITORY:VERSION`, normalised; the tag as
    OCI stores the version (Helm's `+` is `_`)."""
    name, colon, version = text.strip().removeprefix("oci://").rpartition(":")
    host, slash, repository = name.partition("/")
    if not colon or not slash or not host or not repository or not version or "/" in version:
        raise MirrorspecError(
            f"--chart '{text}': expected HOST/REPOSITORY:VERSION (e.g. ghcr.io/acme/app:1.2.0)"
        )
    registry = paths.normalize_registry(host)
    return registry, paths.normalize_repository(registry, repository), version.replace("+", "_")


def render(ctx: RunContext, target_name: str, chart: str) -> RenderedValues:
    """The override for `chart` in the target `target_name` (see the module docstring)."""
    registry, repository, tag = parse_chart(chart)
    ref = f"{registry}/{repository}:{tag}"
    (target,) = engine.selected_targets(ctx, [target_name])
    if not any(repo.chart_images for source in ctx.spec.sources for repo in source.repositories):
        raise MirrorspecError(
            f"chart {ref}: no repository of the spec has chart-images: true; no chart's images are mirrored"
        )
    resolution = resolve(ctx)
    record = next((r for r in resolution.charts if r.chart == ref), None)
    if record is None:
        if any(a.ref == ref for a in resolution.artifacts):
            raise MirrorspecError(
                f"chart {ref}: the spec mirrors it without its images; set chart-images: true on the "
                "repository entry that selects it (or on the chart that depends on it)"
            )
        raise MirrorspecError(
            f"chart {ref}: the spec does not select it (nor does a chart it mirrors depend on it)"
        )
    host = providers.get(target.type).endpoint(target, ctx).host
    (relocation,) = chart_images.relocations(ctx, target, host, [record])
    mirrored = [chart_images.image_of(image) for image in record.images if image.source_digest is not None]
    override, left = relocate(
        mirrored, lambda image: (host, target.destination(ctx.spec, image.registry, image.repository))
    )
    notes: list[Note] = []
    for image in left:
        notes.append(
            Note(
                "warning",
                f"{image.reference}: named only by the chart's {image.origin} ({image.key}), not by a values "
                f"key; mirrored at {relocation.images[image.reference]}; point the chart at it by hand",
            )
        )
    for missing in (i for i in record.images if i.source_digest is None):
        notes.append(
            Note("warning", f"{missing.reference} ({missing.key}): not upstream, not mirrored; left as it is")
        )
    for gap in record.unresolved:
        notes.append(
            Note(
                "warning",
                f"{gap.found_in}: {gap.file} › {gap.key}: {gap.why}; not relocated (set it by hand)",
            )
        )
    out = io.StringIO()
    out.write(f"# mirrorspec render helm-values: {ref} in target {target.name} ({host})\n")
    if override:
        yaml = YAML(typ="safe", pure=True)
        yaml.default_flow_style = False
        yaml.dump(override, out)
    else:
        out.write("{}\n")
    return RenderedValues(out.getvalue(), tuple(dict.fromkeys(notes)))
