"""The referrers tag index at a destination without the referrers API, for referrers found by it.

A source with the OCI referrers API lists a digest's referrers (SBOMs, notation signatures,
anything pushed with a `subject`) without any tag naming them; mirrorspec copies them by digest
(`referrers.py`). A destination without the API (Debian's docker-registry 2.8.2 answers its
`/referrers/` route `404 page not found`, tried here) then holds them where no client finds
them. Clients of such a registry look in the referrers tag schema instead: the tag
`<alg>-<hex>` of the subject holds an image index listing its referrers (distribution-spec v1.1
"Unavailable Referrers API" / "Referrers Tag Schema": "This tag should return an image index
matching the expected response of the referrers API"). So mirrorspec writes that index at the
destination, as a client pushing the referrers there would have (distribution-spec v1.1
"Pushing Manifests with Subject"):

1. pull the destination's current index under the tag; a 404 starts from an empty index; a
   manifest other than an image index is reported and left alone ("the client SHOULD report a
   failure and skip the remaining steps");
2. append a descriptor for each referrer it does not list yet ("duplicate entries SHOULD NOT be
   created"): the referrer's `mediaType`, `digest` and `size`, its `artifactType` (the
   manifest's own, or else an image manifest's config `mediaType`: "the value of
   `artifactType` MUST be set to the config descriptor `mediaType` value"), and "all
   annotations from the pushed manifest"; entries already there (another client's) are kept
   as they are, and so are the index's other fields;
3. put the index under the same tag (`oci/manifest_put.py`: skopeo 1.9.3 cannot write an index
   whose descriptors carry `artifactType` and keep its digest, `docs/research-signatures.md`).

When: only for referrers found through a source's referrers API (untagged artifacts whose
subject has no tag index at the source — a source index is copied byte for byte instead,
`referrers.PUT_ENGINE`), and only at a destination that answers 404 to the API: probed once per
target, with the first such subject. A destination with the API lists the copied referrers
itself.

Plan: one GET of the tag per subject at the destination; an index that already lists every
referrer is up to date (a second apply writes nothing); otherwise the plan carries a copy with
engine `ENGINE` whose tag's digest is that of the index apply would put, computed from the
referrers' manifests at the source (read only then). `audit --content` checks the same.

Apply: after the skopeo copies (a registry refuses an index whose children it does not hold),
one task per destination tag — one writer per subject, whatever number of its referrers or of
targets sharing that repository — reads the destination's index again, adds what is missing,
builds the descriptors from the referrers' manifests as the destination now holds them, and
checks that the tag names the bytes it put. The spec's race note stands: another client writing
the same tag at the same moment may lose its entry or ours ("Protection against race
conditions is the responsibility of clients"); the next plan sees ours missing and writes it
again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from .context import Endpoint, RunContext
from .errors import MirrorspecError, RegistryError
from .oci.client import OCI_INDEX, OCI_MANIFEST, Manifest, RegistryClient
from .oci.manifest_put import put_manifest
from .oci.read_limit import ceiling_for
from .plan import Artifact, ContentCheck, Copy, CopyTag, Note
from .referrers import ask_api
from .spec import Target

__all__ = ["ENGINE", "Examined", "content_checks", "examine", "index_tag", "plan_copies", "put_indexes"]

log = logging.getLogger(__name__)

# The `Copy.engine` of a referrers tag index mirrorspec writes (its bytes are made here, not read).
ENGINE = "referrers-index"
_MAX_ENTRIES = 1000  # as `referrers._MAX_REFERRERS`: an index longer than this is not ours to grow


@dataclass(frozen=True)
class _Subject:
    """A copied digest and the referrers its source's API listed (copied by digest)."""

    registry: str
    repository: str
    digest: str
    referrers: tuple[str, ...]

    @property
    def tag(self) -> str:
        return index_tag(self.digest)


@dataclass(frozen=True)
class Examined:
    """One subject's referrers tag index at a destination."""

    destination_repository: str
    tag: str
    subject: str
    source_registry: str
    source_repository: str
    actual: str | None  # the digest the destination holds under the tag
    planned: str  # the digest of the index apply would put (`actual` when up to date)
    status: Literal["present", "missing", "digest-mismatch"]

    def check(self, host: str) -> ContentCheck:
        return ContentCheck(
            f"{host}/{self.destination_repository}", self.tag, self.planned, self.actual, self.status
        )


