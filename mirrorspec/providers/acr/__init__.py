"""Azure Container Registry (`type: acr`), one package: the provider contract of `base.Provider`,
gathered from its modules (`native` — translate, cached and the facts that shaped them;
`observed` — observe; `checks` — plan-time limits; `changes` — apply and imports; `api` — endpoint and
error mapping).

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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import base
from ..lazy_contract import contract_loader
from .credentials import CREDENTIAL_FORMS, SECRET_REFERENCES
from .target import AcrTarget

if TYPE_CHECKING:
    from .api import endpoint as endpoint
    from .changes import apply as apply, copy as copy
    from .checks import check as check
    from .clients import CLIENT_FACTORIES, SECRET_VARIABLES
    from .native import (
        CACHE_RULE,
        CREDENTIAL_SET,
        ENGINE,
        IN_PLACE as IN_PLACE,
        MAX_CACHE_RULES,
        PERMISSIONS as PERMISSIONS,
        REPLICATION,
        SUPPORT_KINDS as SUPPORT_KINDS,
        AcrDesired,
        AcrObserved,
        cached as cached,
        capabilities as capabilities,
        resource_name,
        translate as translate,
        upstream_of,
    )
    from .observed import observe as observe, replace_when
    from .terraform import TERRAFORM_PROVIDERS, render_terraform, terraform_copies

# For run time only: mypy reads the public names instead (see `providers/conformance.py`).
if not TYPE_CHECKING:
    __all__ = [
        *base.CONTRACT,
        "CACHE_RULE",
        "CLIENT_FACTORIES",
        "CREDENTIAL_FORMS",
        "CREDENTIAL_SET",
        "ENGINE",
        "MAX_CACHE_RULES",
        "QUIET_LOGGERS",
        "REPLICATION",
        "SECRET_REFERENCES",
        "SECRET_VARIABLES",
        "SIGNATURES_NOTE",
        "TERRAFORM_PROVIDERS",
        "AcrDesired",
        "AcrObserved",
        "render_terraform",
        "replace_when",
        "resource_name",
        "terraform_copies",
        "upstream_of",
    ]

Target = AcrTarget

# What the service's own copy feature does with signatures and referrers, per its documentation
# (docs/research-signatures.md has the sources); the plan says it where any are copied.
SIGNATURES_NOTE = (
    "ACR import is not documented to bring signatures or referrers along (only cache rules "
    "serve the referrers API from the upstream, Azure/acr#891); mirrorspec copies them with skopeo"
)

# SDK loggers the CLI keeps at WARNING even at -vv: the Azure SDK's DEBUG lines dump requests
# and responses, which redaction cannot be relied on to recognise.
QUIET_LOGGERS = ("azure",)

# What a run needs beyond the spec, imported at first use (`lazy_contract`): the names of the
# `TYPE_CHECKING` imports above, which mypy reads instead (it sees no `__getattr__`, so a
# misspelt name stays an error).
if not TYPE_CHECKING:
    __getattr__ = contract_loader(
        __name__,
        {
            "api": ("endpoint",),
            "changes": ("apply", "copy"),
            "checks": ("check",),
            "clients": ("CLIENT_FACTORIES", "SECRET_VARIABLES"),
            "native": (
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
                "cached",
                "capabilities",
                "resource_name",
                "translate",
                "upstream_of",
            ),
            "observed": ("observe", "replace_when"),
            "terraform": ("TERRAFORM_PROVIDERS", "render_terraform", "terraform_copies"),
        },
    )
