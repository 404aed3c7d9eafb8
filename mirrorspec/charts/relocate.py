"""A values override that points every image a chart names at its mirror, for `helm install -f`.

Each place values.yaml names an image (`images.occurrences`) is written back in the shape the
chart uses, because that is the shape its templates read:

- a string (`image: repo:tag`) becomes the mirror's full reference, tag and digest kept;
- a map with a `registry` key gets `registry` (the mirror host) and `repository` (the path
  there); its `tag` and `digest` are left alone, since they already name what was mirrored;
- `global.imageRegistry` is set to the mirror host whenever a map with a `registry` key is
  rewritten: in the charts that read it (Bitnami's `common.images.image` helper) it wins over
  every map's `registry`, so leaving the chart's value there would undo the relocation; the
  charts that do not read it ignore it;
- a map without a `registry` key gets `repository` = host/path, or only the path when
  `global.imageRegistry` is set, since that helper then puts the global host in front of every
  map's repository, `registry` key or not (and discovery reads it the same way).

Subcharts' images are written under their key chain (`db.image` for a dependency aliased `db`),
which is where Helm reads a parent's values for a subchart. What only the annotation or a hint
names has no values key to rewrite: `relocate` returns it as left over, for a note.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .images import Image

__all__ = ["Destination", "relocate"]

# (registry host, repository path) where an image's source reference lands in the target.
Destination = Callable[[Image], tuple[str, str]]


def relocate(found: Iterable[Image], destination: Destination) -> tuple[dict[str, Any], list[Image]]:
    """The override document, and the images it could not place (no values key)."""
    override: dict[str, Any] = {}
    left: list[Image] = []
    hosts: set[str] = set()
    found = list(found)
    use_global = any(image.shape == "registry-map" for image in found if image.origin == "values")
    for image in found:
        if image.origin != "values":
            left.append(image)
            continue
        host, path = destination(image)
        keys = image.key.split(".")
        if image.shape == "string":
            _put(override, keys, _reference(host, path, image))
        elif image.shape == "registry-map":
            _put(override, [*keys, "registry"], host)
            _put(override, [*keys, "repository"], path)
            hosts.add(host)
        elif image.shape == "map":
            _put(override, [*keys, "repository"], path if use_global else f"{host}/{path}")
    if hosts:
        # One target, so one host; global.imageRegistry could not say more than one anyway.
        _put(override, ["global", "imageRegistry"], min(hosts))
    return override, left


def _reference(host: str, path: str, image: Image) -> str:
    reference = f"{host}/{path}"
    if image.tag:
        reference += f":{image.tag}"
    if image.digest:
        reference += f"@{image.digest}"
    return reference


def _put(document: dict[str, Any], keys: list[str], value: str) -> None:
    node = document
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[keys[-1]] = value
