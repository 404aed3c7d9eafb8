"""The container images a Helm chart deploys, found without rendering its templates.

Sources, in order of authority (an image found by several keeps the most authoritative origin):

1. `annotation` — Chart.yaml's `artifacthub.io/images`: a YAML string holding a list of
   `{name, image, whitelisted, platforms}` entries (artifacthub.io/docs/topics/annotations/helm).
2. `hints` — `.relok8s-images.yaml` in the chart: a list of template strings such as
   `"{{ .image.registry }}/{{ .image.repository }}:{{ .image.tag }}"`, resolved against the
   chart's values; a first key naming a subchart reads that subchart's values
   (vmware-tanzu/asset-relocation-tool-for-kubernetes, README "Image Hints File").
3. `values` — values.yaml by the conventions charts follow (the ones helmper documents and
   Bitnami's charts use): under a key named `image` (or ending in `image`/`Image`), either a
   string `repo:tag` / `repo@digest`, or a map `{registry, repository, tag, digest}` (`sha` is
   another name for `digest`); `global.imageRegistry` replaces a map's `registry`; an empty
   tag means the chart's `appVersion`.

Subcharts (`charts/`) are read too, with their values coalesced like Helm does: the parent's
`<subchart>:` block over the subchart's own values.yaml, and `global` passed down. A reference
that only the templates could produce (a value holding `{{`, a map without a repository, a hint
naming a missing value) is an `Unresolved` entry — listed, never silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from .. import paths
from .archive import ChartArchiveError, ChartFiles

__all__ = ["MAX_VALUE_NODES", "Image", "Shape", "Unresolved", "discover", "occurrences", "parse_reference"]

Origin = Literal["annotation", "hints", "values"]
# How values.yaml writes an image, so that a relocation writes it back the same way: a string,
# a map whose `repository` carries the host (no `registry` key), a map with a `registry` key.
Shape = Literal["string", "map", "registry-map", "other"]
_AUTHORITY: dict[str, int] = {"annotation": 0, "hints": 1, "values": 2}

# Values nodes visited, aliases counted each time they are reached: a values.yaml of 5 MiB
# holds at most a few hundred thousand nodes, while `&a [*a, *a]` ten deep expands to millions.
MAX_VALUE_NODES = 1_000_000

# distribution/reference's grammar, reduced to what we need to split a reference:
# [host[:port]/]path[:tag][@algorithm:hex]; a first component is a host when it has a '.' or a
# ':' or is `localhost` (reference.splitDockerDomain).
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_PATH = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TEMPLATE = re.compile(r"\{\{\s*\.([A-Za-z0-9_.-]+)\s*\}\}")


@dataclass(frozen=True)
class Image:
    """One image reference a chart deploys."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None
    origin: Origin
    chart: str
    """Where it was found: the archive and subchart path (`ChartFiles.where`)."""
    key: str
    """The values key from the top chart's values (`db.image` for a subchart aliased `db`),
    the hint, or the annotation entry's name."""
    shape: Shape = "other"
    """How values.yaml writes it, so a relocation can keep the shape."""

    @property
    def reference(self) -> str:
        name = f"{self.registry}/{self.repository}"
        return f"{name}@{self.digest}" if self.digest else f"{name}:{self.tag}"


@dataclass(frozen=True)
class Unresolved:
    """A place that names an image discovery cannot resolve without rendering templates."""

    chart: str
    file: str
    key: str
    why: str


def discover(chart: ChartFiles) -> tuple[list[Image], list[Unresolved]]:
    """Every image `chart` and its subcharts deploy (deduplicated by reference, most
    authoritative origin first), and what could not be resolved."""
    found, unresolved = occurrences(chart)
    best: dict[str, Image] = {}
    for image in found:
        kept = best.get(image.reference)
        if kept is None or _AUTHORITY[image.origin] < _AUTHORITY[kept.origin]:
            best[image.reference] = image
    return sorted(best.values(), key=lambda i: i.reference), unresolved


def occurrences(chart: ChartFiles) -> tuple[list[Image], list[Unresolved]]:
    """Every place `chart` and its subcharts name an image, one entry per place (an image
    named in two values keys is two entries): what a relocation rewrites."""
    found: list[Image] = []
    unresolved: list[Unresolved] = []
    _Walk(found, unresolved).chart(chart, parent_values=None, name=None, scope=())
    return found, unresolved


