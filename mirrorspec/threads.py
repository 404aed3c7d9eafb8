"""Waiting for a thread without deafening the process to Ctrl-C and SIGTERM."""

from __future__ import annotations

import threading

__all__ = ["join_handling_signals"]

# How often a thread waiting for another looks at pending signals (`join_handling_signals`).
_JOIN_POLL = 0.1


def join_handling_signals(thread: threading.Thread) -> None:
    """`thread.join()` that lets a SIGINT/SIGTERM be handled meanwhile. A process signal the
    kernel delivers to another thread only sets Python's flag; its handler runs when the main
    thread next executes bytecode, which a blocking join never does while the thread hangs: a
    fresh-clone CI run saw apply ignore SIGTERM for 60 s so (tests/test_interrupt.py)."""
    while thread.is_alive():
        thread.join(timeout=_JOIN_POLL)
