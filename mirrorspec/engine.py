"""Orchestration: spec → plan, plan → apply, spec → audit. The only place that sequences work.

`load spec → resolve → (per target) translate → observe → diff → Plan → apply | audit`.
`render terraform` takes the same steps up to `translate` (`translated`), and `render skopeo`
every wanted tag with its destination host (`wanted`): the renderers only write them out.
Providers say what the registry does natively; everything else becomes a skopeo copy here,
with a note saying why. Every wanted tag is checked at the destination by digest before it
is planned, so a second apply plans nothing, and apply copies only tags that are missing or
hold other content.

Apply continues past a failure with all independent work, then reports every failure.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial

from . import (
    chart_images,
    layout_lock,
    moved_tags,
    providers,
    referrers,
    referrers_index,
    shards,
    unselected_tags,
)
from .context import Endpoint, RunContext
from .destination_checks import EarlyChecks, check_content, refuse_long_names
from .errors import MirrorspecError, ProviderError, RegistryError
from .plan import (
    Artifact,
    Audit,
    Change,
    ContentCheck,
    Copy,
    CopyTag,
    Note,
    Plan,
    TargetAudit,
    TargetPlan,
    diff,
)
from .providers.base import Desired, Observed, Provider
from .read_lanes import Lanes
from .resolve import Resolution, resolve
from .shards import Shard
from .skopeo.copier import copy_all
from .skopeo.jobs import CopyJob, CopyResult
from .skopeo.layout_copy import copy_into_layouts
from .spec import Target

__all__ = [
    "ApplyResult",
    "Translated",
    "Wanted",
    "apply",
    "audit",
    "plan",
    "selected_targets",
    "translated",
    "wanted",
]

log = logging.getLogger(__name__)


def selected_targets(ctx: RunContext, names: Sequence[str] | None) -> list[Target]:
    """The targets named on the command line (all when none), each with an installed provider."""
    chosen = list(ctx.spec.targets) if not names else [ctx.spec.target(n) for n in dict.fromkeys(names)]
    for target in chosen:
        providers.get(target.type)  # fail before any network work when a provider is missing
    return chosen


def plan(
    ctx: RunContext,
    *,
    targets: Sequence[str] | None = None,
    prune: bool = False,
    spec_name: str = "",
    copies_only: bool = False,
    shard: Shard | None = None,
) -> Plan:
    """Resolve upstream once, then plan every selected target against what it really holds.

    `copies_only` (`sync`): the same plan without its native changes, so only the copies are
    shown and carried out; the notes still say what the registry has. `shard` (`--shard I/N`):
    only this shard's destination repositories and native changes (`shards.py`).
    """
    chosen = selected_targets(ctx, targets)
    cached = _cached(ctx, chosen)
    plans = []
    # A pipeline per repository: each tag's destination checks start as soon as its source
    # digest is known (`destination_checks.EarlyChecks`), while the resolution goes on.
    with Lanes(ctx) as lanes:
        early = EarlyChecks(ctx, lanes, chosen, cached)
        on_digest: Callable[[str, str, str, str], None] = early.on_digest
        if shard is not None:  # the other shards' tags are theirs to check
            natively = {t.name for t in chosen if providers.get(t.type).capabilities(t).native_mirror}
            on_digest = shards.digest_filter(shard, ctx, chosen, on_digest, natively)
        resolution = resolve(ctx, skip=_skip(cached), lanes=lanes, on_digest=on_digest)
        resolution = _with_referrers(ctx, resolution, lanes)
        for target in chosen:
            with _naming(target):
                look = _look(ctx, target, resolution, cached[target.name], early.endpoint)
                everything = look.stored
                look = _sharded(look, shard)
                planned = _plan_target(look, prune, early)
            if shard is not None:
                support = look.provider.SUPPORT_KINDS
                wanted_paths = shards.destinations(ctx, target, everything)
                native = shards.native_paths(ctx, target, everything, look.desired.native)
                changes = shards.changes_of(shard, planned.changes, support, wanted_paths, native)
                planned = replace(planned, changes=changes)
            if resolution.charts:
                moved = chart_images.relocations(ctx, target, planned.registry, resolution.charts)
                planned = replace(planned, relocations=moved)
            plans.append(replace(planned, changes=()) if copies_only else planned)
    return Plan(
        spec=spec_name, targets=tuple(plans), artifacts=resolution.artifacts, charts=resolution.charts
    )


def _sharded(look: _Look, shard: Shard | None, *, audit: bool = False) -> _Look:
    """`look` narrowed to `shard`'s destination repositories (`shards.py`), with a note saying
    so; unchanged without a shard. The provider's translation stays the whole spec's, so shard
    0's native changes (and `--prune`'s deletes) never depend on how the repositories split.
    Repositories the target copies natively are shard 0's (`shards.owner`)."""
    if shard is None:
        return look
    shards.refuse_layout(shard, look.target, look.endpoint)
    native = shards.native_paths(look.ctx, look.target, look.stored, look.desired.native)
    stored = shards.mine(shard, look.ctx, look.target, look.stored, native)
    owned, total = (len(shards.destinations(look.ctx, look.target, s)) for s in (stored, look.stored))
    said = shards.note(shard, owned, total, native=len(native), audit=audit)
    return replace(look, stored=stored, notes=(*look.notes, said))


def _with_referrers(ctx: RunContext, resolution: Resolution, lanes: Lanes | None = None) -> Resolution:
    """The resolution with the signatures, attestations, SBOMs and OCI referrers of every
    resolved digest (`referrers.py`), and what finding them had to say."""
    found = referrers.discover(ctx, resolution.artifacts, resolution.tags, lanes=lanes)
    return replace(resolution, artifacts=found.artifacts, notes=(*resolution.notes, *found.notes))


@contextmanager
def _naming(target: Target) -> Iterator[None]:
    """A registry's or provider's error while looking at a target starts with the target's
    name (`lab: cannot reach ...`), so a run over many targets says which one failed, as
    apply's failures do. Spec and credential errors already say where they come from."""
    try:
        yield
    except (RegistryError, ProviderError) as exc:
        message = str(exc)
        if not message.startswith(f"{target.name}: ") and len(exc.args) == 1:
            exc.args = (f"{target.name}: {message}",)
        raise


@dataclass(frozen=True)
class _Look:
    """One target seen through its provider: what the spec wants, what the registry has."""

    ctx: RunContext
    target: Target
    provider: Provider
    desired: Desired
    observed: Observed
    endpoint: Endpoint
    stored: tuple[Artifact, ...]  # artifacts the target must hold (not served on demand)
    notes: tuple[Note, ...]


def _resolve_for(ctx: RunContext, chosen: Sequence[Target]) -> tuple[Resolution, dict[str, frozenset[str]]]:
    """Resolve only what some chosen target stores: repositories that every chosen target
    serves through a pull-through cache are never listed upstream."""
    cached = _cached(ctx, chosen)
    return resolve(ctx, skip=_skip(cached)), cached


def _cached(ctx: RunContext, chosen: Sequence[Target]) -> dict[str, frozenset[str]]:
    """Per target, the source repositories its pull-through cache serves."""
    return {t.name: providers.get(t.type).cached(t, ctx) for t in chosen}


def _skip(cached: dict[str, frozenset[str]]) -> frozenset[str]:
    """Repositories no chosen target needs resolved: every one serves them on demand."""
    return frozenset.intersection(*cached.values()) if cached else frozenset()


def _stored(resolution: Resolution, cached: frozenset[str]) -> tuple[Artifact, ...]:
    """The resolved artifacts the target must hold: not those a pull-through cache serves."""
    return tuple(a for a in resolution.artifacts if f"{a.registry}/{a.repository}" not in cached)


