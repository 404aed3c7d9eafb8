"""The provider contract: what every `type:` of target implements, as pre-commit's languages do.

A provider is a *module* exposing the names below; defaults are plain assignments from
this module (`apply = base.no_apply`), so what a provider does differently is exactly what
it defines. Providers never copy with skopeo and never decide fallbacks: they state their
`Capabilities`, and the engine turns whatever is not served natively into a `Note` plus a
copy. Shared wording for refusals lives here so every provider says the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ProviderError
from ..plan import Artifact, Change, Copy, Note, Resource

if TYPE_CHECKING:  # named in signatures only: loading a provider for its spec model needs no run
    from ..context import Endpoint, RunContext

__all__ = [
    "CONTRACT",
    "LAYOUT_SOURCE_WHY",
    "Capabilities",
    "Desired",
    "Observed",
    "Provider",
    "fallback_note",
    "no_apply",
    "no_check",
    "no_copy",
    "no_observe",
    "nothing_cached",
    "nothing_native",
]


@dataclass(frozen=True)
class Capabilities:
    """What a target type can do natively; the engine reads this, providers do not branch on it."""

    cache_upstreams: frozenset[str] = frozenset()  # upstream hosts a pull-through cache serves
    native_mirror: bool = False  # can mirror selected tags itself (import, replication policy)
    cross_region: bool = False  # replicate-to via the registry's own replication
    server_side_import: bool = False


@dataclass(frozen=True)
class Desired:
    """What a target should look like: native resources, native copies, and notes."""

    resources: tuple[Resource, ...] = ()
    # Source repositories ("host/repository") whose missing tags the registry copies itself
    # (server-side imports, replication executions) under `native_engine`; the engine checks
    # their tags at the destination like any other and copies the rest with skopeo.
    native: frozenset[str] = frozenset()
    native_engine: str = ""
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class Observed:
    resources: tuple[Resource, ...] = ()
    notes: tuple[Note, ...] = field(default=())


class Provider(Protocol):
    # The data names are read-only properties so that a module's own precise types
    # (`dict[str, tuple[str, ...]]`) satisfy them: a plain attribute here would be invariant.

    # The spec model of this provider's `type:` block.
    Target: type[Any]

    # verb (observe/apply) -> the API permissions it needs, for least-privilege policies.
    @property
    def PERMISSIONS(self) -> Mapping[str, Sequence[str]]: ...

    # Attributes each resource kind can change in place; anything else is delete + create.
    @property
    def IN_PLACE(self) -> Mapping[str, Sequence[str]]: ...

    # Resource kinds that only prepare copies (e.g. repositories that must exist before a
    # push): planned like any other, but not listed or judged as rules by `audit`.
    @property
    def SUPPORT_KINDS(self) -> Sequence[str]: ...

    # Pure: what this target can serve natively.
    def capabilities(self, target: Any) -> Capabilities: ...

    # Pure: source repositories ("host/repository") this target serves on demand through a
    # pull-through cache, so they need neither resolving nor copying.
    def cached(self, target: Any, ctx: RunContext) -> frozenset[str]: ...

    # Pure: the native state the spec asks for, given the resolved upstream artifacts.
    def translate(self, artifacts: Sequence[Artifact], target: Any, ctx: RunContext) -> Desired: ...

    # Read-only: the target's actual native settings, with list calls (paginated).
    def observe(self, target: Any, ctx: RunContext) -> Observed: ...

    # Plan-time limits against the real state: raises ProviderError, or returns notes.
    def check(self, desired: Desired, observed: Observed, target: Any) -> tuple[Note, ...]: ...

    # Copy one planned `Copy` whose engine is this provider's native engine (an import, a
    # replication execution), and wait for it; raises ProviderError on failure. The engine
    # verifies the destination digests afterwards.
    def copy(self, copy: Copy, target: Any, ctx: RunContext) -> None: ...

    # One change, idempotent; raises ProviderError on failure.
    def apply(self, change: Change, target: Any, ctx: RunContext) -> None: ...

    # Where copies land and where `audit --content` reads tags: host + credentials + TLS.
    def endpoint(self, target: Any, ctx: RunContext) -> Endpoint: ...


# The names every provider module defines: the members of `Provider` above. A provider's
# `__all__` is `[*base.CONTRACT, ...]` plus its own names, so the contract is spelt once.
CONTRACT: tuple[str, ...] = (
    "IN_PLACE",
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
)

# Optional attributes, read with getattr (`providers.declared`) so that a provider without them
# needs nothing:
#
# CLIENT_FACTORIES: Mapping[str, ClientFactory]
#     kind -> `factory(ctx, *args)` building one of the clients the provider talks to its
#     cloud with (an SDK client, a token credential). The provider asks for them with
#     `ctx.service_client(kind, *args)`, which builds each once per run (`args` are the cache
#     key; a spec target counts by its name) and closes it at the end; tests replace a kind's
#     factory through `RunContext(client_factories=...)`. Name a kind after what it builds
#     ("aws", "azure-credential"): providers that declare the same kind share one factory.
#
# SECRET_REFERENCES: Mapping[str, type[spec.SecretReference]]
#     Reference kinds the provider adds to the spec (`{aws-secret-arn: ARN}`) for a
#     `username`/`password`: secrets its registry reads itself, never resolved by mirrorspec.
#
# CREDENTIAL_FORMS: Mapping[str, spec.CredentialForm]
#     Provider-native `credentials:` entries of one key (`azure-credential-set: NAME`), naming
#     a whole login the registry reads itself; the provider reads it with `credential.form(kind)`.
#
# SECRET_VARIABLES: Sequence[str]
#     Environment variables holding secrets the provider's SDK reads ("AWS_SECRET_ACCESS_KEY").
#     Each run registers their values for redaction (`credentials.register_environment_secrets`),
#     so an SDK or a server that echoes one prints nothing. (skopeo never sees them: it
#     inherits only the variables it reads, `skopeo.process`.)


def nothing_cached(target: Any, ctx: RunContext) -> frozenset[str]:
    """Default `cached`: no pull-through cache, every repository is mirrored."""
    return frozenset()


def nothing_native(artifacts: Sequence[Artifact], target: Any, ctx: RunContext) -> Desired:
    """Default `translate`: no native resources; the engine copies everything."""
    return Desired()


def no_observe(target: Any, ctx: RunContext) -> Observed:
    """Default `observe`: a target without native resources has nothing to read."""
    return Observed()


def no_check(desired: Desired, observed: Observed, target: Any) -> tuple[Note, ...]:
    """Default `check`: no limits beyond the spec's own."""
    return ()


def no_copy(copy: Copy, target: Any, ctx: RunContext) -> None:
    """Default `copy`: a provider without native copies is never given one."""
    raise ProviderError(
        f"{target.type} targets have no native copy engine ({copy.engine})",
        provider=target.type,
        target=target.name,
        operation="copy",
    )


def no_apply(change: Change, target: Any, ctx: RunContext) -> None:
    """Default `apply`: a provider without native resources is never given a change."""
    raise ProviderError(
        f"{target.type} targets have no native resources to {change.action}",
        provider=target.type,
        target=target.name,
        operation=change.action,
    )


# Why an `oci-layout:` source is copied whatever the target can do natively, for
# `fallback_note`: every native feature pulls from the upstream itself.
LAYOUT_SOURCE_WHY = (
    "read from an OCI layout, offline: a registry's own features (pull-through cache, cache rules, "
    "import, replication) pull from the upstream, which the far side of an air gap cannot reach"
)


def fallback_note(target_type: str, what: str, why: str) -> Note:
    """The one wording for "done by copying instead", shared by all providers."""
    return Note("info", f"{what}: {why}; {target_type} target mirrors it by copying with skopeo")
