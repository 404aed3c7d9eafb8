"""A destination that answers 5xx for one blob or manifest on every attempt: damaged storage,
named in one line with what to do, instead of a "transient" error retried on every run.

What happens (observed here with docker-registry 2.8.2 on a tmpfs that fills up, skopeo 1.9.3;
tests/test_disk_full.py reproduces each case and its docstring has the details):

- distribution commits an upload by renaming the data into the global blob store, then writing
  the repository's `link` file (registry/storage/blobwriter.go `Commit`: `moveBlob`, then
  `linkBlob`). The filesystem driver creates that file, then writes the digest into it; on a
  full disk the write fails with ENOSPC and an *empty* `link` stays behind, next to complete
  blob data. The same goes for manifest revision and tag links.
- From then on every HEAD or GET of that blob in that repository answers 500 (`UNKNOWN`,
  logged as "invalid checksum digest format"): the registry cannot parse the empty link.
  Growing the storage changes nothing, the API's DELETE of the blob answers 500 too, and
  `docker-registry garbage-collect` deletes the unreferenced blob data but keeps the empty
  link, so the 500 stays.
- skopeo checks whether each blob exists before uploading it (containers/image 5.22
  docker/docker_image_dest.go `blobExists`) and gives up on any answer but 200, 401 and 404:
  `failed to read from destination repository <repo>: 500 (Internal Server Error)`, prefixed
  with `trying to reuse blob <digest> at destination: ` for a layer (copy/copy.go
  `copyLayer`) and with nothing that names the blob for an image's config (`copyConfig` goes
  straight to `PutBlob`, which runs the same check). It never uploads the blob again, so
  retrying cannot help.
- A new upload of the same bytes would rewrite the link (`linkBlob` overwrites), but only a
  client that skips the existence check can make one, and mirrorspec moves no blob itself:
  skopeo does. So mirrorspec diagnoses and the operator repairs. Deleting the empty `link`
  files is the repair for docker-registry: the blob then answers 404, and the next apply
  uploads it (the data already there is kept) and writes the link; an empty link is never
  valid, so nothing of value is removed.

The rule: a 5xx from the blob check that repeats for the same blob in the same destination
repository, in any two attempts of one batch of copies (of one copy or of two), and that our
own GET of that blob then meets too (3 tries in about a second), is damage. The first 5xx is
retried as any 5xx is; the second ends the copy with the diagnosis once confirmed, and later
copies that meet the same blob end at their first attempt. Without the confirmation (a
registry that fails now and then), the copy goes on with its ordinary retries. A manifest
HEAD that answers 5xx through all of the client's retries while `/v2/` answers 200 is damage
too (`manifest_digest`, used by plan, audit and the check after each copy).
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

from .errors import MirrorspecError, RegistryError
from .oci import RegistryClient

if TYPE_CHECKING:
    from .context import RunContext
    from .skopeo.jobs import CopyJob

__all__ = ["BlobDamage", "manifest_digest"]

# containers/image 5.22 blobExists: "failed to read from destination repository %s: %d (%s)",
# with `reference.Path()` (the repository without the host); copyLayer wraps it in
# "trying to reuse blob %s at destination: %w".
_BLOB_CHECK = re.compile(
    r"(?:trying to reuse blob (?P<digest>[a-z0-9]+:[a-f0-9]{32,128}) at destination: )?"
    r"failed to read from destination repository (?P<repository>[a-z0-9._/-]+): (?P<status>5\d\d)\b"
)
_PROBE_RETRIES = 2  # of our own GET of a blob skopeo's check saw answering 5xx twice
_MAX_CHILDREN = 64  # configs of an index's images looked at to name a blob skopeo did not name
_STORAGE = "<storage root>/docker/registry/v2/repositories"


def _fix(repository: str, what: str) -> str:
    """What to do, for any registry, with the docker-registry command marked as such."""
    return (
        f"remove the registry's broken record of {what} and run apply again, which copies it anew "
        f"(docker-registry, e.g. after its disk filled, leaves empty `link` files: "
        f"`find {_STORAGE}/{repository} -name link -size 0 -delete`; its garbage-collect does not "
        "repair them)"
    )


class BlobDamage:
    """The 5xx blob checks one batch of copies has met, per destination host, repository and
    blob; thread-safe. `judge` turns a confirmed repetition into a diagnosis."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, str | None], int] = {}
        self._diagnosed: dict[tuple[str, str, str | None], str] = {}

    def judge(self, job: CopyJob, error: str) -> str | None:
        """The one-line diagnosis that replaces `error`, a failed attempt of `job`, when it is a
        blob check that answered 5xx for a blob already seen doing so in this batch and the
        destination still answers 5xx for it; None otherwise (an ordinary transient error)."""
        match = _BLOB_CHECK.search(error)
        if match is None:
            return None
        host = job.destination.host
        repository, digest, status = match["repository"], match["digest"], int(match["status"])
        key = (host.lower(), repository, digest)
        with self._lock:
            self._seen[key] = seen = self._seen.get(key, 0) + 1
            diagnosis = self._diagnosed.get(key)
        if diagnosis is not None or seen < 2:
            return diagnosis
        blob = self._confirm(job, repository, digest)
        if blob is None:
            return None
        diagnosis = (
            f"destination storage damaged: {host} answers {status} for blob {blob} in repository "
            f"{repository} on every attempt, so no retry can fix it; make room if its storage is "
            f"full, then {_fix(repository, 'that blob in that repository')}"
        )
        with self._lock:
            return self._diagnosed.setdefault(key, diagnosis)

    def _confirm(self, job: CopyJob, repository: str, digest: str | None) -> str | None:
        """The blob, asked for ourselves, that the destination still answers 5xx for: `digest`,
        or when skopeo did not name it the config of the image (or of one of the index's
        images) that does; None when none does (two 5xx in a row by chance, say)."""
        try:
            candidates = (
                [digest]
                if digest is not None
                else _configs(self._ctx.client(job.source), job.source_repository, job.digest)
            )
            endpoint = job.destination
            # A few quick tries, not the shared client's 15 s of backoff: skopeo's attempts
            # already saw the 5xx twice, this only rules out a coincidence.
            with RegistryClient(
                endpoint.host,
                username=endpoint.auth.username if endpoint.auth else None,
                password=endpoint.auth.password if endpoint.auth else None,
                insecure=endpoint.insecure,
                ca_bundle=endpoint.ca_bundle,
                retries=_PROBE_RETRIES,
            ) as destination:
                for candidate in candidates:
                    try:
                        # A GET that accepts no body: only the status matters, and a healthy
                        # blob (any size) is refused at its Content-Length, unread.
                        destination.blob(repository, candidate, max_bytes=0)
                    except RegistryError as exc:
                        if exc.status is not None and exc.status >= 500:
                            return candidate
        except MirrorspecError:
            pass  # the source or the destination cannot say: no diagnosis, ordinary retries
        return None


