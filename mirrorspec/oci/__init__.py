"""mirrorspec's own registry client: the OCI distribution API's reads, and the HTTP transport
every request mirrorspec makes itself goes through (deadlines, retries, a budget per host).

What the rest of mirrorspec uses is re-exported here; the modules say what each part holds.
"""

from __future__ import annotations

from .client import MANIFEST_ACCEPT, Manifest, RegistryClient
from .timeouts import BODY_TIMEOUTS, DEFAULT_TIMEOUT, HOST_BUDGET_TIMEOUTS
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
