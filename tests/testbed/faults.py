"""A seeded fault-injecting reverse proxy, put in front of any test-bed server.

Every server of the test bed can fail the way real registries and cloud APIs do by standing a
`FaultProxy` in front of it: the `docker-registry` sources and destinations, moto (through the
ECR emulator, which forwards to it) and the ACR and Harbor emulators. The proxy is the one place
that injects faults, so no emulator carries fault code of its own. Clients are pointed at
`proxy.host` / `proxy.url` instead of the backend; an HTTPS backend is fronted over HTTPS with the
backend's own certificate (`ssl_context`), so clients keep verifying TLS with the backend's CA.

With probability `rate` a request gets one fault, drawn uniformly from `KINDS`:

- before forwarding (the backend never sees the request): `429` with a `Retry-After` of 0 or 1
  second (always 0 with `faults(..., retry_after=0)`), `500`, `503`, a connection reset (RST,
  SO_LINGER 0), or a slow request (a delay, then forwarded normally);
- after forwarding (the backend did the work, the client gets an error instead of the answer):
  `500`, `503` or a reset. These are what make a non-idempotent POST dangerous: a client that
  retries it, or a next run that does not look first, creates the object twice.

An injected error's body is the registry API's (`{"errors": [...]}`) unless `error_body` gives
the backend's own shape (an SDK may read its error code from it, as botocore does).

Determinism: the draws come from one `random.Random(seed)`, so a seed fixes the sequence of
decisions. Requests of concurrent clients reach the proxy in an order the scheduler picks, so
which request gets which decision can differ between runs with the same seed; the rate and the
kinds are what a seed guarantees. Every injected fault is recorded in `injected` for messages.

Bodies: a request body (Content-Length or chunked) is read whole and forwarded with a
Content-Length; a response body is streamed through as it arrives, with the backend's
Content-Length or re-chunked. The client's `Host` header is passed on: docker-registry 2.8.2
answers an upload's POST with an absolute `Location: http://<Host>/v2/<repo>/blobs/uploads/
<uuid>?_state=...` built from it, which then names the proxy, so the PATCH and PUT that follow
come back through it. Any header value that still names the backend (the ACR emulator's
polling URLs) is rewritten to the proxy.
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit

from .server import Handler, HttpServerBase, reply
from .wire import read_body

__all__ = ["KINDS", "Answer", "FaultProxy", "Injected"]

# (phase, kind): what a faulty request can get.
KINDS: tuple[tuple[str, str], ...] = (
    ("before", "429"),
    ("before", "500"),
    ("before", "503"),
    ("before", "reset"),
    ("before", "slow"),
    ("after", "500"),
    ("after", "503"),
    ("after", "reset"),
)
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
)
_CHUNK = 64 * 1024


# (method, path, headers) -> (status, content type, body), or None to forward the request
Answer = Callable[[str, str, Message], "tuple[int, str, bytes] | None"]


@dataclass(frozen=True)
class Injected:
    phase: str  # "before" or "after" forwarding
    kind: str  # "429", "500", "503", "reset", "slow"
    method: str
    path: str

    def __str__(self) -> str:
        return f"{self.kind} {self.phase} {self.method} {self.path}"


class FaultProxy(HttpServerBase[object]):
    """A reverse proxy to `backend` (`http[s]://host:port`) that injects faults; see the module
    docstring. Faults are off until `faults(rate, seed)`; `off()` stops them at once."""

    def __init__(
        self,
        backend: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backend_ca: str | None = None,
        slow: tuple[float, float] = (0.05, 0.4),
        error_body: Callable[[str], tuple[str, bytes]] | None = None,
    ) -> None:
        parts = urlsplit(backend)
        assert parts.scheme in ("http", "https") and parts.hostname and parts.port, backend
        assert (parts.scheme == "https") == (ssl_context is not None), "serve HTTPS exactly for HTTPS"
        self.backend = f"{parts.scheme}://{parts.hostname}:{parts.port}"
        self._backend_address = (parts.hostname, parts.port)
        self._backend_tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._backend_tls = ssl.create_default_context(cafile=backend_ca)
            if backend_ca is None:  # a test bed's own backend on 127.0.0.1: trust it
                self._backend_tls.check_hostname = False
                self._backend_tls.verify_mode = ssl.CERT_NONE
        super().__init__(name="fault-proxy", tls=ssl_context or False)
        self._slow = slow
        self._error_body = error_body or _generic_error
        self._rng = random.Random(0)
        self.rate = 0.0
        self.seed: int | None = None
        self._retry_after = 1
        self.injected: list[Injected] = []
        self.forwarded = 0
        self._script: list[tuple[str, str, str, re.Pattern[str], tuple[str, str] | None]] = []
        self._holds: list[tuple[str, re.Pattern[str]]] = []
        self._answer: Answer | None = None
        self._released = threading.Event()
        self.held = 0  # requests held unanswered so far

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        self._released.set()  # held requests end (their connections close) before the server
        super().stop()

    # -- the switch -----------------------------------------------------------------------

    def faults(self, rate: float, seed: int, *, retry_after: int = 1) -> None:
        """From now on, fault `rate` of the requests, drawn from `random.Random(seed)`, a 429's
        `Retry-After` from 0 to `retry_after` seconds; the record of injected faults starts empty."""
        assert 0.0 <= rate <= 1.0 and retry_after >= 0
        with self._lock:
            self.rate, self.seed, self._retry_after = rate, seed, retry_after
            self._rng = random.Random(seed)
            self.injected = []
            self.forwarded = 0

    def off(self) -> None:
        """No more faults, random or scripted."""
        with self._lock:
            self.rate = 0.0
            self._script.clear()

    def script(
        self, phase: str, kind: str, method: str, path: str, *, header: tuple[str, str] | None = None
    ) -> None:
        """Fault the next request that matches, whatever the rate: `method`, `path` (a regular
        expression, matched in full) and a `header` (name, value) it must carry. For tests of
        one precise failure; every scripted fault is injected at most once, in order of match."""
        assert (phase, kind) in KINDS, (phase, kind)
        with self._lock:
            self._script.append((phase, kind, method, re.compile(path), header))

    def hold(self, method: str, path: str) -> None:
        """From now on, every request that matches (`path` a regular expression, in full) is read
        and never answered until the proxy stops: a server that accepted the request and hangs
        (a stalled blob download, say). `held` counts them as they arrive."""
        with self._lock:
            self._holds.append((method, re.compile(path)))

    def answer(self, answer: Answer | None) -> None:
        """From now on, `answer(method, path, headers)` may answer a request itself with
        (status, content type, body) instead of the backend — a proxy or registry that says
        something of its own, such as echoing the request's headers; None forwards it."""
        with self._lock:
            self._answer = answer

    def release(self) -> None:
        """No more holds; the requests held so far end (their connections close)."""
        with self._lock:
            self._holds.clear()
        self._released.set()

    def _held(self, method: str, path: str) -> bool:
        with self._lock:
            if not any(method == m and p.fullmatch(path) for m, p in self._holds):
                return False
            self.held += 1
        return True

    def _draw(self, method: str, path: str, headers: Message) -> Injected | None:
        with self._lock:
            for index, (phase, kind, want_method, want_path, header) in enumerate(self._script):
                wanted_header = header is None or headers.get(header[0]) == header[1]
                if method == want_method and want_path.fullmatch(path) and wanted_header:
                    del self._script[index]
                    fault = Injected(phase, kind, method, path)
                    self.injected.append(fault)
                    return fault
            if self.rate == 0.0 or self._rng.random() >= self.rate:
                return None
            phase, kind = self._rng.choice(KINDS)
            fault = Injected(phase, kind, method, path)
            self.injected.append(fault)
            return fault

    def _delay(self) -> float:
        with self._lock:
            return self._rng.uniform(*self._slow)

    # -- one request ----------------------------------------------------------------------

    def handle(self, handler: Handler) -> None:
        body = read_body(handler)
        if self._held(handler.command, urlsplit(handler.path).path):
            self._released.wait()
            handler.close_connection = True
            return
        with self._lock:
            answer = self._answer
        own = answer(handler.command, urlsplit(handler.path).path, handler.headers) if answer else None
        if own is not None:
            status, content_type, raw = own
            reply(handler, status, [("Content-Type", content_type)], raw)
            return
        fault = self._draw(handler.command, urlsplit(handler.path).path, handler.headers)
        if fault is not None and fault.phase == "before":
            if fault.kind == "slow":
                time.sleep(self._delay())
            else:
                self._fail(handler, fault.kind)
                return
        connection = self._connect()
        try:
            connection.putrequest(handler.command, handler.path, skip_host=True, skip_accept_encoding=True)
            for name, value in handler.headers.items():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    connection.putheader(name, value)
            if body or handler.command in ("POST", "PUT", "PATCH"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            with self._lock:
                self.forwarded += 1
            if fault is not None and fault.phase == "after":
                # The backend did the work; the client never hears of it.
                response.read()
                self._fail(handler, fault.kind)
                return
            self._relay(handler, response)
        except OSError:
            # The client went away mid-stream, or the backend did: it sees a reset either way.
            self._fail(handler, "reset")
        finally:
            connection.close()

    def _connect(self) -> http.client.HTTPConnection:
        host, port = self._backend_address
        if self._backend_tls is not None:
            return http.client.HTTPSConnection(host, port, timeout=120, context=self._backend_tls)
        return http.client.HTTPConnection(host, port, timeout=120)

    def _relay(self, handler: Handler, response: http.client.HTTPResponse) -> None:
        handler.send_response(response.status, response.reason)
        length = response.getheader("Content-Length")
        for name, value in response.getheaders():
            if name.lower() in _HOP_BY_HOP or name.lower() == "content-length":
                continue
            handler.send_header(name, value.replace(self.backend, self.url))
        bodiless = handler.command == "HEAD" or response.status in (204, 304) or response.status < 200
        chunked = length is None and not bodiless
        if length is not None:
            handler.send_header("Content-Length", length)
        elif chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        if response.will_close:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        if bodiless:
            handler.wfile.flush()
            return
        while chunk := response.read(_CHUNK):
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()

    def _fail(self, handler: Handler, kind: str) -> None:
        handler.close_connection = True
        if kind == "reset":
            sock: socket.socket = handler.connection
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # Close the raw descriptor: an SSL socket's close would send close_notify first.
                socket.socket(fileno=sock.detach()).close()
            except OSError:
                pass
            return
        content_type, raw = self._error_body(kind)
        handler.send_response(int(kind))
        if kind == "429":
            with self._lock:
                handler.send_header("Retry-After", str(self._rng.randint(0, self._retry_after)))
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(raw)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(raw)
        handler.wfile.flush()


def _generic_error(kind: str) -> tuple[str, bytes]:
    """The error body of registries and Harbor; `error_body` gives another API its own."""
    return "application/json", b'{"errors":[{"code":"INJECTED","message":"fault injected by the test bed"}]}'