def _look(
    ctx: RunContext,
    target: Target,
    resolution: Resolution,
    cached: frozenset[str],
    endpoint_of: Callable[[Target], Endpoint] | None = None,
) -> _Look:
    """`endpoint_of`: where the target's endpoint comes from when not from its provider now
    (the plan learns it before resolving, and its error is raised here, in its old place)."""
    log.info("target %s (%s): translating, observing", target.name, target.type)
    provider = providers.get(target.type)
    stored = _stored(resolution, cached)
    notes = [*resolution.notes, *_setting_notes(ctx, target)]
    if ctx.spec.mode_of(target) == "cache" and not provider.capabilities(target).cache_upstreams:
        notes.append(
            Note("info", f"cache mode: {target.type} targets have no pull-through cache; mirroring instead")
        )
    desired = provider.translate(stored, target, ctx)
    observed = provider.observe(target, ctx)
    notes += [*desired.notes, *observed.notes, *provider.check(desired, observed, target)]
    notes += referrers.target_notes(getattr(provider, "SIGNATURES_NOTE", None), stored)
    if cached:
        notes.append(
            Note(
                "info",
                f"{len(cached)} repository(ies) are served on demand by a pull-through cache: "
                "nothing is copied ahead of time and their tags appear once pulled",
            )
        )
    endpoint = endpoint_of(target) if endpoint_of is not None else provider.endpoint(target, ctx)
    refuse_long_names(ctx, target, endpoint.host, stored)
    return _Look(ctx, target, provider, desired, observed, endpoint, stored, tuple(notes))


@dataclass(frozen=True)
class Translated:
    """One target's native rules as `plan` would ask for them, without reading the target:
    what `render terraform` writes."""

    target: Target
    provider: Provider
    desired: Desired
    stored: tuple[Artifact, ...]  # artifacts the target must hold (not served on demand)
    notes: tuple[Note, ...]  # the resolution's and the translation's


def translated(ctx: RunContext, target: str) -> Translated:
    """The plan's first steps for one target: resolve what it stores (repositories its
    pull-through cache serves are not listed upstream), then the provider's `translate()`.
    Reads only the upstream registries, never the target."""
    (chosen,) = selected_targets(ctx, [target])
    resolution, cached = _resolve_for(ctx, [chosen])
    provider = providers.get(chosen.type)
    stored = _stored(resolution, cached[chosen.name])
    desired = provider.translate(stored, chosen, ctx)
    return Translated(chosen, provider, desired, stored, (*resolution.notes, *desired.notes))


@dataclass(frozen=True)
class Wanted:
    """Every wanted tag of one target and the registry host it goes to: what `render skopeo`
    writes as `skopeo sync` documents."""

    target: Target
    host: str
    artifacts: tuple[Artifact, ...]


def wanted(ctx: RunContext, target: str) -> Wanted:
    """Every resolved tag for one target and the target's registry host. Unlike `plan`, the
    repositories a pull-through cache serves are included: `render skopeo` has always listed
    every wanted tag, without asking the provider what it caches."""
    (chosen,) = selected_targets(ctx, [target])
    endpoint = providers.get(chosen.type).endpoint(chosen, ctx)
    if endpoint.layout is not None:
        # skopeo sync's `--dest oci` does not exist in 1.9.3 (docker or dir only), and a `dir`
        # per image is not one layout with shared blobs and index.json references.
        raise MirrorspecError(
            f"target '{chosen.name}' is an OCI layout: skopeo sync cannot write one; "
            "use `mirrorspec apply` to fill it"
        )
    return Wanted(chosen, endpoint.host, resolve(ctx).artifacts)


def _plan_target(look: _Look, prune: bool, early: EarlyChecks) -> TargetPlan:
    changes = diff(
        look.desired.resources,
        look.observed.resources,
        prune=prune,
        replace_unless=look.provider.IN_PLACE,
        replace_when=getattr(look.provider, "replace_when", None),  # an optional hook
    )
    changes = _retired(look, changes)
    checks = early.results(look.target, look.endpoint, look.stored)
    # tags that moved upstream: kept or overwritten as their entry's `on-moved:` says
    settled = moved_tags.settle(look.ctx.spec, look.stored, checks, moved_tags.upstream_has(look.ctx))
    copies = _copies(look, settled.pairs)
    # referrers tag indexes a destination without the referrers API needs (`referrers_index.py`)
    # (not for referrers of a kept moved tag's new digest, which is not copied)
    copied = [artifact for artifact, _ in settled.pairs]
    indexes, index_notes = _examine_indexes(look.ctx, look.endpoint, look.target, copied)
    copies += referrers_index.plan_copies(indexes, look.endpoint.host)
    notes = (*look.notes, *index_notes, *settled.notes)
    return TargetPlan(
        target=look.target.name,
        type=look.target.type,
        registry=look.endpoint.host,
        changes=tuple(changes),
        copies=tuple(copies),
        notes=notes if prune else (*notes, *_kept_notes(look, changes)),
        up_to_date=sum(1 for c in checks if c.status == "present")
        + sum(1 for i in indexes if i.status == "present"),
    )


