"""Tags that moved upstream: the destination holds a tag under one digest, upstream now another.

A wanted tag whose destination digest differs from upstream's (`ContentCheck.status ==
"digest-mismatch"`) used to be copied over without a word. Now its repository entry's
`on-moved:` decides, and the plan says which way it went, naming both digests (old = the
destination's, new = upstream's):

- `keep`: nothing is copied; a warning says how to overwrite. `audit --content` reports the tag
  as `moved-kept`: it differs, but it is what the spec asks for, so it is not drift.
- `overwrite`: the copy is planned as before, its `CopyTag.overwrites` naming the digest it
  replaces, and an info note says "moved upstream: old → new".

Defaults, by what selected the tag (`Repository.on_moved` unset):

- `versions:` → keep: a version constraint selects released versions, which are immutable; a
  release re-tagged upstream is a supply-chain event to look at, not to copy silently.
- `tags:`, `tag-regex:`, `all-tags:` → overwrite: these select names, and names such as
  `latest`, `stable` or `3.19` are meant to move (a regex or every tag may also hold versions;
  whoever wants those kept says `on-moved: keep`).
- A Helm dependency or a chart's image follows the entry that pulled it in (its `on-moved:`,
  else that entry's default): a chart release pins what it deploys, a `latest` chart does not.
- A signature, attestation, SBOM or other referrer always follows (overwrite): its tag is named
  by the digest it refers to (`sha256-<hex>.sig`), which cannot move; a new digest under it
  means signatures were added upstream. An image a chart pins by digest (`digest-sha256-<hex>`)
  cannot move either; another digest there is repaired.

A kept tag's new upstream digest is not copied, so neither are the referrers that refer only to
it (they would sign an image the destination does not hold).

A different digest at the destination is taken for a move only when upstream still holds the
destination's digest (one HEAD `source@digest` per such tag): then the destination's content
came from upstream, and upstream moved the tag since. A digest upstream does not hold was
changed at the destination (a push by hand, an older mirroring tool's single-platform copy, a
tampered registry) — or upstream deleted the old manifest after moving the tag; mirrorspec
cannot tell which. Under `keep` such a tag is still not copied over (a release is not replaced
on a guess), but it is never passed off as a move: the warning says what was found, and
`audit` reports it as `digest-mismatch`, drift (exit 2), until someone looks (`on-moved:
overwrite` on the entry, or deleting the tag, lets the next apply copy upstream's).

What this does not reach: tags a registry replicates or caches by its own rules (a provider's
native replication or import, pull-through caches) follow the registry's own behaviour, not
`on-moved:`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from . import chart_images, paths
from .context import RunContext
from .errors import MirrorspecError
from .plan import Artifact, ContentCheck, Note
from .spec import Spec

__all__ = ["Settled", "UpstreamHas", "audited", "policy_of", "settle", "upstream_has"]

Policy = Literal["keep", "overwrite"]

UpstreamHas = Callable[[Artifact, str], bool]
"""Whether the artifact's upstream repository holds a manifest by this digest (the engine asks
with a HEAD; an error counts as no)."""


@dataclass(frozen=True)
class _Entry:
    where: str  # `sources[0] › repositories[1]` (with file:line:col when known)
    policy: Policy
    explicit: bool


def _entries(spec: Spec) -> dict[tuple[str, str], _Entry]:
    """Per upstream (registry, repository), the spec entry that selects from it (one at most:
    `spec.checks` refuses a repository listed twice)."""
    found: dict[tuple[str, str], _Entry] = {}
    for s, source in enumerate(spec.sources):
        for r, repo in enumerate(source.repositories):
            default: Policy = "keep" if repo.versions is not None else "overwrite"
            where = f"sources[{s}] › repositories[{r}]"
            at = spec.location_of(("sources", s, "repositories", r))
            key = (
                paths.normalize_registry(source.registry),
                paths.normalize_repository(source.registry, repo.name),
            )
            found[key] = _Entry(
                f"{at}: {where}" if at else where, repo.on_moved or default, repo.on_moved is not None
            )
    return found


class _Policies:
    """Every stored artifact's policy, by following `dependency_of` up to a spec entry."""

    def __init__(self, spec: Spec, artifacts: Sequence[Artifact]) -> None:
        self._entries = _entries(spec)
        self._by_ref = {a.ref: a for a in artifacts if a.refers_to is None}

    def of(self, artifact: Artifact) -> tuple[Policy, _Entry | None]:
        if artifact.refers_to is not None or chart_images.is_pinned(artifact.tag):
            return "overwrite", None
        seen: set[str] = set()
        root = artifact
        while root.dependency_of is not None and root.dependency_of not in seen:
            seen.add(root.dependency_of)
            parent = self._by_ref.get(root.dependency_of)
            if parent is None:
                break
            root = parent
        entry = self._entries.get((root.registry, root.repository))
        if entry is None:  # a dependency whose chart is not stored here: a chart version → keep
            return "keep", None
        return entry.policy, entry


def policy_of(spec: Spec, artifact: Artifact, artifacts: Sequence[Artifact]) -> Policy:
    """What `on-moved:` says for `artifact` (one of `artifacts`, the target's stored ones)."""
    return _Policies(spec, artifacts).of(artifact)[0]


