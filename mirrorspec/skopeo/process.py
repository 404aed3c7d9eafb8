"""skopeo as a child process: finding it, what it inherits from us, and its life tied to ours.

- Credentials never reach skopeo through argv (any local user reads it in `ps`), nor through
  its environment: that is ours minus every variable holding a secret we read and the cloud
  credentials it never needs (`_skopeo_environment`). They come in auth files (`workspace`).
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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from ..credentials import redact
from ..errors import MirrorspecError

__all__ = ["STOP_GRACE", "Children", "Skopeo", "find_skopeo"]

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


# Variables skopeo never needs and that hold cloud credentials: the SDKs' own, by prefix.
# Each provider declares the prefixes its SDK reads (`ENV_PREFIXES`, see `providers.base`);
# this list stays on top of them, so that a cloud's credentials are kept from skopeo whether or
# not its provider is installed, and however a provider's declaration changes.
_BUILT_IN_PREFIXES = ("AWS_", "AZURE_", "ARM_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_")


@cache
def _credential_prefixes() -> tuple[str, ...]:
    """The built-in prefixes and those every installed provider declares."""
    # Imported on first use: it loads every installed provider, which only a copy needs here.
    from .. import providers

    declared = (prefix for _, prefixes in providers.declared("ENV_PREFIXES") for prefix in prefixes)
    return tuple(dict.fromkeys((*_BUILT_IN_PREFIXES, *declared)))


def _skopeo_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment skopeo runs with: ours without cloud credentials and without any
    variable whose value holds a secret we have read (an `{env: VAR}` password, say). A
    process's environment is readable by its owner in /proc, and skopeo gets its
    credentials from the auth file anyway; proxies, HOME and TLS settings stay."""
    environ = dict(os.environ if environ is None else environ)
    return {
        name: value
        for name, value in environ.items()
        if not name.startswith(_credential_prefixes()) and redact(value) == value
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
