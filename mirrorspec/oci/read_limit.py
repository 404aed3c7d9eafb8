"""How many registry reads are in flight at once, per registry: an adaptive limit of its own.

Planning is round trips: a tag list, then a HEAD per selected tag at the source, then one at each
destination. With a fixed handful in flight, a plan's time grows with the latency to the
registry (issue 15: a no-op resync took 5.4 s at 20 ms one way and 22.9 s at 100 ms with 8 in
flight). Reads are small and cheap for a registry to answer, so they get their own limit, far
above the number of skopeo copies (`--workers`), which move whole images.

`ReadLimit` is that limit for one registry host, shared by every client of a run that reaches
the host (`Transport.read_limit`):

- It starts at `start` (`--reads`, 32 by default) and grows by one after each `limit`
  consecutive reads that finished since it last changed (additive increase, about one step per
  round trip of a full window), up to `ceiling` (`ceiling_for`: `start` itself, so after a
  throttling it grows back to where it began): the pool of connections to the host is sized to
  the ceiling (`RunContext.client`), so every read in flight has a connection to reuse.
- A 429 or 503 answer (the transport sees them, `DeadlineAdapter.send`) halves it, at most once
  per window: answers to requests sent before the last halving do not halve it again (TCP's
  rule for one loss event per round trip, RFC 5681 §3.1), or one burst of 32 refusals would
  take it to 1.
- Its `Retry-After` (RFC 9110 §10.2.3; RFC 6585 §4 for 429) is honoured by every thread, not only
  the one that got it: no new read to the host starts before that time. The refused request
  itself waits in the transport's retry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["DEFAULT_READS", "ReadLimit", "ceiling_for"]

DEFAULT_READS = 32


def ceiling_for(start: int) -> int:
    """How far a limit that starts at `start` may grow while its registry answers well: back
    to `start` after a throttling, no further. Measured (bench B3, 1,000 repositories on this
    2-CPU machine's loopback): letting 32 grow to 64 made the plan 10% slower, not faster, and
    a registry that wants more is rare; `--reads` raises it."""
    return start


class ReadLimit:
    """Reads in flight to one registry host, adaptive (see the module docstring); thread-safe."""

    def __init__(self, start: int = DEFAULT_READS, *, ceiling: int | None = None) -> None:
        if start < 1:
            raise ValueError(f"reads in flight must be at least 1, not {start}")
        self.ceiling = max(start, ceiling if ceiling is not None else ceiling_for(start))
        self._limit = start
        self._in_flight = 0
        self._healthy = 0  # reads finished since the limit last changed
        self._cut_at = float("-inf")  # when the limit was last halved (time.monotonic)
        self._resume_at = float("-inf")  # no read starts before this (a Retry-After)
        self._cond = threading.Condition()
        # What tests and logs read: the highest number in flight at once, and the halvings.
        self.peak = 0
        self.halvings = 0

    @property
    def limit(self) -> int:
        with self._cond:
            return self._limit

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the host's read slots for the `with` block (waits for one)."""
        with self._cond:
            while True:
                wait = self._resume_at - time.monotonic()
                if wait <= 0 and self._in_flight < self._limit:
                    break
                self._cond.wait(wait if wait > 0 else None)
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._healthy += 1
                if self._healthy >= self._limit and self._limit < self.ceiling:
                    self._limit += 1
                    self._healthy = 0
                self._cond.notify_all()

    def throttled(self, sent: float, retry_after: float | None) -> None:
        """The host refused a request sent at `sent` (time.monotonic) with 429/503, asking for
        `retry_after` seconds (None: it named none)."""
        with self._cond:
            now = time.monotonic()
            if sent >= self._cut_at:
                self._limit = max(1, self._limit // 2)
                self._cut_at = now
                self._healthy = 0
                self.halvings += 1
            if retry_after:
                self._resume_at = max(self._resume_at, now + retry_after)
            self._cond.notify_all()
