"""A registry that answers whatever a test tells it to: oversized, malformed, looping, lying.

Real registries never misbehave on demand, so the hostile cases of the client (tests/
test_hostile_registry.py) run against this: a threaded `http.server` on a loopback address
(`server.HttpServerBase`) whose every answer comes from a `route(request) -> Reply` function.
A body given as an iterable of chunks is sent with chunked transfer encoding, without
Content-Length, so a client cannot rely on the header to refuse it; huge bodies are generated
as they are sent and never held in memory. Every request is recorded (method, path, headers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .server import Handler, HttpServerBase

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


class HostileRegistry(HttpServerBase[Request]):
    """`with HostileRegistry(route) as registry:` serves on `registry.host` until the block ends.

    `address` may be any loopback address (127.0.0.2 is "another host" than 127.0.0.1 to a
    client comparing host names, yet needs no DNS). Only GET and HEAD are answered (a
    registry's reads); `requests` records every one.
    """

    def __init__(self, route: Route, address: str = "127.0.0.1") -> None:
        super().__init__(name="hostile-registry", address=address, methods=("GET", "HEAD"))
        self.route = route

    def handle(self, handler: Handler) -> None:
        request = Request(handler.command, handler.path, dict(handler.headers.items()))
        self.record(request)
        reply = self.route(request)
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        chunked = not isinstance(reply.body, bytes)
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        elif "Content-Length" not in reply.headers:
            handler.send_header("Content-Length", str(len(reply.body)))  # type: ignore[arg-type]
        handler.end_headers()
        if handler.command == "HEAD":
            return
        try:
            if isinstance(reply.body, bytes):
                handler.wfile.write(reply.body)
                return
            for piece in reply.body:
                handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            handler.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            # The client stopped reading, as it should for an oversized body.
            handler.close_connection = True
