"""Run CNCF distribution (`docker-registry`, 2.8.2 on Debian) on 127.0.0.1 for tests and demos.

Facts this relies on (research/testbed.md):
- §0.3: never the Debian service or its config; every registry here gets its own config file.
- §1: port 0 works and the bound port is only visible in the `listening on` log line (stderr).
- §3.2: htpasswd entries must be bcrypt; rounds=4 keeps tests fast.
- §3.2: a missing htpasswd file is *provisioned* with a random `docker` user; we always write it.
- §4.1: only one auth type per registry; token auth needs `rootcertbundle`.
- §2.2: skopeo loads every `*.crt` of a cert dir as a CA and pairs `*.key` with `*.cert`, so the
  CA lives alone in `certs/` (the server key must not sit beside it).

Besides stderr (the structured log), distribution writes a combined-format access log with one
line per request — 401s included — to stdout; that file is what `request_log()` parses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from .tokens import TokenIssuer

__all__ = [
    "AccessRecord",
    "RegistryServer",
    "TestbedError",
    "access_records",
    "missing_tools",
    "request_log",
    "start_registry",
]

REGISTRY_BINARY = "docker-registry"
START_TIMEOUT = 15.0
HTPASSWD_REALM = "testbed-realm"
_LISTENING = re.compile(r'msg="listening on 127\.0\.0\.1:(\d+)')
# 127.0.0.1 - - [27/Nov/2026:00:13:34 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
_ACCESS = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) ')


class TestbedError(RuntimeError):
    """The test bed itself could not do its job (binary missing, server did not start...)."""

    __test__ = False  # not a pytest test class, despite the name


def missing_tools() -> list[str]:
    """External programs the test bed needs that are not on PATH."""
    return [tool for tool in (REGISTRY_BINARY, "skopeo") if shutil.which(tool) is None]


@dataclass
class RegistryServer:
    """A running registry. `host` is `127.0.0.1:PORT` (the name used in image references)."""

    host: str
    url: str
    tls: bool
    ca_file: Path | None
    users: dict[str, str] = field(repr=False)
    log_path: Path
    access_log_path: Path
    workdir: Path
    token_issuer: TokenIssuer | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _files: list[IO[bytes]] = field(default_factory=list, repr=False)

    @property
    def cert_dir(self) -> Path | None:
        """Directory holding only `ca.crt`, for skopeo's `--*-cert-dir`."""
        return self.ca_file.parent if self.ca_file else None

    @property
    def auth(self) -> str:
        return "token" if self.token_issuer else ("htpasswd" if self.users else "none")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        proc, self._process = self._process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for handle in self._files:
            handle.close()
        self._files.clear()
        if self.token_issuer is not None:
            self.token_issuer.stop()

    def __enter__(self) -> RegistryServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_registry(
    workdir: Path,
    *,
    tls: bool = False,
    users: dict[str, str] | None = None,
    token: bool = False,
    anonymous_pull: bool = False,
    port: int = 0,
    timeout: float = START_TIMEOUT,
    delete: bool = True,
) -> RegistryServer:
    """Start `docker-registry serve <workdir>/config.yml` on `port` (default: an ephemeral
    port) and wait for it. A fixed port is for the demo, whose spec names its registries.

    `users` + `token=False` → htpasswd; `token=True` → a `TokenIssuer` realm on its own port
    that authenticates `users` and grants pull/push/delete (anonymous: pull if
    `anonymous_pull`, else nothing). Raise `TestbedError` with the log tail on failure.
    """
    if shutil.which(REGISTRY_BINARY) is None:
        raise TestbedError(f"{REGISTRY_BINARY} not found on PATH: run `make setup`")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    users = dict(users or {})
    http: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": "testbed-http-secret"}
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "data")},
            "delete": {"enabled": delete},  # False: DELETE answers 405 UNSUPPORTED
            # the purge goroutine only adds log noise in short-lived registries
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }

    ca_file: Path | None = None
    if tls:
        ca_file = _write_tls(workdir, http)

    issuer: TokenIssuer | None = None
    if token:
        issuer = TokenIssuer(
            users=users, bundle_path=workdir / "token" / "bundle.pem", anonymous_pull=anonymous_pull
        ).start()
        config["auth"] = {
            "token": {
                "realm": issuer.realm,
                "service": issuer.service,
                "issuer": issuer.issuer,
                "rootcertbundle": str(issuer.bundle_path),
            }
        }
    elif users:
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text("".join(f"{u}:{_bcrypt(p)}\n" for u, p in users.items()))
        config["auth"] = {"htpasswd": {"realm": HTPASSWD_REALM, "path": str(htpasswd)}}

    config_path = workdir / "config.yml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML, and quotes paths safely
    log_path = workdir / "registry.log"
    access_log_path = workdir / "access.log"
    stderr = log_path.open("wb")
    stdout = access_log_path.open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    try:
        proc = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=workdir,
        )
    except BaseException:
        stderr.close()
        stdout.close()
        if issuer is not None:
            issuer.stop()
        raise
    server = RegistryServer(
        host="",
        url="",
        tls=tls,
        ca_file=ca_file,
        users=users,
        log_path=log_path,
        access_log_path=access_log_path,
        workdir=workdir,
        token_issuer=issuer,
        _process=proc,
        _files=[stderr, stdout],
    )
    try:
        port = _wait_for_port(proc, log_path, timeout)
        server.host = f"127.0.0.1:{port}"
        server.url = f"{'https' if tls else 'http'}://{server.host}"
        _wait_until_serving(port, proc, log_path, timeout)
    except BaseException:
        server.stop()
        raise
    return server


