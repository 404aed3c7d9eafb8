"""Copies of one digest into one destination repository run one at a time (`mirrorspec/skopeo/schedule.py`).

Each such copy re-uploads the same manifest, and docker-registry 2.8 rewrites the manifest's
revision link in place on every upload (truncate, then write): a concurrent
`GET …/manifests/sha256:…` then reads an empty link and answers 500 "invalid checksum digest
format". mirrorspec caused that race itself when the tags sharing a digest were tagged within
the destination all at once; it then retried, which made call counts in the suite vary.

The scheduler is driven by hand first, so that what it hands out is decided without threads or
timing; then real skopeo copies between real registries are watched by a wrapper on PATH that
notes which copies were running when each one started.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from copy_helpers import minimal_context
from testbed import RegistryServer, access_records, push_image

from mirrorspec.context import Endpoint
from mirrorspec.credentials import BasicAuth
from mirrorspec.oci import RegistryClient
from mirrorspec.skopeo.copier import copy_all
from mirrorspec.skopeo.jobs import CopyJob
from mirrorspec.skopeo.process import find_skopeo
from mirrorspec.skopeo.schedule import Schedule, Task

REAL_SKOPEO = shutil.which("skopeo")
ALICE = BasicAuth("alice", "wonderland-pw")  # the tls_registry fixture's user
DIGEST = "sha256:" + "d" * 64
OTHER = "sha256:" + "e" * 64


# Runs the real skopeo as a child (not exec), so that its marker file exists for the whole
# copy: if two copies overlap, the one started second sees the first one's marker when it
# starts, whatever the timing. An in-destination copy (source host = destination host) waits
# a little first, so that copies the scheduler wrongly hands out together do overlap.
WRAPPER = """\
#!{python}
import json, os, subprocess, sys, time
from pathlib import Path

real, log = {real!r}, Path({log!r})
args = sys.argv[1:]
if args == ["--version"]:
    os.execv(real, [real, "--version"])
source, destination = (a.split("://", 1)[1] for a in args if a.startswith("docker://"))
copy = {{"source": source, "destination": destination}}
marker = log / "running" / str(os.getpid())
marker.write_text(json.dumps(copy))
running = []
for path in (log / "running").iterdir():
    if path != marker:
        try:
            running.append(json.loads(path.read_text()))
        except (OSError, ValueError):  # finished meanwhile
            pass
if source.split("/", 1)[0] == destination.split("/", 1)[0]:
    time.sleep(0.3)