def index_tag(digest: str) -> str:
    """The referrers tag schema's tag of `digest`: `<alg>-<encoded>`, the encoded part cut to
    64 characters (distribution-spec v1.1 "Referrers Tag Schema")."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm[:32]}-{encoded[:64]}"


def _subjects(artifacts: Sequence[Artifact]) -> list[_Subject]:
    """Subjects whose referrers came from a source's referrers API: untagged referrers (their
    `tag` is their digest) of a subject with no tag index of its own in the plan (an index's
    children are untagged too, but the index is copied itself)."""
    indexed = {
        (a.registry, a.repository, a.refers_to)
        for a in artifacts
        if a.refers_to and a.tag == index_tag(a.refers_to)
    }
    by_subject: dict[tuple[str, str, str], dict[str, None]] = {}
    for a in artifacts:
        if a.refers_to and a.tag == a.digest and (a.registry, a.repository, a.refers_to) not in indexed:
            by_subject.setdefault((a.registry, a.repository, a.refers_to), {})[a.digest] = None
    return [_Subject(r, p, d, tuple(refs)) for (r, p, d), refs in by_subject.items()]


def _index_entries(manifest: Manifest | None, where: str, host: str) -> tuple[dict[str, Any], list[Any]]:
    """The destination's current index (a 404 is an empty one) and its `manifests` list; a tag
    holding anything else is refused (distribution-spec: report it, skip the update)."""
    if manifest is None:
        return {"schemaVersion": 2, "mediaType": OCI_INDEX}, []
    try:
        document = manifest.json()
    except ValueError:
        document = {}
    entries = document.get("manifests")
    if manifest.media_type != OCI_INDEX or not isinstance(entries, list):
        raise RegistryError(
            f"{where} holds a {manifest.media_type or 'manifest'}, not a referrers tag index: left as it is",
            registry=host,
        )
    if len(entries) > _MAX_ENTRIES:
        raise RegistryError(f"{where} lists more than {_MAX_ENTRIES} referrers", registry=host)
    return document, entries


def _listed(entries: list[Any]) -> set[str]:
    return {e["digest"] for e in entries if isinstance(e, dict) and isinstance(e.get("digest"), str)}


def _descriptor(manifest: Manifest, subject: str, where: str, host: str) -> dict[str, Any] | None:
    """The index entry of one referrer, from its manifest (distribution-spec v1.1 "Pushing
    Manifests with Subject"); None when the manifest does not name `subject` (a source API that
    listed it wrongly: nothing a client of the mirror should be pointed at)."""
    try:
        document = manifest.json()
    except ValueError:
        raise RegistryError(f"{where} is not a JSON manifest", registry=host) from None
    named = document.get("subject")
    if not isinstance(named, dict) or named.get("digest") != subject:
        return None
    entry: dict[str, Any] = {
        "mediaType": manifest.media_type,
        "digest": manifest.digest,
        "size": len(manifest.body),
    }
    artifact_type = document.get("artifactType")
    if not (isinstance(artifact_type, str) and artifact_type) and manifest.media_type == OCI_MANIFEST:
        config = document.get("config")
        artifact_type = config.get("mediaType") if isinstance(config, dict) else None
    if isinstance(artifact_type, str) and artifact_type:
        entry["artifactType"] = artifact_type
    annotations = document.get("annotations")
    if isinstance(annotations, dict) and annotations:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
            raise RegistryError(f"{where} has annotations that are not strings", registry=host)
        entry["annotations"] = annotations
    return entry


def _merged(
    current: Manifest | None,
    referrers: Sequence[str],
    subject: str,
    fetch: Callable[[str], Manifest],
    where: str,
    host: str,
) -> Manifest | None:
    """The index to put: `current` (or an empty one) with an entry for each of `referrers` it
    lacks, each read with `fetch(digest)`; None when nothing is missing."""
    document, entries = _index_entries(current, where, host)
    listed = _listed(entries)
    added = []
    for digest in referrers:
        if digest in listed:
            continue
        entry = _descriptor(fetch(digest), subject, f"referrer {digest} of {where}", host)
        if entry is not None:
            added.append(entry)
            listed.add(digest)
    if not added:
        return None
    document = {**document, "manifests": [*entries, *added]}
    body = json.dumps(document, separators=(",", ":")).encode()
    return Manifest(digest=_sha256(body), media_type=OCI_INDEX, body=body)


def _sha256(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _current(client: RegistryClient, repository: str, tag: str) -> Manifest | None:
    try:
        return client.manifest(repository, tag)
    except RegistryError as exc:
        if exc.status == 404:
            return None
        raise


def _has_api(client: RegistryClient, repository: str, subject: str) -> bool:
    """The probe: whether the destination answers the referrers API (a 404 says it has none;
    so does a repository it does not hold yet, which an API-serving registry may not say)."""
    return ask_api(client, repository, subject) is not None


def examine(
    ctx: RunContext, endpoint: Endpoint, target: Target, artifacts: Sequence[Artifact]
) -> tuple[list[Examined], list[Note]]:
    """Each referrers tag index `artifacts` need at this target, with what it holds now."""
    subjects = _subjects(artifacts)
    if not subjects:
        return [], []
    client = ctx.client(endpoint)
    first = subjects[0]
    probe_repository = target.destination(ctx.spec, first.registry, first.repository)
    try:
        if _has_api(client, probe_repository, first.digest):
            return [], [
                Note(
                    "info",
                    f"signatures: {endpoint.host} answers the OCI referrers API: it lists the "
                    "referrers copied by digest itself",
                )
            ]
    except MirrorspecError as exc:
        return [], [
            Note(
                "warning",
                f"signatures: cannot ask {endpoint.host} for OCI referrers ({exc}): "
                "no referrers tag index written there",
            )
        ]

    def one(subject: _Subject) -> Examined | Note:
        repository = target.destination(ctx.spec, subject.registry, subject.repository)
        where = f"{endpoint.host}/{repository}:{subject.tag}"
        current = _current(client, repository, subject.tag)
        source = ctx.client(ctx.source_endpoint(subject.registry))
        try:
            merged = _merged(
                current,
                subject.referrers,
                subject.digest,
                lambda digest: source.manifest(subject.repository, digest),
                where,
                endpoint.host,
            )
        except RegistryError as exc:
            return Note("warning", f"signatures: {exc}")
        actual = current.digest if current is not None else None
        if merged is None and actual is None:
            return Note(
                "warning",
                f"signatures: {subject.registry}/{subject.repository}@{subject.digest}: the referrers "
                "its source listed do not name it as their subject; no referrers tag index written",
            )
        status: Literal["present", "missing", "digest-mismatch"]
        if merged is None:  # up to date: the index the destination holds is the one to put
            assert actual is not None
            planned, status = actual, "present"
        else:
            planned, status = merged.digest, "missing" if current is None else "digest-mismatch"
        return Examined(
            repository,
            subject.tag,
            subject.digest,
            subject.registry,
            subject.repository,
            actual,
            planned,
            status,
        )

    with ThreadPoolExecutor(max_workers=min(ceiling_for(ctx.reads), len(subjects))) as pool:
        results = list(pool.map(one, subjects))
    examined = [r for r in results if isinstance(r, Examined)]
    notes = [r for r in results if isinstance(r, Note)]
    writes = sum(1 for e in examined if e.status != "present")
    if writes:
        notes.append(
            Note(
                "info",
                f"signatures: {endpoint.host} has no OCI referrers API: {writes} referrers tag "
                "index(es) there (tag sha256-<hex>) do not list every referrer copied by digest; "
                "apply writes them, keeping what they list, so that its clients find the referrers "
                "(distribution-spec 1.1 'Referrers Tag Schema')",
            )
        )
    return examined, notes


def plan_copies(examined: Sequence[Examined], host: str) -> list[Copy]:
    """The plan's copies for the indexes that need writing, one per destination repository."""
    grouped: dict[tuple[str, str, str], list[CopyTag]] = {}
    for e in examined:
        if e.status != "present":
            grouped.setdefault((e.source_registry, e.source_repository, e.destination_repository), []).append(
                CopyTag(e.tag, e.planned, e.status, None, e.subject)
            )
    return [Copy(r, p, host, d, tuple(tags), ENGINE) for (r, p, d), tags in grouped.items()]