class AccessRecord(NamedTuple):
    method: str
    uri: str
    status: int


def access_records(server: RegistryServer, *, settle: float = 0.05) -> list[AccessRecord]:
    """Every request the registry served, in order, from its access log.

    The access line is written after the response has gone out, so a client can be faster
    than the log: wait until the file has stopped growing for `settle` seconds (max 2 s).
    """
    path = server.access_log_path
    deadline = time.monotonic() + 2.0
    size = -1
    while time.monotonic() < deadline:
        current = path.stat().st_size
        if current == size:
            break
        size = current
        time.sleep(settle)
    records = []
    for line in path.read_text(errors="replace").splitlines():
        match = _ACCESS.match(line)
        if match:
            records.append(AccessRecord(match[1], match[2], int(match[3])))
    return records


def request_log(server: RegistryServer) -> list[str]:
    """`"METHOD /uri?query"` for every request the registry served, 401s included."""
    return [f"{r.method} {r.uri}" for r in access_records(server)]


def _bcrypt(password: str) -> str:
    import bcrypt  # test-only dependency; imported late so `missing_tools()` works without it

    # distribution accepts only bcrypt entries (testbed.md §3.2); 4 is the minimum cost
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def _write_tls(workdir: Path, http: dict[str, Any]) -> Path:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    tls_dir = workdir / "tls"
    certs_dir = workdir / "certs"
    tls_dir.mkdir(exist_ok=True)
    certs_dir.mkdir(exist_ok=True)
    cert.cert_chain_pems[0].write_to_path(str(tls_dir / "server.crt"))
    cert.private_key_pem.write_to_path(str(tls_dir / "server.key"))
    ca_file = certs_dir / "ca.crt"  # `.crt`: skopeo ignores `ca.pem` (testbed.md §2.2)
    ca.cert_pem.write_to_path(str(ca_file))
    http["tls"] = {"certificate": str(tls_dir / "server.crt"), "key": str(tls_dir / "server.key")}
    return ca_file


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _wait_for_port(proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            return int(match[1])
        if proc.poll() is not None:
            raise TestbedError(
                f"docker-registry exited with code {proc.returncode} before listening; "
                f"log tail:\n{_tail(log_path)}"
            )
        time.sleep(0.02)
    raise TestbedError(
        f"docker-registry did not log 'listening on' within {timeout:.0f}s; log tail:\n{_tail(log_path)}"
    )


def _wait_until_serving(port: int, proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    # The listener is bound before the log line, but prove it accepts connections anyway.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TestbedError(
                f"docker-registry exited with code {proc.returncode}; log tail:\n{_tail(log_path)}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise TestbedError(
        f"docker-registry on port {port} accepted no connection within {timeout:.0f}s; "
        f"log tail:\n{_tail(log_path)}"
    )