def _retired(look: _Look, changes: list[Change]) -> list[Change]:
    """`changes`, led by deletes of the managed rules the provider says must go first, with or
    without `--prune`, because keeping them would defeat the plan's copies and repositories
    (e.g. a pull-through cache rule over a copy destination)."""
    retire = getattr(look.provider, "retire", None)  # an optional hook
    if retire is None:
        return changes
    doomed = {(r.kind, r.id): r for r in retire(look.desired, look.observed, look.target)}
    first = [
        Change(
            "delete",
            r.kind,
            r.id,
            dict(r.attrs),
            None,
            "mirrorspec made it, and it would now serve copy destinations from the upstream",
        )
        for r in doomed.values()
    ]
    return first + [c for c in changes if (c.resource, c.id) not in doomed]


def _kept_notes(look: _Look, changes: Sequence[Change]) -> list[Note]:
    """Rules mirrorspec made that the spec no longer asks for stay until `--prune`: say so, or
    a plan with no changes would look like a registry that holds only what the spec says."""
    wanted = {(r.kind, r.id) for r in look.desired.resources}
    wanted |= {(c.resource, c.id) for c in changes if c.action == "delete"}
    kept = sorted(
        f"{r.kind} {r.id}" for r in look.observed.resources if r.managed and (r.kind, r.id) not in wanted
    )
    if not kept:
        return []
    shown = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
    return [
        Note(
            "info",
            f"{len(kept)} rule(s) mirrorspec made are no longer in the spec and are kept: {shown}; "
            "`apply --prune` deletes them",
        )
    ]


def _setting_notes(ctx: RunContext, target: Target) -> list[Note]:
    notes = [
        Note("warning", f"source {s.registry}: insecure (plain HTTP or unverified TLS)")
        for s in ctx.spec.sources
        if s.insecure
    ]
    if getattr(target, "insecure", False):
        notes.append(Note("warning", f"target {target.name}: insecure (plain HTTP or unverified TLS)"))
    return notes


def _copies(look: _Look, pairs: Sequence[tuple[Artifact, ContentCheck]]) -> list[Copy]:
    """Missing or different tags of `look.stored` (`pairs`: each with its check, those kept by
    `on-moved: keep` left out), grouped per (source, destination) repository; repositories the
    registry copies natively get the provider's engine, everything else skopeo."""
    desired = look.desired
    grouped: dict[tuple[str, str, str, str], list[CopyTag]] = defaultdict(list)
    for artifact, check in pairs:
        if check.status != "present":
            destination = look.target.destination(look.ctx.spec, artifact.registry, artifact.repository)
            native = f"{artifact.registry}/{artifact.repository}" in desired.native
            # A chart's image pinned by digest has a tag upstream lacks: skopeo copies it by digest.
            native = native and not chart_images.is_pinned(artifact.tag)
            # signatures and referrers: skopeo or a manifest PUT, whatever the registry imports
            engine = referrers.engine_for(artifact) or (desired.native_engine if native else "skopeo")
            grouped[(artifact.registry, artifact.repository, destination, engine)].append(
                CopyTag(
                    artifact.tag,
                    artifact.digest,
                    "missing" if check.status == "missing" else "digest-mismatch",
                    artifact.dependency_of,
                    artifact.refers_to,
                    artifact.chart_image,
                    check.actual if check.status == "digest-mismatch" else None,
                )
            )
    return [
        Copy(registry, repository, look.endpoint.host, destination, tuple(tags), engine)
        for (registry, repository, destination, engine), tags in grouped.items()
    ]


