"""The fallback copier: skopeo, one tag per process, in parallel, verified afterwards.

What shaped it (research/sync.md §1, testbed.md §3):
- skopeo 1.9.3 exits 0 on many errors and silently ignores keys it does not know, so a
  copy counts as done only when the destination then serves the planned digest.
- Sources are copied *by digest* (`repo@sha256:…` → `dest:tag`): apply copies exactly what
  the plan showed, even if upstream moves the tag in between.
- Credentials reach skopeo only through auth files that exist nowhere on disk: an anonymous
  in-memory file (`memfd_create`, mode 0600) per endpoint, handed to each skopeo as an
  inherited descriptor and named `/proc/self/fd/N` on its command line (containers/image
  opens the path like any other file). They vanish with the last process holding them, so
  even `kill -9` of mirrorspec leaves no credential behind — a file in `$TMPDIR` would stay
  forever. Never argv (any local user reads it in `ps`); skopeo's environment is ours minus
  every variable holding a secret we read and the cloud credentials it never needs
  (`_skopeo_environment`). Where memfd does not exist (not Linux), 0600 files in a private
  0700 directory are the fallback.
- skopeo dies with us. It runs in its own session (a terminal's Ctrl-C reaches only us, and
  we stop it, so the shutdown is the same for Ctrl-C and `kill <our pid>`), which also means
  nothing tied its life to ours: killed with -9, we would leave it copying. So it is started
  through util-linux `setpriv --pdeathsig KILL`, which sets PR_SET_PDEATHSIG and then execs
  skopeo: the kernel kills skopeo when the thread that started it dies, however it dies.
- Interrupted (Ctrl-C, SIGTERM turned into an exception by the CLI), no new copy starts,
  every running skopeo is terminated and waited for, and the workspace is removed before the
  exception goes on. A killed copy is not counted: skopeo pushes the manifest last, so its
  tag does not exist and the next plan still lists it.
- A CA bundle becomes a cert dir holding `ca.crt` (skopeo loads only `*.crt` files), in a
  private directory `mirrorspec-<pid>-*` made only when needed; one left by a process that
  was killed is removed by the next run (it holds public certificates only).
- Destinations are always explicit, never skopeo's `--scoped` or last-component naming.

Scheduling, because `skopeo sync` copies one image after another and re-reads everything
(research/sync.md §1.3-1.4), and users resync hundreds of repositories over slow links:
- Up to `ctx.workers` skopeo processes run at once, but never more than `per_registry` of
  them touch one registry host (source or destination), so a large `--workers` cannot hammer
  one registry. A worker takes the first job whose hosts both have a free slot, so a busy
  registry never idles the others. A registry that answers 429 has its limit halved; it grows
  back by one after as many successes in a row as the limit.
- Transient failures (connection reset/refused, timeouts, 5xx, 429 — recognised in skopeo's
  error text, the only thing it gives us) are retried with exponential backoff and jitter;
  a job waiting out its backoff holds neither a worker nor a registry slot. Authentication,
  authorisation, unknown manifests and anything unrecognised fail at once: retrying cannot
  fix them. skopeo's own `--retry-times` is not used, so that retries happen in one place,
  with jitter (1.9.3 has none) and counted in the summary. A 5xx of skopeo's check of a
  destination blob that repeats for the same blob is damaged storage, not retried
  (`storage_damage.py`: a full disk leaves docker-registry answering 500 for it forever).
- Copies running at once go to different destination repositories (round-robin), so the tags
  of one repository, which usually share layers, follow each other and find them there.
- Tags of one destination repository that share a digest are copied once: the first copy
  moves the blobs; the others wait for it and then copy from the destination itself
  (`dest@digest` → `dest:tag`), which moves no blob and sends the source no request at all.
- Copies of one digest into one destination repository run one at a time (a worker takes
  other ready work meanwhile): each of them re-uploads the same manifest, and
  docker-registry 2.8 rewrites its revision link on every upload in place, truncating the
  file first (registry/storage/driver/filesystem/driver.go: `PutContent` → `Writer` →
  `fp.Truncate(0)`; distribution v3 writes a temporary file and renames it), so a concurrent
  `GET …/manifests/sha256:…` can read the empty link and answer 500 "invalid checksum digest
  format" (registry/storage/blobstore.go: `readlink` → `digest.Parse`). Eight such copies at
  once met it in 21 of 100 rounds here. Serialising per manifest, not per repository, keeps
  the tags of one repository with different digests copying in parallel.
- Bytes are not reported: skopeo 1.9.3 prints blob digests off a terminal but neither their
  sizes nor whether a blob was skipped or mounted, so bytes moved are not observable here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from ..context import Endpoint, RunContext
from ..credentials import redact
from ..errors import MirrorspecError, RegistryError
from ..files import read_ca_bundle
from ..storage_damage import BlobDamage, manifest_digest
from ..tls_failures import explain_tls_failure

__all__ = [
    "CopyJob",
    "CopyResult",
    "CopySummary",
    "Skopeo",
    "copy_all",
    "default_per_registry",
    "default_workers",
    "find_skopeo",
    "is_transient",
]

# The name users see on stderr ("WARNING mirrorspec.copy: retrying …"), kept when the
# copier moved into the skopeo package: a log filter or a script may rely on it.
log = logging.getLogger("mirrorspec.copy")

_FAILURE = re.compile(r'level=(?:fatal|error)\s+msg="((?:[^"\\]|\\.)*)"')

# Failures that another attempt can fix: the network or an overloaded registry. Texts are
# those Go's net/http and containers/image 5.22 (skopeo 1.9.3) put in their errors.
_TRANSIENT = re.compile(
    r"connection reset|connection refused|broken pipe|unexpected EOF|\bEOF\b|i/o timeout"
    r"|TLS handshake timeout|timeout awaiting response headers|context deadline exceeded"
    r"|Client\.Timeout exceeded|server closed idle connection|http2: server sent GOAWAY"
    r"|use of closed network connection|network is unreachable|no route to host"
    r"|HTTP status: 5\d\d|StatusCode: 5\d\d|\b50[0234] \(?(?:Internal Server Error|Bad Gateway"
    r"|Service Unavailable|Gateway Timeout)|\bunavailable:|(?:HTTP status: |StatusCode: )429\b"
    r"|too ?many ?requests",
    re.IGNORECASE,
)
# A bare "429" could be the end of a digest: only a status or the reason phrase counts.
_THROTTLED = re.compile(r"(?:HTTP status: |StatusCode: )429\b|too ?many ?requests", re.IGNORECASE)
# Failures no retry can fix; they win over a transient-looking word in the same message.
_PERMANENT = re.compile(
    r"unauthorized|authentication required|denied|forbidden|StatusCode: 40[134]\b"
    r"|HTTP status: 40[134]\b|manifest unknown|name unknown|not found|invalid reference"
    r"|x509:|certificate|no such host|unsupported",
    re.IGNORECASE,
)

RETRIES = 3  # attempts after the first, for transient failures only
BACKOFF = 1.0  # seconds before the first retry; doubles each time, with jitter
BACKOFF_MAX = 30.0
PER_REGISTRY_MAX = 8
STOP_GRACE = 5.0  # seconds an interrupted skopeo gets to exit before SIGKILL


def default_workers() -> int:
    """Copies (and registry requests) in flight: skopeo mostly waits on the network, so a few
    per CPU, capped so that one run stays polite."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(32, 4 * cpus))


