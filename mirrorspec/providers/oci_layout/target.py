"""The `type: oci-layout` block of a spec: an OCI image layout directory as a target."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import Field

from ...spec import Prefix, TargetBase

__all__ = ["LAYOUT_PATH_PATTERN", "OciLayoutTarget"]

# skopeo's `oci:DIR:REF` splits at the first colon (containers/image oci/layout
# ParseReference → internal.SplitPathAndImage), so a directory with a colon in its name
# cannot be written by it; a newline or NUL has no business in a path a plan prints.
LAYOUT_PATH_PATTERN = r"^[^:\x00-\x1f]+$"


class OciLayoutTarget(TargetBase):
    """One OCI image layout directory: everything selected copied into it, digests preserved."""

    type: Literal["oci-layout"]
    # Relative to the spec file's directory (`Spec.base_dir`), like every path a spec names.
    path: str = Field(pattern=LAYOUT_PATH_PATTERN, min_length=1)
    prefix: Prefix | None = None

    PATTERN_MEANINGS: ClassVar[dict[str, str]] = {
        LAYOUT_PATH_PATTERN: "a directory path without ':' or control characters (skopeo splits oci:DIR:REF "
        "at the first ':')"
    }

    def problems(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        if self.path.strip() != self.path:
            yield "the layout path has leading or trailing spaces", ("path",)
