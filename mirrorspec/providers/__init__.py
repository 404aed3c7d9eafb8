"""Providers by target `type:`, discovered through the `mirrorspec.providers` entry points.

Built-in providers are registered in the same entry-point group as third-party ones
(see pyproject.toml), so there is one way in. Loading a provider imports its module only;
cloud SDKs are imported inside the functions that talk to the cloud.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any, cast

from ..errors import MirrorspecError
from .base import Provider

__all__ = ["GROUP", "available", "declared", "get"]

GROUP = "mirrorspec.providers"


@cache
def available() -> dict[str, str]:
    """Target type → module path of every installed provider."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def get(type_name: str) -> Provider:
    """The provider module for a target type, or an error naming what is installed."""
    module_path = available().get(type_name)
    if module_path is None:
        installed = ", ".join(sorted(available())) or "none"
        raise MirrorspecError(
            f"no provider is installed for target type '{type_name}' "
            f"(installed: {installed}); this build of mirrorspec cannot plan such targets yet"
        )
    return cast(Provider, importlib.import_module(module_path))


def declared(name: str) -> list[tuple[str, Any]]:
    """(type, value) of the optional contract attribute `name` for every installed provider
    that defines it, by type name: how the run gathers what providers contribute to shared
    machinery (`CLIENT_FACTORIES`, `SECRET_VARIABLES`) without naming any of them."""
    found = []
    for type_name in sorted(available()):
        value = getattr(get(type_name), name, None)
        if value is not None:
            found.append((type_name, value))
    return found