def parse_reference(text: str) -> tuple[str, str, str | None, str | None] | None:
    """(registry, repository, tag, digest) of a Docker reference, normalized like Docker does
    (`nginx` → docker.io/library/nginx:latest), or None when it is not one."""
    text = text.strip()
    name, at, digest = text.partition("@")
    if at and not _DIGEST.match(digest):
        return None
    tag: str | None = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
        if not _TAG.match(tag):
            return None
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = paths.DOCKER_HUB, name
    registry = paths.normalize_registry(registry)
    repository = paths.normalize_repository(registry, repository)
    if not repository or not _PATH.match(repository):
        return None
    if tag is None and not at:
        tag = "latest"
    return registry, repository, tag, (digest or None)


class _Walk:
    def __init__(self, found: list[Image], unresolved: list[Unresolved]) -> None:
        self.found = found
        self.unresolved = unresolved
        self.nodes = 0

    def chart(
        self,
        chart: ChartFiles,
        *,
        parent_values: Mapping[str, Any] | None,
        name: str | None,
        scope: tuple[str, ...],
    ) -> dict[str, Any]:
        """Discover in `chart` and its subcharts; returns the chart's values as Helm computes
        them, each subchart's under its key (what a relok8s hint's first key may name)."""
        meta = _yaml(chart, "Chart.yaml")
        meta = meta if isinstance(meta, dict) else {}
        own = _yaml(chart, "values.yaml")
        values = _coalesce(own if isinstance(own, dict) else {}, parent_values, name)
        app_version = str(meta.get("appVersion") or "") or None
        subcharts = []
        for sub in chart.subcharts:
            sub_meta = _yaml(sub, "Chart.yaml")
            sub_name = str(sub_meta.get("name") or "") if isinstance(sub_meta, dict) else ""
            subcharts.append((_alias(meta, sub_name) or sub_name, sub))
        self.annotation(chart, meta)
        # A top-level key naming a subchart holds that subchart's values (Helm's coalescing):
        # its images are found there, with the subchart's defaults filled in.
        self.values(chart, values, app_version, skip={key for key, _ in subcharts}, scope=scope)
        view = dict(values)
        for key, sub in subcharts:
            view[key] = self.chart(sub, parent_values=values, name=key, scope=(*scope, key))
        self.hints(chart, view)
        return view

    def annotation(self, chart: ChartFiles, meta: Mapping[str, Any]) -> None:
        annotations = meta.get("annotations")
        text = annotations.get("artifacthub.io/images") if isinstance(annotations, dict) else None
        if not isinstance(text, str):
            return
        where = "Chart.yaml annotations"
        try:
            entries = _load(text, f"{chart.where}: artifacthub.io/images")
        except ChartArchiveError as exc:
            self.unresolved.append(Unresolved(chart.where, where, "artifacthub.io/images", str(exc)))
            return
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            image = entry.get("image") if isinstance(entry, dict) else None
            label = str(entry.get("name") or i) if isinstance(entry, dict) else str(i)
            self.add(chart, where, f"artifacthub.io/images[{label}]", image, "annotation", "other")

    def hints(self, chart: ChartFiles, values: Mapping[str, Any]) -> None:
        if ".relok8s-images.yaml" not in chart.files:
            return
        hints = _yaml(chart, ".relok8s-images.yaml")
        for hint in hints if isinstance(hints, list) else []:
            if not isinstance(hint, str):
                continue
            missing: list[str] = []

            def value_of(match: re.Match[str], missing: list[str] = missing) -> str:
                found = _lookup(values, match.group(1).split("."))
                if not isinstance(found, (str, int, float)) or isinstance(found, bool) or found == "":
                    missing.append(match.group(1))
                    return ""
                return str(found)

            text = _TEMPLATE.sub(value_of, hint)
            if missing or "{{" in text:
                why = f"no value at .{missing[0]}" if missing else "a template mirrorspec cannot evaluate"
                self.unresolved.append(Unresolved(chart.where, ".relok8s-images.yaml", hint, why))
                continue
            self.add(chart, ".relok8s-images.yaml", hint, text, "hints", "other")

    def values(
        self,
        chart: ChartFiles,
        values: Mapping[str, Any],
        app_version: str | None,
        *,
        skip: set[str],
        scope: tuple[str, ...],
    ) -> None:
        registry_override = _lookup(values, ["global", "imageRegistry"])
        override = registry_override if isinstance(registry_override, str) and registry_override else None
        for key, node in self.walk(values, ()):
            if not key or not key[-1].lower().endswith("image") or key[0] == "global" or key[0] in skip:
                continue
            dotted = ".".join((*scope, *key))
            if isinstance(node, str):
                if node:
                    self.add(chart, "values.yaml", dotted, node, "values", "string")
            elif isinstance(node, dict):
                self.image_map(chart, dotted, node, override, app_version)

    def image_map(
        self,
        chart: ChartFiles,
        key: str,
        node: Mapping[str, Any],
        override: str | None,
        app_version: str | None,
    ) -> None:
        repository = node.get("repository")
        if not isinstance(repository, str) or not repository:
            if any(k in node for k in ("registry", "tag", "digest")):
                self.unresolved.append(
                    Unresolved(chart.where, "values.yaml", key, "an image map without a repository")
                )
            return
        registry = override or node.get("registry")
        tag = node.get("tag")
        digest = node.get("digest") or node.get("sha")
        tag_text = str(tag) if isinstance(tag, (str, int, float)) and not isinstance(tag, bool) else ""
        tag_text = tag_text or (app_version or "")
        name = f"{registry}/{repository}" if isinstance(registry, str) and registry else repository
        if isinstance(digest, str) and digest:
            digest = digest if ":" in digest else f"sha256:{digest}"
            text = f"{name}@{digest}"
        else:
            text = f"{name}:{tag_text}" if tag_text else name
        shape: Shape = "registry-map" if "registry" in node or override else "map"
        self.add(chart, "values.yaml", key, text, "values", shape)

    def add(self, chart: ChartFiles, file: str, key: str, text: Any, origin: Origin, shape: Shape) -> None:
        if not isinstance(text, str) or not text.strip():
            self.unresolved.append(Unresolved(chart.where, file, key, "no image reference"))
            return
        if "{{" in text:
            self.unresolved.append(
                Unresolved(chart.where, file, key, "a template mirrorspec cannot evaluate")
            )
            return
        parsed = parse_reference(text)
        if parsed is None:
            why = f"'{text[:80]}' is not an image reference"
            self.unresolved.append(Unresolved(chart.where, file, key, why))
            return
        registry, repository, tag, digest = parsed
        self.found.append(Image(registry, repository, tag, digest, origin, chart.where, key, shape))

    def walk(self, node: Any, key: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        """Every (key path, value) below `node`, aliases expanded, within `MAX_VALUE_NODES`."""
        stack: list[tuple[tuple[str, ...], Any]] = [(key, node)]
        while stack:
            path, value = stack.pop()
            self.nodes += 1
            if self.nodes > MAX_VALUE_NODES:
                raise ChartArchiveError(
                    f"values expand to more than {MAX_VALUE_NODES:,} nodes (YAML aliases?); not read"
                )
            yield path, value
            if isinstance(value, dict):
                stack.extend(((*path, str(k)), v) for k, v in reversed(list(value.items())))
            elif isinstance(value, list):
                stack.extend(((*path, str(i)), v) for i, v in reversed(list(enumerate(value))))


def _alias(meta: Mapping[str, Any], name: str) -> str | None:
    """The alias the parent's Chart.yaml gives the dependency `name`, if any."""
    for dep in meta.get("dependencies") or []:
        if isinstance(dep, dict) and dep.get("name") == name and isinstance(dep.get("alias"), str):
            return str(dep["alias"])
    return None


def _coalesce(own: Mapping[str, Any], parent: Mapping[str, Any] | None, name: str | None) -> dict[str, Any]:
    """A subchart's values as Helm computes them: the parent's `<name>:` block over the
    subchart's own values, and the parent's `global` over the subchart's."""
    if parent is None or name is None:
        return dict(own)
    given = parent.get(name)
    merged = _merge(own, given if isinstance(given, dict) else {})
    parent_global = parent.get("global")
    if isinstance(parent_global, dict):
        own_global = merged.get("global")
        merged["global"] = _merge(own_global if isinstance(own_global, dict) else {}, parent_global)
    return merged


def _merge(base: Mapping[str, Any], over: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    if depth > 64:
        raise ChartArchiveError("values nest more than 64 levels deep; not read")
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value, depth + 1)
        else:
            merged[key] = value
    return merged


def _lookup(values: Mapping[str, Any], keys: list[str]) -> Any:
    node: Any = values
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _yaml(chart: ChartFiles, name: str) -> Any:
    data = chart.files.get(name)
    if data is None:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ChartArchiveError(f"{chart.where}: {name} is not UTF-8 text") from None
    return _load(text, f"{chart.where}: {name}")


def _load(text: str, where: str) -> Any:
    """YAML from a chart: safe types only; aliases are kept shared (the walk bounds their
    expansion), and a document nested deep enough to exhaust the parser is one error."""
    yaml = YAML(typ="safe", pure=True)
    try:
        return yaml.load(text)
    except RecursionError:
        raise ChartArchiveError(f"{where}: nests too deep to read") from None
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ChartArchiveError(f"{where}: invalid YAML ({first[:120]})") from None
