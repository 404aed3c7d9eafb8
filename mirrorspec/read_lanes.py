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
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from .context import RunContext
from .oci.read_limit import ceiling_for
from .threads import join_handling_signals

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


class _Lane:
    """One registry's threads and the queue of tasks they take from, oldest first. A batch of
    tasks is queued at once: `ThreadPoolExecutor.submit` hands the GIL to a woken worker after
    nearly every call, and a plan's first 1,000 tag lists took the main thread 2 s to submit
    one by one (cProfile of bench B3)."""

    def __init__(self, host: str, threads: int) -> None:
        self._host = host
        self._max = threads
        self._tasks: deque[Callable[[], None]] = deque()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, tasks: list[Callable[[], None]]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError(f"the lane of {self._host} is closed")
            wanted = min(len(self._tasks) + len(tasks) - self._idle, self._max - len(self._threads))
            started = [
                threading.Thread(target=self._work, name=f"reads {self._host}", daemon=True)
                for _ in range(max(0, wanted))
            ]
            self._threads += started
        # Started before the tasks are queued: `Thread.start` waits for the new thread to run,
        # which takes a switch interval or more each while the lane's other threads are busy
        # (64 starts cost 2 s in a plan of 1,000 repositories).
        for thread in started:
            thread.start()
        with self._cond:
            self._tasks.extend(tasks)
            self._cond.notify(len(tasks))

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._tasks and not self._closed:
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                if not self._tasks:
                    return
                task = self._tasks.popleft()
            task()

    def close(self, *, cancel: bool) -> None:
        with self._cond:
            self._closed = True
            if cancel:
                self._tasks.clear()
            self._cond.notify_all()
            threads = list(self._threads)
        for thread in threads:
            join_handling_signals(thread)  # a Ctrl-C while a read hangs is still handled


class Lanes:
    """One lane (threads and a queue) per registry host, with as many threads as the run's
    reads limits allow in flight. Tasks submitted inside `batch()` are queued when it ends, a
    lane's at once."""

    def __init__(self, ctx: RunContext) -> None:
        self._threads = ceiling_for(ctx.reads)
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()
        self._batch = threading.local()

    def __enter__(self) -> Lanes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold this thread's submissions until the block ends, then queue them per lane."""
        pending: dict[str, list[Callable[[], None]]] = {}
        self._batch.pending = pending
        try:
            yield
        finally:
            self._batch.pending = None
            for host, tasks in pending.items():
                self._lane(host).submit(tasks)

    def submit(self, tracker: Tracker, host: str, task: Callable[[], None]) -> None:
        """Run `task` on the lane of the registry `host`, counted by `tracker`."""
        tracker._add()

        def run() -> None:
            bug: BaseException | None = None
            try:
                task()
            except BaseException as exc:  # tasks keep their own errors: anything else is a bug
                bug = exc
            finally:
                tracker._done(bug)

        pending: dict[str, list[Callable[[], None]]] | None = getattr(self._batch, "pending", None)
        if pending is not None:
            pending.setdefault(host, []).append(run)
        else:
            self._lane(host).submit([run])

    def _lane(self, host: str) -> _Lane:
        with self._lock:
            lane = self._lanes.get(host)
            if lane is None:
                lane = self._lanes[host] = _Lane(host, self._threads)
            return lane

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the lanes' tasks (`cancel`: drop those not started, after an error)."""
        with self._lock:
            lanes = list(self._lanes.values())
            self._lanes.clear()
        for lane in lanes:
            lane.close(cancel=cancel)


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
