"""Harbor apply: registry endpoints, proxy-cache projects and replication policies, each write
carrying every field (PUT replaces a policy whole).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ... import paths
from ...context import RunContext
from ...credentials import resolve_basic_auth
from ...errors import (
    ProviderError,
)
from ...plan import Change
from . import native
from .api import _Api, _HarborError, _mapped, _session
from .executions import _run_policy
from .native import ENDPOINT, POLICY, PROJECT, PROXY, _filters_column, _read_ca, _upstream
from .target import HarborTarget

# --- apply -------------------------------------------------------------------------------


__all__ = [
    "apply",
]


def apply(change: Change, target: Any, ctx: RunContext) -> None:
    with _session(target, ctx) as api, _mapped(target, f"{change.action} {change.resource} {change.id}"):
        if change.resource == ENDPOINT:
            _apply_endpoint(api, target, ctx, change)
        elif change.resource == PROJECT:
            _create_project(api, {"project_name": change.id, "metadata": {"public": "false"}}, exists_ok=True)
        elif change.resource == PROXY:
            _apply_proxy(api, change)
        elif change.resource == POLICY:
            _apply_policy(api, target, ctx, change)
        else:
            raise AssertionError(f"unknown Harbor resource kind {change.resource}")


def _apply_endpoint(api: _Api, target: HarborTarget, ctx: RunContext, change: Change) -> None:
    if change.action in ("delete", "replace"):
        registry = api.find("/registries", change.id)
        if registry is not None:
            api.delete(
                f"/registries/{registry['id']}",
                conflict="it is used by a replication policy or a proxy-cache project",
            )
    if change.action == "delete":
        return
    after = dict(change.after or {})
    upstream = _upstream(ctx, _host_of_url(str(after["url"])))
    auth = resolve_basic_auth(ctx.spec, upstream.credentials) if upstream.credentials else None
    pem = _read_ca(ctx, upstream.ca_bundle)
    unhealthy = (
        f"Harbor could not reach {after['url']} with these credentials: "
        "check the URL, the credentials and Harbor's network access to it"
    )
    if change.action == "update":
        registry = api.find("/registries", change.id)
        if registry is None:
            raise ProviderError(
                f"registry endpoint {change.id} disappeared since the plan; re-run plan",
                provider="harbor",
                target=target.name,
                operation="update",
            )
        update: dict[str, Any] = {
            "name": change.id,
            "description": after["description"],
            "url": after["url"],
            "insecure": after["insecure"],
        }
        if auth is not None:
            update.update(credential_type="basic", access_key=auth.username, access_secret=auth.password)
        if pem:
            update["ca_certificate"] = pem
        api.put(f"/registries/{registry['id']}", update, bad_request=unhealthy)
        return
    body: dict[str, Any] = {
        "name": change.id,
        "type": after["type"],
        "url": after["url"],
        "insecure": after["insecure"],
        "description": after["description"],
    }
    if auth is not None:
        body["credential"] = {"type": "basic", "access_key": auth.username, "access_secret": auth.password}
    if pem:
        body["ca_certificate"] = pem
    api.create_named("/registries", body, bad_request=unhealthy)


def _host_of_url(url: str) -> str:
    """The upstream host an endpoint URL written by `adapter_of` stands for."""
    netloc = urlsplit(url).netloc
    return {"hub.docker.com": paths.DOCKER_HUB}.get(netloc, netloc)


def _create_project(api: _Api, body: Mapping[str, Any], *, exists_ok: bool = False) -> None:
    try:
        api.create_named("/projects", body)
    except _HarborError as exc:
        if not (exists_ok and exc.status == 409):
            raise


def _apply_proxy(api: _Api, change: Change) -> None:
    if change.action in ("delete", "replace"):
        api.delete(
            f"/projects/{change.id}",
            headers={"X-Is-Resource-Name": "true"},
            conflict="the project still holds cached repositories; delete them first",
        )
    if change.action == "delete":
        return
    registry_name = str((change.after or {})["registry"])
    registry = api.find("/registries", registry_name)
    if registry is None:
        raise _HarborError(
            404, "NOT_FOUND", f"registry endpoint {registry_name} does not exist (was its creation refused?)"
        )
    _create_project(
        api, {"project_name": change.id, "registry_id": int(registry["id"]), "metadata": {"public": "false"}}
    )


def _apply_policy(api: _Api, target: HarborTarget, ctx: RunContext, change: Change) -> None:
    existing = api.find("/replication/policies", change.id)
    if change.action == "delete":
        if existing is not None:
            api.delete(f"/replication/policies/{existing['id']}", conflict="an execution of it is running")
        return
    after = dict(change.after or {})
    registry = api.find("/registries", str(after["src_registry"]))
    if registry is None:
        raise _HarborError(
            404,
            "NOT_FOUND",
            f"registry endpoint {after['src_registry']} does not exist (was its creation refused?)",
        )
    body = _policy_body(change.id, after, int(registry["id"]))
    stored = len(_filters_column(body["filters"]))
    if stored > native.FILTERS_COLUMN:  # read at call time: tests lower it
        # Never sent: Harbor would answer a bare 500 (a database error), which looks transient.
        raise ProviderError(
            f"its filters take {stored} characters as Harbor stores them, more than the "
            f"{native.FILTERS_COLUMN} its column holds; re-run plan, which splits them",
            provider="harbor",
            target=target.name,
            operation=change.action,
        )
    if existing is None:
        policy_id = api.create_named("/replication/policies", body)
    else:
        policy_id = int(existing["id"])
        api.put(f"/replication/policies/{policy_id}", body)
    _run_policy(api, target, policy_id, change.id)


def _policy_body(name: str, attrs: Mapping[str, Any], registry_id: int) -> dict[str, Any]:
    """The whole policy: Harbor's PUT rebuilds it from the body, omitted fields become zero."""
    trigger = attrs["trigger"]
    return {
        "name": name,
        "description": attrs["description"],
        "src_registry": {"id": registry_id},
        "dest_namespace": attrs["dest_namespace"],
        "dest_namespace_replace_count": attrs["dest_namespace_replace_count"],
        "trigger": {"type": trigger["type"], "trigger_settings": {"cron": trigger["cron"]}},
        "filters": [dict(f) for f in attrs["filters"]],
        "enabled": attrs["enabled"],
        "override": attrs["override"],
        "deletion": attrs["deletion"],  # the field Harbor reads
        "replicate_deletion": attrs["deletion"],  # the documented one, ignored on write
        "speed": attrs["speed"],
        "copy_by_chunk": attrs["copy_by_chunk"],
        "single_active_replication": attrs["single_active_replication"],
    }
