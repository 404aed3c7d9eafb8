"""Any OCI registry (`type: registry`): no native replication, so everything is copied.

Example target block (loaded by the provider contract tests):

```yaml
- name: lab
  type: registry
  registry: internal-registry.example.com
  prefix: mirror
  credentials: lab-push        # optional; username + password references
  # insecure: true             # plain HTTP or unverified TLS, shown in every plan
  # ca-bundle: certs/internal-ca.pem
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import base
from .target import RegistryTarget

if TYPE_CHECKING:  # named in signatures only: the spec loads this package for `Target`
    from ...context import Endpoint, RunContext

# For run time only: mypy reads the public names instead (see `providers/conformance.py`).
if not TYPE_CHECKING:
    __all__ = [*base.CONTRACT]

Target = RegistryTarget
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "observe": ("pull",),
    "apply": ("pull", "push"),
}
IN_PLACE: dict[str, tuple[str, ...]] = {}
SUPPORT_KINDS: tuple[str, ...] = ()

cached = base.nothing_cached
translate = base.nothing_native
observe = base.no_observe
check = base.no_check
copy = base.no_copy
apply = base.no_apply


def capabilities(target: Any) -> base.Capabilities:
    return base.Capabilities()


def endpoint(target: Any, ctx: RunContext) -> Endpoint:
    return ctx.reach(
        ctx.endpoint(
            target.registry,
            credentials=target.credentials,
            insecure=target.insecure,
            ca_bundle=target.ca_bundle,
        )
    )
