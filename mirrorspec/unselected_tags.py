"""Tags in a repository mirrorspec copies into that the spec does not select.

A *managed* repository is the destination of something the target stores (`target.destination`
of every spec entry and of every stored artifact: Helm dependencies, chart images); a
repository a pull-through cache serves is not copied into and is not managed. Its tags are
listed; a tag is *selected* when a stored artifact goes under it, and *kept* with it are the
signature, attestation and SBOM tags (`sha256-<hex>.sig`, `.att`, `.sbom`) and the referrers
tag-schema index tag (`sha256-<hex>`) of every kept digest: a selected tag's upstream digest and
the digest the destination holds under it (a tag `on-moved: keep` keeps). Everything else is
`unselected` (an out-of-range `1.0.0` pushed by hand, a version the spec no longer selects).

`audit --content` reports them, and they are not drift (exit 0 when nothing else differs):
apply would not change them (only `apply --prune-tags` does, `prune_tags.py`), they may be
somebody's hotfix in a shared registry, and mirrorspec cannot tell a tag it copied from one a
person pushed. A keep-only mirror is one where `apply --prune-tags` runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .context import Endpoint, RunContext
from .errors import RegistryError
from .layout import Layout
from .layout.store import parse_ref_name
from .oci import RegistryClient
from .oci.read_limit import ceiling_for
from .plan import Artifact, ContentCheck, Note
from .spec import Target

__all__ = ["Found", "checks", "find", "managed_repositories", "note"]

DigestOf = Callable[[str, str], "str | None"]

# cosign's attachment tags (sigstore/cosign pkg/oci/remote: `sha256-<hex>.sig|.att|.sbom`) and
# the OCI distribution-spec v1.1 referrers tag schema (`sha256-<hex>`), both named by a digest.
# A sha512's tag holds the first 64 hex digits only (`referrers.index_tag`: a tag has at most 128).
_BY_DIGEST = re.compile(r"(?P<algorithm>sha256|sha512)-(?P<hex>[a-f0-9]{64})(?:\.(?:sig|att|sbom))?")


@dataclass(frozen=True)
class Found:
    """One target's unselected tags and what keeps the rest (`prune_tags` reads both)."""

    host: str
    tags: tuple[tuple[str, str, str | None], ...]
    """(destination repository, tag, digest or None when it vanished), sorted."""
    kept: dict[str, frozenset[str]]
    """Per managed repository, the digests its selected tags hold or are copied to."""
    unmatched: tuple[str, ...] = ()
    """Managed repositories whose selection matched no upstream tag: not listed (every tag would
    be unselected, and pruning would empty the repository on a tightened range or an upstream
    that answered an empty list), sorted."""


def managed_repositories(
    ctx: RunContext, target: Target, stored: Iterable[Artifact], cached: frozenset[str]
) -> set[str]:
    """Destination repositories this target copies into (see the module docstring)."""
    found = {target.destination(ctx.spec, a.registry, a.repository) for a in stored}
    for source in ctx.spec.sources:
        registry = paths.normalize_registry(source.registry)
        for repo in source.repositories:
            repository = paths.normalize_repository(source.registry, repo.name)
            if f"{registry}/{repository}" not in cached:
                found.add(target.destination(ctx.spec, registry, repository))
    return found


