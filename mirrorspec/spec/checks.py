"""Checks across the whole document, after every block is valid on its own: credentials that
exist, one way to read each upstream, unique target names, each target's own `problems()`,
and no two repositories landing on one destination.
"""

from __future__ import annotations

from typing import Any

from .. import paths
from ..errors import SpecError
from .compose import Map
from .locate import crumbs, position
from .model import Spec, _clip_quoted, _kebab

__all__ = [
    "cross_checks",
]


# --- checks across the document --------------------------------------------------------


def cross_checks(spec: Spec, tree: Map, filename: str) -> None:
    def fail(message: str, loc: tuple[Any, ...]) -> None:
        raise SpecError(f"{crumbs(tree, loc)}{_clip_quoted(message)}", location=position(tree, loc, filename))

    known = sorted(spec.credentials)
    names = ", ".join(known) if known else "none are defined"
    for i, source in enumerate(spec.sources):
        if source.credentials is not None and source.credentials not in spec.credentials:
            fail(
                f"unknown credentials '{source.credentials}' ({names})",
                ("sources", i, "credentials"),
            )
    # An upstream is read with one set of settings (RunContext.source_endpoint takes the
    # first entry's): two entries for one host that disagree would silently read the
    # second's repositories with the first's credentials.
    first_source: dict[str, int] = {}
    for i, source in enumerate(spec.sources):
        host = paths.normalize_registry(source.registry)
        j = first_source.setdefault(host, i)
        other = spec.sources[j]
        settings = ("credentials", "insecure", "ca_bundle")
        differ = [_kebab(k) for k in settings if getattr(source, k) != getattr(other, k)]
        if differ:
            fail(
                f"registry '{host}' is also sources[{j}], with another {' and '.join(differ)}: "
                "an upstream is read one way; merge the entries or make them agree",
                ("sources", i, "registry"),
            )
    seen_targets: dict[str, int] = {}
    for i, target in enumerate(spec.targets):
        if target.name in seen_targets:
            fail(
                f"duplicate target name '{target.name}' (also targets[{seen_targets[target.name]}])",
                ("targets", i, "name"),
            )
        seen_targets[target.name] = i
        for message, below in target.problems():
            fail(message, ("targets", i, *below))
        credentials = getattr(target, "credentials", None)
        if credentials is not None and credentials not in spec.credentials:
            fail(f"unknown credentials '{credentials}' ({names})", ("targets", i, "credentials"))
        # Two sources landing on one destination would overwrite each other's tags.
        claimed: dict[str, str] = {}
        for s, source in enumerate(spec.sources):
            for r, repo in enumerate(source.repositories):
                dest = target.destination(spec, source.registry, repo.name)
                host = paths.normalize_registry(source.registry)
                origin = f"{host}/{paths.normalize_repository(source.registry, repo.name)}"
                if dest in claimed:
                    what = (
                        f"repository '{origin}' is listed twice"
                        if claimed[dest] == origin
                        else f"'{origin}' and '{claimed[dest]}' both map to '{dest}' in target "
                        f"'{target.name}' (use layout: scoped or another prefix)"
                    )
                    fail(what, ("sources", s, "repositories", r, "name"))
                claimed[dest] = origin
