"""Plans and audits as plain, immutable data — and their rendering as table, JSON or markdown.

A `Plan` is what `apply` executes as-is (Terraform's model): the engine builds it, the CLI
shows it, and nothing is decided again between showing and doing. Copies name the source
digest they were planned for, so apply copies exactly what the plan showed even if the
upstream tag moves in between.

`diff()` is generic: it compares desired and observed native resources keyed by
`(kind, id)`, never per provider, and proposes deletes only for resources we manage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .stable_order import in_order, notes_in_order

__all__ = [
    "AUDIT_VERSION",
    "JSON_JOINED",
    "PLAN_VERSION",
    "Artifact",
    "Audit",
    "Change",
    "ChartImage",
    "ChartImages",
    "ContentCheck",
    "Copy",
    "CopyTag",
    "Note",
    "Plan",
    "Relocation",
    "Resource",
    "TargetAudit",
    "TargetPlan",
    "UnresolvedImage",
    "diff",
    "joined",
    "to_json",
]

PLAN_VERSION = 1
AUDIT_VERSION = 1


@dataclass(frozen=True)
class Artifact:
    """One resolved upstream tag. `dependency_of` names the chart that pulled it in."""

    registry: str
    """Upstream registry host, normalised (Docker Hub is `docker.io`)."""
    repository: str
    """Upstream repository path (Docker Hub official images carry `library/`)."""
    tag: str
    """The tag as the registry stores it (Helm's `+` is `_`)."""
    digest: str
    """Manifest digest the tag resolved to when planned (`sha256:...`)."""
    dependency_of: str | None = None
    """`registry/repository:tag` of the chart whose dependencies selected it, or for an image
    (`chart-images: true`) the first chart that deploys it; null if the spec did."""
    chart_image: bool = False
    """True for a container image a chart deploys (`chart-images: true`): not a Helm chart,
    though `dependency_of` names one."""
    refers_to: str | None = None
    """For a signature, attestation, SBOM or other OCI referrer: the digest of the manifest it
    refers to (in the same repository); null otherwise. An untagged referrer's `tag` is its
    digest (`sha256:...`): it is copied by digest."""

    @property
    def ref(self) -> str:
        """`registry/repository:tag`."""
        return f"{self.registry}/{self.repository}:{self.tag}"


@dataclass(frozen=True)
class Resource:
    """A native setting of a target registry (a rule, a policy, a secret, ...)."""

    kind: str
    """Provider-specific resource kind, e.g. `pull-through-cache-rule`, `replication-rule`."""
    id: str
    """Identifier of the resource within its kind (a rule prefix, a statement id, ...)."""
    attrs: Mapping[str, Any]
    """The resource's settings as the provider compares them; the shape depends on `kind`."""
    managed: bool = True
    """True when mirrorspec owns it (under the target prefix, marked `managed-by: mirrorspec`);
    foreign resources are listed, never changed."""


@dataclass(frozen=True)
class Change:
    """One change to a native resource. `replace` = delete + create (not updatable in place)."""

    action: Literal["create", "update", "replace", "delete"]
    """`create`, `update` (in place), `replace` (delete + create) or `delete` (only with --prune)."""
    resource: str
    """The resource kind (a `Resource.kind`)."""
    id: str
    """The resource id (a `Resource.id`)."""
    before: Mapping[str, Any] | None
    """Attributes as observed; null for `create`."""
    after: Mapping[str, Any] | None
    """Attributes as the spec wants them; null for `delete`."""
    reason: str = ""
    """Why, for people: e.g. which attributes differ; may be empty."""


@dataclass(frozen=True)
class CopyTag:
    """One tag to copy, pinned to the digest it was planned for."""

    tag: str
    """The tag, at the source and at the destination."""
    digest: str
    """Source manifest digest: apply copies exactly this, even if the tag has moved since."""
    reason: Literal["missing", "digest-mismatch"]
    """`missing` at the destination, or there with other content (`digest-mismatch`)."""
    dependency_of: str | None = None
    """`registry/repository:tag` of the chart that needs it; null if the spec selected it."""
    refers_to: str | None = None
    """The digest a signature or other referrer refers to (its `tag` is its own digest when it
    has no tag); null otherwise."""
    chart_image: bool = False
    """True for a container image a chart deploys (`chart-images: true`): `dependency_of` then
    names that chart, not a chart that depends on this one."""
    overwrites: str | None = None
    """The digest the destination holds under the tag, which this copy overwrites (the tag
    moved upstream and its repository's `on-moved:` is `overwrite`); null when it is missing."""


@dataclass(frozen=True)
class Copy:
    """Tags of one source repository to copy to one destination repository."""

    source_registry: str
    """Upstream registry host, normalised (Docker Hub is `docker.io`)."""
    source_repository: str
    """Upstream repository path."""
    destination_registry: str
    """The target's registry host (the plan's `TargetPlan.registry`)."""
    destination_repository: str
    """Repository path in the target (the one DESIGN destination path, `target.destination()`)."""
    tags: tuple[CopyTag, ...]
    """The tags to copy, in tag order."""
    engine: str = "skopeo"
    """Who copies: `skopeo` (apply runs it), `manifest-put` (a referrers tag index, put by
    mirrorspec after the skopeo copies), `referrers-index` (a referrers tag index mirrorspec
    writes at a destination without the referrers API; its tag's digest is the index's as
    planned, the destination's entries kept), or the registry itself (a native import)."""

    @property
    def source(self) -> str:
        """`registry/repository` upstream."""
        return f"{self.source_registry}/{self.source_repository}"

    @property
    def destination(self) -> str:
        """`registry/repository` in the target (the one DESIGN destination path)."""
        return f"{self.destination_registry}/{self.destination_repository}"


# The plan document writes each end of a copy as one `registry/repository` string, as it did
# before host and path were separate fields (a stable interface: CI gates, Terraform's
# `plan_json`). `to_json` writes each property below in place of the two fields it joins, and
# `schemas` publishes it the same way.
JSON_JOINED: dict[type, dict[str, tuple[str, str]]] = {
    Copy: {
        "source": ("source_registry", "source_repository"),
        "destination": ("destination_registry", "destination_repository"),
    },
}


@dataclass(frozen=True)
class Note:
    """Something a person should know that is not a change: a fallback, an insecure setting."""

    level: Literal["info", "warning"]
    """`info`, or `warning` for what weakens security or may not be what was meant."""
    message: str
    """One line, for people."""


@dataclass(frozen=True)
class ChartImage:
    """One place a chart names a container image (`chart-images: true`) and what it resolved to."""

    reference: str
    """The image as the chart names it, normalised as Docker does: `registry/repository:tag`,
    or `registry/repository@digest` when the chart pins a digest."""
    tag: str | None
    """The tag the chart names; null when it names only a digest."""
    digest: str | None
    """The digest the chart pins; null when it names only a tag."""
    source_digest: str | None
    """The manifest digest mirrored (the pinned one, else the tag's upstream digest when
    planned); null when the image is not upstream, which a note says."""
    origin: Literal["annotation", "hints", "values"]
    """Where it was found: Chart.yaml's `artifacthub.io/images` annotation, a
    `.relok8s-images.yaml` hint, or values.yaml."""
    found_in: str
    """The chart archive, and the subchart inside it that names it
    (`app-1.0.0.tgz › charts/redis-17.0.0.tgz`)."""
    key: str
    """The values key from the chart's own values (`db.image` for a subchart aliased `db`), the
    hint, or the annotation entry."""
    shape: Literal["string", "map", "registry-map", "other"]
    """How values.yaml writes it (a `repo:tag` string, a map without or with a `registry` key);
    `other` outside values.yaml."""


@dataclass(frozen=True)
class UnresolvedImage:
    """A place in a chart that names an image only its templates could resolve: listed, not mirrored."""

    found_in: str
    """The chart archive, and the subchart inside it."""
    file: str
    """`values.yaml`, `.relok8s-images.yaml` or `Chart.yaml annotations`."""
    key: str
    """The values key, hint or annotation entry."""
    why: str
    """Why mirrorspec cannot resolve it, for people."""


@dataclass(frozen=True)
class ChartImages:
    """The images one chart version deploys (`chart-images: true`), subcharts included."""

    chart: str
    """`registry/repository:tag` of the chart version upstream."""
    images: tuple[ChartImage, ...]
    """Every place the chart names an image, in the order found."""
    unresolved: tuple[UnresolvedImage, ...]
    """What could not be resolved without rendering templates."""


@dataclass(frozen=True)
class Relocation:
    """Where one chart version's images are in a target: what `render helm-values` writes."""

    chart: str
    """`registry/repository:tag` of the chart version upstream."""
    images: Mapping[str, str]
    """Each mirrored image's reference as the chart names it (`ChartImage.reference`) → the
    reference in the target, tag and digest kept."""


@dataclass(frozen=True)
class TargetPlan:
    """What apply would do to one target."""

    target: str
    """The target's `name` in the spec."""
    type: str
    """The target's `type` (`registry`, or the name of another installed provider)."""
    registry: str
    """The registry host apply writes to."""
    changes: tuple[Change, ...] = ()
    """Native settings to create, update, replace or delete, in the order apply runs them."""
    copies: tuple[Copy, ...] = ()
    """Tags to copy, per source repository, sorted by source then destination."""
    notes: tuple[Note, ...] = ()
    """What could not be done natively and why, insecure settings, skipped dependencies; each
    once, warnings first, each level sorted by message."""
    up_to_date: int = 0
    """Wanted tags already at the destination with the planned digest."""
    relocations: tuple[Relocation, ...] = ()
    """Per chart version with `chart-images: true`, where its images are in this target."""

    def __post_init__(self) -> None:
        # Whoever built it, in whatever order the threads answered: one order (`stable_order`).
        object.__setattr__(self, "notes", notes_in_order(self.notes))
        object.__setattr__(
            self,
            "copies",
            in_order(self.copies, lambda c: (*_ends(c), c.engine)),
        )

    @property
    def tag_count(self) -> int:
        """Tags to copy, over all copies."""
        return sum(len(copy.tags) for copy in self.copies)

    @property
    def empty(self) -> bool:
        """True when there is nothing to change and nothing to copy for this target."""
        return not self.changes and not self.copies


@dataclass(frozen=True)
class Plan:
    """Everything `apply` would do, for every selected target (`plan --format json`)."""

    spec: str
    """The spec file as named on the command line."""
    targets: tuple[TargetPlan, ...]
    """One entry per selected target, in spec order."""
    artifacts: tuple[Artifact, ...]
    """Every upstream tag the spec selects (Helm dependencies included), with its digest."""
    charts: tuple[ChartImages, ...] = ()
    """The images each chart version with `chart-images: true` deploys, and where each was found."""
    version: int = PLAN_VERSION
    """Version of this document's format; changes only with an incompatible change."""

    @property
    def empty(self) -> bool:
        """True when no target has anything to change or copy (apply would do nothing)."""
        return all(t.empty for t in self.targets)


@dataclass(frozen=True)
class ContentCheck:
    """Whether one wanted tag is at its destination with the upstream digest (`audit`)."""

    destination: str
    """`registry/repository` in the target."""
    tag: str
    """The wanted tag."""
    expected: str | None
    """The upstream manifest digest; null for an `unselected` tag."""
    actual: str | None
    """The digest the destination holds under the tag; null when the tag is absent."""
    status: Literal["present", "missing", "digest-mismatch", "moved-kept", "unselected"]
    """`present` (same digest), `missing`, `digest-mismatch` (other content), `moved-kept`
    (other content, kept because the tag moved upstream and its repository's `on-moved:` is
    `keep`; not drift) or `unselected` (a tag in a repository mirrorspec copies into that the
    spec does not select; not drift, `apply --prune-tags` deletes it)."""

    @property
    def drift(self) -> bool:
        """True when apply would copy this tag (`missing` or `digest-mismatch`)."""
        return self.status in ("missing", "digest-mismatch")


@dataclass(frozen=True)
class TargetAudit:
    """What one target really has, against the spec."""

    target: str
    """The target's `name` in the spec."""
    type: str
    """The target's `type` (`registry`, or the name of another installed provider)."""
    registry: str
    """The registry host that was audited."""
    resources: tuple[Resource, ...] = ()
    """Native settings the registry really has (rules, policies, secrets), ours or foreign,
    sorted by kind and id."""
    drift: tuple[Change, ...] = ()
    """Changes that would bring the managed rules back to the spec (foreign rules never drift)."""
    content: tuple[ContentCheck, ...] | None = None
    """One check per wanted tag; null when content was not checked (`--rules-only`)."""
    notes: tuple[Note, ...] = ()
    """What was not or could not be checked, insecure settings; each once, warnings first,
    each level sorted by message."""
    unchecked: int = 0
    """Wanted tags this target must hold that were not checked (`audit --rules-only`): no
    native rule proves they are there, so the target is not `in_sync`. 0 when they were
    checked, or when the target holds none (a pull-through cache serves them on demand)."""

    def __post_init__(self) -> None:
        # Notes and the registry's own listing order: one order (`stable_order`).
        object.__setattr__(self, "notes", notes_in_order(self.notes))
        object.__setattr__(self, "resources", in_order(self.resources, lambda r: (r.kind, r.id)))

    @property
    def in_sync(self) -> bool:
        """True when nothing drifted, every wanted tag was checked, and no checked tag is missing
        or holds other content than the spec asks for (`moved-kept` and `unselected` tags are
        reported, not drift)."""
        return not self.drift and not self.unchecked and not any(c.drift for c in self.content or ())

    @property
    def drifted(self) -> bool:
        """True when something was found wrong: a managed rule drifted, or a checked tag is
        missing or holds other content. Unchecked tags are not drift (`audit` exits 3, not 2)."""
        return bool(self.drift) or any(c.drift for c in self.content or ())


@dataclass(frozen=True)
class Audit:
    """What every selected target really has, against the spec (`audit --format json`)."""

    spec: str
    """The spec file as named on the command line."""
    targets: tuple[TargetAudit, ...]
    """One entry per selected target, in spec order."""
    version: int = AUDIT_VERSION
    """Version of this document's format; changes only with an incompatible change."""

    @property
    def in_sync(self) -> bool:
        """True when every target is in sync (`audit` exits 0)."""
        return all(t.in_sync for t in self.targets)

    @property
    def drifted(self) -> bool:
        """True when some target drifted (`audit` exits 2)."""
        return any(t.drifted for t in self.targets)

    @property
    def unchecked(self) -> int:
        """Wanted tags not checked, over all targets (`audit --rules-only`; exits 3 unless drifted)."""
        return sum(t.unchecked for t in self.targets)


def diff(
    desired: Iterable[Resource],
    observed: Iterable[Resource],
    *,
    prune: bool = False,
    replace_unless: Mapping[str, Sequence[str]] | None = None,
    replace_when: Callable[[Resource, Resource], str | None] | None = None,
) -> list[Change]:
    """Changes that turn `observed` into `desired`.

    `replace_unless[kind]` lists the only attributes a kind can change in place; a
    difference anywhere else becomes `replace` (e.g. a pull-through cache rule that can only
    change its credential in place). `replace_when(observed, desired)` may still turn an
    in-place change into `replace` by returning why (e.g. a registry that keeps a cache rule's
    credential when asked to remove it in place).
    """
    want = {(r.kind, r.id): r for r in desired}
    have = {(r.kind, r.id): r for r in observed}
    changes: list[Change] = []
    for key, resource in want.items():
        current = have.get(key)
        if current is None:
            changes.append(Change("create", resource.kind, resource.id, None, dict(resource.attrs)))
            continue
        differing = sorted(k for k in resource.attrs if resource.attrs[k] != current.attrs.get(k))
        if not differing:
            continue
        in_place = (replace_unless or {}).get(resource.kind)
        action: Literal["update", "replace"] = (
            "replace" if in_place is not None and set(differing) - set(in_place) else "update"
        )
        reason = f"differs in {', '.join(differing)}"
        why = replace_when(current, resource) if replace_when and action == "update" else None
        if why:
            action, reason = "replace", f"{reason}: {why}"
        changes.append(
            Change(action, resource.kind, resource.id, dict(current.attrs), dict(resource.attrs), reason)
        )
    if prune:
        for key, resource in have.items():
            if key not in want and resource.managed:
                changes.append(
                    Change(
                        "delete",
                        resource.kind,
                        resource.id,
                        dict(resource.attrs),
                        None,
                        "not in the spec",
                    )
                )
    return changes


def to_json(document: Plan | Audit) -> str:
    """The stable JSON form: dataclass fields as they are, plus derived summary fields."""
    data: dict[str, Any] = asdict(document)
    if isinstance(document, Plan):
        data["empty"] = document.empty
        for out, target in zip(data["targets"], document.targets, strict=True):
            out["empty"] = target.empty
            out["copies"] = [joined(Copy, copy) for copy in out["copies"]]
    else:
        data["in_sync"] = document.in_sync
        for out, audited in zip(data["targets"], document.targets, strict=True):
            out["in_sync"] = audited.in_sync
    return json.dumps(data, indent=2, sort_keys=False, default=_jsonable)


def joined(
    cls: type,
    fields: Mapping[str, Any],
    combine: Callable[[Any, Any], Any] = lambda first, second: f"{first}/{second}",
) -> dict[str, Any]:
    """`fields` of a `cls` as the JSON writes them: each pair in `JSON_JOINED[cls]` becomes one
    entry, `combine(first, second)`, where its first field stood; the others stay, in order.
    (`schemas` combines the pair's generated properties into the joined string's.)"""
    pairs = JSON_JOINED.get(cls, {})
    starts = {first: (name, second) for name, (first, second) in pairs.items()}
    seconds = {second for _, second in pairs.values()}
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in starts:
            name, second = starts[key]
            out[name] = combine(value, fields[second])
        elif key not in seconds:
            out[key] = value
    return out


def _ends(copy: Copy) -> tuple[str, str, str, str]:
    return (
        copy.source_registry,
        copy.source_repository,
        copy.destination_registry,
        copy.destination_repository,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
