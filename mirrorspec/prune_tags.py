"""`apply --prune-tags`: delete the unselected tags of the repositories mirrorspec copies into.

Never by default, only after the confirmation apply asks for (`--yes` skips it), and only in
managed repositories (`unselected_tags.managed_repositories`). What it deletes, per target type:

- `registry`: the manifest, by digest (`oci.manifest_delete`): docker-registry 2.8.2 cannot
  delete a tag alone, and a delete by digest removes every tag on that manifest. So a tag is
  refused, with one line saying why, when its digest is also what a kept tag holds or is copied
  to (a selected tag, a signature of a kept digest), or when it is a child of a kept index (a
  platform manifest of a kept multi-arch image): deleting it would break what the spec keeps.
  The index check runs after apply's copies, on what the destination then holds.
- `oci-layout`: the reference in index.json, under the layout's lock; blobs stay.
- other types (every provider with an API of its own): nothing is deleted; a line says so (their tag
  deletes are their own APIs, and their lifecycle policies are the usual tool there).

A registry with deletes disabled answers 405: one line naming the setting that enables them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import providers, unselected_tags
from .context import Endpoint, RunContext
from .destination_checks import check_content
from .errors import MirrorspecError, RegistryError
from .layout import Layout
from .layout.store import ref_name
from .oci import RegistryClient
from .oci.manifest_delete import DeletesDisabled, delete_manifest
from .oci.read_limit import ceiling_for
from .plan import Plan

__all__ = ["Pruning", "carry_out", "delete", "lines", "plan"]


# The target types whose tags `--prune-tags` deletes (see the module docstring).
_PRUNED = ("registry", "oci-layout")


@dataclass(frozen=True)
class Pruning:
    """One target's tags to delete, and those refused or left with why."""

    target: str
    endpoint: Endpoint | None
    delete: tuple[tuple[str, str, str], ...] = ()
    """(destination repository, tag, digest), sorted."""
    refused: tuple[str, ...] = ()
    """One line per tag (or target) not deleted, with why."""


def plan(ctx: RunContext, the_plan: Plan, owns: Callable[[str], bool] | None = None) -> list[Pruning]:
    """The unselected tags of every target of `the_plan` (one HEAD per wanted tag and per
    unselected tag, one tag listing per managed repository); `owns`: only the destination
    repositories it says yes to (`--shard I/N`: `Shard.owns`)."""
    out = []
    for target_plan in the_plan.targets:
        target = ctx.spec.target(target_plan.target)
        provider = providers.get(target.type)
        if target.type not in _PRUNED:
            out.append(
                Pruning(
                    target.name,
                    None,
                    refused=(
                        f"{target.name}: not pruned: --prune-tags deletes tags in registry and "
                        f"oci-layout targets only, not in {target.type} targets",
                    ),
                )
            )
            continue
        endpoint = provider.endpoint(target, ctx)
        cached = provider.cached(target, ctx)
        stored = [
            a
            for a in the_plan.artifacts
            if f"{a.registry}/{a.repository}" not in cached
            and (owns is None or owns(target.destination(ctx.spec, a.registry, a.repository)))
        ]
        checks = check_content(ctx, endpoint, target, stored)
        found = unselected_tags.find(ctx, endpoint, target, stored, checks, cached, owns)
        delete: list[tuple[str, str, str]] = []
        refused: list[str] = [
            f"{found.host}/{repository}: not pruned: its selection matches no upstream tag (a range "
            "tightened ahead of a release, or an upstream that listed none), so nothing there is kept"
            for repository in found.unmatched
        ]
        for repository, tag, digest in found.tags:
            if digest is None:
                continue  # gone since it was listed
            if endpoint.layout is None and digest in found.kept[repository]:
                refused.append(
                    f"{found.host}/{repository}:{tag} not deleted: its manifest {digest} is also "
                    "what a selected tag (or a signature of one) holds, and a registry deletes a "
                    "manifest with every tag on it"
                )
                continue
            delete.append((repository, tag, digest))
        out.append(Pruning(target.name, endpoint, tuple(delete), tuple(refused)))
    return out


def lines(prunings: Sequence[Pruning]) -> list[str]:
    """What `apply --prune-tags` shows before it asks."""
    doomed = [(p, r, t, d) for p in prunings if p.endpoint for r, t, d in p.delete]
    out = [f"Tags to delete (--prune-tags): {len(doomed)}"]
    out += [f"  delete {p.endpoint.host}/{r}:{t} ({d})" for p, r, t, d in doomed if p.endpoint]
    out += [f"  {line}" for p in prunings for line in p.refused]
    return out


