"""Azure Container Registry (`type: acr`): artifact-cache rules, credential sets, imports, geo-replication.

Example target block (loaded by the provider contract tests):

```yaml
- name: azure-prod
  type: acr
  subscription: 00000000-0000-0000-0000-000000000000
  resource-group: registries
  registry: mycompany
  prefix: vendor
  # tenant-id / client-id narrow the identity DefaultAzureCredential picks
  credential-sets:                      # cache mode: where ACR reads an upstream's login
    docker.io:
      username-secret: https://mycompany-kv.vault.azure.net/secrets/dockerhub-user
      password-secret: https://mycompany-kv.vault.azure.net/secrets/dockerhub-token
  replicate-to: [northeurope, eastus]   # geo-replications (Premium SKU)
```

Facts that shaped it (research/acr.md; the contract is the 2023-07-01 management API, which
the client is pinned to, see `context.ACR_API_VERSION`):
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
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from .. import paths
from ..context import Endpoint, RunContext
from ..credentials import BasicAuth, redact, register_secret, resolve_basic_auth
from ..errors import (
    MirrorspecError,
    ProviderAuthError,
    ProviderConflict,
    ProviderError,
    ProviderThrottled,
    RegistryError,
    SpecError,
)
from ..plan import Artifact, Change, Copy, CopyTag, Note, Resource
from ..redaction import clip
from ..spec import AcrTarget, AzureKeyVaultRef, Source
from ..tls_failures import explain_tls_failure
from . import base

__all__ = [
    "CACHE_RULE",
    "CREDENTIAL_SET",
    "ENGINE",
    "IN_PLACE",
    "MAX_CACHE_RULES",
    "PERMISSIONS",
    "REPLICATION",
    "SUPPORT_KINDS",
    "AcrDesired",
    "AcrObserved",
    "Target",
    "apply",
    "cached",
    "capabilities",
    "check",
    "copy",
    "endpoint",
    "observe",
    "replace_when",
    "resource_name",
    "translate",
    "upstream_of",
]

log = logging.getLogger(__name__)

Target = AcrTarget
CACHE_RULE = "cache-rule"
CREDENTIAL_SET = "credential-set"
REPLICATION = "geo-replication"
ENGINE = "acr-import"
MAX_CACHE_RULES = 1000  # per registry (artifact-cache-overview.md)
MANAGED_TAG = ("managed-by", "mirrorspec")
ARM_SCOPE = "https://management.azure.com/.default"
EXCHANGE_BACKOFF = 0.5  # seconds before the token exchange's second retry; doubles after
# The user name of an ACR refresh token (`az acr login --expose-token`).
TOKEN_USER = "00000000-0000-0000-0000-000000000000"
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
    layout = ctx.spec.layout_of(target)
    wanted: list[tuple[str, str, _Login | None]] = []
    for host in target.credential_sets:
        if paths.normalize_registry(host).endswith(_ACR_SUFFIX):
            raise SpecError(
                f"target '{target.name}': credential-sets: {host}: {ACR_UPSTREAM_WHY}, and a credential set "
                "is not how another ACR is reached; drop this entry (the source is imported with importImage)"
            )
    for source in ctx.spec.sources:
        host = paths.normalize_registry(source.registry)
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
            destination = paths.destination(target.prefix, layout, source.registry, repo.name)
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
        if credential.azure_credential_set is not None:
            return _Login(credential.azure_credential_set, host, managed=False), ""
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

    layout = ctx.spec.layout_of(target)
    imports: dict[str, str] = {}  # destination repository -> source repository
    native: set[str] = set()
    copied: set[str] = set()
    charts = _charts(artifacts, ctx)
    for artifact in artifacts:
        source = f"{artifact.registry}/{artifact.repository}"
        imports[paths.destination(target.prefix, layout, artifact.registry, artifact.repository)] = source
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
    repositories whose spec entry follows Helm dependencies (an artifact carries no media type)."""
    out = {d.rsplit(":", 1)[0] for a in artifacts if a.dependency_of for d in (a.dependency_of, a.ref)}
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
            paths.destination(other.prefix, ctx.spec.layout_of(other), s.registry, r.name)
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


