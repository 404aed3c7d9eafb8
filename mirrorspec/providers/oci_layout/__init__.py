"""An OCI image layout directory (`type: oci-layout`): the near side of an air gap.

Example target block (loaded by the provider contract tests):

```yaml
- name: airgap
  type: oci-layout
  path: airgap-layout          # a directory, relative to the spec file; created when missing
  # prefix: mirror             # as for a registry: prepended to every repository path
  # archive: airgap.tar        # also written as one tar after each apply (streamed)
```

Every selected artifact (images, charts, their dependencies, chart images, signatures and
referrers) is copied into the directory with skopeo, digests preserved, blobs shared, each
manifest recorded in `index.json` as `<destination path>:<tag>` (`<path>@<digest>` for an
untagged referrer) — the destination path a registry target would give it, host segment
included under `layout: scoped`. There is nothing native: it is a copy-only target, and the
engine copies into it (`endpoint()` gives the directory as `Endpoint.layout`; see
`skopeo/layout_copy.py`). A plan lists references that are missing or name another digest;
`audit --content` hashes every blob each wanted reference reaches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import base

# Nothing native, as for any registry: the same no-op contract, so the two cannot drift apart.
from ..registry import (
    IN_PLACE as IN_PLACE,
    SUPPORT_KINDS as SUPPORT_KINDS,
    apply as apply,
    cached as cached,
    capabilities as capabilities,
    check as check,
    copy as copy,
    observe as observe,
    translate as translate,
)
from .target import OciLayoutTarget

if TYPE_CHECKING:  # named in signatures only: the spec loads this package for `Target`
    from ...context import Endpoint, RunContext

# For run time only: mypy reads the public names instead (see `providers/conformance.py`).
if not TYPE_CHECKING:
    __all__ = [*base.CONTRACT]

Target = OciLayoutTarget
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "observe": ("read the directory",),
    "apply": ("read and write the directory",),
}


def endpoint(target: Any, ctx: RunContext) -> Endpoint:
    """The directory, absolute (`Endpoint.layout`); plans show it as `oci:<path>`."""
    from ...context import Endpoint  # not at import: the spec loads this package

    directory = (ctx.spec.base_dir / target.path).absolute()
    return Endpoint(f"oci:{target.path}", layout=str(directory))
