"""`render offline-spec`: the spec to run on the far side of an air gap, from the near side's.

The near spec copies its selection into an `oci-layout` target; the far spec reads that layout
(`oci-layout:` source, `layout_source.py`) with the same selection and copies it to the far
side's own targets. Each repository entry keeps its selection keys as written (`versions`,
`tags`, `tag-regex`, `all-tags`, `helm-dependencies`, `signatures`, `chart-images`); its name
becomes the path the layout target gives it (`TargetBase.destination`), which is the name of
its refs in the layout. Entries that select nothing (host settings only) are left out: the far
side reaches no upstream. The far side's `targets:` and `credentials:` come from a file of
their own (they name registries and secrets the near side never sees).

Offline: reads the two files, nothing else; the output is checked to load as a spec before
it is printed, so what it prints `mirrorspec validate` accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError
from .files import UnreadableFile, read_user_file
from .plan import Note
from .spec import Spec, parse_spec

__all__ = ["OfflineSpec", "render"]

LAYOUT_TYPE = "oci-layout"
# What the far side's file may hold: what its spec needs and the near side lacks.
_FAR_KEYS = ("targets", "credentials")
_MAX_TARGETS_FILE = 1 << 20


class OfflineSpec:
    """The far side's spec text, and what to tell the user about it."""

    def __init__(self, text: str, notes: tuple[Note, ...]) -> None:
        self.text = text
        self.notes = notes


def render(spec: Spec, target_name: str, targets_file: Path, layout_path: str | None = None) -> OfflineSpec:
    """The far-side spec for the near `spec`'s layout target `target_name`; the layout is at
    `layout_path` on the far side (default: the target's `path`, as written)."""
    target = spec.target(target_name)
    if target.type != LAYOUT_TYPE:
        raise SpecError(
            f"target '{target.name}' is a {target.type} target; render offline-spec needs the "
            f"{LAYOUT_TYPE} target the near side writes"
        )
    far = _far_side(targets_file)
    notes: list[Note] = []
    repositories: list[dict[str, Any]] = []
    for source in spec.sources:
        for repo in source.repositories:
            entry: dict[str, Any] = {"name": target.destination(spec, source.registry, repo.name)}
            entry.update(repo.model_dump(by_alias=True, exclude_unset=True, exclude={"name"}))
            repositories.append(entry)
    if getattr(target, "prefix", None) and any(
        r.follow_dependencies != "none" or r.chart_images for s in spec.sources for r in s.repositories
    ):
        # `layout_source.layout_path`: a chart's dependencies and images are looked for at the
        # paths a layout target without a prefix writes.
        notes.append(
            Note(
                "warning",
                f"target '{target.name}' has a prefix: the far side looks for Helm dependencies and "
                "chart images at their paths without it, and will not find them",
            )
        )
    document: dict[str, Any] = {"version": 1}
    if far.get("credentials"):
        document["credentials"] = far["credentials"]
    path = layout_path or str(getattr(target, "path", ""))  # the oci-layout model has one
    document["sources"] = [{"oci-layout": path, "repositories": repositories}]
    document["targets"] = far["targets"]
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True)
    parse_spec(text, filename="<offline spec>")  # what is printed is a spec `validate` accepts
    return OfflineSpec(text, tuple(notes))


def _far_side(path: Path) -> dict[str, Any]:
    """The far side's `targets:` (required) and `credentials:` (optional), as YAML values."""
    try:
        data = read_user_file(path, what="targets file", max_bytes=_MAX_TARGETS_FILE)
    except UnreadableFile as exc:
        raise SpecError(str(exc)) from None
    try:
        value = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise SpecError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("targets"), list) or not value["targets"]:
        raise SpecError(f"{path}: expected a mapping with the far side's targets: (a list) and credentials:")
    unknown = sorted(set(value) - set(_FAR_KEYS))
    if unknown:
        raise SpecError(f"{path}: only targets: and credentials: go here, not {', '.join(map(str, unknown))}")
    return value
