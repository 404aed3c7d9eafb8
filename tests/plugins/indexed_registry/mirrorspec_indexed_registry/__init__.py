"""Any OCI registry plus a JSON index of what it mirrors (`type: indexed-registry`).

mirrorspec's example of a provider that lives outside the package: one module and one entry
point (`pyproject.toml`, group `mirrorspec.providers`). docs/providers.md walks through it.

Example target block (loaded by the provider contract tests):

```yaml
- name: portal
  type: indexed-registry
  registry: registry.internal.example.com
  prefix: mirror
  credentials: portal-push     # optional; username + password references
  index: mirror-index.json     # relative to the spec file
```

The registry holds the images and charts; it has no replication of its own, so the engine
copies every wanted tag into it with skopeo, exactly as for `type: registry`. The index file
is this provider's one kind of native resource: an `index-entry` per destination repository,
naming its source and the tags the spec wants there, for a portal that lists the mirror:

```json
{"entries": {"mirror/docker.io/library/redis": {"source": "docker.io/library/redis",
                                                "tags": ["7.2.4"], "managed-by": "mirrorspec"}}}
```

Entries without `"managed-by": "mirrorspec"` were written by someone else: `plan` and `audit`
list them, never change or delete them, and refuse a spec that wants their repository.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mirrorspec.context import Endpoint, RunContext
from mirrorspec.errors import ProviderConflict, ProviderError
from mirrorspec.files import UnreadableFile, read_user_file
from mirrorspec.plan import Artifact, Change, Note, Resource
from mirrorspec.providers import base

from .target import IndexedRegistryTarget

__all__ = [
    "IN_PLACE",
    "KIND",
    "MANAGED_BY",
    "PERMISSIONS",
    "SUPPORT_KINDS",
    "Target",
    "apply",
    "cached",
    "capabilities",
    "check",
    "copy",
    "endpoint",
    "observe",
    "translate",
]

Target = IndexedRegistryTarget
KIND = "index-entry"
MANAGED_BY = "mirrorspec"
# An index lists repositories, a few hundred bytes each: far above any real mirror's, and a
# bound on what `observe` reads if the path names something else (a log, /dev/zero).
MAX_INDEX_BYTES = 16 << 20

PERMISSIONS: dict[str, tuple[str, ...]] = {
    "observe": ("pull", "read the index file"),
    "apply": ("pull", "push", "write the index file"),
}
# A changed tag list is rewritten in place; an entry whose source changed is a new entry
# (`replace`: delete + create), so a reader never sees one repository's tags under another's source.
IN_PLACE: dict[str, tuple[str, ...]] = {KIND: ("tags",)}
SUPPORT_KINDS: tuple[str, ...] = ()

# What this provider does not do differently from the defaults: no pull-through cache, no
# native copy engine.
cached = base.nothing_cached
copy = base.no_copy


def capabilities(target: Any) -> base.Capabilities:
    # Nothing native that serves images: every tag is copied by the engine.
    return base.Capabilities()


def translate(artifacts: Sequence[Artifact], target: Any, ctx: RunContext) -> base.Desired:
    """One entry per destination repository: its source and the wanted tags, sorted."""
    tags: dict[str, set[str]] = {}
    sources: dict[str, str] = {}
    for artifact in artifacts:
        repository = target.destination(ctx.spec, artifact.registry, artifact.repository)
        sources[repository] = f"{artifact.registry}/{artifact.repository}"
        tags.setdefault(repository, set()).add(artifact.tag)
    resources = tuple(
        Resource(KIND, repository, {"source": sources[repository], "tags": sorted(tags[repository])})
        for repository in sorted(tags)
    )
    return base.Desired(resources=resources)


def observe(target: Any, ctx: RunContext) -> base.Observed:
    """Every entry of the index, ours (`managed-by: mirrorspec`) and others'."""
    entries = _read(target, ctx)
    resources = tuple(
        Resource(
            KIND,
            repository,
            {"source": entry.get("source"), "tags": entry.get("tags")},
            managed=entry.get("managed-by") == MANAGED_BY,
        )
        for repository, entry in sorted(entries.items())
    )
    return base.Observed(resources=resources)


def check(desired: base.Desired, observed: base.Observed, target: Any) -> tuple[Note, ...]:
    """A repository whose entry someone else wrote is theirs: refuse, rather than plan to
    overwrite it (`diff` keys resources by kind and id, ownership is the provider's call)."""
    foreign = {r.id for r in observed.resources if not r.managed}
    taken = sorted(foreign & {r.id for r in desired.resources})
    if taken:
        raise ProviderConflict(
            f"index {target.index}: entry '{taken[0]}' was not written by mirrorspec "
            f'(no "managed-by": "{MANAGED_BY}"); remove it or choose another prefix',
            provider=target.type,
            target=target.name,
            operation="check",
        )
    return ()


def apply(change: Change, target: Any, ctx: RunContext) -> None:
    """One entry written or removed; the file is replaced whole, so a reader never sees half."""
    entries = _read(target, ctx)
    if change.action == "delete":
        entries.pop(change.id, None)
    else:  # create, update, replace: the entry becomes what the spec wants
        entries[change.id] = {**(change.after or {}), "managed-by": MANAGED_BY}
    _write(target, ctx, entries)


def endpoint(target: Any, ctx: RunContext) -> Endpoint:
    """Where copies land and `audit --content` reads tags: the registry, as `type: registry` has it."""
    return ctx.reach(
        ctx.endpoint(
            target.registry,
            credentials=target.credentials,
            insecure=target.insecure,
            ca_bundle=target.ca_bundle,
        )
    )


# --- the index file ----------------------------------------------------------------------


def _path(target: Any, ctx: RunContext) -> Path:
    return ctx.spec.base_dir / str(target.index)


def _error(target: Any, operation: str, why: str) -> ProviderError:
    return ProviderError(
        f"index {target.index}: {why}", provider=target.type, target=target.name, operation=operation
    )


def _read(target: Any, ctx: RunContext) -> dict[str, dict[str, Any]]:
    """The index's entries; none when the file does not exist yet (a first plan)."""
    path = _path(target, ctx)
    if not path.exists():
        if not path.parent.is_dir():
            raise _error(target, "observe", f"directory {path.parent} does not exist")
        return {}
    try:
        # Bounded and non-blocking whatever the path names (mirrorspec.files says why).
        data = read_user_file(path, what="index file", max_bytes=MAX_INDEX_BYTES)
        document = json.loads(data)
    except UnreadableFile as exc:
        raise _error(target, "observe", exc.reason) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _error(target, "observe", f"not JSON: {exc}") from None
    entries = document.get("entries") if isinstance(document, dict) else None
    if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
        raise _error(target, "observe", 'expected {"entries": {"<repository>": {...}, ...}}')
    return entries


def _write(target: Any, ctx: RunContext, entries: dict[str, dict[str, Any]]) -> None:
    path = _path(target, ctx)
    text = json.dumps({"entries": dict(sorted(entries.items()))}, indent=2) + "\n"
    try:
        # A temporary file in the same directory, then rename(2): atomic on one filesystem.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as exc:
        raise _error(target, "apply", exc.strerror or type(exc).__name__) from None
