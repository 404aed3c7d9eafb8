"""Importing a cloud SDK that is an optional extra (`pip install 'mirrorspec[<extra>]'`), so that a
missing one is a one-line error naming the extra to install instead of a traceback.

SDKs are imported only when a run reaches a target that needs them (a plain registry user
installs neither); the extras are declared in pyproject.toml.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MirrorspecError

__all__ = ["import_sdk"]


def import_sdk(module: str, *, extra: str, what: str) -> ModuleType:
    """`module`, imported; or a `MirrorspecError` saying `what` is missing and which extra has it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MirrorspecError(
            f"{what} is not installed ({module} cannot be imported): pip install 'mirrorspec[{extra}]'"
        ) from None
