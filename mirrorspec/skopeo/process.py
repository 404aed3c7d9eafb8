"""skopeo as a child process: finding it, what it inherits from us, and its life tied to ours.

- Credentials never reach skopeo through argv (any local user reads it in `ps`), nor through
  its environment: that holds only the variables skopeo reads, minus any holding a secret we
  read (`_skopeo_environment`). They come in auth files (`workspace`).
- skopeo dies with us. It runs in its own session (a terminal's Ctrl-C reaches only us, and
  we stop it, so the shutdown is the same for Ctrl-C and `kill <our pid>`), which also means
  nothing tied its life to ours: killed with -9, we would leave it copying. So it is started
  through util-linux `setpriv --pdeathsig KILL`, which sets PR_SET_PDEATHSIG and then execs
  skopeo: the kernel kills skopeo when the thread that started it dies, however it dies.
- Interrupted, no new skopeo starts, and every running one is terminated and waited for
  (`Children.stop`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Generic, TypeVar

from ..credentials import redact
from ..errors import MirrorspecError
from ..threads import join_handling_signals
from .failures import copy_failure

__all__ = [
    "STOP_GRACE",
    "Children",
    "Progress",
    "Skopeo",
    "find_skopeo",
    "run_workers",
]

# The copier's logger, named as before the copier moved into this package (see `schedule`).
log = logging.getLogger("mirrorspec.copy")

STOP_GRACE = 5.0  # seconds an interrupted skopeo gets to exit before SIGKILL


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
    out = subprocess.run(
        [path, "--version"], capture_output=True, text=True, check=False, env=_skopeo_environment()
    ).stdout
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        raise MirrorspecError(f"cannot tell the version of {path} from {out.strip()!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return Skopeo(path, (major, minor, patch))


# What skopeo may inherit: an allowlist, not a list of what to drop. A denylist of cloud
# prefixes let through every credential nobody listed (GITHUB_TOKEN, VAULT_TOKEN, a CI's
# deploy keys), and skopeo reads none of them: its registry logins come from the auth file
# we hand it. Kept are the variables skopeo 1.9's code reads (found in its binary: the Go
# runtime and net/http, containers/image's configuration paths) and a process's usual
# identity, locale and search path:
# - Go runtime and standard library: GODEBUG, GOGC, GOMAXPROCS, GOMEMLIMIT, GOTRACEBACK;
#   TMPDIR (os.TempDir, and containers/image's big temporary files); TZ, ZONEINFO;
#   SSL_CERT_FILE, SSL_CERT_DIR (crypto/x509's roots on Linux); the proxy variables in both
#   cases (net/http's ProxyFromEnvironment, golang.org/x/net/http/httpproxy).
# - containers/image and containers/storage: REGISTRY_AUTH_FILE, DOCKER_CONFIG, the XDG
#   base directories, CONTAINERS_* (registries.conf, containers.conf, storage.conf, rootless
#   ids), REGISTRIES_CONFIG_PATH, STORAGE_DRIVER, STORAGE_OPTS.
# A proxy URL may carry a login: it is the user's proxy for every process, kept as before;
# any value holding a secret mirrorspec has read is dropped whatever its name.
_INHERITED = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "ZONEINFO", "TMPDIR",
        "GODEBUG", "GOGC", "GOMAXPROCS", "GOMEMLIMIT", "GOTRACEBACK",
        "SSL_CERT_FILE", "SSL_CERT_DIR",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
        "http_proxy", "https_proxy", "no_proxy", "all_proxy",
        "REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "REGISTRIES_CONFIG_PATH", "STORAGE_DRIVER", "STORAGE_OPTS",
        "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_CACHE_HOME",
    }
)  # fmt: skip
_INHERITED_PREFIXES = ("LC_", "CONTAINERS_")


def _skopeo_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment skopeo runs with: the variables it reads (`_INHERITED`), minus any
    whose value holds a secret we have read (an `{env: VAR}` password, say). A process's
    environment is readable by its owner in /proc, and skopeo gets its credentials from the
    auth file anyway; proxies, HOME and TLS settings stay."""
    environ = dict(os.environ if environ is None else environ)
    return {
        name: value
        for name, value in environ.items()
        if (name in _INHERITED or name.startswith(_INHERITED_PREFIXES)) and redact(value) == value
    }