def put_indexes(
    ctx: RunContext, copies: Sequence[tuple[Copy, Endpoint]], artifacts: Sequence[Artifact]
) -> list[str]:
    """Write each planned referrers tag index; failures, one line each. Run after the copies."""
    referrers = {(s.registry, s.repository, s.digest): s.referrers for s in _subjects(artifacts)}
    # One task per destination tag: the only writer of that subject's index in this run.
    work: dict[tuple[Endpoint, str, str], tuple[str, dict[str, None]]] = {}
    for copy, endpoint in copies:
        for tag in copy.tags:
            subject = tag.refers_to or ""
            key = (endpoint, copy.destination_repository, tag.tag)
            listed = work.setdefault(key, (subject, {}))[1]
            listed.update(
                dict.fromkeys(referrers.get((copy.source_registry, copy.source_repository, subject), ()))
            )

    def one(item: tuple[tuple[Endpoint, str, str], tuple[str, Mapping[str, None]]]) -> str | None:
        (endpoint, repository, tag), (subject, listed) = item
        client = ctx.client(endpoint)
        where = f"{endpoint.host}/{repository}:{tag}"
        try:
            merged = _merged(
                _current(client, repository, tag),
                list(listed),
                subject,
                lambda digest: client.manifest(repository, digest),
                where,
                endpoint.host,
            )
            if merged is None:
                log.info("%s: the referrers tag index already lists them", where)
                return None
            put_manifest(client, repository, tag, merged)
            actual = client.digest(repository, tag)
        except MirrorspecError as exc:
            return f"referrers tag index {where}: {exc}"
        if actual != merged.digest:
            held = actual or "no manifest"
            return f"referrers tag index {where}: the registry holds {held}, not {merged.digest}"
        log.info("%s: referrers tag index written (%s)", where, merged.digest)
        return None

    if not work:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(work))) as pool:
        return [f for f in pool.map(one, work.items()) if f]


def content_checks(examined: Sequence[Examined], host: str) -> list[ContentCheck]:
    """`audit --content`'s line per referrers tag index: present only when it lists them all."""
    return [e.check(host) for e in examined]