# --- observe -----------------------------------------------------------------------------


def _registry_id(target: AcrTarget) -> str:
    return (
        f"/subscriptions/{target.subscription}/resourceGroups/{target.resource_group}"
        f"/providers/Microsoft.ContainerRegistry/registries/{target.registry}"
    )


def _credential_set_id(target: AcrTarget, name: str) -> str:
    return f"{_registry_id(target)}/credentialSets/{name}"


def _credential_set_of(target: AcrTarget, resource_id: str | None) -> str:
    """A rule's credential set by name when it is in this registry, else its full ID."""
    if not resource_id:
        return ""
    own = f"{_registry_id(target)}/credentialSets/".lower()
    return resource_id[len(own) :] if resource_id.lower().startswith(own) else resource_id


def observe(target: Any, ctx: RunContext) -> AcrObserved:
    """The registry's SKU and location, every cache rule, credential set and replication
    (list calls following nextLink), and which wanted cache-rule repositories already exist."""
    client = ctx.azure_client(target.subscription, target)
    group, name = target.resource_group, target.registry
    resources: list[Resource] = []
    notes: list[Note] = []
    wanted = _cache_plan(target, ctx)
    with _mapped(target, "observe"):
        registry = client.registries.get(group, name)
        sku = _text(registry.sku.name) if registry.sku else ""
        location = str(registry.location or "").lower().replace(" ", "")
        rules = list(client.cache_rules.list(group, name))
        sets = list(client.credential_sets.list(group, name))
        replications = list(client.replications.list(group, name)) if sku == "Premium" else []
    ours = {rule.target_repository for rule in wanted}
    for rule in rules:
        props = rule.properties
        target_repository = str(props.target_repository or "") if props else ""
        attrs = {
            "sourceRepository": str(props.source_repository or "") if props else "",
            "targetRepository": target_repository,
            "credentialSet": _credential_set_of(target, props.credential_set_resource_id if props else None),
        }
        # We create static rules only: a wildcard rule is always someone else's.
        owned = not target_repository.endswith("*") and (
            _owned_path(target, ctx, target_repository) or target_repository in ours
        )
        resources.append(Resource(CACHE_RULE, str(rule.name), attrs, managed=owned))
    our_sets = {rule.login.name for rule in wanted if rule.login and rule.login.managed}
    marker = f"{resource_name(f'mirrorspec {target.prefix}')}-" if target.prefix else None
    for found in sets:
        props = found.properties
        credential = (props.auth_credentials or [None])[0] if props else None
        health = credential.credential_health if credential else None
        attrs = {
            "loginServer": str(props.login_server or "") if props else "",
            "usernameSecret": str(credential.username_secret_identifier or "") if credential else "",
            "passwordSecret": str(credential.password_secret_identifier or "") if credential else "",
            "principalId": str(found.identity.principal_id or "") if found.identity else "",
            "health": _text(health.status) if health else "",
        }
        set_name = str(found.name)
        managed = set_name in our_sets or bool(marker and set_name.startswith(marker))
        resources.append(Resource(CREDENTIAL_SET, set_name, attrs, managed=managed))
        if health and (managed or any(r.login and r.login.name == set_name for r in wanted)):
            notes.append(_health_note(set_name, attrs, health))
    for replication in replications:
        region = str(replication.location or "").lower().replace(" ", "")
        tags = replication.tags or {}
        managed = tags.get(MANAGED_TAG[0]) == MANAGED_TAG[1]
        resources.append(Resource(REPLICATION, str(replication.name), {"location": region}, managed=managed))
    existing = _existing_repositories(target, ctx, wanted, resources)
    return AcrObserved(
        resources=tuple(resources), notes=tuple(notes), sku=sku, location=location, existing=existing
    )


def _vaults(*secret_uris: str) -> str:
    """`a` or `a and b`: the Key Vault names of secret URIs (`https://a.vault.azure.net/...`)."""
    names = sorted({(urlsplit(u).hostname or u).split(".", 1)[0] for u in secret_uris if u})
    return " and ".join(names) or "(unknown)"


