"""The spec's credential syntax ACR adds: logins the registry reads itself, through a credential
set (mirrorspec never reads their values).

- `credentials: {name: {azure-credential-set: NAME}}` (`CREDENTIAL_FORMS`): an existing
  credential set in the target registry, used as is by the cache rules.
- `{azure-key-vault-secret: URI}` as a `username`/`password` reference (`SECRET_REFERENCES`):
  with both parts in Key Vault, mirrorspec creates a credential set naming them (`native`).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ...spec import CredentialForm, SecretReference

__all__ = ["CREDENTIAL_FORMS", "SECRET_REFERENCES", "AzureKeyVaultRef"]

# Alphanumerics and single dashes, not at either end, 5-50 characters: ARM's 2023-07-01
# `CredentialSetNameParameter` (`^[a-zA-Z0-9-]*$`, minLength 5, maxLength 50), with the dashes
# held stricter. No set outside these bounds can exist, so a name outside them is a typo.
_CREDENTIAL_SET = r"^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$"


class AzureKeyVaultRef(SecretReference):
    """An Azure Key Vault secret, by URI."""

    PLACEHOLDER: ClassVar[str] = "URI"

    azure_key_vault_secret: str = Field(pattern=r"^https://[A-Za-z0-9-]+\.vault\.azure\.net/secrets/.+$")


SECRET_REFERENCES = {"azure-key-vault-secret": AzureKeyVaultRef}
CREDENTIAL_FORMS = {
    "azure-credential-set": CredentialForm(
        _CREDENTIAL_SET, "letters, digits and single dashes", min_length=5, max_length=50
    )
}
