"""What refers to each copied digest: cosign signatures, attestations, SBOMs and OCI 1.1 referrers.

Signing tools store what they say about a manifest next to it, in the same repository, in one of
three ways (sources in `docs/research-signatures.md`):

- cosign's tags: `<alg>-<hex>.sig`, `.att`, `.sbom` name the signatures, attestations and SBOM
  of the manifest `<alg>:<hex>` (sigstore/cosign `pkg/oci/remote`, `cosign attach --help`:
  "[AttachmentTagPrefix]sha256-[TargetImageDigest].[AttachmentName]");
- OCI 1.1 referrers, manifests whose `subject` names the manifest, listed by
  `GET /v2/<name>/referrers/<digest>` (distribution-spec v1.1 "Listing Referrers": 200 and an
  image index of descriptors, for any digest of an existing repository; a registry without the
  API answers 404 — Debian's docker-registry 2.8.2 answers `404 page not found`, tried here);
- the referrers tag schema, the spec's fallback where the API is missing: the tag `<alg>-<hex>`
  holds an image index of the referrers' descriptors (distribution-spec v1.1 "Unavailable
  Referrers API" / "Referrers Tag Schema").

Cost: the tags are found in the tag lists the resolution already fetched (`Resolution.tags`), so
no read per digest is spent on them; each tag found costs one HEAD (its digest), like any tag the
spec selects. The API is asked once per source registry first (the probe, with the first digest
of that registry): a 404 or a refusal means the registry has no API, and its referrers are found
by tags only, so a registry without the API costs one read more than before. Where the probe
answers, every digest costs one GET. Referrers of referrers (a signed SBOM) are followed the same
way, `_MAX_DEPTH` levels deep.

Copies: a tagged referrer becomes an `Artifact` like any tag, copied by skopeo by digest under its
tag (skopeo 1.9.3 copies cosign's simple-signing layers and OCI artifact manifests with
`--preserve-digests`, tried here). An untagged referrer (an index's child, an API answer) is an
`Artifact` whose `tag` is its digest: the copier copies it to `repo@digest`. A referrers tag
index is not skopeo's: skopeo 1.9.3 refuses `--all --preserve-digests` for an index whose
descriptors carry `artifactType` ("Manifest list must be converted ... but we cannot modify
it"), and without `--preserve-digests` drops the field and changes the digest (tried here). Its
bytes are put as they are, after its children are copied (`put_copies`, engine `PUT_ENGINE`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from . import paths
from .context import RunContext
from .errors import MirrorspecError, RegistryError
from .oci.client import OCI_INDEX, RegistryClient
from .oci.manifest_put import put_manifest
from .plan import Artifact, Copy, Note
from .read_lanes import Lanes, Tracker

__all__ = [
    "PUT_ENGINE",
    "Referrers",
    "ask_api",
    "discover",
    "engine_for",
    "put_copies",
    "target_notes",
]

log = logging.getLogger(__name__)

# The `Copy.engine` of referrers tag indexes: their bytes put by mirrorspec after the copies.
PUT_ENGINE = "manifest-put"

# cosign's attachment suffixes (sigstore/cosign pkg/oci/remote: SignatureTagSuffix ".sig",
# AttestationTagSuffix ".att", SBOMTagSuffix ".sbom").
_COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
_DIGEST = re.compile(r"(sha256|sha512):([a-f0-9]{64}|[a-f0-9]{128})")
_INDEX_TAG = re.compile(r"(sha256|sha512)-([a-f0-9]{64}|[a-f0-9]{128})")
# Manifests skopeo can copy by digest; anything else in an index or an API answer is noted.
_COPYABLE = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
# Signatures of signatures of ...: three levels hold a signed SBOM of an image and its own
# attestation; deeper chains are not followed (and said so), so a hostile chain ends.
_MAX_DEPTH = 3
# One digest's referrers: a registry answering more is broken or hostile.
_MAX_REFERRERS = 1000
_MAX_INDEX_BYTES = 4 << 20  # distribution-spec's suggested manifest limit


@dataclass(frozen=True)
class Referrers:
    """The resolution's artifacts with everything that refers to them, and what to say."""

    artifacts: tuple[Artifact, ...]
    notes: tuple[Note, ...]