@dataclass(frozen=True)
class Settled:
    """The stored artifacts a plan considers copying, with their checks, and what it says."""

    pairs: tuple[tuple[Artifact, ContentCheck], ...]
    """Every stored artifact and its check, except kept moved tags and their referrers."""
    notes: tuple[Note, ...]
    kept: int = 0


def _or_dash(digest: str | None) -> str:
    return digest or "-"


def _kept_note(artifact: Artifact, check: ContentCheck, entry: _Entry | None) -> Note:
    where = f" ({entry.where})" if entry is not None else ""
    why = "on-moved: keep" if entry is None or entry.explicit else "on-moved: keep, the default for versions:"
    return Note(
        "warning",
        f"{check.destination}:{check.tag} moved upstream: {_or_dash(check.actual)} → {check.expected} "
        f"({artifact.ref}); kept, not copied ({why}); set `on-moved: overwrite` on its repository "
        f"entry{where} to copy the new digest",
    )


def _foreign_note(artifact: Artifact, check: ContentCheck, entry: _Entry | None) -> Note:
    where = f" ({entry.where})" if entry is not None else ""
    return Note(
        "warning",
        f"{check.destination}:{check.tag} holds {_or_dash(check.actual)}, which upstream "
        f"({artifact.ref}) does not have: changed at the destination, or deleted upstream after the "
        f"tag moved to {check.expected}; not copied over (on-moved: keep): check the destination, "
        f"then delete the tag or set `on-moved: overwrite` on its repository entry{where} to copy "
        "upstream's",
    )


def _overwrite_note(artifact: Artifact, check: ContentCheck) -> Note:
    return Note(
        "info",
        f"{check.destination}:{check.tag} moved upstream: {_or_dash(check.actual)} → {check.expected} "
        f"({artifact.ref}); overwritten (on-moved: overwrite)",
    )


def settle(
    spec: Spec, stored: Sequence[Artifact], checks: Sequence[ContentCheck], upstream_has: UpstreamHas
) -> Settled:
    """Decide every moved tag of a target's plan (`stored` and its `checks`, in order)."""
    decided, notes = _decide(spec, stored, checks, upstream_has, audit=False)
    pairs = tuple((artifact, check) for artifact, check, keep, _ in decided if not keep)
    return Settled(pairs, tuple(notes), sum(1 for _, _, keep, _ in decided if keep))


def audited(
    spec: Spec, stored: Sequence[Artifact], checks: Sequence[ContentCheck], upstream_has: UpstreamHas
) -> tuple[list[ContentCheck], list[Note]]:
    """`audit`'s checks with every tag that moved upstream and that `on-moved: keep` keeps as
    `moved-kept` (it differs, as the spec asks: not drift), and the plan's note for it. A kept
    tag whose digest upstream does not hold stays `digest-mismatch` (module doc)."""
    decided, notes = _decide(spec, stored, checks, upstream_has, audit=True)
    return [replace(check, status="moved-kept") if moved else check for _, check, _, moved in decided], notes


def _decide(
    spec: Spec,
    stored: Sequence[Artifact],
    checks: Sequence[ContentCheck],
    upstream_has: UpstreamHas,
    *,
    audit: bool,
) -> tuple[list[tuple[Artifact, ContentCheck, bool, bool]], list[Note]]:
    """(artifact, check, kept, moved upstream and kept) for each stored artifact, without the
    referrers that refer only to a kept tag's new digest (nothing copies that digest), and the
    notes."""
    policies = _Policies(spec, stored)
    notes: list[Note] = []
    kept_digests: set[str] = set()
    copied_digests: set[str] = set()
    decided: list[tuple[Artifact, ContentCheck, bool, bool]] = []
    for artifact, check in zip(stored, checks, strict=True):
        keep = moved = False
        if check.status == "digest-mismatch" and artifact.refers_to is None:
            policy, entry = policies.of(artifact)
            keep = policy == "keep"
            if keep:
                moved = check.actual is not None and upstream_has(artifact, check.actual)
                notes.append(
                    _kept_note(artifact, check, entry) if moved else _foreign_note(artifact, check, entry)
                )
            elif not audit:  # audit reports an overwritable one as digest-mismatch (drift)
                notes.append(_overwrite_note(artifact, check))
        if artifact.refers_to is None:
            (kept_digests if keep else copied_digests).add(artifact.digest)
        decided.append((artifact, check, keep, moved))
    orphaned = kept_digests - copied_digests
    return [d for d in decided if d[0].refers_to is None or d[0].refers_to not in orphaned], notes


def upstream_has(ctx: RunContext) -> UpstreamHas:
    """`moved_tags`' question, asked once per artifact and digest: does the artifact's upstream
    repository hold this manifest? A tag is taken for moved upstream only when it does."""
    asked: dict[tuple[str, str, str], bool] = {}

    def has(artifact: Artifact, digest: str) -> bool:
        key = (artifact.registry, artifact.repository, digest)
        if key not in asked:
            try:
                client = ctx.client(ctx.source_endpoint(artifact.registry))
                asked[key] = client.digest(artifact.repository, digest) == digest
            except MirrorspecError:  # not proven: never taken for a move
                asked[key] = False
        return asked[key]

    return has
