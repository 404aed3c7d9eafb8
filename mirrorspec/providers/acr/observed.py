"""ACR observe: cache rules, credential sets (with their health) and geo-replications, and which
repositories already exist under our paths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ... import paths
from ...context import RunContext
from ...errors import (
    RegistryError,
)
from ...plan import Note, Resource
from ...redaction import clip
from .api import _mapped, endpoint
from .clients import azure_client
from .native import (
    CACHE_RULE,
    CREDENTIAL_SET,
    KEEPS_CREDENTIAL_SET,
    MANAGED_TAG,
    REPLICATION,
    AcrObserved,
    _cache_plan,
    _Rule,
    resource_name,
)
from .target import AcrTarget

# --- observe -----------------------------------------------------------------------------


__all__ = [
    "observe",
    "replace_when",
]


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
    client = azure_client(ctx, target.subscription, target)
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
