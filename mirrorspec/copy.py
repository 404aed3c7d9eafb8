"""The fallback copier: skopeo, one tag per process, in parallel, verified afterwards.

What shaped it (research/sync.md §1, testbed.md §3):
- skopeo 1.9.3 exits 0 on many errors and silently ignores keys it does not know, so a
  copy counts as done only when the destination then serves the planned digest.
- Sources are copied *by digest* (`repo@sha256:…` → `dest:tag`): apply copies exactly what
  the plan showed, even if upstream moves the tag in between.
- Credentials reach skopeo only through 0600 auth files in a private 0700 directory that
  is removed afterwards — never argv, where any local user can read them in `ps`.
- A CA bundle becomes a cert dir holding `ca.crt` (skopeo loads only `*.crt` files).
- Destinations are always explicit, never skopeo's `--scoped` or last-component naming.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .context import Endpoint, RunContext
from .credentials import redact
from .errors import MirrorspecError, RegistryError

__all__ = ["CopyJob", "CopyResult", "Skopeo", "copy_all", "find_skopeo"]

_FAILURE = re.compile(r'level=(?:fatal|error)\s+msg="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Skopeo:
    path: str
    version: tuple[int, int, int]

    @property
    def supports_semver(self) -> bool:
        """`images-by-semver` in sync YAML exists from 1.15; older versions ignore it silently."""
        return self.version >= (1, 15, 0)


@cache
def find_skopeo() -> Skopeo:
    path = shutil.which("skopeo")
    if path is None:
        raise MirrorspecError(
            "skopeo is not installed (Debian/Ubuntu: apt-get install skopeo); "
            "it copies what a registry cannot replicate natively"
        )
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        raise MirrorspecError(f"cannot tell the version of {path} from {out.strip()!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return Skopeo(path, (major, minor, patch))


@dataclass(frozen=True)
class CopyJob:
    """Copy `source_repository@digest` to `destination_repository:tag`."""

    source: Endpoint
    source_repository: str
    digest: str
    destination: Endpoint
    destination_repository: str
    tag: str

    @property
    def source_ref(self) -> str:
        return f"{self.source.host}/{self.source_repository}@{self.digest}"

    @property
    def destination_ref(self) -> str:
        return f"{self.destination.host}/{self.destination_repository}:{self.tag}"


@dataclass(frozen=True)
class CopyResult:
    job: CopyJob
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


def copy_all(
    jobs: Sequence[CopyJob],
    ctx: RunContext,
    *,
    on_done: Callable[[CopyResult], None] | None = None,
    timeout: float = 3600.0,
) -> list[CopyResult]:
    """Run every job (up to `ctx.workers` at once); never raises for a failed copy.

    Each result is verified: skopeo must exit 0 with no error line, and the destination
    must then serve the planned digest under the tag.
    """
    if not jobs:
        return []
    skopeo = find_skopeo()
    with _workspace() as workspace:

        def run(job: CopyJob) -> CopyResult:
            started = time.monotonic()
            error = _copy_one(skopeo, workspace, job, timeout) or _verify(job, ctx)
            result = CopyResult(job, error, time.monotonic() - started)
            if on_done is not None:
                on_done(result)
            return result

        with ThreadPoolExecutor(max_workers=max(1, ctx.workers)) as pool:
            return list(pool.map(run, jobs))


def _copy_one(skopeo: Skopeo, workspace: _Workspace, job: CopyJob, timeout: float) -> str | None:
    argv = [
        skopeo.path,
        "copy",
        "--all",
        "--preserve-digests",
        "--retry-times",
        "2",
        *workspace.flags("src", job.source),
        *workspace.flags("dest", job.destination),
        f"docker://{job.source_ref}",
        f"docker://{job.destination_ref}",
    ]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"skopeo did not finish within {timeout:.0f}s"
    failures = _FAILURE.findall(proc.stderr)
    if proc.returncode != 0 or failures:
        # skopeo logs Go-quoted messages; the last error is the one that ended the copy.
        detail = failures[-1].replace('\\"', '"') if failures else _last_line(proc.stderr)
        return redact(f"skopeo exited {proc.returncode}: {detail}")
    return None


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no output"


def _verify(job: CopyJob, ctx: RunContext) -> str | None:
    """None when the destination now serves the planned digest under the tag."""
    try:
        actual = ctx.client(job.destination).digest(job.destination_repository, job.tag)
    except RegistryError as exc:
        return redact(f"copied, but could not verify {job.destination_ref}: {exc}")
    if actual != job.digest:
        return (
            f"skopeo reported success but {job.destination_ref} has "
            f"{actual or 'no manifest'} instead of {job.digest}"
        )
    return None


class _Workspace:
    """A private directory of auth files and cert dirs for one batch of copies."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._made: dict[tuple[str, Endpoint], Path] = {}

    def flags(self, side: str, endpoint: Endpoint) -> list[str]:
        flags = [f"--{side}-authfile", str(self._authfile(endpoint))]
        if endpoint.insecure:
            flags.append(f"--{side}-tls-verify=false")
        elif endpoint.ca_bundle:
            flags += [f"--{side}-cert-dir", str(self._certdir(endpoint))]
        return flags

    def _authfile(self, endpoint: Endpoint) -> Path:
        def make(path: Path) -> None:
            auths = {}
            if endpoint.auth is not None:
                token = f"{endpoint.auth.username}:{endpoint.auth.password}".encode()
                auths[endpoint.host] = {"auth": base64.b64encode(token).decode()}
            # An explicit (possibly empty) auth file keeps skopeo from picking up whatever
            # credentials the user's ~/.docker/config.json happens to hold.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump({"auths": auths}, handle)

        return self._once("auth", endpoint, make)

    def _certdir(self, endpoint: Endpoint) -> Path:
        def make(path: Path) -> None:
            path.mkdir(mode=0o700)
            assert endpoint.ca_bundle is not None
            try:
                shutil.copyfile(endpoint.ca_bundle, path / "ca.crt")
            except OSError as exc:
                raise MirrorspecError(f"cannot read ca-bundle {endpoint.ca_bundle}: {exc.strerror}") from None

        return self._once("certs", endpoint, make)

    def _once(self, kind: str, endpoint: Endpoint, make: Callable[[Path], None]) -> Path:
        with self._lock:
            path = self._made.get((kind, endpoint))
            if path is None:
                path = self.root / f"{kind}-{len(self._made)}"
                make(path)
                self._made[(kind, endpoint)] = path
            return path


@contextmanager
def _workspace() -> Iterator[_Workspace]:
    root = Path(tempfile.mkdtemp(prefix="mirrorspec-"))  # mode 0700
    try:
        yield _Workspace(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
