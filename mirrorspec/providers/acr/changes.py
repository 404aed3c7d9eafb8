"""ACR apply (cache rules, credential sets, geo-replications; long-running operations awaited) and
native copies (`importImage`, one per tag by digest).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ... import paths
from ...context import RunContext
from ...credentials import BasicAuth, resolve_basic_auth
from ...errors import (
    ProviderError,
)
from ...plan import Change, Copy, CopyTag
from .api import _mapped
from .clients import azure_client
from .native import CACHE_RULE, CREDENTIAL_SET, MANAGED_TAG, REPLICATION
from .observed import _credential_set_id
from .target import AcrTarget

__all__ = [
    "apply",
    "copy",
]

log = logging.getLogger(__package__)


# --- apply -------------------------------------------------------------------------------


def apply(change: Change, target: Any, ctx: RunContext) -> None:
    client = azure_client(ctx, target.subscription, target)
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

    client = azure_client(ctx, target.subscription, target)
    host, repository, destination = copy.source_registry, copy.source_repository, copy.destination_repository
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
