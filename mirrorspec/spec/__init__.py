"""The spec (version 1): what a spec file may say, and loading it so every error has a position.

- `model` — the pydantic models; the parts providers extend (target types, secret reference
  kinds, credential forms) are built at first use from the installed providers.
- `load` — bounded YAML with positions → models → checks; `load_spec`, `parse_spec`.
- `locate` — a validation error's `file:line:col`, breadcrumb and explanation.
- `checks` — what only the whole document shows (unknown credentials, clashing destinations).

Secrets never appear in the spec: credentials are references (`{env: VAR}`, `{file: path}`,
or a kind an installed provider adds), or a provider-native login named by one key; a
literal password is refused without echoing it.
"""

from __future__ import annotations

from typing import Any

from . import load, model
from .load import *  # noqa: F403 (its __all__: the ways in)
from .model import *  # noqa: F403 (its __all__: the models)

# The spec's public names are its modules' own lists, not a third copy of them.
__all__: list[str] = []
__all__ += load.__all__
__all__ += model.__all__

# A name that lived here before the target models moved into their providers: `importers`
# still imports `RegistryTarget` from here. Resolved on first use: the providers import this module.
_MOVED = {"RegistryTarget": "registry"}


def __getattr__(name: str) -> Any:
    if name == "TARGET_TYPES":
        return model.target_types()
    if name in _MOVED:
        return model.target_models()[_MOVED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
