"""Harbor observe (registries, policies, projects; paginated and counted) and plan-time checks."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ...context import RunContext
from ...errors import (
    ProviderConflict,
)
from ...plan import Note, Resource
from .. import base
from .api import _mapped, _session
from .native import ENDPOINT, MANAGED, MASKED, POLICY, PROJECT, PROXY, _segments, adapter_of

# --- observe -----------------------------------------------------------------------------


__all__ = [
    "check",
    "observe",
]


def observe(target: Any, ctx: RunContext) -> base.Observed:
    """Policies, proxy-cache projects, the target project and registry endpoints (in the
    order prune deletes them), each listed with paginated calls."""
    with _session(target, ctx) as api, _mapped(target, "observe"):
        registries = api.list("/registries")
        policies = api.list("/replication/policies")
        projects = api.list("/projects")
        adapters = set(api.get("/replication/adapters"))
    by_id = {int(r["id"]): r for r in registries}
    ours = {
        int(r["id"])
        for r in registries
        if {MANAGED, f"project {target.project}"} <= _segments(r.get("description") or "")
    }
    resources: list[Resource] = []
    for policy in policies:
        attrs = _policy_attrs(policy, by_id)
        namespace = attrs["dest_namespace"]
        managed = MANAGED in _segments(attrs["description"]) and (
            namespace == target.project or namespace.startswith(target.project + "/")
        )
        resources.append(Resource(POLICY, str(policy["name"]), attrs, managed=managed))
    for project in projects:
        registry_id = int(project.get("registry_id") or 0)
        name = str(project["name"])
        if registry_id:
            registry_name = str(by_id.get(registry_id, {}).get("name") or f"#{registry_id}")
            managed = name.startswith(f"{target.project}-") and registry_id in ours
            resources.append(Resource(PROXY, name, {"registry": registry_name}, managed=managed))
        if name == target.project:
            resources.append(Resource(PROJECT, name, {"registry_id": registry_id}, managed=False))
    notes = []
    for registry in registries:
        resources.append(
            Resource(
                ENDPOINT,
                str(registry["name"]),
                _endpoint_attrs(registry),
                managed=int(registry["id"]) in ours,
            )
        )
        if int(registry["id"]) in ours and registry.get("status") not in (None, "", "healthy"):
            notes.append(
                Note(
                    "warning",
                    f"registry endpoint {registry['name']} is {registry['status']} (Harbor's last check)",
                )
            )
    # A settings-only source gets an endpoint only when a dependency leads there, as a host
    # without an entry does, and neither is warned about here.
    wanted = {adapter_of(s.registry)[0] for s in ctx.spec.sources if not s.settings_only}
    for adapter in sorted(wanted - adapters):
        notes.append(
            Note(
                "warning",
                f"this Harbor does not offer the {adapter} adapter (REPLICATION_ADAPTER_WHITELIST): "
                "creating its endpoints may work, but Harbor considers the adapter unsupported",
            )
        )
    return base.Observed(resources=tuple(resources), notes=tuple(notes))


def _endpoint_attrs(registry: Mapping[str, Any]) -> dict[str, Any]:
    credential = registry.get("credential") or {}
    pem = registry.get("ca_certificate") or ""
    return {
        "type": registry.get("type", ""),
        "url": str(registry.get("url", "")).rstrip("/"),
        "insecure": bool(registry.get("insecure")),
        "description": registry.get("description") or "",
        "access_key": credential.get("access_key") or "",
        "secret": MASKED if credential.get("access_secret") else "none",
        "ca_certificate": "sha256:" + hashlib.sha256(pem.strip().encode()).hexdigest() if pem else "",
    }


def _policy_attrs(policy: Mapping[str, Any], registries: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """A policy as Harbor returns it, normalised to the shape `_policies` writes."""

    def registry_name(ref: Mapping[str, Any] | None) -> str:
        ident = int((ref or {}).get("id") or 0)
        if ident == 0:
            return ""
        return str(registries.get(ident, {}).get("name") or (ref or {}).get("name") or f"#{ident}")

    filters = []
    for item in policy.get("filters") or []:
        normalised = {"type": item.get("type"), "value": item.get("value")}
        if item.get("type") in ("tag", "label"):
            normalised["decoration"] = item.get("decoration") or "matches"
        filters.append(normalised)
    trigger = policy.get("trigger") or {}
    count = policy.get("dest_namespace_replace_count")
    attrs: dict[str, Any] = {
        "src_registry": registry_name(policy.get("src_registry")),
        "dest_namespace": policy.get("dest_namespace") or "",
        "dest_namespace_replace_count": -1 if count is None else int(count),
        "filters": filters,
        "trigger": {
            "type": trigger.get("type") or "manual",
            "cron": (trigger.get("trigger_settings") or {}).get("cron") or "",
        },
        "enabled": bool(policy.get("enabled")),
        "override": bool(policy.get("override")),
        "deletion": bool(policy.get("deletion") or policy.get("replicate_deletion")),
        "speed": max(int(policy.get("speed") or 0), 0),
        "copy_by_chunk": bool(policy.get("copy_by_chunk")),
        "single_active_replication": bool(policy.get("single_active_replication")),
        "description": policy.get("description") or "",
    }
    dest = registry_name(policy.get("dest_registry"))
    if dest:  # push-based: never ours, shown as it is
        attrs["dest_registry"] = dest
    return attrs


# --- plan-time checks --------------------------------------------------------------------


def check(desired: base.Desired, observed: base.Observed, target: Any) -> tuple[Note, ...]:
    """Refuse at plan time what would collide with Harbor's state, and say what Harbor does
    by default that a reader would not expect."""
    have = {(r.kind, r.id): r for r in observed.resources}
    for wanted in desired.resources:
        found = have.get((wanted.kind, wanted.id))
        if found is None:
            continue
        if wanted.kind == PROJECT and found.attrs.get("registry_id"):
            raise ProviderConflict(
                f"project {wanted.id} is a proxy-cache project: Harbor skips replication into it; "
                "choose another project",
                provider="harbor",
                target=target.name,
                operation="plan",
            )
        if wanted.kind != PROJECT and not found.managed:
            raise ProviderConflict(
                f"a {wanted.kind} named {wanted.id} exists and is not managed by mirrorspec "
                f"(no '{MANAGED}' for project {target.project}): rename or remove it",
                provider="harbor",
                target=target.name,
                operation="plan",
            )
    notes = []
    proxies = [r.id for r in desired.resources if r.kind == PROXY]
    if proxies:
        notes.append(
            Note(
                "info",
                f"proxy-cache project(s) {', '.join(proxies)} fetch on demand; Harbor gives each a "
                "retention policy that deletes artifacts not pulled within 7 days (edit it to keep more)",
            )
        )
    return tuple(notes)
