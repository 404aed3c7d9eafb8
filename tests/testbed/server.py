"""The one base of every HTTP server the tests run in-process: emulators and hostile servers.

The cloud emulators (`emulators/acr.py`, `ecr.py`, `harbor.py`) and the test bed's misbehaving
servers (`hostile.py`, `faults.py`, `tokens.py`) all need the same scaffolding, written here once:

- `Listener`: a threaded `http.server` on a loopback address and a port the OS picks (port 0,
  so parallel tests never collide), serving in a daemon thread, optionally behind TLS; every
  request of the methods it accepts goes to one function, `on_request(handler)`.
- `ServerTls` / `trustme_tls()`: a `trustme` CA and a certificate for 127.0.0.1 and localhost, the
  CA written where clients can be told to trust it (`ca_file`).
- `Lifecycle`: `start()` / `stop()` and `with server:`; a clean exit of the block runs `check()`.
  `rawserver.RawServer` shares it: it must misbehave below HTTP, so it does not use `Listener`.
- `HttpServerBase`: a `Lifecycle` with a main listener, extra listeners on demand (the ACR
  emulator's login servers), a request log (`requests`) and the contract-violation list
  (`violations`, plus `internal_errors` for the server's own bugs) that `check()` asserts empty.

Nothing here imports pytest, so demo scripts can use the servers too.
"""

from __future__ import annotations

import contextlib
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

__all__ = [
    "ALL_METHODS",
    "EmulatorBug",
    "Handler",
    "HttpServerBase",
    "Lifecycle",
    "Listener",
    "ServerTls",
    "reply",
    "trustme_tls",
]

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

# What `handle()` gets for each request: http.server's handler (`command`, `path`, `headers`,
# `rfile`, `wfile`, `send_response`…).
Handler = BaseHTTPRequestHandler

_L = TypeVar("_L", bound="Lifecycle")
_H = TypeVar("_H", bound="HttpServerBase[Any]")
_R = TypeVar("_R")


class EmulatorBug(AssertionError):
    """A server broke its contract, or a client broke it (see `HttpServerBase.violations`)."""


@dataclass(frozen=True)
class ServerTls:
    """A server-side TLS context and the CA file a client must trust to reach it."""

    context: ssl.SSLContext
    ca_file: Path


def trustme_tls(ca_file: Path) -> ServerTls:
    """A fresh `trustme` CA written to `ca_file`, and a context serving a certificate it issued
    for 127.0.0.1 and localhost."""
    import trustme

    ca = trustme.CA()
    ca_file.parent.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return ServerTls(context, ca_file)


