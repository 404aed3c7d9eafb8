"""The real `mirrorspec` console script in a subprocess, the way the CLI tests run it.

One runner, so that every test that drives the CLI holds it to the same bar: no traceback on
either stream, none of the test's secrets in either stream, the exit code it expects. The
environment drops `MIRRORSPEC_DEBUG` unless the test passes its own: a developer's debug
setting would turn one-line errors into tracebacks and fail tests that are right.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["MIRRORSPEC", "environment", "run"]

MIRRORSPEC = str(Path(sys.executable).with_name("mirrorspec"))


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without `MIRRORSPEC_DEBUG`, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if k != "MIRRORSPEC_DEBUG"}, **extra}


def run(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: int | None = 0,
    never: Iterable[str] = (),
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """`mirrorspec ARGS`; asserts no traceback and none of `never` on stdout or stderr, and the
    exit code `check` (None: any)."""
    proc = subprocess.run(
        [MIRRORSPEC, *args],
        capture_output=True,
        text=True,
        env=dict(environment() if env is None else env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    for stream in (proc.stdout, proc.stderr):
        assert "Traceback" not in stream, stream
        for secret in never:
            assert secret not in stream
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc
