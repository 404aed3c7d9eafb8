"""`--shard I/N`: N workers share one spec's copies, each doing its own part, with no coordination.

A destination repository belongs to exactly one shard: the first 8 bytes of the sha256 of its
path in the target (`Target.destination()`, the path the plan shows, without the host), as a
big-endian integer, mod N. sha256, not Python's `hash()`, which is salted per process
(`PYTHONHASHSEED`): the same path must fall in the same shard in every process, on every
machine and in every version, or two workers would both copy a repository or neither would.
The host is left out on purpose: a target's endpoint may be reached under another name from
another machine, and the path is what names the repository in the plan.

What follows a repository into its shard, so that each repository has one writer:
- every tag copied into it, whoever selected the tag: the spec, a chart's dependencies
  (`helm-dependencies`), a chart's images (`chart-images`) — each lands in its own destination
  repository and goes with that repository, not with the chart that named it;
- its signatures, attestations, SBOMs and other referrers, which live in the same repository,
  and the referrers tag index mirrorspec writes there (`referrers_index.py`): one writer per
  index, so no two workers merge into the same index at once;
- the destination checks of its tags (plan, and `audit --content`).

A repository the target copies natively (`Desired.native`: a provider's replication execution
or import) is shard 0's whatever its hash, with all its tags (pinned chart images and referrers
copied beside them too, so it keeps one writer): such a copy may wait on a native change — a
replication execution runs the repository's policy, and a provider refuses a copy no applied
policy lists (`providers/*/executions.py`) — and native changes are shard 0's. Were it shard k's,
shard k would race shard 0's policy update and fail until that had landed. `owner()` is the one
rule; the plan, the shard's note, `audit --shard`, the early destination checks and the tag
listings all ask it.

Native changes (rules, policies, credentials' secrets, deletes under `--prune`) are shard 0's
alone: N writers racing on one rule would see each other's half-made state, and a delete and a
create of the same rule from two workers could leave either. The exception is what only prepares
copies (a provider's `SUPPORT_KINDS`: a repository or project that must exist before a push):
a shard's copies need it before they start, so every shard creates the ones its own
repositories lie in. The built-in providers take "already exists" from such a create as
success (`providers/*/changes.py`), so two shards sharing one cannot fail each other. `audit`
likewise judges native rules on shard 0 only; every shard checks its own repositories' content.

An OCI layout target is one directory on one file system: it is refused with N > 1 (its
`index.json` and `mirrorspec.lock.json` describe the whole layout, and N machines would each
have their own directory).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Container, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from .context import Endpoint, RunContext
from .errors import MirrorspecError
from .plan import Artifact, Change, Note
from .spec import Target

__all__ = [
    "EVERY",
    "MAX_SHARDS",
    "Shard",
    "changes_of",
    "destinations",
    "digest_filter",
    "mine",
    "native_paths",
    "note",
    "owner",
    "parse",
    "refuse_layout",
    "shard_of",
]

# Kubernetes caps an Indexed Job at 100 000 completions and parallelism ("Indexed Jobs" in
# https://kubernetes.io/docs/concepts/workloads/controllers/job/#completion-mode: ".spec.completions
# ... must be less than or equal to 10^5"); more shards than that have nowhere to run, and the
# bound keeps a mistyped count from being a number Python refuses to parse.
MAX_SHARDS = 100_000

_SHAPE = re.compile(r"(\d{1,9})/(\d{1,9})")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (`--shard index/count`); `str()` gives `index/count` back."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise MirrorspecError(f"shard {self.index}/{self.count}: the count must be 1 to {MAX_SHARDS}")
        if not 0 <= self.index < self.count:
            raise MirrorspecError(
                f"shard {self.index}/{self.count}: the index must be 0 to {self.count - 1} "
                "(shards are numbered from 0, like a Job's completion index)"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, path: str, native: Container[str] = frozenset()) -> bool:
        """Whether the destination repository `path` (no host) is this shard's (`owner()`;
        `native`: the target's natively copied destination paths, `native_paths()`)."""
        return owner(path, self.count, native) == self.index

    @property
    def native(self) -> bool:
        """Whether this shard plans and applies native changes and audits rules (shard 0)."""
        return self.index == 0


def parse(text: str) -> Shard:
    """`I/N` → `Shard(I, N)`; a `MirrorspecError` saying what is wrong otherwise."""
    match = _SHAPE.fullmatch(text.strip())
    if match is None:
        raise MirrorspecError(f"shard {text!r}: expected INDEX/COUNT, e.g. 0/3 (the first of three)")
    return Shard(int(match[1]), int(match[2]))


def shard_of(path: str, count: int) -> int:
    """The shard of the destination repository `path` among `count`: stable everywhere."""
    return _number(path) % count


def owner(path: str, count: int, native: Container[str] = frozenset()) -> int:
    """The shard among `count` that owns the destination repository `path`: shard 0 when the
    target copies it natively (`path in native`, module docstring), else `shard_of()`."""
    return 0 if path in native else shard_of(path, count)


class _Every:
    """A container holding every path: before a target's translation, where it may copy any
    repository natively (`digest_filter`)."""

    def __contains__(self, item: object) -> bool:
        return True


EVERY: Container[str] = _Every()


@lru_cache(maxsize=65536)
def _number(path: str) -> int:
    return int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "big")


def _destination(ctx: RunContext, target: Target, artifact: Artifact) -> str:
    return target.destination(ctx.spec, artifact.registry, artifact.repository)


def native_paths(
    ctx: RunContext, target: Target, artifacts: Iterable[Artifact], sources: Container[str]
) -> frozenset[str]:
    """The destination repositories in `target` of `artifacts` whose source repository
    ("host/repository") the target copies natively (`sources`: `Desired.native`)."""
    return frozenset(
        _destination(ctx, target, a) for a in artifacts if f"{a.registry}/{a.repository}" in sources
    )


def mine(
    shard: Shard,
    ctx: RunContext,
    target: Target,
    artifacts: Iterable[Artifact],
    native: Container[str] = frozenset(),
) -> tuple[Artifact, ...]:
    """The artifacts whose destination repository in `target` is this shard's, in their order."""
    return tuple(a for a in artifacts if shard.owns(_destination(ctx, target, a), native))


def refuse_layout(shard: Shard, target: Target, endpoint: Endpoint) -> None:
    """An OCI layout target cannot be sharded over N > 1 workers (module docstring)."""
    if shard.count > 1 and endpoint.layout is not None:
        raise MirrorspecError(
            f"target '{target.name}' is an OCI layout, one directory on one file system: "
            f"it cannot be shared by {shard.count} shards; run it without --shard"
        )


def changes_of(
    shard: Shard,
    changes: Sequence[Change],
    support_kinds: Sequence[str],
    destinations: Iterable[str],
    native: Container[str] = frozenset(),
) -> tuple[Change, ...]:
    """The native changes this shard applies: all of them on shard 0; elsewhere only the creates
    of support resources (`SUPPORT_KINDS`) that one of this shard's destination repositories
    lies in (its id is the repository's path or a leading part of it)."""
    if shard.native:
        return tuple(changes)
    own = [d for d in destinations if shard.owns(d, native)]
    return tuple(
        c
        for c in changes
        if c.action == "create"
        and c.resource in support_kinds
        and any(d == c.id or d.startswith(f"{c.id}/") for d in own)
    )


def note(shard: Shard, owned: int, total: int, *, native: int = 0, audit: bool = False) -> Note:
    """What a shard's plan or audit of one target says about the shard (`native`: how many of
    the `total` destination repositories the target copies natively, all shard 0's)."""
    rule = f"sha256 of the path mod {shard.count}"
    if native:
        rule += (
            f", except the {native} the target copies natively, which are shard 0's with the "
            "native changes those copies wait for"
        )
    rest = "check" if audit else "copy"
    part = (
        f"shard {shard}: {owned} of {total} destination repositories are this shard's "
        f"({rule}); the other shards {rest} the rest"
    )
    if shard.native:
        return Note("info", part)
    rules = "audited" if audit else "planned and applied"
    return Note("info", f"{part}; native rules and policies are {rules} by shard 0/{shard.count}")


def digest_filter(
    shard: Shard,
    ctx: RunContext,
    targets: Sequence[Target],
    on_digest: Callable[[str, str, str, str], None],
    may_copy_natively: Collection[str] = frozenset(),
) -> Callable[[str, str, str, str], None]:
    """The plan's early destination-check hook, for a shard: a tag is checked early only when its
    repository is this shard's at some target (the others' tags are not this shard's to check).

    It runs before any target's translation, so which repositories a target copies natively is
    not known yet: at a target named in `may_copy_natively` (its provider can mirror natively)
    every repository is taken for native, which is what the built-in providers that copy
    natively make of nearly all of them. A tag this guess leaves unchecked but the plan finds this shard's is
    checked when the plan needs it (`EarlyChecks.results`), so the guess costs time, never a tag."""

    native: dict[str, Container[str]] = {
        t.name: EVERY if t.name in may_copy_natively else frozenset() for t in targets
    }

    @lru_cache(maxsize=65536)
    def wanted(registry: str, repository: str) -> bool:
        return any(shard.owns(t.destination(ctx.spec, registry, repository), native[t.name]) for t in targets)

    def hook(registry: str, repository: str, tag: str, digest: str) -> None:
        if wanted(registry, repository):
            on_digest(registry, repository, tag, digest)

    return hook


def destinations(ctx: RunContext, target: Target, artifacts: Iterable[Artifact]) -> set[str]:
    """Every destination repository path of `artifacts` in `target`."""
    return {_destination(ctx, target, a) for a in artifacts}
