"""A plan's registry reads, started as soon as each becomes possible: one lane per registry.

Planning used to run in global phases with a barrier after each (every tag list, then every
source digest, then every destination check), so each phase waited for its slowest request and
the plan's time was the sum of the phases' tails. Here each repository moves on by itself: its
tag list done, its digests are asked for; a digest known, the destination is checked
(`resolve.py`, `engine.py`). Work for one registry goes to that registry's lane, a thread pool
as large as a registry's reads limit can grow (`oci/read_limit.py`; the client holds a slot of
it for every read), so a slow or throttling registry holds up only its own lane's threads, and
the limit, not the number of threads, decides how many reads are in flight.

`Lanes` runs tasks; a `Tracker` counts the tasks of one piece of work (one resolution level,
one target's checks) so that its owner can wait for exactly those. Tasks report their own
failures (they store them where their result would go, to be raised in a deterministic order by
whoever reads the results); a task that raises anyway is a bug, re-raised by `Tracker.wait`.
`Once` is a value computed once by the first task that asks for it, with continuations for the
others (a tag list several entries of the spec need, a digest two charts depend on).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from .context import RunContext
from .oci.read_limit import ceiling_for

__all__ = ["Lanes", "Once", "Tracker"]

T = TypeVar("T")


class Tracker:
    """The tasks of one piece of work: `wait` returns when all have finished, those they
    started included."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending = 0
        self._bug: BaseException | None = None

    def _add(self) -> None:
        with self._cond:
            self._pending += 1

    def _done(self, bug: BaseException | None) -> None:
        with self._cond:
            self._pending -= 1
            if bug is not None and self._bug is None:
                self._bug = bug
            if not self._pending:
                self._cond.notify_all()

    def wait(self) -> None:
        with self._cond:
            while self._pending:
                self._cond.wait()
            bug = self._bug
        if bug is not None:
            raise bug


class Lanes:
    """One thread pool per registry host, as large as the run's reads limits may grow."""

    def __init__(self, ctx: RunContext) -> None:
        self._threads = ceiling_for(ctx.reads)
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Lanes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)

    def submit(self, tracker: Tracker, host: str, task: Callable[[], None]) -> None:
        """Run `task` on the lane of the registry `host`, counted by `tracker`."""
        with self._lock:
            pool = self._pools.get(host)
            if pool is None:
                pool = self._pools[host] = ThreadPoolExecutor(
                    self._threads, thread_name_prefix=f"reads {host}"
                )
        tracker._add()

        def run() -> None:
            bug: BaseException | None = None
            try:
                task()
            except BaseException as exc:  # tasks keep their own errors: anything else is a bug
                bug = exc
            finally:
                tracker._done(bug)

        pool.submit(run)

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the lanes' tasks (`cancel`: drop those not started, after an error)."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=cancel)


class Once(Generic[T]):
    """A value (or the error computing it) that one task computes and many may wait for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None
        self._waiters: list[Callable[[Once[T]], None]] = []

    def then(self, continuation: Callable[[Once[T]], None]) -> None:
        """Call `continuation(self)` once it is done: now if it is, else in the task that
        finishes it."""
        with self._lock:
            if not self.done:
                self._waiters.append(continuation)
                return
        continuation(self)

    def compute(self, fn: Callable[[], T]) -> None:
        """Compute it with `fn` (its exception is kept as `error`), then run the waiters."""
        try:
            value, error = fn(), None
        except Exception as exc:  # kept, raised by the reader in its own order
            value, error = None, exc
        with self._lock:
            self.value, self.error, self.done = value, error, True
            waiters, self._waiters = self._waiters, []
        for continuation in waiters:
            continuation(self)

    def get(self) -> T:
        """The value; its error if computing it failed. Only once done."""
        assert self.done
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # None only with an error
