"""Azure Container Registry (`type: acr`): artifact-cache rules, credential sets, imports, geo-replication.

Facts that shaped it (research/acr.md; the contract is the 2023-07-01 management API, which
the client is pinned to, see `clients.ACR_API_VERSION`):
- The artifact cache serves a fixed list of upstream hosts and has no tag filter. In cache
  mode each repository that takes every tag becomes one cache rule whose target repository
  is the DESIGN destination path, so cached paths equal mirrored ones. Version filters and
  other upstreams are imported instead, with a note saying why.
- Docker Hub (and the other "authenticated only" upstreams) need a credential set: a login
  server plus two Key Vault secret URIs that ACR reads with the set's own system-assigned
  identity, which therefore needs Key Vault secret `get` (the plan says so). The URIs come
  from the target's `credential-sets:` or from the source's credentials when those are
  `azure-key-vault-secret` references; `azure-credential-set: NAME` reuses an existing set.
- A new credential set is Unhealthy/Forbidden until its identity may get the secrets; the plan
  and audit show each set's health and, when Forbidden, the exact grant that is missing
  (recordings in tests/contracts/azure/recordings/). Another ACR (`*.azurecr.io`) as upstream
  needs a user-assigned identity on the rule, which the 2023-07-01 API cannot send: imported.
- A cache rule can set or change only its credential set in place (real ACR ignores a PATCH
  that removes it, so removal is a replace); anything else is delete + create, and a rule
  cannot be created over an existing repository (deleting a rule keeps its repository), so
  such a plan is refused before anything changes. Names must match
  `^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$`, 5-49 characters (the stricter Terraform rule): ours are
  the destination path made readable, with a short hash only when too long or ambiguous.
- Mirror mode imports server-side, one `importImage` per tag by digest (`NoForce`, or
  `Force` for a tag the plan shows holding other content); the source login is resolved
  just before and sent only in the request body. ACR refuses imports into a cache rule's
  repository, so imported and cached paths may never overlap — checked at plan time, also
  against other targets on the same registry and against rules we do not manage. A source
  ACR cannot pull from itself (`insecure`, or a private `ca-bundle`) is copied with skopeo.
- Geo-replications exist only on Premium registries; each is named after its region and
  tagged `managed-by: mirrorspec`, which is what makes it ours.
- Lists follow `nextLink`; long-running operations are awaited (with a progress log line);
  deleting cache rules and credential sets answers 202/204 only (the SDK checks).
- Copies and `audit --content` reach the registry with a refresh token that the login server
  gives for our Azure token (`POST /oauth2/exchange`, as `az acr login` does).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ... import paths
from ...chart_images import is_pinned
from ...context import RunContext
from ...errors import (
    ProviderConflict,
    SpecError,
)
from ...plan import Artifact, Note, Resource
from ...spec import Source
from .. import base
from .credentials import AzureKeyVaultRef
from .target import AcrTarget

__all__ = [
    "ACR_UPSTREAM_WHY",
    "CACHE_RULE",
    "CREDENTIAL_SET",
    "ENGINE",
    "IN_PLACE",
    "KEEPS_CREDENTIAL_SET",
    "MANAGED_TAG",
    "MAX_CACHE_RULES",
    "NAME",
    "NAME_LENGTH",
    "PERMISSIONS",
    "REPLICATION",
    "SUPPORT_KINDS",
    "AcrDesired",
    "AcrObserved",
    "Auth",
    "cached",
    "capabilities",
    "resource_name",
    "translate",
    "upstream_of",
]

log = logging.getLogger(__package__)

CACHE_RULE = "cache-rule"
CREDENTIAL_SET = "credential-set"
REPLICATION = "geo-replication"
ENGINE = "acr-import"
MAX_CACHE_RULES = 1000  # per registry (artifact-cache-overview.md)
MANAGED_TAG = ("managed-by", "mirrorspec")
# The user name of an ACR refresh token (`az acr login --expose-token`).
NAME = re.compile(r"^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$")
NAME_LENGTH = (5, 49)

_PROVIDER = "Microsoft.ContainerRegistry/registries"
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "observe": (
        f"{_PROVIDER}/read",
        f"{_PROVIDER}/cacheRules/read",
        f"{_PROVIDER}/credentialSets/read",
        f"{_PROVIDER}/replications/read",
        f"{_PROVIDER}/pull/read",
    ),
    "apply": (
        f"{_PROVIDER}/cacheRules/write",
        f"{_PROVIDER}/cacheRules/delete",
        f"{_PROVIDER}/credentialSets/write",
        f"{_PROVIDER}/credentialSets/delete",
        f"{_PROVIDER}/replications/write",
        f"{_PROVIDER}/replications/delete",
        f"{_PROVIDER}/importImage/action",
        f"{_PROVIDER}/push/write",
    ),
}
IN_PLACE: dict[str, tuple[str, ...]] = {
    CACHE_RULE: ("credentialSet",),  # set or changed in place; removed only by replace_when
    CREDENTIAL_SET: ("usernameSecret", "passwordSecret"),
    REPLICATION: (),
}
# Real ACR answered the PATCH `{"properties": {"credentialSetResourceId": null}}` (what
# `az acr cache update --remove-cred-set` sends) 201, polled to Succeeded, and the next GET
# still showed the set: tests/contracts/azure/recordings/test_acr_cache.yaml #21-#24 (Azure/
# azure-cli commit 1a14345a). A PATCH cannot remove it, so removing it is delete + create.
KEEPS_CREDENTIAL_SET = (
    "ACR keeps a cache rule's credential set when a PATCH sets it to null "
    "(recording test_acr_cache.yaml #21-#24)"
)
SUPPORT_KINDS: tuple[str, ...] = ()

Auth = Literal["required", "optional", "none"]

# Hosts the artifact cache serves and whether they take a login (artifact-cache-overview.md).
_UPSTREAMS: dict[str, Auth] = {
    "docker.io": "required",
    "dhi.io": "required",
    "mcr.microsoft.com": "none",
    "public.ecr.aws": "none",
    "ghcr.io": "optional",
    "quay.io": "optional",
    "registry.k8s.io": "optional",
    "gcr.io": "optional",
    "nvcr.io": "optional",
    "registry.redhat.io": "required",
    "registry.access.redhat.com": "none",
}
_UPSTREAM_SUFFIXES: dict[str, Auth] = {".pkg.dev": "required"}
# Another ACR as upstream: real ACR authenticates such a cache rule with a user-assigned managed
# identity in the rule's `identity` block, not with a credential set (recording
# tests/contracts/azure/recordings/test_acr_cache_managed_identity.yaml #7, api-version
# 2026-03-01-preview; docs: https://learn.microsoft.com/azure/container-registry/artifact-cache-acr-to-acr-cli).
# The 2023-07-01 contract we speak, and azure-mgmt-containerregistry 15.0.0 (newest API
# 2025-11-01), have no `identity` on a cache rule, so we cannot create one: imported instead.
_ACR_SUFFIX = ".azurecr.io"
ACR_UPSTREAM_WHY = (
    "caching from another ACR authenticates with a user-assigned managed identity on the cache rule, "
    "which the ACR management API 2023-07-01 that mirrorspec speaks cannot send (it came with a later "
    "preview API)"
)
# Upstreams a recording here shows real ACR taking in a cache rule (test_acr_cache.yaml #14);
# every other one rests on the docs' list alone (artifact-cache-overview.md), said as unverified.
_RECORDED_UPSTREAMS = frozenset({"mcr.microsoft.com"})


def upstream_of(host: str) -> Auth | None:
    """How the artifact cache serves `host` (its login policy), or None when it cannot."""
    host = paths.normalize_registry(host)
    if host in _UPSTREAMS:
        return _UPSTREAMS[host]
    for suffix, auth in _UPSTREAM_SUFFIXES.items():
        if host.endswith(suffix):
            return auth
    return None


def capabilities(target: Any) -> base.Capabilities:
    return base.Capabilities(
        cache_upstreams=frozenset([*_UPSTREAMS, *(f"*{s}" for s in _UPSTREAM_SUFFIXES)]),
        native_mirror=True,
        cross_region=True,
        server_side_import=True,
    )


@dataclass(frozen=True)
class AcrDesired(base.Desired):
    """`Desired` plus the repositories imports write to, for the plan-time overlap check."""

    imports: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AcrObserved(base.Observed):
    """`Observed` plus registry facts the plan-time checks need."""

    sku: str = ""
    location: str = ""
    # Repositories that exist although a cache rule we want to create would target them.
    existing: frozenset[str] = frozenset()


def resource_name(text: str) -> str:
    """A valid cache-rule / credential-set name for `text`, readable and deterministic.

    `vendor/docker.io/library/redis` → `vendor-docker-io-library-redis`; a name outside 5-49
    characters keeps its first 40 and gets 8 hex digits of the text's hash.
    """
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-")
    if NAME_LENGTH[0] <= len(slug) <= NAME_LENGTH[1]:
        return slug
    return _hashed(text, slug)


def _hashed(text: str, slug: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    head = slug[:40].strip("-")
    return f"{head}-{digest}" if head else f"mirrorspec-{digest}"


def _names(texts: Sequence[str]) -> dict[str, str]:
    """`resource_name` of each text; texts whose readable names collide all get hashed ones."""
    first = {text: resource_name(text) for text in texts}
    counts: dict[str, int] = {}
    for name in first.values():
        counts[name] = counts.get(name, 0) + 1
    return {
        text: _hashed(text, re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-")) if counts[name] > 1 else name
        for text, name in first.items()
    }


# --- translate ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Login:
    """The credential set a cache rule uses: ours (from Key Vault URIs) or an existing one."""

    name: str
    login_server: str
    username_secret: str = ""
    password_secret: str = ""
    managed: bool = True


@dataclass(frozen=True)
class _Rule:
    name: str
    source: str  # "host/repository", as the spec's artifacts name it
    target_repository: str
    login: _Login | None


def _cache_plan(target: AcrTarget, ctx: RunContext, notes: list[Note] | None = None) -> list[_Rule]:
    """One cache rule per cacheable source repository (cache mode); a note for every other."""
    if ctx.spec.mode_of(target) != "cache":
        return []
    notes = [] if notes is None else notes
    wanted: list[tuple[str, str, _Login | None]] = []
    for host in target.credential_sets:
        if paths.normalize_registry(host).endswith(_ACR_SUFFIX):
            raise SpecError(
                f"target '{target.name}': credential-sets: {host}: {ACR_UPSTREAM_WHY}, and a credential set "
                "is not how another ACR is reached; drop this entry (the source is imported with importImage)"
            )
    for source in ctx.spec.sources:
        if source.settings_only:  # selects nothing: no rule, no credential set, no note on why not
            continue
        host = paths.normalize_registry(source.registry)
        if source.oci_layout is not None:
            notes.append(base.fallback_note("acr", host, base.LAYOUT_SOURCE_WHY))
            continue
        if host.endswith(_ACR_SUFFIX):
            notes.append(_import_note(host, ACR_UPSTREAM_WHY))
            continue
        auth = upstream_of(host)
        if auth is None:
            notes.append(_import_note(host, "not an upstream the ACR artifact cache supports"))
            continue
        login, why = _login_for(source, host, auth, target, ctx)
        if why:
            notes.append(_import_note(host, why))
            continue
        for repo in source.repositories:
            repository = paths.normalize_repository(source.registry, repo.name)
            if not repo.all_tags:
                notes.append(
                    _import_note(
                        f"{host}/{repository}",
                        "the artifact cache cannot filter tags, and this repository selects versions",
                    )
                )
                continue
            destination = target.destination(ctx.spec, source.registry, repo.name)
            wanted.append((f"{host}/{repository}", destination, login))
        if host not in _RECORDED_UPSTREAMS and any(r.all_tags for r in source.repositories):
            notes.append(
                Note(
                    "info",
                    f"unverified: {host} as an artifact-cache upstream rests on the docs' list of supported "
                    "upstreams only (no recording here shows a cache rule for it)",
                )
            )
    names = _names([destination for _, destination, _ in wanted])
    return [_Rule(names[dest], source, dest, login) for source, dest, login in wanted]


def _login_for(
    source: Source, host: str, auth: Auth, target: AcrTarget, ctx: RunContext
) -> tuple[_Login | None, str]:
    """The credential set for `host`, or why the cache cannot serve it."""
    if auth == "none":
        return None, ""
    name = resource_name(f"mirrorspec {target.prefix or ''} {host}")
    given = target.credential_sets.get(host) or next(
        (v for k, v in target.credential_sets.items() if paths.normalize_registry(k) == host), None
    )
    if given is not None:
        return _Login(name, host, given.username_secret, given.password_secret), ""
    credential = ctx.spec.credentials.get(source.credentials or "")
    if credential is not None:
        credential_set = credential.form("azure-credential-set")
        if credential_set is not None:
            return _Login(credential_set, host, managed=False), ""
        if isinstance(credential.username, AzureKeyVaultRef) and isinstance(
            credential.password, AzureKeyVaultRef
        ):
            user = credential.username.azure_key_vault_secret
            password = credential.password.azure_key_vault_secret
            return _Login(name, host, user, password), ""
        return None, (
            "a cache rule reads its login from Key Vault through a credential set; give the "
            f"target credential-sets: {{{host}: {{username-secret: URI, password-secret: URI}}}}"
        )
    if auth == "required":
        return None, (
            f"the artifact cache needs a credential set for {host}; give the target "
            f"credential-sets: {{{host}: {{username-secret: URI, password-secret: URI}}}}"
        )
    return None, ""


def _import_note(what: str, why: str) -> Note:
    # base.fallback_note says "copying with skopeo"; ACR's fallback is its own import.
    return Note("info", f"{what}: {why}; the acr target imports it instead (importImage)")


def cached(target: Any, ctx: RunContext) -> frozenset[str]:
    """Source repositories served by a cache rule (cache mode, every tag)."""
    return frozenset(rule.source for rule in _cache_plan(target, ctx))


def translate(artifacts: Sequence[Artifact], target: Any, ctx: RunContext) -> AcrDesired:
    """Credential sets and cache rules (cache mode), imports for the rest, geo-replications."""
    notes: list[Note] = []
    rules = _cache_plan(target, ctx, notes)
    logins = {rule.login.name: rule.login for rule in rules if rule.login and rule.login.managed}
    resources = [
        Resource(
            CREDENTIAL_SET,
            login.name,
            {
                "loginServer": login.login_server,
                "usernameSecret": login.username_secret,
                "passwordSecret": login.password_secret,
            },
        )
        for login in logins.values()
    ]
    resources += [
        Resource(
            CACHE_RULE,
            rule.name,
            {
                "sourceRepository": rule.source,
                "targetRepository": rule.target_repository,
                "credentialSet": rule.login.name if rule.login else "",
            },
        )
        for rule in rules
    ]
    resources += [Resource(REPLICATION, region, {"location": region}) for region in _regions(target)]

    imports: dict[str, str] = {}  # destination repository -> source repository
    native: set[str] = set()
    copied: set[str] = set()
    charts = _charts(artifacts, ctx)
    for artifact in artifacts:
        source = f"{artifact.registry}/{artifact.repository}"
        imports[target.destination(ctx.spec, artifact.registry, artifact.repository)] = source
        if is_pinned(artifact.tag):
            # A chart's image pinned by digest: the engine copies every such image with skopeo
            # (importImage could take `repo@digest`, but one path for all targets keeps the pin
            # tag out of native copies); its repository is still written, for the overlap check.
            continue
        why = _not_importable(ctx, artifact.registry)
        if why is None:
            if source in charts and source not in native and not artifact.registry.endswith(_ACR_SUFFIX):
                # Docs (container-registry-import-images): "Import images or OCI artifacts
                # including Helm 3 charts from another Azure container registry"; from public and
                # non-Azure registries they speak of images only.
                notes.append(
                    Note(
                        "info",
                        f"unverified: {source} is a Helm chart, and the docs say import takes Helm charts "
                        f"from another Azure container registry only; importing it from {artifact.registry} "
                        "is not shown to work",
                    )
                )
            native.add(source)
        elif source not in copied:
            copied.add(source)
            notes.append(base.fallback_note("acr", source, why))
    _refuse_shared_paths(target, ctx, {r.target_repository for r in rules}, set(imports))
    return AcrDesired(
        resources=tuple(resources),
        native=frozenset(native),
        native_engine=ENGINE,
        notes=tuple(notes),
        imports=frozenset(imports),
    )


def _charts(artifacts: Sequence[Artifact], ctx: RunContext) -> set[str]:
    """`host/repository` of the artifacts known to be Helm charts: a chart's dependencies, and
    repositories whose spec entry follows Helm dependencies (an artifact carries no media type).
    An image a chart deploys names that chart in `dependency_of` but is not one itself."""
    out = {
        d.rsplit(":", 1)[0]
        for a in artifacts
        if a.dependency_of
        for d in ((a.dependency_of,) if a.chart_image else (a.dependency_of, a.ref))
    }
    for source in ctx.spec.sources:
        host = paths.normalize_registry(source.registry)
        for repo in source.repositories:
            if repo.follow_dependencies != "none":
                out.add(f"{host}/{paths.normalize_repository(source.registry, repo.name)}")
    return out


def _regions(target: AcrTarget) -> list[str]:
    return list(dict.fromkeys(region.lower() for region in target.replicate_to))


def _not_importable(ctx: RunContext, host: str) -> str | None:
    """Why ACR's import cannot pull from `host` (it pulls over the internet with public TLS)."""
    wanted = paths.normalize_registry(host)
    if paths.is_layout_host(wanted):
        return base.LAYOUT_SOURCE_WHY
    source = next((s for s in ctx.spec.sources if paths.normalize_registry(s.registry) == wanted), None)
    if source is not None and source.insecure:
        return "the source is insecure (plain HTTP or unverified TLS), which ACR import cannot pull from"
    if source is not None and source.ca_bundle:
        return "the source uses a private CA (ca-bundle), which ACR import cannot trust"
    name = wanted.rsplit(":", 1)[0]
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return "ACR import cannot reach a local host" if name == "localhost" else None
    if not address.is_global:
        return "ACR import cannot reach a private address"
    return None


def _same_registry(a: AcrTarget, b: AcrTarget) -> bool:
    return (a.subscription.lower(), a.resource_group.lower(), a.registry.lower()) == (
        b.subscription.lower(),
        b.resource_group.lower(),
        b.registry.lower(),
    )


def _refuse_shared_paths(
    target: AcrTarget, ctx: RunContext, cached_paths: set[str], imported: set[str]
) -> None:
    """ACR refuses imports (and pushes) into a cache rule's repository: refuse the spec now."""
    clash = sorted(cached_paths & imported)
    if clash:
        raise _conflict(target, f"{clash[0]} would be both cached and imported")
    for other in ctx.spec.targets:
        if not isinstance(other, AcrTarget) or other.name == target.name or not _same_registry(target, other):
            continue
        other_rules = _cache_plan(other, ctx)
        other_cached = {rule.target_repository for rule in other_rules}
        served = {rule.source for rule in other_rules}
        other_imported = {
            other.destination(ctx.spec, s.registry, r.name)
            for s in ctx.spec.sources
            for r in s.repositories
            if f"{paths.normalize_registry(s.registry)}/{paths.normalize_repository(s.registry, r.name)}"
            not in served
        }
        for mine, theirs, verb in (
            (cached_paths, other_imported, "caches"),
            (imported, other_cached, "imports"),
        ):
            both = sorted(mine & theirs)
            if both:
                inverse = "imports into" if verb == "caches" else "caches"
                raise _conflict(
                    target,
                    f"it {verb} {both[0]} and target '{other.name}' {inverse} it on the same "
                    f"registry {target.registry}; ACR refuses imports into a cache rule's repository "
                    "(give one of them another prefix)",
                )


def _conflict(target: AcrTarget, message: str) -> ProviderConflict:
    return ProviderConflict(
        f"target '{target.name}': {message}", provider="acr", target=target.name, operation="plan"
    )
