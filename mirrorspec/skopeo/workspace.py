"""The auth files (in memory, never on disk) and cert dirs one batch of copies hands to skopeo.

- Credentials reach skopeo only through auth files that exist nowhere on disk: an anonymous
  in-memory file (`memfd_create`, mode 0600) per endpoint, handed to each skopeo as an
  inherited descriptor and named `/proc/self/fd/N` on its command line (containers/image
  opens the path like any other file). They vanish with the last process holding them, so
  even `kill -9` of mirrorspec leaves no credential behind — a file in `$TMPDIR` would stay
  forever. Where memfd does not exist (not Linux), 0600 files in a private 0700 directory
  are the fallback.
- A CA bundle becomes a cert dir holding `ca.crt` (skopeo loads only `*.crt` files), in a
  private directory `mirrorspec-<pid>-*` made only when needed; one left by a process that
  was killed is removed by the next run (it holds public certificates only).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..context import Endpoint
from ..errors import MirrorspecError
from ..files import read_ca_bundle

__all__ = ["Workspace", "open_workspace"]


class Workspace:
    """Auth files (in memory) and cert dirs (in a private directory) for one batch of copies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._auth: dict[Endpoint, tuple[str, int | None]] = {}  # path, descriptor to pass
        self._certs: dict[Endpoint, Path] = {}
        self._root: Path | None = None
        self._fds: list[int] = []

    def flags(self, side: str, endpoint: Endpoint) -> tuple[list[str], list[int]]:
        """skopeo's flags for one side of a copy, and the descriptors they name."""
        path, fd = self._authfile(endpoint)
        flags = [f"--{side}-authfile", path]
        if endpoint.insecure:
            flags.append(f"--{side}-tls-verify=false")
        elif endpoint.ca_bundle:
            flags += [f"--{side}-cert-dir", str(self._certdir(endpoint))]
        return flags, [] if fd is None else [fd]

    def close(self) -> None:
        with self._lock:
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds.clear()
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None

    def _authfile(self, endpoint: Endpoint) -> tuple[str, int | None]:
        with self._lock:
            made = self._auth.get(endpoint)
            if made is None:
                auths = {}
                if endpoint.auth is not None:
                    token = f"{endpoint.auth.username}:{endpoint.auth.password}".encode()
                    auths[endpoint.host] = {"auth": base64.b64encode(token).decode()}
                # An explicit (possibly empty) auth file keeps skopeo from picking up whatever
                # credentials the user's ~/.docker/config.json happens to hold.
                content = json.dumps({"auths": auths}).encode()
                made = self._auth[endpoint] = self._write_auth(content, len(self._auth))
            return made

    def _write_auth(self, content: bytes, index: int) -> tuple[str, int | None]:
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create(f"mirrorspec-auth-{index}", os.MFD_CLOEXEC)
            self._fds.append(fd)
            os.fchmod(fd, 0o600)
            os.write(fd, content)
            # Each skopeo opens /proc/self/fd/N afresh (a new open file, read from the start);
            # its own descriptor N is this one, inherited through pass_fds.
            return f"/proc/self/fd/{fd}", fd
        path = self._private_dir() / f"auth-{index}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        return str(path), None

    def _certdir(self, endpoint: Endpoint) -> Path:
        with self._lock:
            path = self._certs.get(endpoint)
            if path is None:
                assert endpoint.ca_bundle is not None
                # Read like every user-named file (a FIFO or /dev/zero must not stall a copy),
                # and written as read: skopeo then trusts exactly what was checked.
                pem = read_ca_bundle(endpoint.ca_bundle)
                path = self._private_dir() / f"certs-{len(self._certs)}"
                path.mkdir(mode=0o700)
                try:
                    (path / "ca.crt").write_bytes(pem)
                except OSError as exc:
                    raise MirrorspecError(
                        f"cannot write a copy of ca-bundle {endpoint.ca_bundle}: {exc.strerror}"
                    ) from None
                self._certs[endpoint] = path
            return path

    def _private_dir(self) -> Path:
        if self._root is None:
            _sweep_stale_workspaces()
            # mode 0700; the pid lets a later run tell a dead process's directory from a live one
            self._root = Path(tempfile.mkdtemp(prefix=f"mirrorspec-{os.getpid()}-"))
        return self._root


_STALE = re.compile(r"mirrorspec-(\d+)-[A-Za-z0-9_]+")


def _sweep_stale_workspaces() -> None:
    """Remove the workspaces of mirrorspec processes that no longer exist (killed with -9:
    nothing ran to clean up). Only our own user's, only names we make."""
    tmp = Path(tempfile.gettempdir())
    try:
        entries = list(tmp.iterdir())
    except OSError:
        return
    for entry in entries:
        match = _STALE.fullmatch(entry.name)
        if match is None or int(match[1]) == os.getpid():
            continue
        try:
            info = entry.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue
            os.kill(int(match[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except (OSError, OverflowError):
            continue  # alive but not ours to signal, or gone meanwhile


@contextmanager
def open_workspace() -> Iterator[Workspace]:
    """A workspace that is closed however the block ends: descriptors closed, the private
    directory removed."""
    workspace = Workspace()
    try:
        yield workspace
    finally:
        workspace.close()
