"""How a request's deadline and its host's budget are enforced: the reaper thread that cuts a
connection in time, and the connection, pool and response classes that report to it.

`transport.py` decides what the deadlines and budgets are; this module makes them hold. Why
this way: urllib3 (2.x) and `http.client` only know a
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
a name resolves to).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .timeouts import (
    CONNECT,
    HEADERS,
    HOST_BUDGET_TIMEOUTS,
    TLS,
    BodyTimeout,
    GaveUp,
    HostDown,
    seconds,
)

__all__ = ["CURRENT_ATTEMPT", "REAPER", "Attempt", "DeadlineResponse", "HTTPPool", "HTTPSPool", "Host"]

log = logging.getLogger(__name__)

# What is left of a body nobody wants (a HEAD's, a 401's, a 404's, a redirect's) is read and
# thrown away, so that the connection goes back to the pool, if it is at most this long and
# arrives within this time; otherwise the connection is closed, as before. Honest registries
# send such bodies (none, or a JSON error of a few hundred bytes) with the headers.
DRAIN_MAX_BYTES = 64 * 1024
DRAIN_SECONDS = 1.0


# --- per-host state --------------------------------------------------------------------------


@dataclass(eq=False)
class Host:
    """One host's budget in a run: since when it has answered nothing useful, and the message
    once it is given up (`Transport` keeps the books, the reaper cuts)."""

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
        with REAPER.cond:  # re-entrant: the reaper itself calls this holding it
            if self.down is None:
                self.down = (
                    f"gave up on {self.name} for this run: {self.failure or 'no answer'} for "
                    f"{seconds(self.budget)} (the per-host budget, {HOST_BUDGET_TIMEOUTS} × the "
                    f"{self.timeout:g}s timeout)"
                )
                log.info("%s", self.down)
                REAPER.cond.notify()
            return self.down


@dataclass(eq=False)
class Attempt:
    """One attempt of one request: its deadline, how far it got, whether it was cut."""

    host: Host
    started: float
    at: float  # monotonic deadline of the current stage
    stage: str = CONNECT
    cut: str | None = None  # "deadline" or "budget" once the reaper shut its socket down


CURRENT_ATTEMPT: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "mirrorspec_attempt", default=None
)


# --- the reaper ------------------------------------------------------------------------------


class _Reaper:
    """The one thread that cuts connections whose attempt passed its deadline or budget."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.RLock())
        self._owned: dict[Any, Attempt] = {}  # connection -> the attempt that owns it now
        self._thread: threading.Thread | None = None

    # All methods take the lock; they are called from connection and pool hooks.

    def claim(self, conn: Any) -> None:
        attempt = CURRENT_ATTEMPT.get()
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

    def extend(self, attempt: Attempt, at: float, stage: str) -> None:
        with self.cond:
            attempt.at, attempt.stage = at, stage
            self.cond.notify()

    def shorten(self, attempt: Attempt, at: float) -> None:
        """The attempt's deadline becomes `at` if that is earlier."""
        with self.cond:
            if at < attempt.at:
                attempt.at = at
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


def _effective(attempt: Attempt) -> float:
    if attempt.host.down is not None:
        return float("-inf")
    return min(attempt.at, attempt.host.budget_end())


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer, or never connected
        sock.shutdown(socket.SHUT_RDWR)


REAPER = _Reaper()


class _HTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        REAPER.before_connect(self)
        sock = super()._new_conn()
        REAPER.connected(self, sock, HEADERS)
        return sock

    def close(self) -> None:
        REAPER.closing(self)
        super().close()


class _HTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        REAPER.before_connect(self)
        sock = super()._new_conn()
        REAPER.connected(self, sock, TLS)
        return sock

    def connect(self) -> None:
        super().connect()
        REAPER.stage(self, HEADERS)

    def close(self) -> None:
        REAPER.closing(self)
        super().close()


class HTTPPool(HTTPConnectionPool):
    """A connection belongs to the current attempt from checkout (`_get_conn`) to return."""

    ConnectionCls: type[HTTPConnection] = _HTTPConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        REAPER.claim(conn)
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            REAPER.release(conn)
        super()._put_conn(conn)


# The same hooks over HTTPS: the MRO puts them in front of HTTPSConnectionPool's own.
class HTTPSPool(HTTPPool, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class DeadlineResponse(requests.Response):
    """A response whose body reading reports a cut as the timeout it is.

    A body cut at its deadline ends in urllib3's "Connection broken" or, for a body delimited
    by the connection's end, in a short body that looks complete: both become `BodyTimeout`
    (or `HostDown`) here, for callers that stream and for requests' own `.content`."""

    attempts: int = 1  # how many attempts this answer took (retried 429/5xx included)
    _mirrorspec_attempt: Attempt | None = None
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

    def close(self) -> None:
        """Release the connection: back to the pool when the body was read to its end, or what
        is left of it is small and comes at once (`drain`); closed otherwise.

        requests' `Response.close` closes the socket (`raw.close()`) whenever the body was not
        consumed, even a HEAD's empty one, and only then calls `release_conn` (requests
        2.32-2.34, models.py; the adapter streams with `preload_content=False`, so nothing
        reads it for us). urllib3 puts a connection back in its pool (`_put_conn`, via
        `release_conn`) once `http.client` has seen the end of the body: its `_error_catcher`
        does it when the underlying response `isclosed()` after a read (urllib3 2.x,
        response.py); `http.client` marks it so at once for a HEAD and when Content-Length
        bytes or the last chunk have been read. So a read to the end before requests' close
        keeps the socket."""
        if not getattr(self, "_content_consumed", False):  # not in requests' stubs
            self.drain()
        super().close()

    def drain(self) -> bool:
        """Read and discard the rest of the body if it is at most `DRAIN_MAX_BYTES` and arrives
        within `DRAIN_SECONDS` (never past the attempt's own deadline); whether it did.

        Not urllib3's `drain_conn`: that reads an endless body forever. A hostile answer (an
        endless 401 or redirect body, one that drips) costs at most the cap or the time, then
        the connection is closed (`close`) as if it had not been drained."""
        attempt = self._mirrorspec_attempt
        raw = self.raw
        original = getattr(raw, "_original_response", None)
        if attempt is None or attempt.cut is not None or original is None:
            return False
        if getattr(original, "will_close", True):
            return False  # `Connection: close` or a body delimited by the end of the connection
        left = getattr(raw, "length_remaining", None)
        if isinstance(left, int) and left > DRAIN_MAX_BYTES:
            return False  # the declared length says it: not worth reading
        REAPER.shorten(attempt, time.monotonic() + DRAIN_SECONDS)
        drained = 0
        try:
            while drained <= DRAIN_MAX_BYTES:
                # Raw bytes (no decoding) in bounded reads; the reaper cuts a read that would
                # outlast the deadline, and the read then fails.
                chunk = raw.read(16 * 1024, decode_content=False)
                if not chunk:
                    return attempt.cut is None
                drained += len(chunk)
        except (urllib3.exceptions.HTTPError, OSError, ValueError):
            return False
        return False

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