@dataclass
class ApplyResult:
    changed: int = 0
    copied: list[CopyResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def apply(
    ctx: RunContext,
    the_plan: Plan,
    *,
    copies_only: bool = False,
    on_copy: Callable[[CopyResult], None] | None = None,
) -> ApplyResult:
    """Execute `the_plan` as it is: native changes first (in the provider's order), then copies.

    A failed change or copy is recorded and the rest carries on; the caller exits 1 when
    `result.failures` is not empty.
    """
    result = ApplyResult()
    jobs: list[CopyJob] = []
    layout_jobs: list[CopyJob] = []  # into OCI layouts (`skopeo/layout_copy.py`)
    layout_puts: list[CopyJob] = []  # referrers tag indexes into them, after their children
    puts: list[tuple[Copy, Endpoint]] = []  # referrers tag indexes, put after their children
    indexes: list[tuple[Copy, Endpoint]] = []  # referrers tag indexes mirrorspec writes, last
    for target_plan in the_plan.targets:
        target = ctx.spec.target(target_plan.target)
        provider = providers.get(target.type)
        if not copies_only:
            for change in target_plan.changes:
                log.info("%s: %s %s %s", target.name, change.action, change.resource, change.id)
                try:
                    provider.apply(change, target, ctx)
                    result.changed += 1
                except MirrorspecError as exc:
                    result.failures.append(
                        f"{target.name}: {change.action} {change.resource} {change.id}: {exc}"
                    )
        if not target_plan.copies:
            continue
        try:
            endpoint = provider.endpoint(target, ctx)
        except MirrorspecError as exc:  # its copies cannot start; the other targets' still run
            tags = sum(len(c.tags) for c in target_plan.copies)
            result.failures.append(f"{target.name}: {tags} tag(s) not copied: {exc}")
            continue
        if endpoint.layout is not None:  # an OCI layout: copied into by `skopeo/layout_copy.py`
            for copy in target_plan.copies:
                put = copy.engine == referrers.PUT_ENGINE
                (layout_puts if put else layout_jobs).extend(_jobs(ctx, copy, endpoint))
            continue
        for copy in target_plan.copies:
            if copy.engine == "skopeo":
                jobs += _jobs(ctx, copy, endpoint)
            elif copy.engine == referrers.PUT_ENGINE:
                puts.append((copy, endpoint))
            elif copy.engine == referrers_index.ENGINE:
                indexes.append((copy, endpoint))
            else:
                result.failures += _native_copy(ctx, provider, target, copy, endpoint)
    for copied in [
        *copy_all(jobs, ctx, on_done=on_copy),
        *copy_into_layouts(layout_jobs, ctx, puts=layout_puts, on_done=on_copy),
    ]:
        result.copied.append(copied)
        if not copied.ok:
            result.failures.append(
                f"copy {copied.job.source_ref} → {copied.job.destination_ref}: {copied.error}"
            )
    result.failures += layout_lock.write_lock_documents(ctx, the_plan)
    result.failures += referrers.put_copies(ctx, puts)
    result.failures += referrers_index.put_indexes(ctx, indexes, the_plan.artifacts)
    return result


def _native_copy(
    ctx: RunContext, provider: Provider, target: Target, copy: Copy, endpoint: Endpoint
) -> list[str]:
    """Let the registry copy (import, replicate), then check every tag's digest ourselves: a
    server-side job that "succeeded" without the content is a failure, and a job that failed
    half-way is reported tag by tag."""
    log.info("%s: %s %s -> %s", target.name, copy.engine, copy.source, copy.destination)
    failures = []
    try:
        provider.copy(copy, target, ctx)
        claimed = "reported success but"
    except MirrorspecError as exc:
        failures.append(f"{target.name}: {copy.engine} {copy.source} → {copy.destination}: {exc}")
        claimed = "failed:"
    client = ctx.client(endpoint)
    for tag in copy.tags:
        try:
            actual = client.digest(copy.destination_repository, tag.tag)
        except MirrorspecError as exc:
            failures.append(f"{target.name}: cannot check {copy.destination}:{tag.tag}: {exc}")
            continue
        if actual != tag.digest:
            failures.append(
                f"{target.name}: {copy.engine} {claimed} {copy.destination}:{tag.tag} has "
                f"{actual or 'no manifest'} instead of {tag.digest}"
            )
    return failures


def _examine_indexes(
    ctx: RunContext, endpoint: Endpoint, target: Target, stored: Sequence[Artifact]
) -> tuple[list[referrers_index.Examined], list[Note]]:
    """`referrers_index.examine`, except at an OCI layout: it has no referrers API to probe and
    needs no tag index, since it records every referrer under its digest (`<path>@sha256:...`)."""
    if endpoint.layout is not None:
        return [], []
    return referrers_index.examine(ctx, endpoint, target, stored)


def _jobs(ctx: RunContext, copy: Copy, endpoint: Endpoint) -> list[CopyJob]:
    source = ctx.source_endpoint(copy.source_registry)
    return [
        CopyJob(source, copy.source_repository, tag.digest, endpoint, copy.destination_repository, tag.tag)
        for tag in copy.tags
    ]


def audit(
    ctx: RunContext,
    *,
    targets: Sequence[str] | None = None,
    content: bool = False,
    spec_name: str = "",
    rules_only: bool = False,
    shard: Shard | None = None,
) -> Audit:
    """What each target really has, against the spec: native rules (managed and foreign),
    drift of managed ones, and every tag the target must hold, by digest at the destination.

    No native rule proves a stored tag is there (a rule only says how it would get there), so
    the tags are checked by default: one HEAD each, what `plan` does. `content`: the deep check,
    which at an OCI layout also hashes every blob each tag reaches. `rules_only`: the tags are
    not checked and are counted as `unchecked`, so the audit is not `in_sync`.
    `shard`: only this shard's repositories' content; rules on shard 0 only (`shards.py`)."""
    if content and rules_only:
        raise MirrorspecError("--rules-only and --content cannot be used together")
    chosen = selected_targets(ctx, targets)
    resolution, cached = _resolve_for(ctx, chosen)
    resolution = _with_referrers(ctx, resolution)
    audits = []
    for target in chosen:
        with _naming(target):
            whole = _look(ctx, target, resolution, cached[target.name])
            look = _sharded(whole, shard, audit=True)
        support = look.provider.SUPPORT_KINDS
        rules = [r for r in look.observed.resources if r.kind not in support]
        wanted = [r for r in look.desired.resources if r.kind not in support]
        if shard is not None and not shard.native:  # shard 0 audits the rules
            rules = wanted = []
        drift = diff(
            wanted,
            rules,
            prune=True,
            replace_unless=look.provider.IN_PLACE,
            replace_when=getattr(look.provider, "replace_when", None),
        )
        notes = list(look.notes)
        checks: tuple[ContentCheck, ...] | None = None
        endpoint = look.endpoint
        unchecked = len(look.stored) if rules_only else 0
        if not rules_only:
            with _naming(target):
                # with `content`, at an OCI layout, every blob each tag reaches is hashed too
                found = check_content(ctx, endpoint, target, look.stored, hash_blobs=content)
                upstream_has = moved_tags.upstream_has(ctx)
                settled, moved_notes = moved_tags.audited(ctx.spec, look.stored, found, upstream_has)
                owns = None
                if shard is not None:  # the plan's owners (`shards.owner`)
                    native = shards.native_paths(ctx, target, whole.stored, whole.desired.native)
                    owns = partial(shard.owns, native=native)
                # Tags the spec does not select, with --content only: a tag listing per managed
                # repository and a HEAD per such tag, too much for every audit (terraform-external).
                unselected = (
                    unselected_tags.find(ctx, endpoint, target, look.stored, found, cached[target.name], owns)
                    if content
                    else unselected_tags.Found(endpoint.host, (), {})
                )
                checks = (*settled, *unselected_tags.checks(unselected))
                notes += [*moved_notes, *unselected_tags.note(unselected)]
                copied = [a for a, _ in moved_tags.settle(ctx.spec, look.stored, found, upstream_has).pairs]
                indexes, index_notes = _examine_indexes(ctx, endpoint, target, copied)
            checks += tuple(referrers_index.content_checks(indexes, endpoint.host))
            notes += index_notes
        audits.append(
            TargetAudit(
                target=target.name,
                type=target.type,
                registry=endpoint.host,
                resources=tuple(rules),
                drift=tuple(drift),
                content=checks,
                notes=tuple(notes),
                unchecked=unchecked,
            )
        )
    return Audit(spec=spec_name, targets=tuple(audits))