def engine_for(artifact: Artifact) -> str | None:
    """The copy engine an artifact must have whatever the target does natively: `PUT_ENGINE`
    for a referrers tag index, skopeo for every other referrer (native imports are tag-based
    and not documented to keep digests of signatures), None for the rest."""
    if artifact.refers_to is None:
        return None
    return PUT_ENGINE if _INDEX_TAG.fullmatch(artifact.tag) else "skopeo"


def discover(
    ctx: RunContext,
    artifacts: Sequence[Artifact],
    tags: Mapping[tuple[str, str], Sequence[str]],
    *,
    lanes: Lanes | None = None,
) -> Referrers:
    """`artifacts` followed by what refers to each of them (in the same repository), unless the
    spec opts their repository out (`signatures: false`). `tags` are the tag lists the resolution
    read; a repository not among them is listed once here."""
    if lanes is None:
        with Lanes(ctx) as own:
            return _Discovery(ctx, own, tags).run(artifacts)
    return _Discovery(ctx, lanes, tags).run(artifacts)


def _opted_out(ctx: RunContext, artifacts: Sequence[Artifact]) -> set[str]:
    """`registry/repository:tag` of every artifact whose signatures the spec does not want: its
    repository entry says `signatures: false`, or the chart that pulled it in is opted out."""
    off = {
        f"{paths.normalize_registry(s.registry)}/{paths.normalize_repository(s.registry, r.name)}"
        for s in ctx.spec.sources
        for r in s.repositories
        if not r.signatures
    }
    by_ref = {a.ref: a for a in artifacts}
    out: set[str] = set()
    for artifact in artifacts:
        current: Artifact | None = artifact
        seen: set[str] = set()
        while current is not None and current.ref not in seen:
            seen.add(current.ref)
            if f"{current.registry}/{current.repository}" in off:
                out.add(artifact.ref)
                break
            current = by_ref.get(current.dependency_of) if current.dependency_of else None
    return out


