"""`mirrorspec.lock.json`, the lock document apply writes into each OCI layout target.

What the layout was written from, for the far side of an air gap to check against: the spec's
sha256 (over its canonical JSON form, so comments and formatting do not change it), every
source reference with the digest the layout holds for it and the reference name it holds it
under, and when (UTC). Only references the layout really holds with the planned digest are
listed; `complete` says whether that is every artifact the spec selects. Replaced atomically
(`Layout.write_file`: temporary file, fsync, rename), after each apply, even one that copied
nothing, so the time says when the layout was last known to match the spec.

A target with `archive: FILE.tar` then has the layout written as that one tar, streamed
(`layout/archive.py`), when the layout holds everything the spec selects.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import providers
from .context import RunContext
from .errors import MirrorspecError
from .layout import Layout, ref_name
from .layout.archive import write_archive
from .plan import Plan

__all__ = ["LOCK_DOCUMENT", "spec_sha256", "write_lock_documents"]

LOCK_DOCUMENT = "mirrorspec.lock.json"


def spec_sha256(ctx: RunContext) -> str:
    # warnings=False: a secret reference (`{env: VAR}`) is in a tagged union whose discriminator
    # pydantic's serializer cannot read back from the model, so it warns on stderr ("failed to
    # get discriminator value") and falls back to trying each member, which dumps it right.
    dump = ctx.spec.model_dump_json(by_alias=True, warnings=False)
    return hashlib.sha256(dump.encode()).hexdigest()


def write_lock_documents(ctx: RunContext, the_plan: Plan) -> list[str]:
    """Write the lock document of every OCI layout target of `the_plan`; the failures."""
    failures = []
    for target_plan in the_plan.targets:
        target = ctx.spec.target(target_plan.target)
        # Only `type: oci-layout` writes a layout; asking another provider for its endpoint
        # could log in to a cloud for nothing.
        if target.type != "oci-layout":
            continue
        endpoint = providers.get(target.type).endpoint(target, ctx)
        if endpoint.layout is None:
            continue
        try:
            layout = Layout(Path(endpoint.layout))
            held = {name: ref.digest for name, ref in layout.refs().items()}
            references: dict[str, Any] = {}
            for artifact in the_plan.artifacts:
                destination = target.destination(ctx.spec, artifact.registry, artifact.repository)
                name = ref_name(destination, artifact.tag)
                if held.get(name) == artifact.digest:
                    separator = "@" if artifact.tag.startswith("sha256:") else ":"
                    source = f"{artifact.registry}/{artifact.repository}{separator}{artifact.tag}"
                    references[source] = {"digest": artifact.digest, "ref-name": name}
            document = {
                "mirrorspec-lock": 1,
                "spec-sha256": spec_sha256(ctx),
                "target": target.name,
                "written": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "complete": len(references)
                == len({(a.registry, a.repository, a.tag) for a in the_plan.artifacts}),
                "references": dict(sorted(references.items())),
            }
            layout.write_file(LOCK_DOCUMENT, json.dumps(document, indent=1).encode() + b"\n")
        except MirrorspecError as exc:  # apply's failure; the copies stand
            failures.append(f"{target.name}: {LOCK_DOCUMENT} not written: {exc}")
            continue
        archive: str | None = getattr(target, "archive", None)
        if archive is None:
            continue
        if not document["complete"]:
            failures.append(
                f"{target.name}: archive {archive} not written: the layout lacks copies that failed"
            )
            continue
        try:
            write_archive(layout, ctx.spec.base_dir / archive)
        except MirrorspecError as exc:
            failures.append(f"{target.name}: {exc}")
    return failures