# close_fds=False: the auth files are inherited descriptors (/proc/self/fd/N)
rc = subprocess.call([real, *args], close_fds=False)
(log / "calls" / f"{{os.getpid()}}.json").write_text(json.dumps({{**copy, "running": running, "rc": rc}}))
marker.unlink()
sys.exit(rc)
"""


@pytest.fixture(autouse=True)
def _fresh_skopeo_lookup() -> Iterator[None]:
    find_skopeo.cache_clear()
    yield
    find_skopeo.cache_clear()


def job(destination_repository: str, tag: str, digest: str = DIGEST) -> CopyJob:
    return CopyJob(Endpoint("source.test"), "app", digest, Endpoint("dest.test"), destination_repository, tag)


def tags(*tasks: Task | None) -> list[str | None]:
    return [None if t is None else t.job.tag for t in tasks]


# --- the scheduler, driven by hand ------------------------------------------------------------


def test_copies_of_one_manifest_are_handed_out_one_at_a_time_and_other_work_goes_on() -> None:
    # Three tags of one digest in repository r, three other copies in repository s: round-robin
    # queues them r:a, s:x, r:b, s:y, r:c, s:z.
    jobs = [
        job("r", "a"),
        job("r", "b"),
        job("r", "c"),
        job("s", "x", OTHER),
        job("s", "y", OTHER.replace("e", "f")),
        job("s", "z", OTHER.replace("e", "0")),
    ]
    schedule = Schedule(jobs, limit=8, retries=0, backoff=0)

    leader = schedule.take()
    assert tags(leader) == ["a"]
    assert leader is not None and schedule.finish(leader, None, False) is not None
    running = [schedule.take() for _ in range(4)]
    # b re-uploads a's manifest within r; c would upload the same one again while b runs, so
    # the worker that looks next gets z, the work behind it, instead of c (or of waiting)
    assert tags(*running) == ["x", "b", "y", "z"]
    retag = running[1]
    assert retag is not None and retag.run_job().source.host == "dest.test"  # within the destination
    assert schedule.finish(retag, None, False) is not None

    last = schedule.take()  # b is done: now c
    assert tags(last) == ["c"]
    for task in (last, running[0], running[2], running[3]):
        assert task is not None and schedule.finish(task, None, False) is not None
    assert schedule.take() is None  # everything finished
    assert [r.job for r in schedule.results()] == jobs


def test_a_retried_copy_of_a_manifest_still_excludes_the_others_while_it_runs() -> None:
    # r:a, r:b, r:c share a digest, r:w has its own; round-robin: r:a, s:x, r:b, r:c, r:w
    jobs = [job("r", "a"), job("r", "b"), job("r", "c"), job("r", "w", OTHER), job("s", "x", OTHER)]
    schedule = Schedule(jobs, limit=8, retries=1, backoff=0)
    leader = schedule.take()
    assert leader is not None and schedule.finish(leader, None, False) is not None
    other, first = schedule.take(), schedule.take()
    assert tags(other, first) == ["x", "b"]
    assert first is not None and schedule.finish(first, "HTTP status: 500", True) is None  # to retry

    again, next_ = schedule.take(), schedule.take()
    # b is due again at once (backoff 0); while it runs, c waits and w goes ahead
    assert tags(again, next_) == ["b", "w"]
    assert again is not None and schedule.finish(again, None, False) is not None
    last = schedule.take()
    assert tags(last) == ["c"]
    for task in (last, next_, other):
        assert task is not None and schedule.finish(task, None, False) is not None
    assert schedule.take() is None
    assert [(r.job.tag, r.ok, r.attempts) for r in schedule.results()] == [
        ("a", True, 1),
        ("b", True, 2),
        ("c", True, 1),
        ("w", True, 1),
        ("x", True, 1),
    ]


def test_the_same_digest_in_different_repositories_is_not_serialised() -> None:
    schedule = Schedule([job("r", "a"), job("s", "a")], limit=8, retries=0, backoff=0)
    assert tags(schedule.take(), schedule.take()) == ["a", "a"]  # both at once: different links


# --- real skopeo, real registries ---------------------------------------------------------------


def test_tags_sharing_a_digest_never_overlap_are_put_by_manifest_and_the_registry_never_fails(
    plain_registry: RegistryServer,
    tls_registry: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert REAL_SKOPEO is not None
    repository = f"same-{uuid.uuid4().hex[:10]}/app"
    shared = push_image(plain_registry, repository, "1.0.0", seed="shared")
    own = {tag: push_image(plain_registry, repository, tag, seed=tag) for tag in ("2.0.0", "3.0.0")}
    sharing = ["1.0.0", "1.0", "1", "latest", "stable"]
    bindir, log = tmp_path / "bin", tmp_path / "skopeo-log"
    bindir.mkdir()
    (log / "running").mkdir(parents=True)
    (log / "calls").mkdir()
    wrapper = bindir / "skopeo"
    wrapper.write_text(WRAPPER.format(python=sys.executable, real=REAL_SKOPEO, log=str(log)))
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    source = Endpoint(plain_registry.host, insecure=True)
    destination = Endpoint(tls_registry.host, auth=ALICE, ca_bundle=str(tls_registry.ca_file))
    dest_repository = f"mirror/{repository}"
    jobs = [
        *(CopyJob(source, repository, shared, destination, dest_repository, tag) for tag in sharing),
        *(CopyJob(source, repository, d, destination, dest_repository, tag) for tag, d in own.items()),
    ]
    before = len(access_records(tls_registry))

    with closing(minimal_context(8)) as ctx:
        results = copy_all(jobs, ctx)

    assert [(r.job.tag, r.error) for r in results] == [(j.tag, None) for j in jobs]
    calls = [json.loads(p.read_text()) for p in (log / "calls").iterdir()]

    def manifest(copy: dict[str, str]) -> tuple[str, str]:
        """(destination repository, digest) of the manifest a copy uploads."""
        digest = copy["source"].rsplit("@", 1)[1]
        return copy["destination"].rsplit(":", 1)[0], digest

    overlapping = [
        (call["destination"], other["destination"])
        for call in calls
        for other in call["running"]
        if manifest(other) == manifest(call)
    ]
    assert overlapping == [], "copies uploading the same manifest ran at once"
    # the work itself: skopeo copied each digest once, from the source (a retried failure may
    # add calls, never successes); the other tags of the shared digest were tagged with a
    # manifest PUT of our own, no skopeo process
    succeeded = [c for c in calls if c["rc"] == 0]
    assert Counter(c["destination"].rsplit(":", 1)[1] for c in succeeded) == Counter(["1.0.0", *own])
    assert all(c["source"].split("/", 1)[0] == source.host for c in succeeded)
    records = access_records(tls_registry)[before:]
    put = Counter(
        r.uri.rsplit("/", 1)[1]
        for r in records
        if r.method == "PUT" and "/manifests/" in r.uri and r.status == 201
    )
    assert put == Counter(j.tag for j in jobs)  # skopeo's 3, and ours: one per other tag of the digest
    with RegistryClient(
        tls_registry.host, username="alice", password="wonderland-pw", ca_bundle=str(tls_registry.ca_file)
    ) as client:
        assert {tag: client.digest(dest_repository, tag) for tag in sharing} == dict.fromkeys(sharing, shared)
    # and so the race that made the registry answer 500 never happens
    failed = [r for r in records if r.status >= 500]
    assert failed == []