class _Discovery:
    def __init__(self, ctx: RunContext, lanes: Lanes, tags: Mapping[tuple[str, str], Sequence[str]]) -> None:
        self.ctx = ctx
        self.lanes = lanes
        self.tags: dict[tuple[str, str], Sequence[str]] = dict(tags)
        self.lock = threading.Lock()
        self.api: dict[str, bool] = {}  # registry -> whether it answers the referrers API
        self.referring: dict[tuple[str, str], dict[str, list[str]]] = {}
        self.notes: list[Note] = []

    def run(self, artifacts: Sequence[Artifact]) -> Referrers:
        out = list(artifacts)
        off = _opted_out(self.ctx, artifacts)
        known = {(a.registry, a.repository, a.digest) for a in artifacts}
        level = [a for a in artifacts if a.ref not in off]
        for depth in range(_MAX_DEPTH + 1):
            subjects = sorted({(a.registry, a.repository, a.digest) for a in level})
            if not subjects:
                break
            if depth == _MAX_DEPTH:
                # Said only when their tags show more (asking the API would cost reads).
                deeper = [s for s in subjects if self._referring_tags(s[0], s[1]).get(_tag_of(s[2]))]
                if deeper:
                    self.notes.append(
                        Note(
                            "warning",
                            f"{len(deeper)} referrer(s) {_MAX_DEPTH} levels below a copied tag have "
                            "signatures or referrers of their own, not copied (a chain that deep is "
                            f"not followed), e.g. {deeper[0][0]}/{deeper[0][1]}@{deeper[0][2]}",
                        )
                    )
                break
            self._list_missing(subjects)
            found = self._level(subjects)
            level = []
            for artifact in found:
                key = (artifact.registry, artifact.repository, artifact.digest)
                if key in known and artifact.tag == artifact.digest:
                    continue  # already copied, under a tag or by digest
                out.append(artifact)  # a second tag of a known digest is still a tag to copy
                if key not in known:
                    known.add(key)
                    level.append(artifact)
        return Referrers(_dedupe(out), tuple(self.notes))

    # -- reading ------------------------------------------------------------------------------

    def _client(self, registry: str) -> RegistryClient:
        return self.ctx.client(self.ctx.source_endpoint(registry))

    def _list_missing(self, subjects: list[tuple[str, str, str]]) -> None:
        """Tag lists the resolution did not read (e.g. a repository reached by digest only)."""
        missing = sorted({(r, p) for r, p, _ in subjects} - set(self.tags))
        if not missing:
            return
        results: dict[tuple[str, str], list[str] | Exception] = {}
        tracker = Tracker()

        def listed(repo: tuple[str, str]) -> Callable[[], None]:
            def task() -> None:
                try:
                    value: list[str] | Exception = self._client(repo[0]).list_tags(repo[1])
                except MirrorspecError as exc:
                    value = exc
                with self.lock:
                    results[repo] = value

            return task

        for repo in missing:
            self.lanes.submit(tracker, repo[0], listed(repo))
        tracker.wait()
        for repo in missing:
            value = results[repo]
            if isinstance(value, Exception):
                self.notes.append(
                    Note("warning", f"{repo[0]}/{repo[1]}: cannot list tags to find signatures: {value}")
                )
                self.tags[repo] = ()
            else:
                self.tags[repo] = value

    def _level(self, subjects: list[tuple[str, str, str]]) -> list[Artifact]:
        """Every referrer of `subjects`, in their order: the probe per new registry first, then
        the API for every other digest of a registry that has it, the tags' digests and the
        tag indexes' children."""
        first: dict[str, tuple[str, str, str]] = {}
        for subject in subjects:
            if subject[0] not in self.api:
                first.setdefault(subject[0], subject)
        answers: dict[tuple[str, str, str], list[tuple[str, str]] | Exception | None] = {}
        self._run({s: (s[0], partial(self._ask_api, *s)) for s in first.values()}, answers)
        for registry, subject in first.items():
            answer = answers[subject]
            self.api[registry] = isinstance(answer, list)
            if answer is None:
                self.notes.append(
                    Note(
                        "info",
                        f"{registry}: no OCI referrers API "
                        f"({'a layout' if paths.is_layout_host(registry) else 'it answered 404'}): "
                        "signatures and referrers are found by their tags (cosign's and the referrers "
                        "tag schema)",
                    )
                )
            elif isinstance(answer, Exception):
                self.notes.append(
                    Note(
                        "warning",
                        f"{registry}: cannot ask for OCI referrers ({answer}): they are found by their "
                        "tags only",
                    )
                )
        rest = [s for s in subjects if self.api.get(s[0]) and s not in answers]
        self._run({s: (s[0], partial(self._ask_api, *s)) for s in rest}, answers)

        # tags that refer to each subject, and their digests (one HEAD each)
        tagged: list[tuple[tuple[str, str, str], str]] = []
        for subject in subjects:
            registry, repository, digest = subject
            by_subject = self._referring_tags(registry, repository)
            tagged += [(subject, tag) for tag in by_subject.get(_tag_of(digest), ())]
        digests: dict[tuple[tuple[str, str, str], str], str | Exception | None] = {}
        self._run({t: (t[0][0], partial(self._tag_digest, *t)) for t in tagged}, digests)

        found: list[Artifact] = []
        indexes: list[Artifact] = []
        for subject, tag in tagged:
            value = digests[(subject, tag)]
            if isinstance(value, Exception):
                raise value
            if value is None:
                continue  # listed a moment ago, gone now: nothing to copy
            artifact = Artifact(subject[0], subject[1], tag, value, refers_to=subject[2])
            found.append(artifact)
            if _INDEX_TAG.fullmatch(tag):
                indexes.append(artifact)
        children: dict[Artifact, list[tuple[str, str]] | Exception] = {}
        self._run({i: (i.registry, partial(self._index_children, i)) for i in indexes}, children)
        for index in indexes:
            listed = children[index]
            if isinstance(listed, Exception):
                raise listed
            found += self._by_digest(index.registry, index.repository, index.refers_to or "", listed)
        for subject in subjects:
            answer = answers.get(subject)
            if isinstance(answer, list):
                found += self._by_digest(*subject, answer)
            elif isinstance(answer, Exception) and self.api.get(subject[0]):
                raise answer
        return found

    def _by_digest(
        self, registry: str, repository: str, subject: str, descriptors: list[tuple[str, str]]
    ) -> list[Artifact]:
        out = []
        for media_type, digest in descriptors:
            if media_type not in _COPYABLE:
                self.notes.append(
                    Note(
                        "warning",
                        f"{registry}/{repository}@{subject}: referrer {digest} is a {media_type}, "
                        "which skopeo cannot copy; not mirrored",
                    )
                )
                continue
            out.append(Artifact(registry, repository, digest, digest, refers_to=subject))
        return out

    def _run(self, tasks: Mapping[Any, tuple[str, Callable[[], Any]]], results: dict[Any, Any]) -> None:
        """Run `tasks` ({key: (registry, fn)}) on their registries' lanes; each result (or
        `MirrorspecError`) into `results` under its key."""
        tracker = Tracker()

        def task(key: Any, fn: Callable[[], Any]) -> Callable[[], None]:
            def run() -> None:
                try:
                    value = fn()
                except MirrorspecError as exc:
                    value = exc
                with self.lock:
                    results[key] = value

            return run

        for key, (registry, fn) in tasks.items():
            self.lanes.submit(tracker, registry, task(key, fn))
        tracker.wait()

    def _ask_api(self, registry: str, repository: str, digest: str) -> list[tuple[str, str]] | None:
        return ask_api(self._client(registry), repository, digest)

    def _referring_tags(self, registry: str, repository: str) -> dict[str, list[str]]:
        """A repository's tags that name a digest (`sha256-<hex>` and its cosign suffixes), by
        that `sha256-<hex>`: built once per repository, so a repository of 100,000 tags and as
        many digests is not scanned once per digest."""
        key = (registry, repository)
        cached = self.referring.get(key)
        if cached is None:
            cached = {}
            for tag in sorted(self.tags.get(key, ())):
                base, dot, suffix = tag.partition(".")
                if _INDEX_TAG.fullmatch(base) and (not dot or f".{suffix}" in _COSIGN_SUFFIXES):
                    cached.setdefault(base, []).append(tag)
            self.referring[key] = cached
        return cached

    def _tag_digest(self, subject: tuple[str, str, str], tag: str) -> str | None:
        return self._client(subject[0]).digest(subject[1], tag)

    def _index_children(self, index: Artifact) -> list[tuple[str, str]]:
        manifest = self._client(index.registry).manifest(index.repository, index.digest)
        return _descriptors(manifest.body, f"the referrers tag index {index.ref}", index.registry)


