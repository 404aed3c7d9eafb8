"""What each target holds under every wanted tag: HEAD requests, started as digests come in.

A plan checks every stored tag at the destination by digest (so a second apply plans nothing).
`check_content` checks a list of artifacts at once (`audit --content`, and any tag a plan did not
check early). `EarlyChecks` is the plan's pipeline (`read_lanes`): it learns each target's
endpoint before resolution starts, and the resolver hands it every tag's digest as soon as the
source has answered (`resolve(on_digest=...)`), so the destination HEAD of one repository runs
while other repositories are still being listed; the plan no longer waits for the slowest
source read before it checks the first destination tag.

What stays as it was: the order of the results (the stored artifacts'), the error a failed
check raises (the first in that order, when the plan reads the results, not when it happened),
and the error of a target's endpoint, raised where the plan used to ask for it (after the
provider's translate and observe), not before resolution — unless it is the spec's own mistake
(a credential or CA bundle that cannot be used), which is said before anything is read.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, cast

from . import paths, providers
from .context import Endpoint, RunContext
from .errors import CredentialError, MirrorspecError, SpecError
from .layout import Layout
from .layout.content import LayoutTags
from .oci import RegistryClient
from .oci.read_limit import ceiling_for
from .plan import Artifact, ContentCheck
from .read_lanes import Lanes, Once, Tracker
from .spec import Target
from .storage_damage import manifest_digest

__all__ = ["EarlyChecks", "check_content", "refuse_long_names"]


def _check(
    ctx: RunContext, client: RegistryClient, endpoint: Endpoint, target: Target, artifact: Artifact
) -> ContentCheck:
    repository = target.destination(ctx.spec, artifact.registry, artifact.repository)
    actual = manifest_digest(client, repository, artifact.tag)
    status: Literal["present", "missing", "digest-mismatch"] = (
        "present" if actual == artifact.digest else "missing" if actual is None else "digest-mismatch"
    )
    return ContentCheck(f"{endpoint.host}/{repository}", artifact.tag, artifact.digest, actual, status)


def _client(ctx: RunContext, endpoint: Endpoint, *, hash_blobs: bool = False) -> RegistryClient:
    """The registry's client, or for an OCI layout target (`endpoint.layout`) its references
    read once from index.json, asked the same `digest()` (`layout.content.LayoutTags`);
    `hash_blobs`: every blob a reference reaches is hashed (`audit --content`)."""
    if endpoint.layout is None:
        return ctx.client(endpoint)
    # `manifest_digest` asks only `digest()` of it (and `ping()` after a 5xx, never raised here).
    return cast(
        RegistryClient, LayoutTags(Layout(Path(endpoint.layout)), endpoint.host, hash_blobs=hash_blobs)
    )


def check_content(
    ctx: RunContext,
    endpoint: Endpoint,
    target: Target,
    artifacts: Sequence[Artifact],
    *,
    hash_blobs: bool = False,
) -> list[ContentCheck]:
    """For each artifact, what the destination holds under its tag (HEAD requests, concurrent
    up to the registry's reads limit, not `--workers`). `hash_blobs`: at an OCI layout, every
    blob each tag reaches is hashed too (`audit --content`)."""
    client = _client(ctx, endpoint, hash_blobs=hash_blobs)
    with ThreadPoolExecutor(max_workers=ceiling_for(ctx.reads)) as pool:
        return list(pool.map(lambda a: _check(ctx, client, endpoint, target, a), artifacts))


class _Target:
    """One target's early checks: its endpoint (or the error getting it) and a check per tag."""

    def __init__(self, ctx: RunContext, target: Target, cached: frozenset[str]) -> None:
        self.target = target
        self.cached = cached
        self.tracker = Tracker()
        self.checks: dict[tuple[str, str, str, str], Once[ContentCheck]] = {}
        self.endpoint: Endpoint | None = None
        self.client: RegistryClient | None = None
        self.error: Exception | None = None
        try:
            endpoint = providers.get(target.type).endpoint(target, ctx)
            # Both or neither: an OCI layout's index.json is read here, and may be damaged.
            self.client, self.endpoint = _client(ctx, endpoint), endpoint
        except (CredentialError, SpecError):
            # The spec's own mistake (a login mirrorspec cannot read, a CA bundle that is not
            # there): said now, not after a resolution that may take minutes.
            raise
        except Exception as exc:  # raised when the plan asks for it, in its old place
            self.error = exc


class EarlyChecks:
    """Destination checks of a plan, started from the resolution (see the module docstring)."""

    def __init__(
        self, ctx: RunContext, lanes: Lanes, targets: Sequence[Target], cached: dict[str, frozenset[str]]
    ) -> None:
        self._ctx = ctx
        self._lanes = lanes
        self._lock = threading.Lock()
        self._targets = {t.name: _Target(ctx, t, cached[t.name]) for t in targets}

    def on_digest(self, registry: str, repository: str, tag: str, digest: str) -> None:
        """`resolve`'s hook: check the tag at every target that stores it."""
        artifact = Artifact(registry, repository, tag, digest)
        for early in self._targets.values():
            if early.endpoint is not None and f"{registry}/{repository}" not in early.cached:
                self._start(early, artifact)

    def _start(self, early: _Target, artifact: Artifact) -> None:
        endpoint, client = early.endpoint, early.client
        assert endpoint is not None and client is not None
        path = early.target.destination(self._ctx.spec, artifact.registry, artifact.repository)
        if len(f"{endpoint.host}/{path}") > paths.MAX_NAME:
            return  # no registry could answer for it; the plan refuses the target (`engine`)
        once: Once[ContentCheck] = Once()
        with self._lock:
            if early.checks.setdefault(_key(artifact), once) is not once:
                return
        self._lanes.submit(
            early.tracker,
            endpoint.host,
            lambda: once.compute(lambda: _check(self._ctx, client, endpoint, early.target, artifact)),
        )

    def endpoint(self, target: Target) -> Endpoint:
        """The target's endpoint, learnt before resolution; its error, raised now."""
        early = self._targets[target.name]
        if early.error is not None:
            raise early.error
        assert early.endpoint is not None
        return early.endpoint

    def results(
        self, target: Target, endpoint: Endpoint, artifacts: Sequence[Artifact]
    ) -> list[ContentCheck]:
        """The checks of `artifacts` at `target`, in their order; the first failed one raises.
        Any the pipeline did not start (an artifact it never heard of) is checked now."""
        early = self._targets[target.name]
        if early.endpoint != endpoint:  # not the endpoint the checks were started with
            return check_content(self._ctx, endpoint, target, artifacts)
        for artifact in artifacts:
            self._start(early, artifact)  # a no-op for every tag the pipeline started
        early.tracker.wait()
        with self._lock:
            checks = [early.checks[_key(a)] for a in artifacts]
        return [once.get() for once in checks]


def _key(artifact: Artifact) -> tuple[str, str, str, str]:
    return (artifact.registry, artifact.repository, artifact.tag, artifact.digest)


def refuse_long_names(ctx: RunContext, target: Target, host: str, stored: Sequence[Artifact]) -> None:
    """The plan stops a target one of whose destinations no reference parser takes (`paths.MAX_NAME`)."""
    longest = ""
    for registry, repository in {(a.registry, a.repository) for a in stored}:
        name = f"{host}/{target.destination(ctx.spec, registry, repository)}"
        if len(name) > len(longest) or (len(name) == len(longest) and name < longest):
            longest = name
    if len(longest) > paths.MAX_NAME:
        raise MirrorspecError(
            f"target '{target.name}': {longest[:72]}… is {len(longest)} characters; an image name "
            f"(host and path) has at most {paths.MAX_NAME}, so nothing could copy or pull it: shorten the "
            "target's prefix, use layout: flat, or leave that repository out"
        )