def _health_note(name: str, attrs: dict[str, str], health: Any) -> Note:
    """What ACR says of a credential set's secrets, and for Forbidden the grant that is missing.

    A new set is Unhealthy/Forbidden until its system identity may get the secrets (recording
    tests/contracts/azure/recordings/test_acr_cache.yaml #2-#12). The grant is the Key Vault
    Secrets User role (https://learn.microsoft.com/azure/key-vault/general/rbac-guide) or, on a
    vault with access policies, secret get (the artifact cache tutorial's `az keyvault
    set-policy --secret-permissions get`: https://learn.microsoft.com/azure/container-registry/artifact-cache-cli).
    """
    status = _text(health.status)
    if status == "Healthy":
        return Note("info", f"credential set {name} is Healthy: ACR can read its Key Vault secrets")
    code = str(health.error_code or "")
    if code == "Forbidden":
        principal = attrs.get("principalId") or "(unknown)"
        vaults = _vaults(attrs["usernameSecret"], attrs["passwordSecret"])
        return Note(
            "warning",
            f"credential set {name} is Unhealthy (Forbidden): ACR cannot read its Key Vault secrets; "
            f"grant principal {principal} the role 'Key Vault Secrets User' on key vault {vaults} (or, if "
            "the vault uses access policies, an access policy with secret get)",
        )
    message = clip(str(health.error_message or ""), 300)
    return Note(
        "warning",
        f"credential set {name} is {status or 'of unknown health'} ({code}: {message}); "
        "check its Key Vault secrets",
    )


def _text(value: Any) -> str:
    """An SDK enum member or plain string as the API's string (`SkuName.PREMIUM` → `Premium`)."""
    return str(getattr(value, "value", value) or "")


def _owned_path(target: AcrTarget, ctx: RunContext, repository: str) -> bool:
    if target.prefix:
        ours = target.prefix.strip("/")
        return repository == ours or repository.startswith(ours + "/")
    # Without a prefix only the scoped host segments of our own sources count as ours.
    return repository.split("/", 1)[0] in {paths.host_segment(s.registry) for s in ctx.spec.sources}


def replace_when(have: Resource, want: Resource) -> str | None:
    """Why a change the attributes allow in place must still be delete + create (see diff)."""
    if want.kind == CACHE_RULE and _drops_credential_set(have.attrs, want.attrs):
        return f"{KEEPS_CREDENTIAL_SET}, so removing it is delete + create"
    return None


