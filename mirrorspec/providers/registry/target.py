"""The `type: registry` block of a spec: any OCI registry, reached with the registry API only."""

from __future__ import annotations

from typing import Literal

from ...spec import Host, Prefix, TargetBase

__all__ = ["RegistryTarget"]


class RegistryTarget(TargetBase):
    """Any OCI registry: mirrored by copying with skopeo."""

    type: Literal["registry"]
    registry: Host
    prefix: Prefix | None = None
    credentials: str | None = None
    insecure: bool = False
    ca_bundle: str | None = None
