"""Tagging a digest the destination repository already holds, without a skopeo process.

A skopeo copy of a small image is ~30 round trips and a process (pinging both registries,
authenticating, checking every blob); tagging a manifest the destination repository already
has is one `GET` of it by digest (once per batch) and one `PUT` under the new tag
(`oci.manifest_put`). The copier asks here first when

- a tag shares its digest with another tag of the same copy that skopeo has just copied (the
  scheduler's leader; the PUT then always has what it needs), or
- it is the first copy of its digest in this batch: the destination repository may already
  hold the digest under another tag (an earlier run, a retag upstream). The `GET` by digest
  says so; a 404 means a skopeo copy, as before.

Any failure of the GET or the PUT (denied push, 5xx, a registry that converts manifests)
falls back to skopeo, said at `-v`; the scheduler's usual check of the tag's digest
afterwards is the same for both. Manifests are fetched with the destination's client, so its
credentials never leave this process (no argv, no file).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from ..context import RunContext
from ..errors import RegistryError
from ..oci.client import Manifest
from ..oci.manifest_put import put_manifest
from .jobs import CopyJob

__all__ = ["Retagged", "Retagger"]

log = logging.getLogger("mirrorspec.copy")

# Manifests kept for the tags of the same digest that follow (the scheduler runs them right
# after their leader); a few KB each, so the cap only bounds a batch of 50,000 unique digests.
_CACHED_MANIFESTS = 256


@dataclass(frozen=True)
class Retagged:
    """What came of a try: `done` when the tag now names the manifest; otherwise `why` not
    (None: the destination does not hold the digest, nothing went wrong), and whether the
    registry throttled us (429)."""

    done: bool
    why: str | None = None
    throttled: bool = False


class Retagger:
    """Manifest PUTs for one batch of copies; thread-safe. The scheduler never runs two tasks
    of one manifest at once, so a manifest is fetched once and put once at a time."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()
        self._manifests: OrderedDict[tuple[str, str, str], Manifest] = OrderedDict()

    def retag(self, job: CopyJob, *, present: bool) -> Retagged:
        """Tag `job.digest` as `job.tag` in the destination repository. `present`: the digest
        is known to be there (its leader was copied); otherwise a 404 for it is no failure."""
        client = self._ctx.client(job.destination)
        repository = job.destination_repository
        key = (job.destination.host.lower(), repository, job.digest)
        try:
            with self._lock:
                manifest = self._manifests.get(key)
            if manifest is None:
                manifest = client.manifest(repository, job.digest)
                with self._lock:
                    self._manifests[key] = manifest
                    while len(self._manifests) > _CACHED_MANIFESTS:
                        self._manifests.popitem(last=False)
        except RegistryError as exc:
            if exc.status == 404 and not present:
                return Retagged(False)
            return Retagged(False, f"cannot read {job.digest} there: {exc}", exc.status == 429)
        try:
            put_manifest(client, repository, job.tag, manifest)
        except RegistryError as exc:
            return Retagged(False, str(exc), exc.status == 429)
        return Retagged(True)
