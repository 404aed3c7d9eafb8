"""HTTP with a total deadline per request, honest retries and a waiting budget per host.

Every HTTP request mirrorspec makes itself (the registry client in `oci/client.py`, Harbor's REST API,
ACR's token exchange) goes through a `DeadlineAdapter` from one `Transport` per run, which
guarantees three things:

- A **total deadline per attempt**: connecting, the TLS handshake, sending the request and
  receiving the complete response headers take at most `timeout` seconds together, and the
  body then gets `BODY_TIMEOUTS × timeout` of its own. A server that drips one byte a second
  cannot reset it.
- **Honest retries**: a timeout, a refused or reset connection and a 429/5xx answer to a
  request that is safe to repeat are retried here, logged at INFO (`-v`), and the error that
  ends the request says how many attempts it made and how long they took in all
  ("no answer from HOST within 30s (response headers; 3 attempts, 90s in all)"). A timeout
  is retried at most twice and at once (it already waited); other failures back off
  exponentially with jitter, and a 429/503's `Retry-After` is honoured up to 60 s.
- A **budget per host**: once a host has answered nothing useful (timeouts, refusals, 429/5xx
  only) for `HOST_BUDGET_TIMEOUTS × timeout` of wall-clock time, it is given up for the rest
  of the run: every further request to it fails at once with one line saying so, requests in
  flight to it are cut, and a backoff that would outlast the budget ends when it does. Any
  other answer (2xx, 3xx, 4xx) from the host starts its budget afresh.

How the deadline is enforced, and why this way. urllib3 (2.x) and `http.client` only know a
socket timeout, which applies to each `recv` on its own, so a trickle of bytes resets it
forever; `HTTPResponse.read(amt)` also blocks until `amt` bytes have come. The alternatives:

- *Shrinking the socket timeout before every read* to what is left of the deadline: needs a
  hook in every `recv`, and OpenSSL's handshake does its reads in C, where Python's socket
  timeout again applies to each wait on its own, so a dripped handshake stays unbounded.
- *Running each request in a worker thread and abandoning it at the deadline*: the caller
  returns, but the abandoned thread keeps its socket and its place in the pool, and
  thousands of them can pile up against a hostile host.
- *SIGALRM*: main thread only, one timer per process; requests run on worker threads.
- **A reaper thread that shuts the socket down** (chosen): `shutdown(SHUT_RDWR)` makes every
  blocked or future `recv`/`send` on the socket return at once (EOF or EPIPE), in the handshake
  (OpenSSL reads the same descriptor) as anywhere else, and whatever urllib3 was doing fails
  with an ordinary exception, which this module then reports as the timeout it is. One daemon
  thread serves the whole process and sleeps until the earliest deadline.

Ownership, so that the reaper can never cut a connection another request now uses: a pooled
connection is registered with the current attempt (a context variable set around the adapter's
`send`) when the pool hands it out (`_get_conn`) and unregistered when it goes back
(`_put_conn`) or is closed; all of it under the reaper's lock, so once a connection is back in
the pool no cut for the old request can reach it. The reaper holds its own duplicate of the
socket's descriptor, made right after `connect()`: the duplicate refers to the same socket (so
`shutdown` on it cuts the connection, in the TLS handshake too, when urllib3 has not yet stored
the socket anywhere), and since it is ours it is never closed behind our back and then reused by
another file. It is closed with the connection. A connection cut after its response was read
and then returned to the pool is found dead by urllib3's check on the next checkout and
replaced. What the reaper cannot cut: a DNS lookup (`getaddrinfo` blocks in C); the connect
itself is bounded by its socket timeout, set to what is left of the deadline (for each address
a name resolves to). Not covered here: skopeo's own requests, and the AWS and Azure SDKs, which
keep their own timeouts and retries.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

__all__ = [
    "BODY_TIMEOUTS",
    "DEFAULT_TIMEOUT",
    "HOST_BUDGET_TIMEOUTS",
    "BodyTimeout",
    "DeadlineAdapter",
    "GaveUp",
    "HostDown",
    "NoAnswer",
    "Transport",
    "attempts_note",
    "seconds",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
# A body (tag list, manifest, token, an API answer) must arrive within this many timeouts
# (5 minutes by default): 8 MiB in that time is ~220 kbit/s.
BODY_TIMEOUTS = 10
# A host that answered nothing useful for this many timeouts (2 minutes by default) is given
# up for the run. Three attempts of one request that time out (3 × timeout) fit inside it.
HOST_BUDGET_TIMEOUTS = 4
# Attempts for a request whose attempts time out: each already waited a whole timeout.
TIMEOUT_ATTEMPTS = 3
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses whose Retry-After is honoured (RFC 9110 §10.2.3 names 503 and 3xx; RFC 6585 429).
_RETRY_AFTER_STATUSES = frozenset({429, 503})
# A hostile or confused Retry-After (hours) must not stall a whole run.
RETRY_AFTER_CAP = 60.0
BACKOFF_MAX = 30.0

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


# --- per-host state --------------------------------------------------------------------------


@dataclass(eq=False)
class _Host:
    name: str
    budget: float
    timeout: float
    failing_since: float | None = None  # monotonic; None while the host answers
    failure: str = ""  # what the last failure was, for the message
    last_answer: float = float("-inf")
    down: str | None = None  # the one-line message, once given up

    def budget_end(self) -> float:
        return float("inf") if self.failing_since is None else self.failing_since + self.budget

    def give_up(self) -> str:
        """Mark the host down for the run (its attempts in flight are cut); the message."""
        with _REAPER.cond:  # re-entrant: the reaper itself calls this holding it
            if self.down is None:
                self.down = (
                    f"gave up on {self.name} for this run: {self.failure or 'no answer'} for "
                    f"{seconds(self.budget)} (the per-host budget, {HOST_BUDGET_TIMEOUTS} × the "
                    f"{self.timeout:g}s timeout)"
                )
                log.info("%s", self.down)
                _REAPER.cond.notify()
            return self.down


@dataclass(eq=False)
class _Attempt:
    """One attempt of one request: its deadline, how far it got, whether it was cut."""

    host: _Host
    started: float
    at: float  # monotonic deadline of the current stage
    stage: str = CONNECT
    cut: str | None = None  # "deadline" or "budget" once the reaper shut its socket down


_CURRENT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar("mirrorspec_attempt", default=None)


# --- the reaper ------------------------------------------------------------------------------


class _Reaper:
    """The one thread that cuts connections whose attempt passed its deadline or budget."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.RLock())
        self._owned: dict[Any, _Attempt] = {}  # connection -> the attempt that owns it now
        self._thread: threading.Thread | None = None

    # All methods take the lock; they are called from connection and pool hooks.

    def claim(self, conn: Any) -> None:
        attempt = _CURRENT.get()
        if attempt is None:
            return
        with self.cond:
            self._owned[conn] = attempt
            if conn.sock is not None:  # a kept-alive connection: the request goes out at once
                attempt.stage = HEADERS
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mirrorspec-reaper", daemon=True)
                self._thread.start()
            self.cond.notify()

    def release(self, conn: Any) -> None:
        with self.cond:
            self._owned.pop(conn, None)

    def before_connect(self, conn: Any) -> None:
        """The connect's own socket timeout is what is left of the deadline."""
        with self.cond:
            attempt = self._owned.get(conn)
            if attempt is None:
                return
            attempt.stage = CONNECT
            left = _effective(attempt) - time.monotonic()
        if left <= 0:
            raise urllib3.exceptions.ConnectTimeoutError(
                conn, f"deadline passed before connecting to {conn.host}"
            )
        current = conn.timeout
        conn.timeout = min(current, left) if isinstance(current, (int, float)) else left

    def connected(self, conn: Any, sock: socket.socket, stage: str) -> None:
        cutter = sock.dup()  # see the module docstring: ours, so never reused behind our back
        with self.cond:
            old, conn._mirrorspec_cutter = getattr(conn, "_mirrorspec_cutter", None), cutter
            attempt = self._owned.get(conn)
            if attempt is not None:
                attempt.stage = stage
                if attempt.cut is not None:  # cut while connecting: nothing to wait for
                    _shutdown(cutter)
        if old is not None:
            old.close()

    def stage(self, conn: Any, stage: str) -> None:
        with self.cond:
            attempt = self._owned.get(conn)
            if attempt is not None:
                attempt.stage = stage

    def closing(self, conn: Any) -> None:
        with self.cond:
            self._owned.pop(conn, None)
            cutter, conn._mirrorspec_cutter = getattr(conn, "_mirrorspec_cutter", None), None
        if cutter is not None:
            cutter.close()

    def extend(self, attempt: _Attempt, at: float, stage: str) -> None:
        with self.cond:
            attempt.at, attempt.stage = at, stage
            self.cond.notify()

    def _run(self) -> None:
        with self.cond:
            while True:
                now = time.monotonic()
                wake = float("inf")
                for conn, attempt in list(self._owned.items()):
                    at = _effective(attempt)
                    if at > now:
                        wake = min(wake, at)
                        continue
                    budget = attempt.host.down is not None or attempt.host.budget_end() <= attempt.at
                    if budget:
                        attempt.host.give_up()
                    attempt.cut = "budget" if budget else "deadline"
                    del self._owned[conn]
                    cutter = getattr(conn, "_mirrorspec_cutter", None)
                    if cutter is not None:
                        _shutdown(cutter)
                self.cond.wait(None if wake == float("inf") else max(0.0, wake - now) + 0.001)


