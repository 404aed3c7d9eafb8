"""The copier's scheduler: which copy runs next, how many at once, and retries.

Because `skopeo sync` copies one image after another and re-reads everything
(research/sync.md §1.3-1.4), and users resync hundreds of repositories over slow links:
- Up to `ctx.workers` (`-j`) copies run at once, and at most a per-registry limit of them
  touch one registry host (source or destination). A worker takes the first job whose hosts
  both have a free slot, so a busy registry never idles the others.
- The per-registry limit adapts, the way TCP's congestion window does (RFC 5681: slow start,
  then additive increase, multiplicative decrease). It starts at `PER_REGISTRY_START` (8) and
  grows by one with every *quick* success (slow start) up to `PER_REGISTRY_MAX` (24); a slow
  success ends the slow start, after which it grows by one per `limit` quick successes in a
  row. A throttled copy (429 or `toomanyrequests` in skopeo's stderr, `failures.is_throttled`)
  halves the limit of the host it names, never below 1, and ends the slow start too. Quick
  means within `SLOW_FACTOR` times the fastest copy seen at that host: a copy slower than that
  says the registry, the link or our CPU is saturated, and more copies at once would only
  queue (skopeo's time is round trips, ~1.3 s at 20 ms one way; a saturated machine shows up
  as longer copies, not as errors). `-j` caps it all: the limit never exceeds `ctx.workers`,
  since no more copies than workers run at all. `copy_all(per_registry=N)` fixes the limit at
  N (start and ceiling) for callers that want a fixed one.
- Transient failures (connection reset/refused, timeouts, 5xx, 429 — recognised in skopeo's
  error text, the only thing it gives us: `failures`) are retried with exponential backoff and jitter;
  a job waiting out its backoff holds neither a worker nor a registry slot. Authentication,
  authorisation, unknown manifests and anything unrecognised fail at once: retrying cannot
  fix them. skopeo's own `--retry-times` is not used, so that retries happen in one place,
  with jitter (1.9.3 has none) and counted in the summary. A 5xx of skopeo's check of a
  destination blob that repeats for the same blob is damaged storage, not retried
  (`storage_damage.py`: a full disk leaves docker-registry answering 500 for it forever).
- Copies running at once go to different destination repositories (round-robin), so the tags
  of one repository, which usually share layers, follow each other and find them there.
- Tags of one destination repository that share a digest are copied once: the first copy
  moves the blobs; the others wait for it and are then tagged with a manifest PUT (`retag`);
  should a PUT fail, they copy from the destination itself (`dest@digest` → `dest:tag`), which
  moves no blob and sends the source no request at all.
- Copies of one digest into one destination repository run one at a time (a worker takes
  other ready work meanwhile): each of them re-uploads the same manifest, and
  docker-registry 2.8 rewrites its revision link on every upload in place, truncating the
  file first (registry/storage/driver/filesystem/driver.go: `PutContent` → `Writer` →
  `fp.Truncate(0)`; distribution v3 writes a temporary file and renames it), so a concurrent
  `GET …/manifests/sha256:…` can read the empty link and answer 500 "invalid checksum digest
  format" (registry/storage/blobstore.go: `readlink` → `digest.Parse`). Eight such copies at
  once met it in 21 of 100 rounds here. Serialising per manifest, not per repository, keeps
  the tags of one repository with different digests copying in parallel.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..context import Endpoint
from .failures import is_throttled
from .jobs import CopyJob, CopyResult

__all__ = [
    "BACKOFF",
    "BACKOFF_MAX",
    "PER_REGISTRY_MAX",
    "PER_REGISTRY_START",
    "RETRIES",
    "SLOW_FACTOR",
    "Schedule",
    "Task",
    "default_per_registry",
    "default_workers",
]

# The name users see on stderr ("WARNING mirrorspec.copy: retrying …"), kept when the
# copier moved into the skopeo package: a log filter or a script may rely on it.
log = logging.getLogger("mirrorspec.copy")

RETRIES = 3  # attempts after the first, for transient failures only
BACKOFF = 1.0  # seconds before the first retry; doubles each time, with jitter
BACKOFF_MAX = 30.0
PER_REGISTRY_START = 8  # copies at one registry host at first
PER_REGISTRY_MAX = 24  # the most the limit grows to while the host answers well
SLOW_FACTOR = 2.0  # a copy slower than this many times the host's fastest stops the growth


def default_workers() -> int:
    """Copies (and registry requests) in flight: skopeo mostly waits on the network (a copy
    of a small image is ~30 round trips), so a few per CPU but at least enough for one
    registry's copy limit to grow to `PER_REGISTRY_MAX`, and at most 32 so that one run stays
    polite. The per-registry limits, not this, keep one registry from being hammered."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(PER_REGISTRY_MAX, min(32, 4 * cpus))


