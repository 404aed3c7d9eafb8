"""A latency-injecting TCP proxy for the benchmarks: loopback only, bounded, order-preserving.

Every chunk read from either side is written to the other side `delay` seconds after it was
read, so each direction of every connection gets `delay` of one-way latency (a request/response
exchange costs 2 × delay more than on bare loopback) while throughput is left alone: chunks are
pipelined, not sent one at a time. TLS passes through untouched (the proxy never looks inside),
so its handshakes pay their round trips like any other bytes. The TCP handshake itself is free
(the client connects to the local proxy), unless `--tcp-handshake` charges its round trip
(2 × delay) to every new connection, as a real network would.

Bounds: at most `MAX_CONNECTIONS` connections at once (more wait in the listen backlog), and at
most `MAX_QUEUED` chunks of up to `CHUNK` bytes in flight per direction (the reader stops while
the queue is full). Only 127.0.0.1 is listened on and connected to.

Run as a program, it proxies each `--to 127.0.0.1:PORT` on a fresh loopback port and prints
one `127.0.0.1:TARGET -> 127.0.0.1:LISTEN` line per route once all are listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

CHUNK = 64 * 1024
MAX_QUEUED = 64  # chunks per direction: 4 MiB at most in flight per connection direction
MAX_CONNECTIONS = 1024
LOOPBACK = "127.0.0.1"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=MAX_QUEUED)

    async def read() -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((loop.time() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((loop.time(), b""))

    async def write() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    reading = asyncio.create_task(read())
    try:
        await write()
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await reading


async def _serve_route(
    target_port: int, delay: float, slots: asyncio.Semaphore, handshake: bool
) -> asyncio.Server:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            await relay(client_reader, client_writer)
        except asyncio.CancelledError:  # shutting down; a cancelled handler would be logged
            client_writer.close()

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        async with slots:
            if handshake:  # connect() returned at once: charge the SYN/SYN-ACK round trip
                await asyncio.sleep(2 * delay)
            try:
                server_reader, server_writer = await asyncio.open_connection(LOOPBACK, target_port)
            except OSError:
                client_writer.close()
                return
            try:
                # A reset on one side ends that direction; the other ends when its peer goes.
                await asyncio.gather(
                    _pipe(client_reader, server_writer, delay),
                    _pipe(server_reader, client_writer, delay),
                    return_exceptions=True,
                )
            finally:
                for writer in (client_writer, server_writer):
                    writer.close()
                    with contextlib.suppress(ConnectionError, OSError):
                        await writer.wait_closed()

    return await asyncio.start_server(handle, LOOPBACK, 0, limit=CHUNK, backlog=MAX_CONNECTIONS)


async def _main(targets: list[int], delay: float, handshake: bool) -> None:
    slots = asyncio.Semaphore(MAX_CONNECTIONS)
    servers = [await _serve_route(port, delay, slots, handshake) for port in targets]
    for port, server in zip(targets, servers, strict=True):
        listen = server.sockets[0].getsockname()[1]
        print(f"{LOOPBACK}:{port} -> {LOOPBACK}:{listen}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def _loopback_port(text: str) -> int:
    host, _, port = text.rpartition(":")
    if host != LOOPBACK or not port.isdigit():
        raise argparse.ArgumentTypeError(f"only {LOOPBACK}:PORT targets are proxied, not {text!r}")
    return int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--to", action="append", type=_loopback_port, required=True, metavar="127.0.0.1:PORT")
    parser.add_argument("--delay", type=float, default=0.020, help="one-way latency in seconds")
    parser.add_argument("--tcp-handshake", action="store_true", help="charge a round trip per connection")
    args = parser.parse_args(argv)
    if not 0 <= args.delay <= 1:
        parser.error("--delay must be between 0 and 1 second")
    asyncio.run(_main(args.to, args.delay, args.tcp_handshake))


if __name__ == "__main__":
    sys.exit(main())
