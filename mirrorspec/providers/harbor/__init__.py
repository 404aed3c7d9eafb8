"""Harbor (`type: harbor`), one package: the provider contract of `base.Provider`, gathered from
its modules (`native` — translate, cached and what each part of the spec becomes; `observed` —
observe and check; `changes` — apply; `executions` — replication executions and native copies;
`api` — the REST client, endpoint and error mapping).

Example target block (loaded by the provider contract tests):

```yaml
- name: dc1
  type: harbor
  url: https://harbor.internal.example.com   # Harbor's API (/api/v2.0) and registry (/v2/)
  project: vendor                            # every destination lives in this project
  credentials: harbor-admin                  # a sysadmin or a system-level robot account
  schedule: "0 0 */6 * * *"                  # optional: 6-field cron, seconds first and 0
  # insecure: true                           # plain HTTP or unverified TLS, shown in every plan
  # ca-bundle: certs/internal-ca.pem
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import base
from ..lazy_contract import contract_loader
from .target import HarborTarget

if TYPE_CHECKING:
    from .api import endpoint as endpoint
    from .changes import apply as apply
    from .executions import copy as copy
    from .native import (
        ENDPOINT,
        ENGINE,
        FILTERS_COLUMN,
        IN_PLACE as IN_PLACE,
        PERMISSIONS as PERMISSIONS,
        POLICY,
        PROJECT,
        PROXY,
        SUPPORT_KINDS as SUPPORT_KINDS,
        adapter_of,
        cached as cached,
        capabilities as capabilities,
        translate as translate,
    )
    from .observed import check as check, observe as observe
    from .terraform import TERRAFORM_PROVIDERS, render_terraform, terraform_copies

# For run time only: mypy reads the public names instead (see `providers/conformance.py`).
if not TYPE_CHECKING:
    __all__ = [
        *base.CONTRACT,
        "ENDPOINT",
        "ENGINE",
        "FILTERS_COLUMN",
        "POLICY",
        "PROJECT",
        "PROXY",
        "SIGNATURES_NOTE",
        "TERRAFORM_PROVIDERS",
        "adapter_of",
        "render_terraform",
        "terraform_copies",
    ]

Target = HarborTarget

# What the service's own copy feature does with signatures and referrers, per its documentation
# (docs/research-signatures.md has the sources); the plan says it where any are copied.
SIGNATURES_NOTE = (
    "Harbor replication carries cosign signatures with the artifacts it replicates, as "
    "accessories (goharbor.io docs 2.9 'Sign Artifacts with Cosign or Notation'); mirrorspec "
    "copies the signatures and referrers it finds with skopeo all the same and checks their digests"
)

# What a run needs beyond the spec, imported at first use (`lazy_contract`): the names of the
# `TYPE_CHECKING` imports above, which mypy reads instead (it sees no `__getattr__`, so a
# misspelt name stays an error).
if not TYPE_CHECKING:
    __getattr__ = contract_loader(
        __name__,
        {
            "api": ("endpoint",),
            "changes": ("apply",),
            "executions": ("copy",),
            "native": (
                "ENDPOINT",
                "ENGINE",
                "FILTERS_COLUMN",
                "IN_PLACE",
                "PERMISSIONS",
                "POLICY",
                "PROJECT",
                "PROXY",
                "SUPPORT_KINDS",
                "adapter_of",
                "cached",
                "capabilities",
                "translate",
            ),
            "observed": ("check", "observe"),
            "terraform": ("TERRAFORM_PROVIDERS", "render_terraform", "terraform_copies"),
        },
    )