def default_per_registry(workers: int) -> tuple[int, int]:
    """(start, ceiling) of the copies at one registry host at once, within `workers`."""
    workers = max(1, workers)
    return min(workers, PER_REGISTRY_START), min(workers, PER_REGISTRY_MAX)


@dataclass(eq=False)
class Task:
    """One job's way through the schedule."""

    job: CopyJob
    index: int
    leader: Task | None = None  # a copy of the same digest to the same repository, run first
    attempts: int = 0
    started: float = 0.0
    attempt_started: float = 0.0
    not_before: float = 0.0
    result: CopyResult | None = None

    def run_job(self) -> CopyJob:
        """What skopeo is asked to do: after a successful leader, copy within the destination."""
        if self.leader is not None and self.leader.result is not None and self.leader.result.ok:
            job = self.job
            return replace(job, source=job.destination, source_repository=job.destination_repository)
        return self.job

    def hosts(self) -> frozenset[str]:
        job = self.run_job()
        return frozenset({job.source.host.lower(), job.destination.host.lower()})

    def manifest(self) -> tuple[str, str, str]:
        """The manifest this task uploads: (destination host, repository, digest). Whether
        skopeo or, one day, a manifest PUT of our own does it, two uploads of one manifest
        must not overlap (see the module docstring)."""
        job = self.job
        return (job.destination.host.lower(), job.destination_repository, job.digest)


def _round_robin(tasks: Sequence[Task]) -> list[Task]:
    """The first task of every destination repository, then every second one, and so on."""
    by_repository: dict[tuple[str, str], list[Task]] = {}
    for task in tasks:
        key = (task.job.destination.host, task.job.destination_repository)
        by_repository.setdefault(key, []).append(task)
    rounds = max((len(group) for group in by_repository.values()), default=0)
    return [group[i] for i in range(rounds) for group in by_repository.values() if i < len(group)]


@dataclass
class _Host:
    """One registry host's copies: its adaptive limit (see the module docstring)."""

    limit: int
    ceiling: int
    busy: int = 0
    streak: int = 0  # quick successes since the limit last changed
    slow_start: bool = True  # +1 per quick success, until the first slow or throttled copy
    fastest: float | None = None  # seconds of the quickest successful copy so far