def reply(handler: Handler, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
    """Send one whole answer: `headers`, a Content-Length (unless a HEAD answer names its own,
    the length of what a GET would get), and `body` unless the request was a HEAD."""
    headers = list(headers)
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    if handler.command != "HEAD" or not any(name.lower() == "content-length" for name, _ in headers):
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD" and body:
        handler.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    on_request: Callable[[BaseHTTPRequestHandler], None]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read the servers' records, not stderr

    def handle(self) -> None:
        # A client that hangs up mid-answer (as it should on an oversized body) is no error.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def _dispatch(self) -> None:
        self.server.on_request(self)


def _handler_class(methods: Iterable[str]) -> type[_Handler]:
    """A handler answering `methods` with `on_request`; any other gets http.server's 501."""
    return type("Handler", (_Handler,), {f"do_{method}": _Handler._dispatch for method in methods})


class Listener:
    """One threaded HTTP(S) server on `address`, serving until `close()`."""

    def __init__(
        self,
        on_request: Callable[[BaseHTTPRequestHandler], None],
        *,
        name: str,
        address: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        methods: Iterable[str] = ALL_METHODS,
    ) -> None:
        server = _Server((address, port), _handler_class(methods))
        server.on_request = on_request
        if ssl_context is not None:
            # The handshake happens in the request's own thread, not in the accept loop.
            server.socket = ssl_context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.address = address
        self.port: int = server.server_address[1]
        self.tls = ssl_context is not None
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class Lifecycle:
    """`start()` / `stop()`, and `with server:` around them; a block that ends without an
    exception runs `check()` after `stop()` (a no-op here)."""

    def start(self: _L) -> _L:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def check(self) -> None:
        """Raise when the server saw something a test must fail on."""

    def __enter__(self: _L) -> _L:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if kind is None:
            self.check()


class HttpServerBase(Lifecycle, Generic[_R]):
    """An in-process HTTP(S) server; subclasses implement `handle(handler)`.

    `tls`: False (plain HTTP), True (a `trustme` CA of its own, written to `ca_file`, by default
    in a temporary directory removed on `stop()`), or the `ssl.SSLContext` to serve
    (a fault proxy serves its backend's). `methods` are the HTTP methods it answers (others get
    501). `requests` is the request log, in the record type `R` the subclass chooses.
    """

    title = "test server"  # names the server in check()'s failure
    violation_label = "contract violation"

    def __init__(
        self,
        *,
        name: str,
        address: str = "127.0.0.1",
        port: int = 0,
        tls: bool | ssl.SSLContext = False,
        ca_file: Path | None = None,
        methods: Iterable[str] = ALL_METHODS,
    ) -> None:
        self.name = name
        self.address = address
        self._port = port
        self.methods = tuple(methods)
        self.requests: list[_R] = []
        self.violations: list[str] = []
        self.internal_errors: list[str] = []
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._main: Listener | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.ca_file: Path | None = None
        self.ssl_context: ssl.SSLContext | None = None
        if isinstance(tls, ssl.SSLContext):
            self.ssl_context = tls
        elif tls:
            if ca_file is None:
                self._tmp = tempfile.TemporaryDirectory(prefix=f"{name}-")
                ca_file = Path(self._tmp.name) / "ca.pem"
            made = trustme_tls(ca_file)
            self.ssl_context, self.ca_file = made.context, made.ca_file

    # -- lifecycle ------------------------------------------------------------------------

    def handle(self, handler: Handler) -> None:
        """Answer one request."""
        raise NotImplementedError

    def start(self: _H) -> _H:
        if self._main is None:
            self._main = self.listen(self.handle, self.name, port=self._port)
        return self

    def listen(self, on_request: Callable[[Handler], None], name: str, *, port: int = 0) -> Listener:
        """One more listener with the same address, TLS and methods, closed by `stop()`."""
        listener = Listener(
            on_request,
            name=name,
            address=self.address,
            port=port,
            ssl_context=self.ssl_context,
            methods=self.methods,
        )
        self._listeners.append(listener)
        return listener

    def stop(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        self._main = None
        if self._tmp is not None:
            self._tmp.cleanup()

    @property
    def started(self) -> bool:
        return self._main is not None

    @property
    def host(self) -> str:
        """`address:port` of the main listener."""
        assert self._main is not None, "call start() first"
        return self._main.host

    @property
    def url(self) -> str:
        assert self._main is not None, "call start() first"
        return self._main.url

    # -- the records ----------------------------------------------------------------------

    def record(self, request: _R) -> None:
        with self._lock:
            self.requests.append(request)

    def violation(self, text: str) -> None:
        """A client broke the contract: recorded for `check()` (the caller answers it)."""
        with self._lock:
            self.violations.append(text)

    def take_violations(self) -> list[str]:
        """The violations recorded so far, forgotten (a test that provoked them takes them)."""
        with self._lock:
            taken, self.violations = self.violations, []
        return taken

    def problems(self) -> list[str]:
        """What `check()` fails on: violations, then the server's own errors."""
        with self._lock:
            return [f"{self.violation_label}: {v}" for v in self.violations] + list(self.internal_errors)

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise EmulatorBug(f"{self.title}:\n" + "\n\n".join(problems))
