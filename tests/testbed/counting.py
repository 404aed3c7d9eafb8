"""A TCP relay that counts the connections clients open to a server: keep-alive made visible.

`ConnectionCounter(backend_host)` listens on a loopback port and copies bytes both ways to
`backend` (host:port of any server, TLS or not: it never looks inside, so a TLS client still
verifies the backend's own certificate, issued for 127.0.0.1). `accepted` is the number of TCP
connections clients have opened to it so far. A client that returns its connections to a pool
opens about as many as it has requests in flight; one that drops them opens one per request.
"""

from __future__ import annotations

import socket
import threading

from .rawserver import RawServer, relay

__all__ = ["ConnectionCounter"]


class ConnectionCounter(RawServer):
    def __init__(self, backend: str) -> None:
        super().__init__()
        self.backend = backend  # host:port
        self._count_lock = threading.Lock()
        self._accepted = 0

    @property
    def accepted(self) -> int:
        with self._count_lock:
            return self._accepted

    def on_accept(self, conn: socket.socket) -> None:
        with self._count_lock:
            self._accepted += 1

    def serve(self, conn: socket.socket) -> None:
        host, port = self.backend.rsplit(":", 1)
        try:
            backend = socket.create_connection((host, int(port)), timeout=10)
        except OSError:
            conn.close()
            return
        backend.settimeout(None)
        self.track(backend)
        relay(conn, backend)
