"""What went wrong in a skopeo copy, read from its stderr, and whether a retry may fix it.

skopeo's error text is the only thing it gives us: logrus lines, `level=error msg="…"`,
Go-quoted; the last error is the one that ended the copy. Transient failures (connection
reset/refused, timeouts, 5xx, 429 — in the words Go's net/http and containers/image put in
their errors) are worth another attempt (`schedule` retries them); authentication,
authorisation, unknown manifests and anything unrecognised are not: retrying cannot fix them.
"""

from __future__ import annotations

import re

from ..credentials import redact
from ..tls_failures import explain_tls_failure

__all__ = ["copy_failure", "is_throttled", "is_transient"]

_FAILURE = re.compile(r'level=(?:fatal|error)\s+msg="((?:[^"\\]|\\.)*)"')

# Failures that another attempt can fix: the network or an overloaded registry. Texts are
# those Go's net/http and containers/image 5.22 (skopeo 1.9.3) put in their errors.
_TRANSIENT = re.compile(
    r"connection reset|connection refused|broken pipe|unexpected EOF|\bEOF\b|i/o timeout"
    r"|TLS handshake timeout|timeout awaiting response headers|context deadline exceeded"
    r"|Client\.Timeout exceeded|server closed idle connection|http2: server sent GOAWAY"
    r"|use of closed network connection|network is unreachable|no route to host"
    r"|HTTP status: 5\d\d|StatusCode: 5\d\d|\b50[0234] \(?(?:Internal Server Error|Bad Gateway"
    r"|Service Unavailable|Gateway Timeout)|\bunavailable:|(?:HTTP status: |StatusCode: )429\b"
    r"|too ?many ?requests",
    re.IGNORECASE,
)
# A bare "429" could be the end of a digest: only a status or the reason phrase counts.
_THROTTLED = re.compile(r"(?:HTTP status: |StatusCode: )429\b|too ?many ?requests", re.IGNORECASE)
# Failures no retry can fix; they win over a transient-looking word in the same message.
_PERMANENT = re.compile(
    r"unauthorized|authentication required|denied|forbidden|StatusCode: 40[134]\b"
    r"|HTTP status: 40[134]\b|manifest unknown|name unknown|not found|invalid reference"
    r"|x509:|certificate|no such host|unsupported",
    re.IGNORECASE,
)


def is_transient(error: str) -> bool:
    """Whether another attempt may succeed where skopeo failed with `error`."""
    return bool(_TRANSIENT.search(error)) and not _PERMANENT.search(error)


def is_throttled(error: str) -> bool:
    """Whether the registry answered 429 (Too Many Requests)."""
    return bool(_THROTTLED.search(error))


def copy_failure(returncode: int, stderr: str) -> tuple[str | None, bool]:
    """What a finished skopeo copy came to: (error or None, whether the error is worth
    another attempt)."""
    # Redacted whole, before anything is picked out or cut: a registry may have echoed our
    # Authorization header into the message skopeo prints.
    stderr = redact(stderr)
    failures = _FAILURE.findall(stderr)
    if returncode != 0 or failures:
        # skopeo logs Go-quoted messages; the last error is the one that ended the copy.
        detail = _go_unquote(failures[-1]) if failures else _last_line(stderr)
        # A TLS failure in Go's words becomes its real reason (never a hint to go insecure).
        reason = explain_tls_failure(detail) or detail
        return redact(f"skopeo exited {returncode}: {reason}"), is_transient(detail)
    return None, False


_GO_ESCAPE = re.compile(r'\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[abfnrtv\\"\'])')
_GO_SHORT = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _go_unquote(text: str) -> str:
    """The message logrus quoted with Go's strconv.Quote rules, as the registry or skopeo
    wrote it (a registry's `\\` would otherwise reach the user doubled). Control
    characters stay escaped."""

    def one(match: re.Match[str]) -> str:
        escape = match[1]
        char = chr(int(escape[1:], 16)) if escape[0] in "xuU" else _GO_SHORT.get(escape, escape)
        # a control character stays escaped: the message must remain one line
        return char if char.isprintable() else match[0]

    return _GO_ESCAPE.sub(one, text)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no output"