class Schedule:
    """Hands tasks to workers within the per-host limits; collects results and retries."""

    def __init__(
        self,
        jobs: Sequence[CopyJob],
        limit: int,
        retries: int,
        backoff: float,
        *,
        ceiling: int | None = None,
    ) -> None:
        """`limit` copies at one host at first, growing to `ceiling` (default: `limit`, a
        fixed limit) while the host answers well."""
        self._cond = threading.Condition()
        self._retries = retries
        self._backoff = backoff
        self._tasks: list[Task] = []
        leaders: dict[tuple[Endpoint, str, str, Endpoint, str], Task] = {}
        for index, job in enumerate(jobs):
            key = (job.source, job.source_repository, job.digest, job.destination, job.destination_repository)
            task = Task(job, index, leaders.get(key))
            leaders.setdefault(key, task)
            self._tasks.append(task)
        # Queued per (source host, destination host), so finding a task that fits is one look
        # per host pair, not one per job; and round-robin over destination repositories, so
        # that copies running at once go to different repositories while the tags of one
        # repository follow each other, finding the layers they share already there.
        self._queues: dict[tuple[str, str], deque[Task]] = {}
        for task in _round_robin(self._tasks):
            pair = (task.job.source.host.lower(), task.job.destination.host.lower())
            self._queues.setdefault(pair, deque()).append(task)
        self._hosts: dict[str, _Host] = {}
        self._limit = max(1, limit)
        self._ceiling = max(self._limit, ceiling or 0)
        self._waiting: list[Task] = []  # in backoff, or behind a leader or an upload of its manifest
        self._uploading: set[tuple[str, str, str]] = set()  # manifests of the tasks running now
        self._unfinished = len(self._tasks)
        self._aborted = False

    def abort(self) -> None:
        """Hand out no more tasks."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    def take(self) -> Task | None:
        """The next task to run, waiting as needed; None when every task has finished."""
        with self._cond:
            while self._unfinished and not self._aborted:
                now = time.monotonic()
                task = self._next_ready(now)
                if task is not None:
                    for host in task.hosts():
                        self._host(host).busy += 1
                    self._uploading.add(task.manifest())
                    task.attempts += 1
                    if task.attempts == 1:
                        task.started = now
                    task.attempt_started = now
                    return task
                wake = min((t.not_before for t in self._waiting if t.not_before > now), default=None)
                self._cond.wait(None if wake is None else wake - now)
            return None

    def _next_ready(self, now: float) -> Task | None:
        for task in self._waiting:
            if task.not_before <= now and self._ready(task):
                self._waiting.remove(task)
                return task
        for queue in self._queues.values():
            while queue:
                task = queue[0]
                if (task.leader is not None and task.leader.result is None) or (
                    task.manifest() in self._uploading
                ):
                    # starts once its leader, or the upload of the same manifest, is done;
                    # meanwhile the queue goes on, so a worker takes other work instead
                    self._waiting.append(queue.popleft())
                    continue
                if not self._ready(task):
                    break
                return queue.popleft()
        return None

    def _ready(self, task: Task) -> bool:
        if task.leader is not None and task.leader.result is None:
            return False
        if task.manifest() in self._uploading:
            return False
        return all(self._host(h).busy < self._host(h).limit for h in task.hosts())

    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(self._limit, self._ceiling)
        return state

    def limit(self, host: str) -> int:
        """The copies `host` may have at once now."""
        with self._cond:
            return self._host(host.lower()).limit

    def finish(
        self, task: Task, error: str | None, transient: bool, *, measured: bool = True
    ) -> CopyResult | None:
        """Record an attempt; the final result, or None when the task will be retried.
        `measured`: the attempt was a skopeo copy whose time says how the hosts are doing (a
        manifest PUT's is no measure of a copy's)."""
        with self._cond:
            now = time.monotonic()
            hosts = task.hosts()
            for host in hosts:
                self._host(host).busy -= 1
            self._uploading.discard(task.manifest())
            self._cond.notify_all()
            if error is None and measured:
                for host in hosts:
                    self._succeeded(host, now - task.attempt_started)
            elif error is not None and transient and is_throttled(error):
                named = [h for h in hosts if h in error.lower()] or list(hosts)
                for host in named:
                    self._throttled(host)
            if error is not None and transient and task.attempts <= self._retries:
                delay = min(BACKOFF_MAX, self._backoff * 2 ** (task.attempts - 1))
                delay *= random.uniform(0.5, 1.0)  # jitter: retries of one burst spread out
                task.not_before = time.monotonic() + delay
                self._waiting.append(task)
                log.warning(
                    "retrying %s in %.1fs (attempt %d of %d): %s",
                    task.job.destination_ref,
                    delay,
                    task.attempts + 1,
                    self._retries + 1,
                    error,
                )
                return None
            if error is not None and task.attempts > 1:
                error = f"{error} (after {task.attempts} attempts)"
            task.result = CopyResult(task.job, error, time.monotonic() - task.started, task.attempts)
            self._unfinished -= 1
            return task.result

    def _succeeded(self, name: str, seconds: float) -> None:
        host = self._host(name)
        if host.fastest is None or seconds < host.fastest:
            host.fastest = seconds
        if seconds > SLOW_FACTOR * host.fastest:
            # saturated: more copies at once would only queue; grow no further for now
            if host.slow_start:
                log.debug(
                    "%s: a copy took %.1fs (fastest %.1fs): %d copies at once",
                    name,
                    seconds,
                    host.fastest,
                    host.limit,
                )
            host.slow_start = False
            host.streak = 0
            return
        host.streak += 1
        if host.limit < host.ceiling and (host.slow_start or host.streak >= host.limit):
            host.limit += 1
            host.streak = 0
            log.debug("%s: %d copies at once", name, host.limit)

    def throttled(self, host: str) -> None:
        """`host` answered 429 to a request of our own (a manifest PUT)."""
        with self._cond:
            self._throttled(host.lower())

    def _throttled(self, name: str) -> None:
        host = self._host(name)
        if host.limit > 1:
            host.limit = max(1, host.limit // 2)
            log.warning("%s is throttling: at most %d copies at once from now on", name, host.limit)
        host.streak = 0
        host.slow_start = False

    def results(self) -> list[CopyResult]:
        with self._cond:
            return [t.result for t in self._tasks if t.result is not None]
