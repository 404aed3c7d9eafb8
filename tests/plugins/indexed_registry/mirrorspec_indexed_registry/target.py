"""The `type: indexed-registry` block of a spec.

A provider's `Target` model extends `mirrorspec.spec.TargetBase` (which brings `name`, `mode`
and `layout`) with `type: Literal["<its type>"]` and its own keys; the spec validates each
target block with the model of the provider installed for its `type`, so the keys, their
errors (with `file:line:col`) and `mirrorspec schema` all come from this class.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePath
from typing import Any, ClassVar, Literal

from pydantic import Field

from mirrorspec.spec import Host, Prefix, TargetBase

__all__ = ["INDEX_PATTERN", "IndexedRegistryTarget"]

INDEX_PATTERN = r"^.+\.json$"


class IndexedRegistryTarget(TargetBase):
    """Any OCI registry, mirrored by copying, plus a JSON index file of what it mirrors."""

    type: Literal["indexed-registry"]
    registry: Host
    prefix: Prefix | None = None
    credentials: str | None = None
    insecure: bool = False
    ca_bundle: str | None = None
    # Relative to the spec file's directory (`Spec.base_dir`), like every path a spec names.
    index: str = Field(pattern=INDEX_PATTERN)

    # A pattern alone is no explanation: the spec's errors say what the pattern means.
    PATTERN_MEANINGS: ClassVar[dict[str, str]] = {INDEX_PATTERN: "a path to a .json file"}

    def problems(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        # Checks only the whole block shows, reported at the key path below the target.
        if PurePath(self.index).name == ".json":
            yield "the index file needs a name before '.json'", ("index",)
