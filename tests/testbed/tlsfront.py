"""A TLS front with a certificate the test chooses: for a wrong host, from an unknown CA, expired.

`TlsFront(backend_host)` terminates TLS on a loopback port and forwards the bytes, both ways,
to a plain-HTTP backend (a real docker-registry, say), so that clients see a registry whose only
fault is its certificate. `certificates(workdir)` makes the usual bad ones with trustme; the
front serves `front.certificate` to each new connection, and the test may change it at any
moment (connections already open keep theirs), e.g. between `apply`'s plan and its copies.
"""

from __future__ import annotations

import datetime
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from .rawserver import RawServer, relay

__all__ = ["Certificates", "TlsFront", "certificates", "server_context"]


@dataclass(frozen=True)
class Certificates:
    """PEM files (certificate chain + key in one) for 127.0.0.1, and the CA a client trusts."""

    ca_file: Path  # the trusted CA: give it as `ca-bundle`
    good: Path  # for 127.0.0.1, by the trusted CA
    wrong_host: Path  # for registry.invalid and 127.0.0.2, by the trusted CA
    unknown_ca: Path  # for 127.0.0.1, by a CA nobody trusts
    expired: Path  # for 127.0.0.1, by the trusted CA, expired yesterday


def certificates(workdir: Path) -> Certificates:
    import trustme

    workdir.mkdir(parents=True, exist_ok=True)
    trusted, stranger = trustme.CA(), trustme.CA()
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    issued = {
        "good": trusted.issue_cert("127.0.0.1"),
        # Names and an IP address, none of them the one asked for (127.0.0.1): Go then lists
        # the IP addresses it is valid for, Python says "IP address mismatch".
        "wrong_host": trusted.issue_cert("registry.invalid", "127.0.0.2"),
        "unknown_ca": stranger.issue_cert("127.0.0.1"),
        "expired": trusted.issue_cert("127.0.0.1", not_before=now - 30 * day, not_after=now - day),
    }
    paths: dict[str, Path] = {}
    for name, leaf in issued.items():
        path = workdir / f"{name}.pem"
        path.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems) + leaf.private_key_pem.bytes())
        paths[name] = path
    ca_file = workdir / "ca.crt"  # `.crt`: skopeo loads only *.crt from a cert dir
    trusted.cert_pem.write_to_path(str(ca_file))
    return Certificates(ca_file=ca_file, **paths)


def server_context(pem: Path) -> ssl.SSLContext:
    """A server's TLS context that presents `pem` (one of `Certificates`)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pem))
    return context


class TlsFront(RawServer):
    def __init__(self, backend: str, certificate: Path) -> None:
        super().__init__()
        self.backend = backend  # host:port of a plain-HTTP server
        self.certificate = certificate

    def serve(self, conn: socket.socket) -> None:
        self._serve(conn, server_context(self.certificate))  # the one chosen now

    def _serve(self, conn: socket.socket, context: ssl.SSLContext) -> None:
        conn.settimeout(10)
        try:
            client = context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()  # the client refused our certificate: what the test wants
            return
        try:
            host, port = self.backend.rsplit(":", 1)
            backend = socket.create_connection((host, int(port)), timeout=10)
        except OSError:
            client.close()
            return
        client.settimeout(None)
        backend.settimeout(None)
        self.track(client)
        self.track(backend)
        relay(client, backend)
