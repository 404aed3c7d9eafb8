"""Harbor as Terraform (`render terraform`): `harbor_registry`, `harbor_project` (the target
project, proxy-cache projects), `harbor_replication` (whose executions copy the tags).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...plan import Note, Resource
from ...terraform_document import TerraformDocument, kinds, literal, ref
from .native import ENDPOINT, POLICY, PROJECT, PROXY, adapter_of

__all__ = ["TERRAFORM_PROVIDERS", "render_terraform", "terraform_copies"]

# The oldest release with every resource and argument written here (3.11: `single_active_replication`).
TERRAFORM_PROVIDERS = {"harbor": ("goharbor/harbor", ">= 3.11.0")}


def terraform_copies(all_native: bool) -> tuple[str, bool]:
    """How the tags this target stores are copied, and whether `mirrorspec sync` must run."""
    if all_native:
        return (
            "copied by the replication policies' executions (execute_on_changed starts one when "
            "Terraform creates or changes a policy); check them with `mirrorspec audit --content`",
            False,
        )
    return "copied by the replication policies' executions or with skopeo", True


# Harbor adapter type → the terraform-provider-harbor `provider_name` it reads back as
# (client/registry.go GetRegistryType), so that a refresh shows no difference.
_HARBOR_PROVIDER_NAMES = {
    "docker-hub": "docker-hub",
    "docker-registry": "docker-registry",
    "github-ghcr": "github",
    "azure-acr": "azure",
    "aws-ecr": "aws",
    "google-gcr": "google",
    "harbor": "harbor",
    "quay": "quay",
    "gitlab": "gitlab",
    "jfrog-artifactory": "jfrog",
    "ali-acr": "alibaba",
}


def render_terraform(out: TerraformDocument, resources: Sequence[Resource], target: Any) -> None:
    """Harbor's native resources as `goharbor/harbor` resources (`render_terraform.render` calls it)."""
    config: dict[str, Any] = {"url": target.url.rstrip("/"), "insecure": target.insecure}
    if target.credentials:
        username, password = out.login(target.credentials)
        config.update(username=ref(username), password=ref(password))
    out.require("harbor", config)
    if target.ca_bundle:
        out.notes.append(
            Note(
                "info",
                f"the harbor provider has no CA setting: trust {target.ca_bundle} system-wide (or through "
                "SSL_CERT_FILE) for Terraform to reach Harbor",
            )
        )

    logins = {adapter_of(s.registry)[1]: s for s in out.ctx.spec.sources}
    endpoints: dict[str, str] = {}
    for endpoint in kinds(resources, ENDPOINT):
        attrs = endpoint.attrs
        body: dict[str, Any] = {
            "provider_name": _HARBOR_PROVIDER_NAMES.get(attrs["type"], attrs["type"]),
            "name": endpoint.id,
            "endpoint_url": attrs["url"],
            "description": attrs["description"],
            "insecure": attrs["insecure"],
        }
        source = logins.get(attrs["url"])
        if source is not None and source.credentials and attrs["secret"] != "none":
            username, password = out.login(source.credentials)
            body.update(access_id=ref(username), access_secret=ref(password))
        if source is not None and source.ca_bundle:
            path = (out.ctx.spec.base_dir / source.ca_bundle).resolve()
            body["ca_certificate"] = ref(f"file({json.dumps(literal(str(path)))})")
            out.notes.append(
                Note("info", f"{endpoint.id}: ca_certificate needs Harbor 2.15 and a provider that has it")
            )
        endpoints[endpoint.id] = out.resource("harbor_registry", endpoint.id, body, of=endpoint)
    for project in kinds(resources, PROJECT):
        out.resource(
            "harbor_project",
            project.id,
            {"name": project.id, "vulnerability_scanning": False},  # as apply creates it
            of=project,
        )
    for proxy in kinds(resources, PROXY):
        out.resource(
            "harbor_project",
            proxy.id,
            {
                "name": proxy.id,
                "registry_id": ref(f"{endpoints[proxy.attrs['registry']]}.registry_id"),
                "vulnerability_scanning": False,
            },
            of=proxy,
        )
    for policy in kinds(resources, POLICY):
        attrs = policy.attrs
        trigger = attrs["trigger"]
        filters = []
        for item in attrs["filters"]:
            block = {str(item["type"]): item["value"]}
            if item.get("decoration"):
                block["decoration"] = item["decoration"]
            filters.append(block)
        out.resource(
            "harbor_replication",
            policy.id,
            {
                "name": policy.id,
                "action": "pull",
                "registry_id": ref(f"{endpoints[attrs['src_registry']]}.registry_id"),
                "description": attrs["description"],
                "schedule": trigger["cron"] if trigger["type"] == "scheduled" else "manual",
                "dest_namespace": attrs["dest_namespace"],
                "dest_namespace_replace": attrs["dest_namespace_replace_count"],
                "filters": filters,  # one block per filter: a shared block keeps only one
                "enabled": attrs["enabled"],
                "override": attrs["override"],
                "deletion": attrs["deletion"],
                "speed": attrs["speed"],
                "copy_by_chunk": attrs["copy_by_chunk"],
                "single_active_replication": attrs["single_active_replication"],
                "execute_on_changed": True,  # apply runs an execution of every changed policy too
            },
            of=policy,
        )
