"""mirrorspec's own registry client: the OCI distribution API's reads, and the HTTP transport
every request mirrorspec makes itself goes through (deadlines, retries, a budget per host).

What the rest of mirrorspec uses is re-exported here; the modules say what each part holds.
The client and the transport are loaded on first use (PEP 562): `requests` and urllib3 cost
≈ 80 ms, and the CLI reads constants of this package (`timeouts`, `read_limit`) at start-up,
including for `--help`, which makes no request.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .defaults import BODY_TIMEOUTS, DEFAULT_TIMEOUT, HOST_BUDGET_TIMEOUTS

if TYPE_CHECKING:
    from .client import MANIFEST_ACCEPT, Manifest, RegistryClient
    from .transport import Transport

__all__ = [
    "BODY_TIMEOUTS",
    "DEFAULT_TIMEOUT",
    "HOST_BUDGET_TIMEOUTS",
    "MANIFEST_ACCEPT",
    "Manifest",
    "RegistryClient",
    "Transport",
]

_LAZY = {
    "MANIFEST_ACCEPT": "client",
    "Manifest": "client",
    "RegistryClient": "client",
    "Transport": "transport",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value