def ask_api(client: RegistryClient, repository: str, digest: str) -> list[tuple[str, str]] | None:
    """(mediaType, digest) of each referrer of `repository@digest` the referrers API lists;
    None when the registry has no API (or does not serve it to us), or is an OCI layout."""
    if getattr(client, "offline", False):  # `layout_source.LayoutClient`: no API to ask
        return None
    client._check_reference(repository, digest)
    what = f"the referrers of {client.host}/{repository}@{digest}"
    with client._read(
        "GET", f"/v2/{repository}/referrers/{digest}", repository=repository, accept=OCI_INDEX
    ) as resp:
        # 404: no such endpoint (distribution-spec v1.1 "Listing Referrers": "If the registry
        # supports the referrers API, the registry MUST NOT return a 404 Not Found").
        # 400/401/403/405: not served to us.
        if resp.status_code in (400, 401, 403, 404, 405):
            return None
        if resp.status_code != 200:
            raise client._errors.status(resp, repository, what)
        body = client._session.read_limited(resp, _MAX_INDEX_BYTES, repository, what)
    return _descriptors(body, what, client.host)


def _tag_of(digest: str) -> str:
    """`sha256:<hex>` → `sha256-<hex>`, the tag that names it (cosign, the referrers tag schema)."""
    return digest.replace(":", "-", 1)


