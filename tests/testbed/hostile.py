"""A registry that answers whatever a test tells it to: oversized, malformed, looping, lying.

Real registries never misbehave on demand, so the hostile cases of the client (tests/
test_hostile_registry.py) run against this: a threaded `http.server` on a loopback address
whose every answer comes from a `route(request) -> Reply` function. A body given as an
iterable of chunks is sent with chunked transfer encoding, without Content-Length, so a
client cannot rely on the header to refuse it; huge bodies are generated as they are sent
and never held in memory. Every request is recorded (method, path, headers).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["HostileRegistry", "Reply", "Request", "endless"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""


Route = Callable[[Request], Reply]


def endless(chunk: bytes, total: int) -> Iterator[bytes]:
    """`total` bytes made of `chunk`, produced as they are sent."""
    sent = 0
    while sent < total:
        piece = chunk[: total - sent]
        sent += len(piece)
        yield piece


@dataclass
class HostileRegistry:
    """`with HostileRegistry(route) as registry:` serves on `registry.host` until the block ends.

    `address` may be any loopback address (127.0.0.2 is "another host" than 127.0.0.1 to a
    client comparing host names, yet needs no DNS).
    """

    route: Route
    address: str = "127.0.0.1"
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        assert self._server is not None, "not started"
        return f"{self.address}:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> HostileRegistry:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                request = Request(self.command, self.path, dict(self.headers.items()))
                registry.requests.append(request)
                reply = registry.route(request)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                chunked = not isinstance(reply.body, bytes)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                elif "Content-Length" not in reply.headers:
                    self.send_header("Content-Length", str(len(reply.body)))  # type: ignore[arg-type]
                self.end_headers()
                if self.command == "HEAD":
                    return
                try:
                    if isinstance(reply.body, bytes):
                        self.wfile.write(reply.body)
                        return
                    for piece in reply.body:
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    # The client stopped reading, as it should for an oversized body.
                    self.close_connection = True

            do_GET = do_HEAD = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle(self) -> None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    super().handle()

        self._server = ThreadingHTTPServer((self.address, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> HostileRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
