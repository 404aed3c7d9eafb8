"""A provider package's contract, loaded module by module at first use (PEP 562).

Every run loads every installed provider: the spec's target union and its credential kinds
come from each provider's `Target`, `SECRET_REFERENCES` and `CREDENTIAL_FORMS`. A package
imports those at once and serves the rest of its contract (translate, observe, apply, the
API edges) from the `__getattr__` this module builds, so `validate` pays for no provider's
planning code (≈ 80 ms for the three built-in ones; bench/run.py, B5). The package also
imports those names under `if TYPE_CHECKING:`, so that mypy checks it against
`base.Provider` as before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from typing import Any

__all__ = ["contract_loader"]


def contract_loader(package: str, modules: Mapping[str, Sequence[str]]) -> Callable[[str], Any]:
    """The module `__getattr__` of `package` serving each name of `modules` (submodule → the
    names it defines) from its submodule, imported at the first access to one of its names."""
    home = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # once loaded, an ordinary attribute
        return value

    return __getattr__
