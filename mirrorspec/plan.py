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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = [
    "AUDIT_VERSION",
    "PLAN_VERSION",
    "Artifact",
    "Audit",
    "Change",
    "ContentCheck",
    "Copy",
    "CopyTag",
    "Note",
    "Plan",
    "Resource",
    "TargetAudit",
    "TargetPlan",
    "diff",
    "to_json",
]

PLAN_VERSION = 1
AUDIT_VERSION = 1


@dataclass(frozen=True)
class Artifact:
    """One resolved upstream tag. `dependency_of` names the chart that pulled it in."""

    registry: str
    repository: str
    tag: str
    digest: str
    dependency_of: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"


@dataclass(frozen=True)
class Resource:
    """A native setting of a target registry (a rule, a policy, a secret, ...)."""

    kind: str
    id: str
    attrs: Mapping[str, Any]
    managed: bool = True


@dataclass(frozen=True)
class Change:
    """One change to a native resource. `replace` = delete + create (not updatable in place)."""

    action: Literal["create", "update", "replace", "delete"]
    resource: str
    id: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    reason: str = ""


@dataclass(frozen=True)
class CopyTag:
    tag: str
    digest: str
    reason: Literal["missing", "digest-mismatch"]
    dependency_of: str | None = None


@dataclass(frozen=True)
class Copy:
    """Tags of one source repository to copy to one destination repository."""

    source: str
    destination: str
    tags: tuple[CopyTag, ...]
    engine: str = "skopeo"


@dataclass(frozen=True)
class Note:
    level: Literal["info", "warning"]
    message: str


@dataclass(frozen=True)
class TargetPlan:
    target: str
    type: str
    registry: str
    changes: tuple[Change, ...] = ()
    copies: tuple[Copy, ...] = ()
    notes: tuple[Note, ...] = ()
    up_to_date: int = 0

    @property
    def tag_count(self) -> int:
        return sum(len(copy.tags) for copy in self.copies)

    @property
    def empty(self) -> bool:
        return not self.changes and not self.copies


@dataclass(frozen=True)
class Plan:
    spec: str
    targets: tuple[TargetPlan, ...]
    artifacts: tuple[Artifact, ...]
    version: int = PLAN_VERSION

    @property
    def empty(self) -> bool:
        return all(t.empty for t in self.targets)


@dataclass(frozen=True)
class ContentCheck:
    destination: str
    tag: str
    expected: str
    actual: str | None
    status: Literal["present", "missing", "digest-mismatch"]


@dataclass(frozen=True)
class TargetAudit:
    target: str
    type: str
    registry: str
    resources: tuple[Resource, ...] = ()
    drift: tuple[Change, ...] = ()
    content: tuple[ContentCheck, ...] | None = None
    notes: tuple[Note, ...] = ()

    @property
    def in_sync(self) -> bool:
        return not self.drift and all(c.status == "present" for c in self.content or ())


@dataclass(frozen=True)
class Audit:
    spec: str
    targets: tuple[TargetAudit, ...]
    version: int = AUDIT_VERSION

    @property
    def in_sync(self) -> bool:
        return all(t.in_sync for t in self.targets)


def diff(
    desired: Iterable[Resource],
    observed: Iterable[Resource],
    *,
    prune: bool = False,
    replace_unless: Mapping[str, Sequence[str]] | None = None,
) -> list[Change]:
    """Changes that turn `observed` into `desired`.

    `replace_unless[kind]` lists the only attributes a kind can change in place; a
    difference anywhere else becomes `replace` (e.g. ECR pull-through rules and ACR cache
    rules can only change their credential in place).
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
        changes.append(
            Change(
                action,
                resource.kind,
                resource.id,
                dict(current.attrs),
                dict(resource.attrs),
                f"differs in {', '.join(differing)}",
            )
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
    else:
        data["in_sync"] = document.in_sync
        for out, audited in zip(data["targets"], document.targets, strict=True):
            out["in_sync"] = audited.in_sync
    return json.dumps(data, indent=2, sort_keys=False, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