def _drops_credential_set(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    return bool(have.get("credentialSet")) and not want.get("credentialSet")


def _existing_repositories(
    target: AcrTarget, ctx: RunContext, wanted: Sequence[_Rule], observed: Sequence[Resource]
) -> frozenset[str]:
    """Repositories a cache rule is about to be created (or re-created) over: ACR refuses that.

    Deleting a rule keeps its repository, so re-creating a rule that has cached anything is
    refused too (the rule in tests/emulators/acr.py `_op_cacherules_create` and its sources)."""
    same = {
        r.id
        for r in observed
        if r.kind == CACHE_RULE
        and any(
            w.name == r.id
            and r.attrs["sourceRepository"] == w.source
            and r.attrs["targetRepository"] == w.target_repository
            and not _drops_credential_set(r.attrs, {"credentialSet": w.login.name if w.login else ""})
            for w in wanted
        )
    }
    to_create = [rule for rule in wanted if rule.name not in same]
    if not to_create:
        return frozenset()
    client = ctx.client(endpoint(target, ctx))
    found = set()
    for rule in to_create:
        try:
            client.list_tags(rule.target_repository)
        except RegistryError as exc:
            if exc.status == 404:
                continue
            raise
        found.add(rule.target_repository)
    return frozenset(found)


# --- plan-time limits --------------------------------------------------------------------


def _covers(rule_target: str, repository: str) -> bool:
    """Whether a cache rule's target repository (static, `path/*` or `*`) covers `repository`."""
    if rule_target == "*":
        return True
    if rule_target.endswith("/*"):
        return repository.startswith(rule_target[:-1])
    return rule_target == repository


def check(desired: base.Desired, observed: base.Observed, target: Any) -> tuple[Note, ...]:
    """Refuse at plan time what ACR would refuse half-way through apply."""
    imports = desired.imports if isinstance(desired, AcrDesired) else frozenset()
    sku = observed.sku if isinstance(observed, AcrObserved) else ""
    location = observed.location if isinstance(observed, AcrObserved) else ""
    existing = observed.existing if isinstance(observed, AcrObserved) else frozenset()
    want_rules = {r.id: r for r in desired.resources if r.kind == CACHE_RULE}
    have_rules = {r.id: r for r in observed.resources if r.kind == CACHE_RULE}
    total = len(set(have_rules) | set(want_rules))
    if total > MAX_CACHE_RULES:
        raise _conflict(
            target,
            f"{total} cache rules ({len(have_rules)} exist, {len(set(want_rules) - set(have_rules))} to "
            f"create): ACR allows {MAX_CACHE_RULES} per registry",
        )
    regions = [r.id for r in desired.resources if r.kind == REPLICATION]
    if regions and sku != "Premium":
        raise _conflict(
            target,
            f"replicate-to needs a Premium registry, and {target.registry} is {sku or 'not Premium'} "
            "(upgrade its SKU or drop replicate-to)",
        )
    if location and location in regions:
        raise _conflict(target, f"replicate-to lists {location}, the registry's home region")
    for rule in want_rules.values():
        path = rule.attrs["targetRepository"]
        have = have_rules.get(rule.id)
        same_rule = have is not None and all(
            have.attrs[k] == rule.attrs[k] for k in ("sourceRepository", "targetRepository")
        )
        if (
            have is not None
            and same_rule
            and path in existing
            and _drops_credential_set(have.attrs, rule.attrs)
        ):
            host = str(rule.attrs["sourceRepository"]).split("/", 1)[0]
            raise _conflict(
                target,
                f"cache rule {rule.id}: {KEEPS_CREDENTIAL_SET}, and cannot re-create the rule without it "
                f"because its repository {path} exists (ACR refuses a cache rule over an existing "
                f"repository); keep credential-sets: {host}, or delete the repository (az acr repository "
                f"delete --name {target.registry} --repository {path}) and plan again",
            )
        if path in existing:
            raise _conflict(
                target,
                f"repository {path} already exists, and ACR cannot create cache rule {rule.id} over it "
                "(delete the repository, or select versions so that it is imported)",
            )
        other = next(
            (h for h in have_rules.values() if h.id != rule.id and h.attrs["targetRepository"] == path), None
        )
        if other is not None:
            raise _conflict(target, f"cache rule {other.id} already targets {path} (wanted: {rule.id})")
    notes = []
    for rule in want_rules.values():
        have = have_rules.get(rule.id)
        if (
            have is not None
            and rule.attrs["credentialSet"]
            and have.attrs["credentialSet"] != rule.attrs["credentialSet"]
            and all(have.attrs[k] == rule.attrs[k] for k in ("sourceRepository", "targetRepository"))
        ):
            # The 2023-07-01 model's CacheRuleUpdateProperties.credentialSetResourceId and the
            # docs (`az acr cache update --cred-set`, "Update or add a credential set to an
            # existing cache rule": https://learn.microsoft.com/azure/container-registry/artifact-cache-cli)
            # say a PATCH sets it; the one recorded cache-rule PATCH (null) was ignored.
            notes.append(
                Note(
                    "info",
                    f"unverified: cache rule {rule.id} takes its new credential set in place (PATCH "
                    "credentialSetResourceId), which rests on the 2023-07-01 API model and the docs "
                    "(az acr cache update --cred-set) only: no recording here shows such a PATCH take effect",
                )
            )
    for have in have_rules.values():
        covered = sorted(path for path in imports if _covers(have.attrs["targetRepository"], path))
        if not covered or have.id in want_rules:
            continue
        if not have.managed:
            raise _conflict(
                target,
                f"cache rule {have.id} ({have.attrs['targetRepository']}) covers {covered[0]}, which is "
                "to be imported; ACR refuses imports into a cache rule's repository",
            )
        notes.append(
            Note(
                "warning",
                f"our stale cache rule {have.id} covers {covered[0]}, which is now imported: "
                "apply --prune deletes the rule first; without it the import fails",
            )
        )
    have_sets = {r.id: r for r in observed.resources if r.kind == CREDENTIAL_SET}
    for cred in (r for r in desired.resources if r.kind == CREDENTIAL_SET):
        if cred.id in have_sets:
            continue  # observe says how it is, and for an unhealthy one which grant is missing
        vault = str(cred.attrs["passwordSecret"]).split("/secrets/", 1)[0]
        notes.append(
            Note(
                "info",
                f"credential set {cred.id}: its system-assigned identity (its principal id is known once "
                f"created) needs Key Vault secret get on {vault} (role 'Key Vault Secrets User', or an "
                "access policy with secret get); until then ACR reports it Unhealthy (Forbidden)",
            )
        )
    if want_rules:
        notes.append(
            Note(
                "info",
                "the artifact cache is lazy: a cached repository and its tags appear at the first "
                "pull through the registry, and new upstream tags are fetched only when pulled",
            )
        )
    return tuple(notes)


# --- apply -------------------------------------------------------------------------------


def apply(change: Change, target: Any, ctx: RunContext) -> None:
    client = ctx.azure_client(target.subscription, target)
    what = f"{change.action} {change.resource} {change.id}"
    with _mapped(target, what):
        if change.action in ("delete", "replace"):
            _delete(client, target, change)
        if change.action == "delete":
            return
        after = dict(change.after or {})
        if change.resource == CREDENTIAL_SET:
            _apply_credential_set(client, target, change, after)
        elif change.resource == CACHE_RULE:
            _apply_cache_rule(client, target, change, after)
        elif change.resource == REPLICATION:
            _apply_replication(client, target, change, after)
        else:
            raise AssertionError(f"unknown ACR resource kind {change.resource}")


def _delete(client: Any, target: AcrTarget, change: Change) -> None:
    operations = {
        CACHE_RULE: client.cache_rules,
        CREDENTIAL_SET: client.credential_sets,
        REPLICATION: client.replications,
    }
    poller = operations[change.resource].begin_delete(target.resource_group, target.registry, change.id)
    _wait(poller, f"delete {change.resource} {change.id}")


def _apply_credential_set(client: Any, target: AcrTarget, change: Change, after: dict[str, Any]) -> None:
    from azure.mgmt.containerregistry import models

    credentials = [
        models.AuthCredential(
            name="Credential1",
            username_secret_identifier=after["usernameSecret"],
            password_secret_identifier=after["passwordSecret"],
        )
    ]
    group, registry = target.resource_group, target.registry
    if change.action == "update":
        update = models.CredentialSetUpdateParameters(
            properties=models.CredentialSetUpdateProperties(auth_credentials=credentials)
        )
        result = _wait(
            client.credential_sets.begin_update(group, registry, change.id, update), f"update {change.id}"
        )
    else:
        body = models.CredentialSet(
            identity=models.IdentityProperties(type="SystemAssigned"),
            properties=models.CredentialSetProperties(
                login_server=after["loginServer"], auth_credentials=credentials
            ),
        )
        result = _wait(
            client.credential_sets.begin_create(group, registry, change.id, body), f"create {change.id}"
        )
    principal = result.identity.principal_id if result is not None and result.identity else None
    log.warning(
        "credential set %s: grant its identity (principal %s) Key Vault secret get on %s",
        change.id,
        principal or "unknown",
        str(after["passwordSecret"]).split("/secrets/", 1)[0],
    )


def _apply_cache_rule(client: Any, target: AcrTarget, change: Change, after: dict[str, Any]) -> None:
    from azure.mgmt.containerregistry import models

    group, registry = target.resource_group, target.registry
    credential_set = str(after.get("credentialSet") or "")
    resource_id = _credential_set_id(target, credential_set) if credential_set else None
    if change.action == "update":
        # Only ever to set a credential set: a PATCH with null leaves it in place (see
        # KEEPS_CREDENTIAL_SET), so removing one is planned as a replace (replace_when).
        if resource_id is None:
            raise AssertionError(f"cache rule {change.id}: removing a credential set must be a replace")
        update = models.CacheRuleUpdateParameters(
            properties=models.CacheRuleUpdateProperties(credential_set_resource_id=resource_id)
        )
        _wait(client.cache_rules.begin_update(group, registry, change.id, update), f"update {change.id}")
        return
    properties = models.CacheRuleProperties(
        source_repository=after["sourceRepository"], target_repository=after["targetRepository"]
    )
    if resource_id:
        properties.credential_set_resource_id = resource_id
    body = models.CacheRule(properties=properties)
    _wait(client.cache_rules.begin_create(group, registry, change.id, body), f"create {change.id}")


def _apply_replication(client: Any, target: AcrTarget, change: Change, after: dict[str, Any]) -> None:
    from azure.mgmt.containerregistry import models

    body = models.Replication(location=after["location"], tags=dict([MANAGED_TAG]))
    poller = client.replications.begin_create(target.resource_group, target.registry, change.id, body)
    _wait(poller, f"create geo-replication {change.id}")


def _wait(poller: Any, what: str, *, every: float = 10.0) -> Any:
    """Await a long-running operation, saying every `every` seconds that it still runs."""
    while not poller.done():
        poller.wait(every)
        if not poller.done():
            log.info("%s: %s", what, poller.status())
    return poller.result()


# --- native copies: importImage ----------------------------------------------------------


def copy(copy: Copy, target: Any, ctx: RunContext) -> None:
    """Import every tag of one planned copy server-side, by digest, a few at a time."""
    from azure.mgmt.containerregistry import models

    client = ctx.azure_client(target.subscription, target)
    host, _, repository = copy.source.partition("/")
    _, _, destination = copy.destination.partition("/")
    login = _source_login(ctx, host)  # resolved now, sent only in the request body
    credentials = (
        models.ImportSourceCredentials(username=login.username, password=login.password) if login else None
    )

    def one(tag: CopyTag) -> str | None:
        parameters = models.ImportImageParameters(
            source=models.ImportSource(
                registry_uri=host, source_image=f"{repository}@{tag.digest}", credentials=credentials
            ),
            target_tags=[f"{destination}:{tag.tag}"],
            # The plan shows a tag holding other content as such: only then overwrite it.
            mode="Force" if tag.reason == "digest-mismatch" else "NoForce",
        )
        what = f"import {copy.source}@{tag.digest} as {destination}:{tag.tag}"
        try:
            with _mapped(target, what):
                poller = client.registries.begin_import_image(
                    target.resource_group, target.registry, parameters
                )
                _wait(poller, what)
        except ProviderError as exc:
            return f"{tag.tag}: {exc}"
        return None

    workers = max(1, min(ctx.workers, len(copy.tags), 4))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        failures = [failure for failure in pool.map(one, copy.tags) if failure]
    if failures:
        raise ProviderError(
            f"{len(failures)} of {len(copy.tags)} import(s) failed: " + "; ".join(failures),
            provider="acr",
            target=target.name,
            operation="importImage",
        )


def _source_login(ctx: RunContext, host: str) -> BasicAuth | None:
    wanted = paths.normalize_registry(host)
    for source in ctx.spec.sources:
        if paths.normalize_registry(source.registry) == wanted and source.credentials:
            return resolve_basic_auth(ctx.spec, source.credentials)
    return None


# --- endpoint and errors -----------------------------------------------------------------


def endpoint(target: Any, ctx: RunContext) -> Endpoint:
    """The login server, with a refresh token exchanged for our Azure token (never printed)."""
    import requests

    client = ctx.azure_client(target.subscription, target)
    with _mapped(target, "get registry"):
        registry = client.registries.get(target.resource_group, target.registry)
        token = ctx.azure_credential(target).get_token(ARM_SCOPE).token
    register_secret(token)
    login_server = str(registry.login_server or f"{target.registry.lower()}.azurecr.io")
    reached = ctx.reach(Endpoint(login_server))
    data = {"grant_type": "access_token", "service": login_server, "access_token": token}
    if target.tenant_id:
        data["tenant"] = target.tenant_id
    url = f"https://{reached.host}/oauth2/exchange"
    # The exchange only mints a token, so repeating it is safe: retried like a GET, or one
    # reset connection or 503 from the login server fails the whole plan. The run's transport
    # bounds it (`--timeout`: deadline, counted retries, the host's budget).
    adapter = ctx.transport.adapter(retries=5, backoff=EXCHANGE_BACKOFF, methods=frozenset({"POST"}))
    try:
        with requests.Session() as session:
            session.trust_env = False  # like RegistryClient: verify= must not be overridden
            session.mount("https://", adapter)
            response = session.post(
                url, data=data, verify=False if reached.insecure else (reached.ca_bundle or True)
            )
    except requests.RequestException as exc:
        # A TLS failure keeps its real reason, and never suggests `insecure`.
        reason = (
            explain_tls_failure(str(exc), reached.host)
            if isinstance(exc, requests.exceptions.SSLError)
            else None
        )
        raise ProviderError(
            redact(f"token exchange at {login_server}: {reason or _request_reason(exc)}"),
            provider="acr",
            target=target.name,
            operation="oauth2/exchange",
        ) from None
    try:
        refresh = response.json().get("refresh_token") if response.status_code == 200 else None
    except ValueError:  # not JSON: not a login server
        refresh = None
    if not refresh:
        unavailable = response.status_code == 429 or response.status_code >= 500  # after the retries
        kind = ProviderError if unavailable else ProviderAuthError
        hint = (
            "the login server kept failing; retry later"
            if unavailable
            else "does the identity have a role on the registry, e.g. AcrPush?"
        )
        raise kind(
            redact(
                f"token exchange at {login_server} answered {response.status_code}: "
                f"{clip(response.text, 200)} ({hint})"
            ),
            provider="acr",
            target=target.name,
            operation="oauth2/exchange",
        )
    register_secret(refresh)
    return ctx.reach(Endpoint(login_server, BasicAuth(TOKEN_USER, refresh)))


@contextmanager
def _mapped(target: AcrTarget, operation: str) -> Iterator[None]:
    """Translate azure-core's exceptions into ours, with ARM's one-line code and message."""
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except MirrorspecError:
        raise
    except ClientAuthenticationError as exc:
        raise ProviderAuthError(
            redact(f"{operation}: {_message(exc)} (sign in with `az login`, or set tenant-id/client-id)"),
            provider="acr",
            target=target.name,
            operation=operation,
        ) from None
    except HttpResponseError as exc:
        status = exc.status_code
        kind: type[ProviderError] = ProviderError
        if status in (401, 403):
            kind = ProviderAuthError
        elif status == 429:
            kind = ProviderThrottled
        elif status == 409 or isinstance(exc, ResourceExistsError):
            kind = ProviderConflict
        raise kind(
            redact(f"{operation}: {_message(exc)}"), provider="acr", target=target.name, operation=operation
        ) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise ProviderError(
            redact(f"{operation}: cannot reach Azure: {exc.message}"),
            provider="acr",
            target=target.name,
            operation=operation,
        ) from None
    except AzureError as exc:
        raise ProviderError(
            redact(f"{operation}: {exc.message}"), provider="acr", target=target.name, operation=operation
        ) from None


def _request_reason(exc: BaseException) -> str:
    """requests' exception text without urllib3's wrapping (`... (Caused by X(...))`)."""
    text = str(exc.args[0] if exc.args else exc)
    match = re.search(r"\(Caused by (\w+\(.*)\)$", text)
    return clip(match.group(1) if match else text)


def _message(exc: Any) -> str:
    """`Code: message` from an ARM error body, else the SDK's first line."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    if code or message:
        return f"{code or 'Error'}: {message or ''}".rstrip(": ")
    status = getattr(exc, "status_code", None)
    text = str(getattr(exc, "message", None) or exc).splitlines()[0]
    return f"{status} {text}" if status else text