def delete(ctx: RunContext, prunings: Sequence[Pruning]) -> tuple[int, list[str], list[str]]:
    """Delete what `plan` listed: (tags deleted, one line per tag refused now, one line per
    failure)."""
    deleted, refused, failures = 0, [], []
    for pruning in prunings:
        endpoint = pruning.endpoint
        if endpoint is None or not pruning.delete:
            continue
        if endpoint.layout is not None:
            names = [ref_name(r, t) for r, t, _ in pruning.delete]
            deleted += Layout(Path(endpoint.layout)).remove_refs(names)
            continue
        done, refusing, failed = _delete_in_registry(ctx, pruning, endpoint)
        deleted += done
        refused += refusing
        failures += failed
    return deleted, refused, failures


def _delete_in_registry(
    ctx: RunContext, pruning: Pruning, endpoint: Endpoint
) -> tuple[int, list[str], list[str]]:
    client = ctx.client(endpoint)
    try:
        children = _kept_children(ctx, client, pruning)
    except MirrorspecError as exc:
        return (
            0,
            [],
            [f"{pruning.target}: {len(pruning.delete)} tag(s) not deleted: cannot read the kept tags: {exc}"],
        )
    by_digest: dict[tuple[str, str], list[str]] = {}
    for repository, tag, digest in pruning.delete:
        by_digest.setdefault((repository, digest), []).append(tag)
    deleted, refused, failures = 0, [], []
    for (repository, digest), tags in sorted(by_digest.items()):
        named = ", ".join(f"{endpoint.host}/{repository}:{t}" for t in tags)
        keeper = children.get((repository, digest))
        if keeper is not None:
            refused.append(f"{named} not deleted: its manifest {digest} is {keeper}")
            continue
        try:
            if delete_manifest(client, repository, digest):
                deleted += len(tags)
        except ValueError as exc:  # a digest delete_manifest will not put in a URL
            refused.append(f"{named} not deleted: {exc}")
        except DeletesDisabled:
            left = len(pruning.delete) - deleted
            failures.append(
                f"{pruning.target}: {endpoint.host} does not delete manifests (405 UNSUPPORTED): "
                "enable deletes in its configuration (docker-registry: storage.delete.enabled: "
                f"true, or REGISTRY_STORAGE_DELETE_ENABLED=true); {left} tag(s) not deleted"
            )
            break
        except (RegistryError, MirrorspecError) as exc:
            failures.append(f"{named} not deleted: {exc}")
    return deleted, refused, failures


def _kept_children(ctx: RunContext, client: RegistryClient, pruning: Pruning) -> dict[tuple[str, str], str]:
    """(repository, digest) → what keeps it, read now (after apply's copies, and after the
    question, which may have waited): every tag not being deleted keeps its own manifest (a tag
    pushed onto a doomed digest since the plan too) and, for an index, its platforms. For the
    repositories with something to delete. Any read that fails raises: without it, a manifest
    something still needs could not be told from one nobody needs."""
    repositories = sorted({r for r, _, _ in pruning.delete})
    doomed = {(r, t) for r, t, _ in pruning.delete}
    kept = [(r, t) for r in repositories for t in client.list_tags(r) if (r, t) not in doomed]

    def children(item: tuple[str, str]) -> list[tuple[str, str, str]]:
        repository, tag = item
        try:
            manifest = client.manifest(repository, tag)
        except RegistryError as exc:
            if exc.status == 404:  # deleted since it was listed: it keeps nothing
                return []
            raise
        try:
            entries = manifest.json().get("manifests")
        except ValueError:
            return []
        own = (repository, manifest.digest, f"what the kept tag {repository}:{tag} holds now")
        if not isinstance(entries, list):  # an image manifest: no children
            return [own]
        return [own] + [
            (
                repository,
                e["digest"],
                f"part of the kept index {manifest.digest} (a platform of a kept image)",
            )
            for e in entries
            if isinstance(e, dict) and isinstance(e.get("digest"), str)
        ]

    found: dict[tuple[str, str], str] = {}
    with ThreadPoolExecutor(max_workers=ceiling_for(ctx.reads)) as pool:
        for listed in pool.map(children, kept):
            for repository, digest, keeper in listed:
                found.setdefault((repository, digest), keeper)
    return found


def carry_out(ctx: RunContext, prunings: Sequence[Pruning], echo: Callable[[str, bool], None]) -> None:
    """Delete, say what was deleted and refused (`echo(line, to_stderr)`); a
    `MirrorspecError` when a delete failed."""
    if not any(p.delete for p in prunings):
        return
    deleted, refused, failures = delete(ctx, prunings)
    for line in refused:
        echo(f"refused: {line}", True)
    echo(f"Pruned: {deleted} tag(s) deleted.", False)
    for failure in failures:
        echo(f"error: {failure}", True)
    if failures:
        raise MirrorspecError(f"{len(failures)} tag delete(s) failed; the rest was applied")
