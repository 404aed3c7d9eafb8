"""Servers that accept a connection and then stall: the hostile cases of the client's deadlines.

A `StallServer` listens on a loopback address and, for every connection, does one of:

- `silent`: accepts and never sends a byte (a TLS client waits for the ServerHello forever);
- `headers`: reads the request, sends the status line at once, then one header byte every
  `interval` seconds, forever (each byte well inside any read timeout); a TLS ClientHello sent
  to a plain `headers` or `body` server gets a 400, as from any plain-HTTP server;
- `body`: reads the request, sends complete headers of a chunked `200`, then one body byte
  every `interval` seconds, forever.

`mode` may also be a function of the request's path that returns one of them (`silent` then
means: the request is read, never answered). With `ssl_context` the handshake completes first
(the client must trust the certificate), then the stall. Every accepted connection's monotonic
time is recorded in `accepted`. Written raw on sockets, not with `http.server`: the point is to
misbehave below the HTTP layer.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable

from .rawserver import RawServer

__all__ = ["StallServer"]

_STATUS = b"HTTP/1.1 200 OK\r\n"
_BODY_HEADERS = b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


class StallServer(RawServer):
    def __init__(
        self,
        mode: str | Callable[[str], str],  # silent | headers | body, or path -> one of them
        interval: float = 1.0,
        ssl_context: ssl.SSLContext | None = None,
        address: str = "127.0.0.1",
    ) -> None:
        assert callable(mode) or mode in ("silent", "headers", "body"), mode
        super().__init__()
        self.mode = mode
        self.interval = interval
        self.ssl_context = ssl_context
        self.address = address
        self.accepted: list[float] = []  # monotonic time of every accepted connection

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}"

    def on_accept(self, conn: socket.socket) -> None:
        self.accepted.append(time.monotonic())

    def serve(self, conn: socket.socket) -> None:
        self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(0.1)
            if self.mode == "silent":
                self._wait(conn)
                return
            sock = self._handshake(conn) if self.ssl_context is not None else conn
            if sock is None:
                return
            path = self._read_request(sock)
            if path is None:
                return
            mode = self.mode(path) if callable(self.mode) else self.mode
            if mode == "silent":
                self._wait(sock)
                return
            sock.sendall(_STATUS + (_BODY_HEADERS if mode == "body" else b""))
            while not self._stop.wait(self.interval):
                # headers: an endless header line; body: an endless chunk of one-byte chunks
                sock.sendall(b"x" if mode == "headers" else b"1\r\n \r\n")
        except OSError:
            pass  # the client cut the connection: what a deadline is for
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _wait(self, conn: socket.socket) -> None:
        """Read and drop whatever comes, answer nothing, until the client or stop() ends it."""
        while not self._stop.is_set():
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue

    def _handshake(self, conn: socket.socket) -> ssl.SSLSocket | None:
        assert self.ssl_context is not None
        conn.settimeout(10)
        try:
            sock = self.ssl_context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            return None
        sock.settimeout(0.1)
        self.track(sock)
        return sock

    def _read_request(self, sock: socket.socket) -> str | None:
        """The request's path, once its headers are in; None if there is nothing to answer."""
        data = b""
        while b"\r\n\r\n" not in data:
            if self._stop.is_set() or len(data) > 65536:
                return None
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                return None
            data += chunk
            if data.startswith(b"\x16"):
                # A TLS ClientHello: answer it as any plain-HTTP server does (the client sees
                # "wrong version number"), so that an `insecure` client falls back to http.
                sock.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                return None
        parts = data.split(b"\r\n", 1)[0].split()
        return parts[1].decode("latin-1") if len(parts) >= 2 else "/"
