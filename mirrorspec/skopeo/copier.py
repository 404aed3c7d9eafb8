"""The fallback copier: skopeo, one tag per process, in parallel, verified afterwards.

`copy_all` runs a batch of `CopyJob`s (`jobs`) in the order and at the pace the scheduler
allows (`schedule`), each as one skopeo child (`process`) given auth files and cert dirs
from a private workspace (`workspace`), and reads what its stderr says (`failures`). A tag
whose digest the destination repository already holds is tagged with a manifest PUT instead
(`retag`), skopeo being the fallback.

What shaped it (research/sync.md §1, testbed.md §3):
- skopeo 1.9.3 exits 0 on many errors and silently ignores keys it does not know, so a
  copy counts as done only when the destination then serves the planned digest.
- Sources are copied *by digest* (`repo@sha256:…` → `dest:tag`): apply copies exactly what
  the plan showed, even if upstream moves the tag in between.
- Interrupted (Ctrl-C, SIGTERM turned into an exception by the CLI), no new copy starts,
  every running skopeo is terminated and waited for, and the workspace is removed before the
  exception goes on. A killed copy is not counted: skopeo pushes the manifest last, so its
  tag does not exist and the next plan still lists it.
- Destinations are always explicit, never skopeo's `--scoped` or last-component naming.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ..context import RunContext
from ..credentials import redact
from ..errors import MirrorspecError, RegistryError
from ..layout_source import check_before_copy
from ..storage_damage import BlobDamage, manifest_digest
from .jobs import CopyJob, CopyResult
from .layout_read import skopeo_source
from .process import Children, Progress, Skopeo, find_skopeo, run_workers
from .retag import Retagger
from .schedule import BACKOFF, RETRIES, Schedule, Task, default_per_registry
from .workspace import Workspace, open_workspace

__all__ = ["copy_all"]

# The name users see on stderr, as the scheduler's (`schedule`).
log = logging.getLogger("mirrorspec.copy")


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

    Up to `ctx.workers` copies run at once, at most `per_registry` per registry host
    when given; by default that limit adapts (`default_per_registry(ctx.workers)`: from 8 up
    to 24 within `ctx.workers`, halved on throttling; see `schedule`). Transient failures are retried
    up to `retries` times, after `backoff`, 2×`backoff`, … seconds (with jitter).
    `on_done` is called once per job as it finishes, from worker threads but never two
    calls at once.

    Each result is verified: skopeo must exit 0 with no error line, and the destination
    must then serve the planned digest under the tag.
    """
    if not jobs:
        return []
    skopeo = find_skopeo()
    start, ceiling = (per_registry, per_registry) if per_registry else default_per_registry(ctx.workers)
    schedule = Schedule(jobs, start, retries, backoff, ceiling=ceiling)
    damage = BlobDamage(ctx)
    retagger = Retagger(ctx)
    progress: Progress[CopyResult] = Progress(on_done)
    with open_workspace() as workspace:
        crashed: list[BaseException] = []
        children = Children()

        def work() -> None:
            try:
                while (task := schedule.take()) is not None:
                    if task.attempts == 1 and _retag(task, retagger, schedule, ctx):
                        result = schedule.finish(task, None, False, measured=False)
                        if result is not None:
                            progress.report(result)
                        continue
                    job = task.run_job()
                    # From a layout: the ref checked to name the planned digest and every blob
                    # hashed first; one that fails is not copied, and not retried.
                    error = check_before_copy(ctx, job) if job.source.layout is not None else None
                    transient = False
                    if error is None:
                        error, transient = _copy_one(skopeo, workspace, children, job, timeout, ctx)
                    if error is not None and children.stopping:
                        return  # interrupted: a killed copy is neither done nor failed
                    if error is None:
                        error = _verify(task.job, ctx)
                    elif transient and (diagnosis := damage.judge(task.job, error)) is not None:
                        error, transient = diagnosis, False  # a 5xx that repeats: no retry fixes it
                    result = schedule.finish(task, error, transient)
                    if result is not None:
                        progress.report(result)
            except BaseException as exc:  # e.g. an unreadable ca-bundle: stop everyone, re-raise
                crashed.append(exc)
                schedule.abort()

        def interrupt() -> None:  # start nothing new, stop what runs, then clean up
            progress.close()
            schedule.abort()
            children.stop()

        run_workers(work, min(ctx.workers, len(jobs)), "mirrorspec-copy", interrupt)
    if crashed:
        raise crashed[0]
    return schedule.results()


def _retag(task: Task, retagger: Retagger, schedule: Schedule, ctx: RunContext) -> bool:
    """Whether `task` is done by a manifest PUT (verified like a copy); when not, skopeo
    copies it. Tried at a task's first attempt only: a retry is skopeo's."""
    leader = task.leader
    present = leader is not None and leader.result is not None and leader.result.ok
    job = task.job
    outcome = retagger.retag(job, present=present)
    if outcome.throttled:
        schedule.throttled(job.destination.host)
    why = outcome.why
    if outcome.done:
        why = _verify(job, ctx)
        if why is None:
            log.debug("%s: tagged with a manifest PUT", job.destination_ref)
            return True
    if why is not None:
        log.info("%s: manifest PUT failed, copying with skopeo instead: %s", job.destination_ref, why)
    return False


def _copy_one(
    skopeo: Skopeo, workspace: Workspace, children: Children, job: CopyJob, timeout: float, ctx: RunContext
) -> tuple[str | None, bool]:
    """(error or None, whether the error is worth another attempt)."""
    src_flags, src_fds = workspace.flags("src", job.source)
    dest_flags, dest_fds = workspace.flags("dest", job.destination)
    try:
        with skopeo_source(ctx, job) as source:  # out of a layout: by digest, see layout_read
            argv = [
                skopeo.path,
                "copy",
                "--all",
                "--preserve-digests",
                *src_flags,
                *dest_flags,
                *source,
                f"docker://{job.destination_ref}",
            ]
            return children.copy(argv, pass_fds=(*src_fds, *dest_fds), timeout=timeout)
    except MirrorspecError as exc:  # the job layout could not be made
        return str(exc), False


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
