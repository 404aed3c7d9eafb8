"""The `type: acr` block of a spec: its pydantic model and what its patterns mean in an error."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from ...spec import Host, Prefix, SpecModel, TargetBase
from ...spec.model import OneErrorPerMapping

__all__ = ["AcrCredentialSet", "AcrTarget"]

_UUID = r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$"
_AZURE_REGION = r"^[a-z0-9]{5,50}$"
_KEY_VAULT_SECRET = r"^https://[A-Za-z0-9-]+\.vault\.azure\.net/secrets/[A-Za-z0-9-]+/?$"


class AcrCredentialSet(SpecModel):
    """Where an ACR credential set reads an upstream's login: two versionless Key Vault
    secret URIs (ACR reads them itself, with the credential set's system identity)."""

    username_secret: str = Field(pattern=_KEY_VAULT_SECRET)
    password_secret: str = Field(pattern=_KEY_VAULT_SECRET)


class AcrTarget(TargetBase):
    """Azure Container Registry."""

    type: Literal["acr"]
    subscription: str = Field(pattern=_UUID)
    resource_group: str = Field(min_length=1, max_length=90)
    registry: str = Field(pattern=r"^[a-zA-Z0-9]{5,50}$")
    prefix: Prefix | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    # Geo-replications; each is named after its region, so the name rules apply (Premium only).
    replicate_to: list[Annotated[str, Field(pattern=_AZURE_REGION)]] = Field(
        default_factory=list, fail_fast=True
    )
    # Upstream host -> Key Vault secrets for the cache rules' credential set (cache mode).
    credential_sets: Annotated[dict[Host, AcrCredentialSet], OneErrorPerMapping] = Field(default_factory=dict)

    PATTERN_MEANINGS: ClassVar[dict[str, str]] = {
        _UUID: "a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
        _AZURE_REGION: "an Azure region name such as westeurope (lower-case letters and digits, 5-50)",
        _KEY_VAULT_SECRET: "a versionless Key Vault secret URI (https://<vault>.vault.azure.net/secrets/<name>)",
    }