def default_per_registry(workers: int) -> int:
    """skopeo processes at one registry host at once."""
    return max(1, min(workers, PER_REGISTRY_MAX))


def is_transient(error: str) -> bool:
    """Whether another attempt may succeed where skopeo failed with `error`."""
    return bool(_TRANSIENT.search(error)) and not _PERMANENT.search(error)


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
    seconds: float  # from the first attempt's start to the end, backoff included
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class CopySummary:
    """What a batch of copies came to. No byte count: see the module docstring."""

    copied: int
    failed: int
    retries: int  # attempts beyond the first, over all copies

    @classmethod
    def of(cls, results: Iterable[CopyResult]) -> CopySummary:
        copied = failed = retries = 0
        for result in results:
            copied += result.ok
            failed += not result.ok
            retries += result.attempts - 1
        return cls(copied, failed, retries)

    def __str__(self) -> str:
        return f"copied {self.copied}, failed {self.failed}"


def copy_all(
    jobs: Sequence[CopyJob],
    ctx: RunContext,
    *,
    on_done: Callable[[CopyResult], None] | None = None,
    timeout: float = 3600.0,
    per_registry: int | None = None,
    retries: int = RETRIES,
    backoff: float = BACKOFF,
) -> list[CopyResult]:
    """Run every job; never raises for a failed copy. Results come back in job order.

    Up to `ctx.workers` copies run at once, at most `per_registry` (default
    `default_per_registry(ctx.workers)`) per registry host. Transient failures are retried
    up to `retries` times, after `backoff`, 2×`backoff`, … seconds (with jitter).
    `on_done` is called once per job as it finishes, from worker threads but never two
    calls at once.

    Each result is verified: skopeo must exit 0 with no error line, and the destination
    must then serve the planned digest under the tag.
    """
    if not jobs:
        return []
    skopeo = find_skopeo()
    limit = per_registry if per_registry is not None else default_per_registry(ctx.workers)
    schedule = _Schedule(jobs, limit, retries, backoff)
    damage = BlobDamage(ctx)
    callback_lock = threading.Lock()
    with _workspace() as workspace:
        crashed: list[BaseException] = []
        children = _Children()

        def work() -> None:
            try:
                while (task := schedule.take()) is not None:
                    error, transient = _copy_one(skopeo, workspace, children, task.run_job(), timeout)
                    if error is not None and children.stopping:
                        return  # interrupted: a killed copy is neither done nor failed
                    if error is None:
                        error = _verify(task.job, ctx)
                    elif transient and (diagnosis := damage.judge(task.job, error)) is not None:
                        error, transient = diagnosis, False  # a 5xx that repeats: no retry fixes it
                    result = schedule.finish(task, error, transient)
                    if result is not None and on_done is not None:
                        with callback_lock:
                            on_done(result)
            except BaseException as exc:  # e.g. an unreadable ca-bundle: stop everyone, re-raise
                crashed.append(exc)
                schedule.abort()

        threads = [
            threading.Thread(target=work, name=f"mirrorspec-copy-{i}", daemon=True)
            for i in range(max(1, min(ctx.workers, len(jobs))))
        ]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        except BaseException:  # interrupted: start nothing new, stop what runs, then clean up
            schedule.abort()
            children.stop()
            for thread in threads:
                thread.join(timeout=STOP_GRACE)
            raise
    if crashed:
        raise crashed[0]
    return schedule.results()


@dataclass(eq=False)
class _Task:
    """One job's way through the schedule."""

    job: CopyJob
    index: int
    leader: _Task | None = None  # a copy of the same digest to the same repository, run first
    attempts: int = 0
    started: float = 0.0
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


def _round_robin(tasks: Sequence[_Task]) -> list[_Task]:
    """The first task of every destination repository, then every second one, and so on."""
    by_repository: dict[tuple[str, str], list[_Task]] = {}
    for task in tasks:
        key = (task.job.destination.host, task.job.destination_repository)
        by_repository.setdefault(key, []).append(task)
    rounds = max((len(group) for group in by_repository.values()), default=0)
    return [group[i] for i in range(rounds) for group in by_repository.values() if i < len(group)]


@dataclass
class _Host:
    limit: int
    ceiling: int
    busy: int = 0
    streak: int = 0  # successes since the limit last changed


class _Schedule:
    """Hands tasks to workers within the per-host limits; collects results and retries."""

    def __init__(self, jobs: Sequence[CopyJob], limit: int, retries: int, backoff: float) -> None:
        self._cond = threading.Condition()
        self._retries = retries
        self._backoff = backoff
        self._tasks: list[_Task] = []
        leaders: dict[tuple[Endpoint, str, str, Endpoint, str], _Task] = {}
        for index, job in enumerate(jobs):
            key = (job.source, job.source_repository, job.digest, job.destination, job.destination_repository)
            task = _Task(job, index, leaders.get(key))
            leaders.setdefault(key, task)
            self._tasks.append(task)
        # Queued per (source host, destination host), so finding a task that fits is one look
        # per host pair, not one per job; and round-robin over destination repositories, so
        # that copies running at once go to different repositories while the tags of one
        # repository follow each other, finding the layers they share already there.
        self._queues: dict[tuple[str, str], deque[_Task]] = {}
        for task in _round_robin(self._tasks):
            pair = (task.job.source.host.lower(), task.job.destination.host.lower())
            self._queues.setdefault(pair, deque()).append(task)
        self._hosts: dict[str, _Host] = {}
        self._limit = max(1, limit)
        self._waiting: list[_Task] = []  # in backoff, or behind a leader or an upload of its manifest
        self._uploading: set[tuple[str, str, str]] = set()  # manifests of the tasks running now
        self._unfinished = len(self._tasks)
        self._aborted = False

    def abort(self) -> None:
        """Hand out no more tasks."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    def take(self) -> _Task | None:
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
                    return task
                wake = min((t.not_before for t in self._waiting if t.not_before > now), default=None)
                self._cond.wait(None if wake is None else wake - now)
            return None

    def _next_ready(self, now: float) -> _Task | None:
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

    def _ready(self, task: _Task) -> bool:
        if task.leader is not None and task.leader.result is None:
            return False
        if task.manifest() in self._uploading:
            return False
        return all(self._host(h).busy < self._host(h).limit for h in task.hosts())

    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(self._limit, self._limit)
        return state

    def finish(self, task: _Task, error: str | None, transient: bool) -> CopyResult | None:
        """Record an attempt; the final result, or None when the task will be retried."""
        with self._cond:
            hosts = task.hosts()
            for host in hosts:
                self._host(host).busy -= 1
            self._uploading.discard(task.manifest())
            self._cond.notify_all()
            if error is None:
                for host in hosts:
                    self._succeeded(self._host(host))
            elif transient and _THROTTLED.search(error):
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

    def _succeeded(self, host: _Host) -> None:
        host.streak += 1
        if host.limit < host.ceiling and host.streak >= host.limit:
            host.limit += 1
            host.streak = 0

    def _throttled(self, name: str) -> None:
        host = self._host(name)
        if host.limit > 1:
            host.limit = max(1, host.limit // 2)
            log.warning("%s is throttling: at most %d copies at once from now on", name, host.limit)
        host.streak = 0

    def results(self) -> list[CopyResult]:
        with self._cond:
            return [t.result for t in self._tasks if t.result is not None]


def _copy_one(
    skopeo: Skopeo, workspace: _Workspace, children: _Children, job: CopyJob, timeout: float
) -> tuple[str | None, bool]:
    """(error or None, whether the error is worth another attempt)."""
    src_flags, src_fds = workspace.flags("src", job.source)
    dest_flags, dest_fds = workspace.flags("dest", job.destination)
    argv = [
        skopeo.path,
        "copy",
        "--all",
        "--preserve-digests",
        *src_flags,
        *dest_flags,
        f"docker://{job.source_ref}",
        f"docker://{job.destination_ref}",
    ]
    proc = children.start(argv, pass_fds=(*src_fds, *dest_fds))
    if proc is None:
        return "interrupted before it started", False
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return f"skopeo did not finish within {timeout:.0f}s", False
    finally:
        children.forget(proc)
    # Redacted whole, before anything is picked out or cut: a registry may have echoed our
    # Authorization header into the message skopeo prints.
    stderr = redact(stderr)
    failures = _FAILURE.findall(stderr)
    if proc.returncode != 0 or failures:
        # skopeo logs Go-quoted messages; the last error is the one that ended the copy.
        detail = _go_unquote(failures[-1]) if failures else _last_line(stderr)
        # A TLS failure in Go's words becomes its real reason (never a hint to go insecure).
        reason = explain_tls_failure(detail) or detail
        return redact(f"skopeo exited {proc.returncode}: {reason}"), is_transient(detail)
    return None, False


# Variables skopeo never needs and that hold cloud credentials: the SDKs' own, by prefix.
_CLOUD_CREDENTIALS = re.compile(r"^(?:AWS_|AZURE_|ARM_|GOOGLE_|GCLOUD_|CLOUDSDK_)")


def _skopeo_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment skopeo runs with: ours without cloud credentials and without any
    variable whose value holds a secret we have read (an `{env: VAR}` password, say). A
    process's environment is readable by its owner in /proc, and skopeo gets its
    credentials from the auth file anyway; proxies, HOME and TLS settings stay."""
    environ = dict(os.environ if environ is None else environ)
    return {
        name: value
        for name, value in environ.items()
        if not _CLOUD_CREDENTIALS.match(name) and redact(value) == value
    }


class _Children:
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


_GO_ESCAPE = re.compile(r'\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[abfnrtv\\"\'])')
_GO_SHORT = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _go_unquote(text: str) -> str:
    """The message logrus quoted with Go's strconv.Quote rules, as the registry or skopeo
    wrote it (a registry's `\\` would otherwise reach the user doubled). Control
    characters stay escaped."""

    def one(match: re.Match[str]) -> str:
        escape = match[1]
        char = chr(int(escape[1:], 16)) if escape[0] in "xuU" else _GO_SHORT.get(escape, escape)
        # a control character stays escaped: the message must remain one line
        return char if char.isprintable() else match[0]

    return _GO_ESCAPE.sub(one, text)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no output"


def _verify(job: CopyJob, ctx: RunContext) -> str | None:
    """None when the destination now serves the planned digest under the tag."""
    try:
        actual = manifest_digest(ctx.client(job.destination), job.destination_repository, job.tag)
    except RegistryError as exc:
        return redact(f"copied, but could not verify {job.destination_ref}: {exc}")
    if actual != job.digest:
        return (
            f"skopeo reported success but {job.destination_ref} has "
            f"{actual or 'no manifest'} instead of {job.digest}"
        )
    return None


class _Workspace:
    """Auth files (in memory) and cert dirs (in a private directory) for one batch of copies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._auth: dict[Endpoint, tuple[str, int | None]] = {}  # path, descriptor to pass
        self._certs: dict[Endpoint, Path] = {}
        self._root: Path | None = None
        self._fds: list[int] = []

    def flags(self, side: str, endpoint: Endpoint) -> tuple[list[str], list[int]]:
        """skopeo's flags for one side of a copy, and the descriptors they name."""
        path, fd = self._authfile(endpoint)
        flags = [f"--{side}-authfile", path]
        if endpoint.insecure:
            flags.append(f"--{side}-tls-verify=false")
        elif endpoint.ca_bundle:
            flags += [f"--{side}-cert-dir", str(self._certdir(endpoint))]
        return flags, [] if fd is None else [fd]

    def close(self) -> None:
        with self._lock:
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds.clear()
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None

    def _authfile(self, endpoint: Endpoint) -> tuple[str, int | None]:
        with self._lock:
            made = self._auth.get(endpoint)
            if made is None:
                auths = {}
                if endpoint.auth is not None:
                    token = f"{endpoint.auth.username}:{endpoint.auth.password}".encode()
                    auths[endpoint.host] = {"auth": base64.b64encode(token).decode()}
                # An explicit (possibly empty) auth file keeps skopeo from picking up whatever
                # credentials the user's ~/.docker/config.json happens to hold.
                content = json.dumps({"auths": auths}).encode()
                made = self._auth[endpoint] = self._write_auth(content, len(self._auth))
            return made

    def _write_auth(self, content: bytes, index: int) -> tuple[str, int | None]:
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create(f"mirrorspec-auth-{index}", os.MFD_CLOEXEC)
            self._fds.append(fd)
            os.fchmod(fd, 0o600)
            os.write(fd, content)
            # Each skopeo opens /proc/self/fd/N afresh (a new open file, read from the start);
            # its own descriptor N is this one, inherited through pass_fds.
            return f"/proc/self/fd/{fd}", fd
        path = self._private_dir() / f"auth-{index}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        return str(path), None

    def _certdir(self, endpoint: Endpoint) -> Path:
        with self._lock:
            path = self._certs.get(endpoint)
            if path is None:
                assert endpoint.ca_bundle is not None
                # Read like every user-named file (a FIFO or /dev/zero must not stall a copy),
                # and written as read: skopeo then trusts exactly what was checked.
                pem = read_ca_bundle(endpoint.ca_bundle)
                path = self._private_dir() / f"certs-{len(self._certs)}"
                path.mkdir(mode=0o700)
                try:
                    (path / "ca.crt").write_bytes(pem)
                except OSError as exc:
                    raise MirrorspecError(
                        f"cannot write a copy of ca-bundle {endpoint.ca_bundle}: {exc.strerror}"
                    ) from None
                self._certs[endpoint] = path
            return path

    def _private_dir(self) -> Path:
        if self._root is None:
            _sweep_stale_workspaces()
            # mode 0700; the pid lets a later run tell a dead process's directory from a live one
            self._root = Path(tempfile.mkdtemp(prefix=f"mirrorspec-{os.getpid()}-"))
        return self._root


_STALE = re.compile(r"mirrorspec-(\d+)-[A-Za-z0-9_]+")


def _sweep_stale_workspaces() -> None:
    """Remove the workspaces of mirrorspec processes that no longer exist (killed with -9:
    nothing ran to clean up). Only our own user's, only names we make."""
    tmp = Path(tempfile.gettempdir())
    try:
        entries = list(tmp.iterdir())
    except OSError:
        return
    for entry in entries:
        match = _STALE.fullmatch(entry.name)
        if match is None or int(match[1]) == os.getpid():
            continue
        try:
            info = entry.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue
            os.kill(int(match[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except (OSError, OverflowError):
            continue  # alive but not ours to signal, or gone meanwhile


@contextmanager
def _workspace() -> Iterator[_Workspace]:
    workspace = _Workspace()
    try:
        yield workspace
    finally:
        workspace.close()
