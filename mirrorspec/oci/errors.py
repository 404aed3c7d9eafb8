"""What a registry's answer or a failed request means, as one-line `RegistryError`s.

The registry client's error mapping: a status that is not the one a read wants (403, 429 and
5xx after the transport's retries, with the `CODE: message` of a distribution error body), a
challenge that could not be answered, and a request that failed below HTTP (TLS, timeouts,
refused connections, the transport giving up). Every message names the registry and is
redacted and clipped (`redaction.clip`), so no secret and no hostile megabyte reaches a log.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import requests
import urllib3

from ..errors import RegistryError
from ..redaction import clip
from ..tls_failures import explain_tls_failure
from .timeouts import GaveUp, attempts_note

__all__ = ["ErrorMapper"]

_ERRNO = re.compile(r"\[Errno -?\d+\] ([^)\]'\"]+)")


class ErrorMapper:
    """The `RegistryError`s of one registry client: `host` is named in each; `username`,
    `retries` and `timeout` are the client's, quoted where they explain a failure."""

    def __init__(self, host: str, *, username: str | None, retries: int, timeout: float) -> None:
        self.host = host
        self._username = username
        self._retries = retries
        self._timeout = timeout

    def error(
        self, message: str, *, repository: str | None = None, status: int | None = None
    ) -> RegistryError:
        return RegistryError(
            clip(message),  # redacted before it is cut (redaction.py)
            registry=self.host,
            repository=repository,
            status=status,
        )

    def unauthorized(self, repository: str | None, sent_credentials: bool) -> RegistryError:
        if sent_credentials or self._username is not None:
            return self.error(
                f"unauthorized: check the credentials for {self.host}",
                repository=repository,
                status=401,
            )
        target = f" to read {repository}" if repository else ""
        return self.error(
            f"unauthorized: {self.host} requires credentials{target}; none were given",
            repository=repository,
            status=401,
        )

    def denied(self, repository: str | None, withheld: str | None) -> RegistryError:
        """Access refused after answering every challenge; `withheld` is why the credentials
        were not sent to the token service, if they were not."""
        target = f"pull of {repository}" if repository else "access"
        if withheld is not None:
            who = "anonymous access"
            why = f"the credentials for {self.host} were not sent to its token service ({withheld})"
        else:
            who = f"user {self._username}" if self._username else "anonymous access"
            why = f"check the credentials for {self.host} and that the repository exists"
        return self.error(
            f"unauthorized: {self.host} denied {target} to {who}: {why}", repository=repository, status=401
        )

    def status(self, resp: requests.Response, repository: str | None, what: str) -> RegistryError:
        status = resp.status_code
        detail = ""
        if resp.request.method != "HEAD":
            detail = _error_detail(resp)
        if status == 403:
            message = f"denied: {self.host} refused {what}: check the permissions of the credentials"
        elif status == 429:
            message = (
                f"rate limited by {self.host} (429) on {what} after {self._retries} retries: "
                "retry later or lower the concurrency"
            )
        elif status >= 500:
            message = (
                f"{self.host} failed with {status} on {what} after {self._retries} retries: "
                "the registry is unhealthy, retry later"
            )
        else:
            message = f"{self.host} answered {status} for {what}"
        if detail:
            message += f" ({detail})"
        return self.error(message, repository=repository, status=status)

    def transport(
        self,
        exc: requests.exceptions.RequestException,
        repository: str | None,
        url: str,
        *,
        service: str | None = None,
    ) -> RegistryError:
        target = service or self.host
        if isinstance(exc, GaveUp):
            # Says what timed out, after how many attempts and how long in all, or that the
            # host's budget is spent (mirrorspec.oci.transport); it names the host it waited for.
            message = str(exc) if service is None else f"{service}: {exc}"
        elif isinstance(exc, requests.exceptions.SSLError):
            # The real reason (hostname mismatch, unknown authority, expired...); `insecure` is
            # suggested only when the server answered the handshake in plain HTTP.
            message = explain_tls_failure(str(exc), target) or f"TLS handshake with {target} failed"
        elif _is_timeout(exc):
            # A read that got no byte for a whole timeout, in a body (headers have a deadline).
            message = f"{target} sent no data for {self._timeout:g}s"
        elif isinstance(exc, requests.exceptions.ConnectionError):
            match = _ERRNO.search(str(exc))
            reason = match[1].strip() if match else type(exc).__name__
            message = f"cannot connect to {target}: {reason} ({urlsplit(url).scheme}){attempts_note(exc)}"
        elif isinstance(exc, requests.exceptions.TooManyRedirects):
            message = f"too many redirects from {target}"
        else:
            message = f"request to {target} failed: {type(exc).__name__}"
        return self.error(message, repository=repository)


def _error_detail(resp: requests.Response) -> str:
    """`CODE: message` of the first error in a distribution error body, if any."""
    try:
        raw = resp.raw.read(8192, decode_content=True) if resp.raw is not None else b""
        body = json.loads(raw or resp.content or b"null")
    except (ValueError, requests.exceptions.RequestException, OSError, RuntimeError):
        return ""
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = str(errors[0].get("code", ""))
        text = str(errors[0].get("message", ""))
        return clip(f"{code}: {text}" if code and text else code or text, 160)
    return ""


def _is_timeout(exc: requests.exceptions.RequestException) -> bool:
    if isinstance(exc, requests.exceptions.Timeout):
        return True
    # After the last retry requests reports a read timeout as a plain ConnectionError.
    inner = exc.args[0] if exc.args else None
    reason = inner.reason if isinstance(inner, urllib3.exceptions.MaxRetryError) else inner
    # urllib3 makes NewConnectionError (refused, unresolvable) a ConnectTimeoutError subclass.
    return isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )
