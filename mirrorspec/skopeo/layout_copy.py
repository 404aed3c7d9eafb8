"""Copies into an OCI image layout (`type: oci-layout`): in parallel, blobs shared, one writer
of index.json.

skopeo writes a layout's index.json itself, read-modify-write without a lock, so two skopeo
processes into one layout lose each other's entries. Instead each job copies into a job
layout of its own under `LAYOUT/.mirrorspec-jobs/`, with the real `blobs/` as its shared blob
directory (`skopeo copy --dest-shared-blob-dir`, skopeo 1.9.3: checked here that the job
layout then holds only `oci-layout` and `index.json`, every blob landing in the shared
directory, and that `--preserve-digests` keeps a Docker schema 2 manifest as it is). skopeo
writes a blob to a temporary file in the job directory and renames it into place
(containers/image oci/layout/oci_dest.go, PutBlob), so `blobs/` never holds half a blob, and
a blob already there is not written again (TryReusingBlob). Then mirrorspec reads the job's
one index entry, checks it names the planned digest, hashes every blob it reaches, and merges
the entry into the layout's index.json under the layout's lock (`Layout.add_refs`): blobs are
written once and in parallel, index.json by one writer at a time, across processes too.

A job directory is removed when its job ends; those of a run that died (their process is
gone) are swept at the next batch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..context import RunContext
from ..errors import MirrorspecError
from ..layout import Layout, LayoutError, LayoutRef, ref_name
from ..layout.content import check_reference
from .jobs import CopyJob, CopyResult
from .layout_docker_list import copy_docker_list, docker_list
from .process import Children, Progress, Skopeo, find_skopeo, run_workers
from .schedule import BACKOFF, RETRIES
from .workspace import Workspace, open_workspace

__all__ = ["JOBS_DIR", "copy_into_layouts"]

log = logging.getLogger("mirrorspec.copy")

JOBS_DIR = ".mirrorspec-jobs"


def copy_into_layouts(
    jobs: Sequence[CopyJob],
    ctx: RunContext,
    *,
    puts: Sequence[CopyJob] = (),
    on_done: Callable[[CopyResult], None] | None = None,
    timeout: float = 3600.0,
    retries: int = RETRIES,
    backoff: float = BACKOFF,
) -> list[CopyResult]:
    """Run every job (each `job.destination.layout` set), then every put; never raises for
    a failed copy. Results come back in job order, then the puts'; `on_done` is called once
    per job, never two at once.

    `puts`: referrers tag indexes (`referrers.PUT_ENGINE`), written by mirrorspec as upstream
    serves them, after the referrers they list: skopeo 1.9.3 cannot copy an index whose
    descriptors carry `artifactType` with its digest preserved (testbed/signatures.py)."""
    results = _copies(jobs, ctx, on_done, timeout, retries, backoff) if jobs else []
    for job in puts:
        result = _put(ctx, job)
        results.append(result)
        if on_done is not None:
            on_done(result)
    return results


def _copies(
    jobs: Sequence[CopyJob],
    ctx: RunContext,
    on_done: Callable[[CopyResult], None] | None,
    timeout: float,
    retries: int,
    backoff: float,
) -> list[CopyResult]:
    skopeo = find_skopeo()
    layouts = {
        job.destination.layout: Layout(Path(job.destination.layout)) for job in jobs if job.destination.layout
    }
    for layout in layouts.values():
        layout.ensure()
        _sweep(layout)
    # digest → a reference to it, per layout: what is there (read once) and what this run adds
    known = {path: {ref.digest: ref for ref in layout.refs().values()} for path, layout in layouts.items()}
    # Jobs of one digest into one layout run one after the other, in one worker: the first
    # copies, the others only add their reference (as the registry copier copies a digest
    # once). Besides saving skopeo runs, this keeps two skopeo processes from rewriting the
    # same manifest file at once (see `_verified`).
    groups: dict[tuple[str, str], list[int]] = {}
    for number, job in enumerate(jobs):
        groups.setdefault((job.destination.layout or "", job.digest), []).append(number)
    pending: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
    for group in groups.values():
        pending.put(group)
    results: list[CopyResult | None] = [None] * len(jobs)
    children = Children()
    progress: Progress[CopyResult] = Progress(on_done)
    crashed: list[BaseException] = []

    with open_workspace() as workspace:
        copier = _Skopeo(skopeo, workspace, children, ctx, timeout, retries, backoff)

        def work() -> None:
            try:
                while not children.stopping:
                    try:
                        group = pending.get_nowait()
                    except queue.Empty:
                        return
                    for number in group:
                        job = jobs[number]
                        assert job.destination.layout is not None
                        layout, refs = layouts[job.destination.layout], known[job.destination.layout]
                        started = time.monotonic()
                        result = _alias(layout, job, refs, started) or copier.copy(layout, refs, job)
                        if result is None:
                            return  # interrupted: a killed copy is neither done nor failed
                        results[number] = result
                        progress.report(result)
            except BaseException as exc:  # a bug or an unreadable ca-bundle: stop everyone
                crashed.append(exc)
                children.stop()

        def interrupt() -> None:  # start nothing new, stop what runs, then clean up
            progress.close()
            children.stop()

        run_workers(work, min(ctx.workers, len(jobs)), "mirrorspec-layout", interrupt)
    for layout in layouts.values():
        with contextlib.suppress(OSError):  # left when another writer's jobs are still there
            (layout.path / JOBS_DIR).rmdir()
    if crashed:
        raise crashed[0]
    return [r for r in results if r is not None]


def _alias(layout: Layout, job: CopyJob, known: dict[str, LayoutRef], started: float) -> CopyResult | None:
    """`job` done without skopeo when its manifest is in the layout already, with every blob
    it reaches (the same digest copied for another tag, now or in an earlier run): only its
    reference is added. None when it must be copied."""
    same = known.get(job.digest)
    if same is None:
        return None
    ref = LayoutRef(ref_name(job.destination_repository, job.tag), same.digest, same.media_type, same.size)
    try:
        check_reference(layout, ref, hash_blobs=False)  # hashed when it was copied
        layout.add_refs([ref])
    except LayoutError:
        return None  # a blob is gone or damaged: skopeo copies it again
    log.debug("%s: recorded, its content is in the layout already", job.destination_ref)
    return CopyResult(job, None, time.monotonic() - started)


@dataclass(frozen=True)
class _Skopeo:
    """What every copy of one run shares: skopeo, its auth workspace, the children it runs,
    the run's context, and the timeout and retry policy."""

    skopeo: Skopeo
    workspace: Workspace
    children: Children
    ctx: RunContext
    timeout: float
    retries: int
    backoff: float

    def copy(self, layout: Layout, known: dict[str, LayoutRef], job: CopyJob) -> CopyResult | None:
        """`job` copied, with retries of transient errors; None when interrupted."""
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            error, transient = self._copy_one(layout, known, job)
            if error is not None and self.children.stopping:
                return None
            if error is None or not transient or attempts > self.retries:
                return CopyResult(job, error, time.monotonic() - started, attempts)
            log.info("%s: %s; trying again", job.destination_ref, error)
            time.sleep(self.backoff * 2 ** (attempts - 1) * random.uniform(0.5, 1.5))

    def _copy_one(self, layout: Layout, known: dict[str, LayoutRef], job: CopyJob) -> tuple[str | None, bool]:
        """(error or None, whether the error is worth another attempt)."""
        name = ref_name(job.destination_repository, job.tag)
        directory = layout.path / JOBS_DIR / f"{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
        directory.mkdir(parents=True)
        try:
            src_flags, src_fds = self.workspace.flags("src", job.source)
            argv = [
                self.skopeo.path,
                "copy",
                "--all",
                "--preserve-digests",
                *src_flags,
                "--dest-shared-blob-dir",
                str(layout.path / "blobs"),
                f"docker://{job.source_ref}",
                f"oci:{directory}:{name}",
            ]
            error, transient = self.children.copy(argv, pass_fds=src_fds, timeout=self.timeout)
            if error is not None and not transient and (listed := docker_list(self.ctx, job)) is not None:
                # skopeo cannot write a Docker manifest list into a layout as it is: see that module
                args = (
                    self.skopeo,
                    self.workspace,
                    self.children,
                    layout,
                    job,
                    directory,
                    name,
                    self.timeout,
                )
                error, transient = copy_docker_list(listed, *args)
            if error is not None:
                return error, transient
            return _record(layout, Layout(directory), name, job, known), False
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def _record(
    layout: Layout, job_layout: Layout, name: str, job: CopyJob, known: dict[str, LayoutRef]
) -> str | None:
    """Check what skopeo wrote, then add its entry to the layout's index.json; the error."""
    try:
        entry = job_layout.refs().get(name)
        if entry is None:
            return f"skopeo reported success but wrote no {name} into its job layout"
        if entry.digest != job.digest:
            wrote = entry.digest
            return f"skopeo reported success but {job.destination_ref} has {wrote} instead of {job.digest}"
        ref = LayoutRef(name, entry.digest, entry.media_type, entry.size)
        _verified(layout, ref)
        layout.add_refs([ref])
        known[ref.digest] = ref  # one writer per digest (the job groups): no race on the key
    except LayoutError as exc:
        return f"copied, but {exc}"
    return None