class Children:
    """The skopeo processes running now, so that an interruption can stop them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()
        self.stopping = False

    def start(self, argv: list[str], *, pass_fds: Sequence[int] = ()) -> subprocess.Popen[str] | None:
        """A started skopeo, or None once stopping (no copy may start after that)."""
        with self._lock:
            if self.stopping:
                return None
            proc = subprocess.Popen(
                [*_die_with_parent(), *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_skopeo_environment(),
                pass_fds=tuple(pass_fds),
                # Its own session: a terminal's Ctrl-C reaches only us, and we stop it, so
                # the shutdown is the same for Ctrl-C and `kill <pid>`.
                start_new_session=True,
            )
            self._running.add(proc)
            return proc

    def forget(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._running.discard(proc)

    def copy(
        self, argv: list[str], *, pass_fds: Sequence[int] = (), timeout: float
    ) -> tuple[str | None, bool]:
        """Run one `skopeo copy` to its end: (error or None, whether another attempt may help),
        as `failures.copy_failure` judges its exit and stderr. A copy that outlasts `timeout`
        is killed; one refused because we are stopping never started."""
        proc = self.start(argv, pass_fds=pass_fds)
        if proc is None:
            return "interrupted before it started", False
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return f"skopeo did not finish within {timeout:.0f}s", False
        finally:
            self.forget(proc)
        return copy_failure(proc.returncode, stderr)

    def stop(self) -> None:
        """Terminate every running skopeo and wait for it (SIGKILL after `STOP_GRACE`)."""
        with self._lock:
            self.stopping = True
            running = list(self._running)
        for proc in running:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()


_R = TypeVar("_R")


class Progress(Generic[_R]):
    """A copier's `on_done`, called from worker threads one at a time, and closed at an
    interruption: a copy that still finishes while the others are being stopped (its
    verification or manifest PUT outlasting `STOP_GRACE`) reports nothing, so the CLI's
    "N of M copied" line stays the last word and its count exact."""

    def __init__(self, on_done: Callable[[_R], None] | None) -> None:
        self._on_done = on_done
        self._lock = threading.Lock()
        self._closed = False

    def report(self, result: _R) -> None:
        if self._on_done is None:
            return
        with self._lock:
            if not self._closed:
                self._on_done(result)

    def close(self) -> None:
        with self._lock:  # a report under way ends first; none comes after
            self._closed = True


def run_workers(work: Callable[[], None], count: int, name: str, interrupt: Callable[[], None]) -> None:
    """`count` threads running `work`, waited for. Interrupted while waiting (Ctrl-C, SIGTERM
    raised in this thread): `interrupt()` (start nothing new, stop what runs), then each
    thread gets `STOP_GRACE` to end before the exception goes on."""
    threads = [threading.Thread(target=work, name=f"{name}-{i}", daemon=True) for i in range(max(1, count))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            join_handling_signals(thread)
    except BaseException:
        interrupt()
        for thread in threads:
            thread.join(timeout=STOP_GRACE)
        raise


@cache
def _die_with_parent() -> tuple[str, ...]:
    """The argv prefix that makes a child die with the thread that started it.

    `setpriv --pdeathsig KILL` (util-linux ≥ 2.33) calls prctl(PR_SET_PDEATHSIG) and execs
    the command; the setting survives exec (prctl(2)). Done in the child by Python instead
    (`preexec_fn`), it would run Python code between fork and exec in a threaded process,
    which subprocess documents as unsafe. The thread that starts a skopeo waits for it, so
    the signal comes only when the process itself dies."""
    path = shutil.which("setpriv")
    if path is None:
        log.debug("setpriv not found: skopeo children will not die with mirrorspec if it is killed")
        return ()
    return (path, "--pdeathsig", "KILL")


def _signal_group(proc: subprocess.Popen[str], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, signum)