def _descriptors(body: bytes, what: str, registry: str) -> list[tuple[str, str]]:
    """(mediaType, digest) of each descriptor of an image index from a registry (untrusted)."""

    def invalid(why: str) -> RegistryError:
        return RegistryError(f"{what} is not a valid image index: {why}", registry=registry)

    try:
        document = json.loads(body)
    except ValueError:
        raise invalid("not JSON") from None
    listed = document.get("manifests") if isinstance(document, dict) else None
    if not isinstance(listed, list):
        raise invalid("no 'manifests' list")
    if len(listed) > _MAX_REFERRERS:
        raise invalid(f"more than {_MAX_REFERRERS} referrers")
    out = []
    for entry in listed:
        media_type = entry.get("mediaType") if isinstance(entry, dict) else None
        digest = entry.get("digest") if isinstance(entry, dict) else None
        if not isinstance(media_type, str) or not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise invalid("a descriptor without a valid mediaType and digest")
        out.append((media_type, digest))
    return out


def _dedupe(artifacts: list[Artifact]) -> tuple[Artifact, ...]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for artifact in artifacts:
        key = (artifact.registry, artifact.repository, artifact.tag)
        if key not in seen:
            seen.add(key)
            out.append(artifact)
    return tuple(out)


# -- apply: referrers tag indexes -------------------------------------------------------------


def put_copies(ctx: RunContext, copies: Sequence[tuple[Copy, Any]]) -> list[str]:
    """Put each referrers tag index of `copies` ((copy, destination endpoint) pairs) at its
    destination, with the bytes the source serves under the planned digest; failures, one line
    each. Run after the skopeo copies: a registry refuses an index whose children it lacks."""
    failures = []
    for copy, endpoint in copies:
        source = ctx.client(ctx.source_endpoint(copy.source_registry))
        destination = ctx.client(endpoint)
        for tag in copy.tags:
            where = f"{copy.destination}:{tag.tag}"
            try:
                manifest = source.manifest(copy.source_repository, tag.digest)
                put_manifest(destination, copy.destination_repository, tag.tag, manifest)
                actual = destination.digest(copy.destination_repository, tag.tag)
            except MirrorspecError as exc:
                failures.append(f"put {copy.source}@{tag.digest} → {where}: {exc}")
                continue
            if actual != tag.digest:
                held = actual or "no manifest"
                failures.append(f"put {where}: the registry holds {held}, not {tag.digest}")
            else:
                log.info("%s: referrers tag index put", where)
    return failures


# -- plan notes for native targets -------------------------------------------------------------


def target_notes(native_note: str | None, artifacts: Sequence[Artifact]) -> list[Note]:
    """One note for a native target with referrers to copy: what the service's own feature
    would carry (its provider's `SIGNATURES_NOTE`), and that mirrorspec copies them itself."""
    count = sum(1 for a in artifacts if a.refers_to is not None)
    if not count or native_note is None:
        return []
    return [Note("info", f"signatures: {count} signature(s)/referrer(s): {native_note}")]