def _put(ctx: RunContext, job: CopyJob) -> CopyResult:
    """Write the manifest `job` names, as the source serves it (verified by digest), into the
    layout, check what it reaches is all there and hashes right, then record its reference."""
    started = time.monotonic()
    assert job.destination.layout is not None
    layout = Layout(Path(job.destination.layout))
    name = ref_name(job.destination_repository, job.tag)
    try:
        manifest = ctx.client(job.source).manifest(job.source_repository, job.digest)
        layout.write_blob(manifest.digest, manifest.body)
        ref = LayoutRef(name, manifest.digest, manifest.media_type, len(manifest.body))
        check_reference(layout, ref, hash_blobs=True)
        layout.add_refs([ref])
        error = None
    except MirrorspecError as exc:
        error = str(exc)
    return CopyResult(job, error, time.monotonic() - started)


# skopeo 1.9.3 writes a manifest straight to its blob path, in place (containers/image
# oci/layout/oci_dest.go, PutManifest: os.WriteFile, no temporary file), so while another
# copy (another run into the layout, or an index sharing a child manifest) rewrites the same
# bytes, the file is briefly empty or short. A check that fails is therefore looked at again
# after the other writer had time to finish, a bounded number of times; damage stays damage.
_RECHECKS = 3
_RECHECK_PAUSE = 0.5


def _verified(layout: Layout, ref: LayoutRef) -> None:
    """`check_reference` with every blob hashed, looked at again when another writer may be
    rewriting a manifest (see above); the last failure is raised."""
    for attempt in range(_RECHECKS + 1):
        try:
            check_reference(layout, ref, hash_blobs=True)
            return
        except LayoutError:
            if attempt == _RECHECKS:
                raise
            time.sleep(_RECHECK_PAUSE * (attempt + 1))


def _sweep(layout: Layout) -> None:
    """Remove the job directories of runs whose process is gone (killed mid-copy)."""
    root = layout.path / JOBS_DIR
    if not root.is_dir() or root.is_symlink():
        return
    for entry in root.iterdir():
        pid = entry.name.partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