def _configs(client: RegistryClient, repository: str, digest: str) -> list[str]:
    """The config digests of the image `digest`, or of the images the index `digest` lists."""
    body = _json(client, repository, digest)
    children = body.get("manifests")
    if not isinstance(children, list):
        return _config_of(body)
    configs: list[str] = []
    for child in children[:_MAX_CHILDREN]:
        if isinstance(child, dict) and isinstance(child.get("digest"), str):
            configs += _config_of(_json(client, repository, child["digest"]))
    return configs


def _json(client: RegistryClient, repository: str, digest: str) -> dict[str, Any]:
    try:
        return client.manifest(repository, digest).json()
    except ValueError:
        return {}


def _config_of(manifest: dict[str, Any]) -> list[str]:
    config = manifest.get("config")
    digest = config.get("digest") if isinstance(config, dict) else None
    return [digest] if isinstance(digest, str) else []


def manifest_digest(client: RegistryClient, repository: str, reference: str) -> str | None:
    """`client.digest(repository, reference)`, with a 5xx that outlasted the client's retries
    reported as damaged storage when the registry answers `/v2/` meanwhile (an unhealthy
    registry keeps the client's own message)."""
    try:
        return client.digest(repository, reference)
    except RegistryError as exc:
        if exc.status is None or exc.status < 500:
            raise
        try:
            client.ping()
        except RegistryError:
            raise exc from None
        what = f"manifest {repository}{'@' if ':' in reference else ':'}{reference}"
        raise RegistryError(
            f"destination storage damaged: {client.host} answers {exc.status} for {what} on every "
            f"attempt while the registry itself answers, so no retry can fix it; "
            f"{_fix(repository, 'that manifest')}",
            registry=client.host,
            repository=repository,
            status=exc.status,
        ) from None