def _effective(attempt: _Attempt) -> float:
    if attempt.host.down is not None:
        return float("-inf")
    return min(attempt.at, attempt.host.budget_end())


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer, or never connected
        sock.shutdown(socket.SHUT_RDWR)


_REAPER = _Reaper()


class _HTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        _REAPER.before_connect(self)
        sock = super()._new_conn()
        _REAPER.connected(self, sock, HEADERS)
        return sock

    def close(self) -> None:
        _REAPER.closing(self)
        super().close()


class _HTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        _REAPER.before_connect(self)
        sock = super()._new_conn()
        _REAPER.connected(self, sock, TLS)
        return sock

    def connect(self) -> None:
        super().connect()
        _REAPER.stage(self, HEADERS)

    def close(self) -> None:
        _REAPER.closing(self)
        super().close()


class _HTTPPool(HTTPConnectionPool):
    """A connection belongs to the current attempt from checkout (`_get_conn`) to return."""

    ConnectionCls: type[HTTPConnection] = _HTTPConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        _REAPER.claim(conn)
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            _REAPER.release(conn)
        super()._put_conn(conn)


# The same hooks over HTTPS: the MRO puts them in front of HTTPSConnectionPool's own.
class _HTTPSPool(_HTTPPool, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Response(requests.Response):
    """A response whose body reading reports a cut as the timeout it is.

    A body cut at its deadline ends in urllib3's "Connection broken" or, for a body delimited
    by the connection's end, in a short body that looks complete: both become `BodyTimeout`
    (or `HostDown`) here, for callers that stream and for requests' own `.content`."""

    attempts: int = 1  # how many attempts this answer took (retried 429/5xx included)
    _mirrorspec_attempt: _Attempt | None = None
    _mirrorspec_body_timeout: float = 0.0

    def iter_content(self, chunk_size: int | None = 1, decode_unicode: bool = False) -> Iterator[Any]:
        inner = super().iter_content(chunk_size, decode_unicode)
        attempt = self._mirrorspec_attempt
        if attempt is None:
            return inner

        def guarded() -> Iterator[Any]:
            try:
                yield from inner
            except requests.exceptions.RequestException as exc:
                if attempt.cut is not None:
                    raise self._cut_error() from exc
                raise
            if attempt.cut is not None:
                raise self._cut_error()

        return guarded()

    def _cut_error(self) -> GaveUp:
        attempt = self._mirrorspec_attempt
        assert attempt is not None
        if attempt.cut == "budget":
            return HostDown(attempt.host.give_up(), request=self.request, response=self)
        method = self.request.method if self.request is not None else "GET"
        path = urlsplit(self.url).path
        return BodyTimeout(
            f"the answer to {method} {path} from {attempt.host.name} did not arrive within "
            f"{seconds(self._mirrorspec_body_timeout)}",
            request=self.request,
            response=self,
        )


# --- the run's transport -------------------------------------------------------------------------


@dataclass
class Transport:
    """One run's timeouts and host budgets, shared by every client of the run.

    `timeout`: seconds for connect + TLS + response headers of one attempt; a body gets
    `BODY_TIMEOUTS` times that; a host that answers nothing useful for `HOST_BUDGET_TIMEOUTS`
    times that is given up for the run."""

    timeout: float = DEFAULT_TIMEOUT
    _hosts: dict[str, _Host] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, not {self.timeout!r}")

    @property
    def body_timeout(self) -> float:
        return BODY_TIMEOUTS * self.timeout

    @property
    def host_budget(self) -> float:
        return HOST_BUDGET_TIMEOUTS * self.timeout

    def adapter(
        self,
        *,
        retries: int = 5,
        backoff: float = 0.5,
        methods: frozenset[str] = frozenset({"GET", "HEAD"}),
        statuses: frozenset[int] = RETRY_STATUSES,
        pool_connections: int = 10,
        pool_maxsize: int = 10,
    ) -> DeadlineAdapter:
        """An adapter to mount on a `requests.Session` for http:// and https://."""
        return DeadlineAdapter(
            self,
            retries=retries,
            backoff=backoff,
            methods=methods,
            statuses=statuses,
            pool_connections=pool_connections,
            pool_maxsize=pool_maxsize,
        )

    def host(self, url: str) -> _Host:
        name = urlsplit(url).netloc.lower()
        with _REAPER.cond:
            host = self._hosts.get(name)
            if host is None:
                host = self._hosts[name] = _Host(name, self.host_budget, self.timeout)
            return host

    # Host bookkeeping, under the reaper's lock (the reaper reads it).

    def _check(self, host: _Host) -> None:
        with _REAPER.cond:
            if host.down is None and time.monotonic() < host.budget_end():
                return
            message = host.give_up()
        raise HostDown(message)

    def _answered(self, host: _Host) -> None:
        with _REAPER.cond:
            host.last_answer = time.monotonic()
            host.failing_since = None

    def _failed(self, host: _Host, started: float, failure: str) -> None:
        """An attempt begun at `started` got no useful answer: the host has been failing since
        then, unless it answered another request after that."""
        with _REAPER.cond:
            since = max(started, host.last_answer)
            if host.failing_since is None or since < host.failing_since:
                host.failing_since = since
            host.failure = failure
            _REAPER.cond.notify()  # in-flight attempts may now have an earlier end

    def _pause(self, host: _Host, wait: float) -> None:
        """Sleep `wait` seconds, or until the host's budget ends (then `HostDown`)."""
        with _REAPER.cond:
            end = host.budget_end()
        now = time.monotonic()
        if now + wait >= end:
            time.sleep(max(0.0, end - now))
            self._check(host)
        time.sleep(wait)


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter with the deadlines, retries and host budget of a `Transport`.

    The `timeout` a caller passes to requests is ignored: the transport's applies. Requests
    whose method is in `methods` are retried on timeouts, broken connections and `statuses`;
    any request is retried when its connection could not be made (nothing was sent yet)."""

    def __init__(
        self,
        transport: Transport,
        *,
        retries: int,
        backoff: float,
        methods: frozenset[str],
        statuses: frozenset[int],
        pool_connections: int,
        pool_maxsize: int,
    ) -> None:
        self._transport = transport
        self._retries = retries
        self._backoff = backoff
        self._methods = methods
        self._statuses = statuses
        # No retries inside urllib3: they are ours, counted and bounded (requests' default
        # is Retry(0, read=False): errors come out as they are).
        super().__init__(pool_connections=pool_connections, pool_maxsize=pool_maxsize, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = super().build_response(req, resp)
        response.__class__ = _Response
        return response

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        transport = self._transport
        host = transport.host(request.url or "")
        method = (request.method or "GET").upper()
        began = time.monotonic()
        attempts = timeouts = 0
        while True:
            attempts += 1
            transport._check(host)
            now = time.monotonic()
            attempt = _Attempt(host, started=now, at=now + transport.timeout)
            token = _CURRENT.set(attempt)
            error: requests.exceptions.RequestException | None = None
            try:
                response = super().send(
                    request,
                    stream=stream,
                    timeout=transport.timeout,
                    verify=verify,
                    cert=cert,
                    proxies=proxies,
                )
            except requests.exceptions.RequestException as exc:
                error = exc
            finally:
                _CURRENT.reset(token)
            if error is None and attempt.cut is not None:
                response.close()  # the headers came just as the deadline passed: too late
                error = requests.exceptions.ReadTimeout("cut at the deadline", request=request)
            if error is not None:
                if attempt.cut == "budget" or host.down is not None:
                    raise HostDown(host.give_up(), request=request) from error
                kind = _kind(error, attempt)
                if kind == "tls" or kind == "other":
                    _count(error, attempts, began)
                    raise error
                timed_out = kind == "timeout"
                failure = "no answer" if timed_out else "connections failing"
                transport._failed(host, attempt.started, failure)
                timeouts += timed_out
                sent = attempt.stage in (HEADERS, BODY)
                retry = attempts <= self._retries and (not sent or method in self._methods)
                if timed_out and timeouts >= TIMEOUT_ATTEMPTS:
                    retry = False
                if not retry:
                    if timed_out:
                        raise NoAnswer(
                            f"no answer from {host.name} within {transport.timeout:g}s "
                            f"({attempt.stage}; {_attempts(attempts)}, "
                            f"{seconds(time.monotonic() - began)} in all)",
                            request=request,
                        ) from error
                    _count(error, attempts, began)
                    raise error
                # A timeout already waited a whole timeout: try again at once.
                wait = 0.0 if timed_out else self._backoff_for(attempts)
                what = f"no answer within {transport.timeout:g}s ({attempt.stage})" if timed_out else kind
                log.info(
                    "%s %s: %s; attempt %d in %s", method, request.url, what, attempts + 1, seconds(wait)
                )
                transport._pause(host, wait)
                continue
            status = response.status_code
            if status not in self._statuses:
                transport._answered(host)
                break
            transport._failed(host, attempt.started, f"only {status} answers")
            if attempts > self._retries or method not in self._methods:
                break
            wait = self._backoff_for(attempts)
            if status in _RETRY_AFTER_STATUSES:
                wait = _retry_after(response.headers.get("Retry-After"), wait)
            log.info(
                "%s %s: %s answered %d; attempt %d in %s",
                method,
                request.url,
                host.name,
                status,
                attempts + 1,
                seconds(wait),
            )
            response.close()
            transport._pause(host, wait)
        _REAPER.extend(attempt, time.monotonic() + transport.body_timeout, BODY)
        assert isinstance(response, _Response)
        response.attempts = attempts
        response._mirrorspec_attempt = attempt
        response._mirrorspec_body_timeout = transport.body_timeout
        return response

    def _backoff_for(self, attempts: int) -> float:
        wait = self._backoff * 2.0 ** (attempts - 1) + random.uniform(0, self._backoff)
        return min(wait, BACKOFF_MAX)


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _count(error: BaseException, attempts: int, began: float) -> None:
    error.attempts = attempts  # type: ignore[attr-defined]
    error.elapsed = time.monotonic() - began  # type: ignore[attr-defined]


def _reason(error: BaseException) -> BaseException | None:
    inner = error.args[0] if error.args else None
    if isinstance(inner, urllib3.exceptions.MaxRetryError):
        return inner.reason
    return inner if isinstance(inner, BaseException) else None


def _kind(error: requests.exceptions.RequestException, attempt: _Attempt) -> str:
    """timeout, connect (nothing sent), tls, broken (after sending) or other."""
    if attempt.cut is not None or isinstance(
        error, (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout)
    ):
        return "timeout"
    reason = _reason(error)
    # urllib3 makes NewConnectionError (refused, unresolvable) a ConnectTimeoutError subclass.
    if isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
        reason, urllib3.exceptions.NewConnectionError
    ):
        return "timeout"
    if isinstance(error, requests.exceptions.SSLError):
        return "tls"
    if isinstance(error, requests.exceptions.ConnectionError):
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            return "connect"
        if attempt.stage == TLS:
            return "tls"  # a hang-up in the handshake: a plain-HTTP server, say; no retry
        return "broken"
    return "other"


def _retry_after(value: str | None, default: float) -> float:
    if not value:
        return default
    try:
        wait = float(Retry().parse_retry_after(value))
    except urllib3.exceptions.InvalidHeader:
        return default
    return min(max(wait, 0.0), RETRY_AFTER_CAP)
