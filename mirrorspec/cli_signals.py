"""SIGINT and SIGTERM while a command runs: both raise `Interrupted` in the main thread, which
ends the run the same orderly way (copies stopped and waited for, temporary auth files removed,
one line of what was done), and a second signal during that shutdown is ignored, so that a
quick double Ctrl-C cannot leave credentials behind."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Interrupted", "signals_interrupt"]


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException like KeyboardInterrupt, so that no
    `except Exception` swallows it, but not one, so that click does not turn it into Abort."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.detail = ""


def _on_signal(signum: int, frame: object) -> None:
    # From here on the run is shutting down: a second signal must not cut the cleanup short.
    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` while the command runs (main thread only:
    elsewhere Python cannot install handlers); the previous handlers come back after, unless
    the run was interrupted: then the process is on its way out and further signals stay
    ignored (`_on_signal`). Handed back, Python's own SIGINT handler would raise
    KeyboardInterrupt in the exit handlers if an impatient second Ctrl-C came late, and print
    a traceback after the summary line (seen once in CI)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, _on_signal)
    interrupted = False
    try:
        yield
    except Interrupted:
        interrupted = True
        raise
    finally:
        if not interrupted:
            for signum, handler in previous.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)