def find(
    ctx: RunContext,
    endpoint: Endpoint,
    target: Target,
    stored: Sequence[Artifact],
    checks: Sequence[ContentCheck],
    cached: frozenset[str],
    owns: Callable[[str], bool] | None = None,
) -> Found:
    """Every unselected tag of the target's managed repositories, with its digest. `checks`:
    what the destination holds under each stored artifact's tag (in `stored` order); `owns`:
    only the repositories it says yes to (`--shard I/N`: `Shard.owns`)."""
    repositories = {r for r in managed_repositories(ctx, target, stored, cached) if owns is None or owns(r)}
    selected: dict[str, set[str]] = {r: set() for r in repositories}
    kept: dict[str, set[str]] = {r: set() for r in repositories}
    for artifact, check in zip(stored, checks, strict=True):
        repository = target.destination(ctx.spec, artifact.registry, artifact.repository)
        if repository not in selected:  # another shard's
            continue
        selected[repository].add(artifact.tag)
        kept[repository].add(artifact.digest)
        if check.actual:
            kept[repository].add(check.actual)
    # A selection that matched nothing keeps nothing: its repository is left alone, said once.
    unmatched = tuple(sorted(r for r in repositories if not selected[r]))
    repositories -= set(unmatched)
    if endpoint.layout is not None:
        listed, digest_of = _layout_tags(Path(endpoint.layout), repositories)
    else:
        client = ctx.client(endpoint)
        with ThreadPoolExecutor(max_workers=ceiling_for(ctx.reads)) as pool:
            names = sorted(repositories)
            listed = dict(zip(names, pool.map(lambda r: _tags(client, r), names), strict=True))

        digest_of = client.digest

    candidates = sorted(
        (repository, tag)
        for repository, tags in listed.items()
        for tag in tags
        if tag not in selected[repository] and not _kept_by_digest(tag, kept[repository])
    )
    with ThreadPoolExecutor(max_workers=ceiling_for(ctx.reads)) as pool:
        digests = list(pool.map(lambda rt: digest_of(*rt), candidates))
    return Found(
        endpoint.host,
        tuple((r, t, d) for (r, t), d in zip(candidates, digests, strict=True)),
        {r: frozenset(d) for r, d in kept.items()},
        unmatched,
    )


def checks(found: Found) -> list[ContentCheck]:
    """`audit --content`'s rows for them: status `unselected`, no expected digest."""
    return [ContentCheck(f"{found.host}/{r}", t, None, d, "unselected") for r, t, d in found.tags]


def note(found: Found) -> list[Note]:
    """One line saying what they are and what deletes them, when there are any, and one naming
    the repositories left out because their selection matched nothing."""
    notes = []
    if found.tags:
        notes.append(
            Note(
                "info",
                f"{len(found.tags)} tag(s) in repositories mirrorspec copies into are not selected by "
                "the spec (unselected): kept, not drift; `apply --prune-tags` deletes them where the "
                "target's type allows it",
            )
        )
    if found.unmatched:
        notes.append(
            Note(
                "warning",
                f"{len(found.unmatched)} managed repository(ies) whose selection matches no upstream tag "
                f"are not searched for unselected tags, and never pruned: {', '.join(found.unmatched)}",
            )
        )
    return notes


def _kept_by_digest(tag: str, kept: frozenset[str] | set[str]) -> bool:
    match = _BY_DIGEST.fullmatch(tag)
    if match is None:
        return False
    named = f"{match['algorithm']}:{match['hex']}"
    return any(digest.startswith(named) for digest in kept)


def _tags(client: RegistryClient, repository: str) -> list[str]:
    try:
        return client.list_tags(repository)
    except RegistryError as exc:
        # distribution-spec: NAME_UNKNOWN (404) for a repository nothing was pushed to yet.
        if exc.status == 404:
            return []
        raise


def _layout_tags(path: Path, repositories: set[str]) -> tuple[dict[str, list[str]], DigestOf]:
    """An OCI layout target's tags per managed repository, from one read of index.json."""
    refs = Layout(path).refs() if (path / "index.json").exists() else {}
    listed: dict[str, list[str]] = {r: [] for r in repositories}
    digests: dict[tuple[str, str], str] = {}
    for name, ref in refs.items():
        repository, tag = parse_ref_name(name)
        if repository in listed and "@" not in name:  # `<path>@<digest>`: a referrer, untagged
            listed[repository].append(tag)
            digests[(repository, tag)] = ref.digest
    return listed, lambda repository, tag: digests.get((repository, tag))
