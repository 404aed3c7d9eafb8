"""One registry's HTTP: the session, the https → http probe, redirects, bodies read with a limit.

Registry and library behaviour that shaped this module (sources in the research notes):

- `Authorization` must never cross a host boundary on redirects (blob downloads are commonly
  redirected to object storage). requests drops it when host, port or scheme changes; redirects
  are followed here, by the same rule (`_same_origin`), and stop after 10 hops.
- A registry's answers are untrusted input: every request is streamed, and a body is read only
  by the caller that wants it, with a limit (`RegistrySession.read_limited`) and a deadline.
- This machine (and CI) sets `REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE`, which silently override
  `Session.verify` (testbed.md §0.1): the session ignores the environment and every request
  passes `verify=` itself.
- An HTTPS request to a plain-HTTP registry fails in the TLS handshake (wrong version number),
  and a plain-HTTP request to a TLS port gets 400 (testbed.md §2.1); with `insecure=True` the
  session probes https first and falls back to http once, remembering the answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from .._version import __version__
from ..errors import RegistryError
from .errors import ErrorMapper
from .timeouts import BodyTimeout
from .transport import Transport

__all__ = ["RegistrySession"]

_MAX_REDIRECTS = 10
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = f"mirrorspec/{__version__}"


def _speaks_plain_http(exc: requests.exceptions.ConnectionError) -> bool:
    """Whether an https attempt failed the way a plain-HTTP server makes it fail: a handshake
    error (it answered the ClientHello with an HTTP 400, "wrong version number") or a hang-up."""
    if isinstance(exc, requests.exceptions.SSLError):
        return True
    inner = exc.args[0] if exc.args else None
    reason = inner.reason if isinstance(inner, urllib3.exceptions.MaxRetryError) else inner
    return isinstance(reason, urllib3.exceptions.ProtocolError)


class _Session(requests.Session):
    """A session that never touches a redirect's body.

    Even with `allow_redirects=False`, `Session.send` runs `resolve_redirects` once to set
    `Response.next`, and that reads the whole redirect body into memory (requests 2.32):
    an endless 302 body would fill it. `RegistrySession.send_raw` follows redirects itself.
    """

    def resolve_redirects(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(())


def _same_origin(old: str, new: str) -> bool:
    """Whether credentials for `old` may follow a redirect to `new` (requests' rule: same host,
    and same scheme and port, or an http → https upgrade on the default ports)."""
    a, b = urlsplit(old), urlsplit(new)
    if a.hostname != b.hostname:
        return False
    if a.scheme == "http" and b.scheme == "https":
        return a.port in (None, 80) and b.port in (None, 443)
    default = {"http": 80, "https": 443}
    return a.scheme == b.scheme and (a.port or default.get(a.scheme)) == (b.port or default.get(b.scheme))


class RegistrySession:
    """HTTP to one registry's API host through the run's transport; safe to share between
    threads. Errors are `RegistryError`s built by `errors` (which names the registry)."""

    def __init__(
        self,
        api_host: str,
        *,
        errors: ErrorMapper,
        transport: Transport,
        insecure: bool,
        ca_bundle: str | None,
        retries: int,
        backoff: float,
        pool_size: int,
    ) -> None:
        self.host = errors.host
        self.api_host = api_host
        self._errors = errors
        self._transport = transport
        self._verify: bool | str = False if insecure else (ca_bundle or True)
        # None = not probed yet; only an insecure client may end up on plain http.
        self._scheme: str | None = None if insecure else "https"
        self._lock = threading.Lock()
        if insecure:
            # The user opted out of verification; urllib3 would warn on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

        session = _Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE & co. would override verify=
        session.headers["User-Agent"] = _USER_AGENT
        # Timeouts, broken connections and 429/5xx are retried by the adapter, counted and
        # bounded by the deadline and the host's budget; TLS failures are not retried. The
        # last 429/5xx answer comes back as it is and becomes a RegistryError with its status.
        adapter = transport.adapter(
            retries=retries,
            backoff=backoff,
            methods=frozenset({"GET", "HEAD"}),
            pool_connections=4,
            pool_maxsize=pool_size,
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        self._session = session

    @property
    def timeout(self) -> float:
        """The run's timeout: connect + TLS + response headers of one attempt."""
        return self._transport.timeout

    @property
    def scheme(self) -> str | None:
        """`https` or `http` once known; None while an insecure registry is not probed yet."""
        with self._lock:
            return self._scheme

    def close(self) -> None:
        self._session.close()

    def exchange(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        repository: str | None,
        body: bytes | None = None,
    ) -> requests.Response:
        """`path` on the API host (or an absolute URL); failures become `RegistryError`s. An
        insecure registry not probed yet is asked over https first, and over http once if the
        handshake failed the way a plain-HTTP server makes it fail; the answer is remembered."""
        if path.startswith(("http://", "https://")):
            return self.send(method, path, headers, repository, body)
        scheme = self._scheme
        if scheme is not None:
            return self.send(method, f"{scheme}://{self.api_host}{path}", headers, repository, body)
        try:
            resp = self.send_raw(method, f"https://{self.api_host}{path}", headers, body)
            scheme = "https"
        except requests.exceptions.ConnectionError as exc:  # SSLError included
            if not _speaks_plain_http(exc):
                # Refused or slow is not "speaks plain HTTP": a second try over http would
                # only double the wait, and could downgrade a TLS registry.
                raise self._errors.transport(exc, repository, f"https://{self.api_host}{path}") from exc
            resp = self.send(method, f"http://{self.api_host}{path}", headers, repository, body)
            scheme = "http"
        except requests.exceptions.RequestException as exc:
            raise self._errors.transport(exc, repository, f"https://{self.api_host}{path}") from exc
        with self._lock:
            self._scheme = scheme
        return resp

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        repository: str | None,
        body: bytes | None = None,
    ) -> requests.Response:
        """`send_raw`, its failures as `RegistryError`s about `repository`."""
        try:
            return self.send_raw(method, url, headers, body)
        except requests.exceptions.RequestException as exc:
            raise self._errors.transport(exc, repository, url) from exc

    def send_raw(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None
    ) -> requests.Response:
        """One request (with `body`, if any), redirects followed here rather than by requests.

        Always streamed: a body is read only by the caller that wants it, with a limit, so a
        hostile answer (a 401 or a tag list of gigabytes) cannot fill memory. requests would
        read every redirect's body whole before following it; here a redirect is closed after
        at most a small, quick read of its body (`DeadlineResponse.drain`, which keeps the
        connection for the next request). `Authorization` is dropped when a redirect leaves
        the origin, as requests does.
        """
        headers = dict(headers)
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                resp = self._session.request(
                    method,
                    url,
                    headers=headers,
                    data=body,
                    verify=self._verify,
                    stream=True,  # the deadlines are the transport's (connect + headers, then body)
                    allow_redirects=False,
                )
            except requests.exceptions.RequestException:
                raise
            except OSError as exc:
                # requests opens a ca-bundle path itself and fails with a bare OSError ("Could
                # not find a suitable TLS CA certificate bundle") if it vanished since it was
                # checked: say which file, in one line.
                reason = exc.strerror or "cannot be read"
                raise self._errors.error(
                    f"cannot use ca-bundle {self._verify} for {self.host}: {reason}"
                ) from None
            location = resp.headers.get("Location")
            if resp.status_code not in _REDIRECT_STATUSES or not location:
                return resp
            resp.close()
            target = urljoin(resp.url, location)
            if not _same_origin(url, target):
                headers.pop("Authorization", None)
            if resp.status_code == 303 and method != "HEAD":
                method, body = "GET", None
            url = target
        raise requests.exceptions.TooManyRedirects(f"more than {_MAX_REDIRECTS} redirects")

    def read_limited(
        self, resp: requests.Response, max_bytes: int, repository: str | None, what: str
    ) -> bytes:
        """The body of `resp`, refused above `max_bytes` or after the transport's body deadline;
        `what` names it in the error."""

        def too_big() -> RegistryError:
            return self._errors.error(
                f"{what} on {self.host} is larger than max_bytes={max_bytes}",
                repository=repository,
            )

        length = resp.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > max_bytes:
            raise too_big()
        chunks: list[bytes] = []
        size = 0

        def late() -> RegistryError:
            return self._errors.error(
                f"{what} from {self.host} did not arrive within {self._transport.body_timeout:g}s "
                f"({size} bytes so far)",
                repository=repository,
            )

        # A socket's read timeout restarts with every byte: a server sending one byte a second
        # would never time out. The transport gives the whole body a deadline of its own and
        # cuts the connection when it passes (a read blocked on a 64 KiB chunk returns then);
        # the check below is the same deadline seen from here.
        deadline = time.monotonic() + self._transport.body_timeout
        try:
            # Counted as it arrives too: Content-Length may be absent (chunked) or encoded.
            for chunk in resp.iter_content(chunk_size=65536):
                size += len(chunk)
                if size > max_bytes:
                    raise too_big()
                if time.monotonic() > deadline:
                    raise late()
                chunks.append(chunk)
        except BodyTimeout as exc:
            raise late() from exc
        except requests.exceptions.RequestException as exc:
            raise self._errors.transport(exc, repository, resp.url) from exc
        return b"".join(chunks)
