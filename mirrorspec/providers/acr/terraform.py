"""ACR as Terraform (`render terraform`): `azurerm_container_registry_credential_set`,
`azurerm_container_registry_cache_rule`. Geo-replications are left out (azurerm has only the
`georeplications` block of `azurerm_container_registry`, which owns the whole registry), and
imports are copies Terraform has no resource for (`terraform_copies`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...plan import Resource
from ...terraform_document import TerraformDocument, kinds, ref
from .native import CACHE_RULE, CREDENTIAL_SET, REPLICATION

__all__ = ["TERRAFORM_PROVIDERS", "render_terraform", "terraform_copies"]

# The oldest release with every resource and argument written here (4.16.0: the credential set).
TERRAFORM_PROVIDERS = {"azurerm": ("hashicorp/azurerm", ">= 4.16.0")}


def terraform_copies(all_native: bool) -> tuple[str, bool]:
    """How the tags this target stores are copied, and whether `mirrorspec sync` must run."""
    return "imported by ACR (importImage)" + ("" if all_native else " or copied with skopeo"), True


def render_terraform(out: TerraformDocument, resources: Sequence[Resource], target: Any) -> None:
    """ACR's native resources as `azurerm` resources (`render_terraform.render` calls it)."""
    out.require("azurerm", {"features": {}, "subscription_id": target.subscription})
    registry_id = (
        f"/subscriptions/{target.subscription}/resourceGroups/{target.resource_group}"
        f"/providers/Microsoft.ContainerRegistry/registries/{target.registry}"
    )
    sets: dict[str, str] = {}
    for found in kinds(resources, CREDENTIAL_SET):
        vault = str(found.attrs["passwordSecret"]).split("/secrets/", 1)[0]
        sets[found.id] = out.resource(
            "azurerm_container_registry_credential_set",
            found.id,
            {
                "//": f"its system-assigned identity needs Key Vault secret get on {vault} "
                "(role 'Key Vault Secrets User'): see the output credential_set_principal_ids",
                "name": found.id,
                "container_registry_id": registry_id,
                "login_server": found.attrs["loginServer"],
                "identity": {"type": "SystemAssigned"},
                "authentication_credentials": {
                    "username_secret_id": found.attrs["usernameSecret"],
                    "password_secret_id": found.attrs["passwordSecret"],
                },
            },
            of=found,
        )
    if sets:
        out.outputs["credential_set_principal_ids"] = {
            "description": "grant each identity Key Vault secret get on its vault",
            "value": {name: ref(f"{address}.identity[0].principal_id") for name, address in sets.items()},
        }
    for rule in kinds(resources, CACHE_RULE):
        body: dict[str, Any] = {
            "name": rule.id,
            "container_registry_id": registry_id,
            "source_repo": rule.attrs["sourceRepository"],
            "target_repo": rule.attrs["targetRepository"],
        }
        credential_set = str(rule.attrs.get("credentialSet") or "")
        if credential_set in sets:
            body["credential_set_id"] = ref(f"{sets[credential_set]}.id")
        elif credential_set:  # an existing set the spec names (azure-credential-set)
            body["credential_set_id"] = f"{registry_id}/credentialSets/{credential_set}"
        out.resource("azurerm_container_registry_cache_rule", rule.id, body, of=rule)
    for replication in kinds(resources, REPLICATION):
        out.leave_out(
            replication,
            "azurerm has no resource for one geo-replication, only the `georeplications` block of "
            "azurerm_container_registry, which owns the whole registry; add it there, or leave "
            "replicate-to to mirrorspec apply",
        )
