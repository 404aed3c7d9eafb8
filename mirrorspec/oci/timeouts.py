"""What a timeout is in mirrorspec's HTTP, and the errors that say a wait was given up.

The defaults of the run's `--timeout` and what is measured in it (`BODY_TIMEOUTS`,
`HOST_BUDGET_TIMEOUTS`), the stages of one attempt that a message names, and the `GaveUp`
family of exceptions, whose `str()` is the whole one-line explanation. Shared by the reaper
that enforces the deadlines (`reaper.py`) and the transport that retries (`transport.py`).
"""

from __future__ import annotations

import requests

# Re-exported from `defaults`, where the CLI reads them without importing `requests`.
from .defaults import BODY_TIMEOUTS, DEFAULT_TIMEOUT, HOST_BUDGET_TIMEOUTS

__all__ = [
    "BODY",
    "BODY_TIMEOUTS",
    "CONNECT",
    "DEFAULT_TIMEOUT",
    "HEADERS",
    "HOST_BUDGET_TIMEOUTS",
    "TLS",
    "BodyTimeout",
    "GaveUp",
    "HostDown",
    "NoAnswer",
    "attempts_note",
    "seconds",
]

# The stages of one attempt, as a message names the one that timed out.
CONNECT = "TCP connect"
TLS = "TLS handshake"
HEADERS = "response headers"
BODY = "body"


class GaveUp(requests.exceptions.Timeout):
    """The transport gave up waiting; `str()` is the whole one-line explanation.

    A `Timeout` (never a `ConnectionError`), so that no caller mistakes it for a TLS or
    plain-HTTP symptom, and code that already handles timeouts handles it."""


class NoAnswer(GaveUp):
    """Every attempt of a request timed out (connect, TLS handshake or response headers)."""


class BodyTimeout(GaveUp):
    """A response body did not arrive within its own deadline."""


class HostDown(GaveUp):
    """The host's budget is spent: it is given up for the rest of the run."""


def seconds(value: float) -> str:
    """`90s`, `5.2s`, `0.2s`: a duration as a message shows it."""
    return f"{value:.0f}s" if value >= 10 else f"{value:.1f}s".replace(".0s", "s")


def attempts_note(exc: BaseException) -> str:
    """` (3 attempts, 12s in all)` for an error the adapter retried, else ``."""
    attempts = getattr(exc, "attempts", 1)
    if not isinstance(attempts, int) or attempts < 2:
        return ""
    return f" ({attempts} attempts, {seconds(float(getattr(exc, 'elapsed', 0.0)))} in all)"
