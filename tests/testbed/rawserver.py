"""The lifecycle every raw-socket test server shares: listen on loopback, accept in a thread,
serve each connection in its own, and close everything that is still open on `stop()`.

For servers that must misbehave below HTTP (`stall.StallServer`, `tlsfront.TlsFront`): they
stall mid-header or relay raw TLS bytes, which `http.server` (and so `server.HttpServerBase`,
the base of the servers that speak HTTP) would not let them do. They share its `Lifecycle`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import TypeVar

from .server import Lifecycle

__all__ = ["RawServer", "relay"]


_S = TypeVar("_S", bound="RawServer")


class RawServer(Lifecycle):
    """Subclasses implement `serve(conn)`; `track(sock)` adds a socket for `stop()` to close."""

    address = "127.0.0.1"

    def __init__(self) -> None:
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        assert self._listener is not None, "not started"
        return f"{self.address}:{self._listener.getsockname()[1]}"

    def start(self: _S) -> _S:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.address, 0))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        threading.Thread(target=self._accept, name=f"{type(self).__name__}-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.close()
            self._open.clear()

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.append(sock)

    def on_accept(self, conn: socket.socket) -> None:
        """Called in the accept thread for each new connection, before it is served."""

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            self.track(conn)
            self.on_accept(conn)
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()


def relay(client: socket.socket, backend: socket.socket) -> None:
    """Copy bytes both ways between `client` and `backend` as they come, until either side ends
    (or resets), which ends both; returns when the client → backend direction ends."""
    threading.Thread(target=_pipe, args=(backend, client), daemon=True).start()
    _pipe(client, backend)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
