"""ACR's SDK clients: the Azure token credential and the management client, one per target for
the run (`ctx.service_client`), and the environment variables that hold Azure secrets (scrubbed
from every output).
"""

from __future__ import annotations

from typing import Any

from ...context import RunContext
from ...optional_sdk import import_sdk

__all__ = [
    "ACR_API_VERSION",
    "AZURE_CREDENTIAL",
    "AZURE_MANAGEMENT",
    "CLIENT_FACTORIES",
    "SECRET_VARIABLES",
    "azure_client",
    "azure_credential",
]

# The ACR management API version mirrorspec speaks: the official spec at hand
# (shared/azure/containerregistry-2023-07-01.json), which the test emulator validates against.
ACR_API_VERSION = "2023-07-01"

AZURE_CREDENTIAL = "azure-credential"  # (target,) -> azure-core TokenCredential
AZURE_MANAGEMENT = "azure-management"  # (subscription, target) -> ContainerRegistryManagementClient

# The secrets azure-identity's EnvironmentCredential reads (a service principal's secret, a
# certificate's password, a user's password) and the azurerm Terraform provider's client
# secret, which a Terraform run of mirrorspec may carry.
SECRET_VARIABLES = (
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_PASSWORD",
    "ARM_CLIENT_SECRET",
)


def azure_credential(ctx: RunContext, target: Any) -> Any:
    """The run's Azure token credential for an `acr` target."""
    return ctx.service_client(AZURE_CREDENTIAL, target)


def azure_client(ctx: RunContext, subscription: str, target: Any) -> Any:
    """The run's ContainerRegistryManagementClient for `subscription`, speaking `ACR_API_VERSION`
    (its retry policy backs off on throttling and honours Retry-After)."""
    return ctx.service_client(AZURE_MANAGEMENT, subscription, target)


def _build_credential(ctx: RunContext, target: Any) -> Any:
    """`DefaultAzureCredential`, narrowed by the target's tenant / client id."""
    # Only for specs with acr targets (an extra).
    identity = import_sdk("azure.identity", extra="azure", what="the Azure SDK for acr targets")

    tenant = target.tenant_id
    options: dict[str, Any] = {
        "managed_identity_client_id": target.client_id,
        "workload_identity_tenant_id": tenant,
        "interactive_browser_tenant_id": tenant,
        "shared_cache_tenant_id": tenant,
        "visual_studio_code_tenant_id": tenant,
    }
    return identity.DefaultAzureCredential(**{k: v for k, v in options.items() if v is not None})


def _build_client(ctx: RunContext, subscription: str, target: Any) -> Any:
    credential = azure_credential(ctx, target)
    acr_sdk = import_sdk("azure.mgmt.containerregistry", extra="azure", what="the Azure SDK for acr targets")
    return acr_sdk.ContainerRegistryManagementClient(
        credential, subscription, api_version=ACR_API_VERSION, polling_interval=5
    )


CLIENT_FACTORIES = {AZURE_CREDENTIAL: _build_credential, AZURE_MANAGEMENT: _build_client}
