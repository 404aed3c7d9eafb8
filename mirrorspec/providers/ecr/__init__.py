"""Amazon ECR (`type: ecr`), one package: the provider contract of `base.Provider`, gathered from
its modules (what each holds: `native` — translate, cached, check and the facts that shaped
them; `observed` — observe; `changes` — apply; `api` — endpoint and error mapping).

Example target block (loaded by the provider contract tests):

```yaml
- name: aws-prod
  type: ecr
  registry: 123456789012.dkr.ecr.eu-west-1.amazonaws.com
  prefix: vendor
  # profile: prod                       # boto3 profile; default credential chain otherwise
  replicate-to:
    - region: us-east-1
    - {region: eu-central-1, account: "210987654321", profile: dr-account}
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import base
from ..lazy_contract import contract_loader
from .credentials import CREDENTIAL_FORMS, SECRET_REFERENCES
from .target import EcrTarget

if TYPE_CHECKING:
    from .api import endpoint as endpoint
    from .changes import apply as apply
    from .clients import CLIENT_FACTORIES, SECRET_VARIABLES
    from .native import (
        IN_PLACE as IN_PLACE,
        MANAGED,
        PERMISSIONS as PERMISSIONS,
        REPLICATION,
        REPOSITORY,
        RULE,
        SECRET,
        STATEMENT,
        SUPPORT_KINDS as SUPPORT_KINDS,
        TEMPLATE,
        cached as cached,
        capabilities as capabilities,
        check as check,
        copy as copy,
        retire,
        translate as translate,
        upstream_of,
    )
    from .observed import observe as observe, secret_credentials
    from .terraform import TERRAFORM_PROVIDERS, render_terraform

# For run time only: mypy reads the public names instead (see `providers/conformance.py`).
if not TYPE_CHECKING:
    __all__ = [
        *base.CONTRACT,
        "CLIENT_FACTORIES",
        "CREDENTIAL_FORMS",
        "MANAGED",
        "QUIET_LOGGERS",
        "REPLICATION",
        "REPOSITORY",
        "RULE",
        "SECRET",
        "SECRET_REFERENCES",
        "SECRET_VARIABLES",
        "SIGNATURES_NOTE",
        "STATEMENT",
        "TEMPLATE",
        "TERRAFORM_PROVIDERS",
        "render_terraform",
        "retire",
        "secret_credentials",
        "upstream_of",
    ]

Target = EcrTarget

# What the service's own copy feature does with signatures and referrers, per its documentation
# (docs/research-signatures.md has the sources); the plan says it where any are copied.
SIGNATURES_NOTE = (
    "ECR stores OCI 1.1 referrers (AmazonECR user guide 'Private images') but imports nothing "
    "from other registries, and its replication copies only ECR-to-ECR; mirrorspec copies them "
    "with skopeo"
)

# SDK loggers the CLI keeps at WARNING even at -vv: botocore's DEBUG lines carry request bodies
# (a secret's value, JSON-escaped), which redaction cannot be relied on to recognise.
QUIET_LOGGERS = ("botocore", "boto3", "s3transfer")

# What a run needs beyond the spec, imported at first use (`lazy_contract`): the names of the
# `TYPE_CHECKING` imports above, which mypy reads instead (it sees no `__getattr__`, so a
# misspelt name stays an error).
if not TYPE_CHECKING:
    __getattr__ = contract_loader(
        __name__,
        {
            "api": ("endpoint",),
            "changes": ("apply",),
            "clients": ("CLIENT_FACTORIES", "SECRET_VARIABLES"),
            "native": (
                "IN_PLACE",
                "MANAGED",
                "PERMISSIONS",
                "REPLICATION",
                "REPOSITORY",
                "RULE",
                "SECRET",
                "STATEMENT",
                "SUPPORT_KINDS",
                "TEMPLATE",
                "cached",
                "capabilities",
                "check",
                "copy",
                "retire",
                "translate",
                "upstream_of",
            ),
            "observed": ("observe", "secret_credentials"),
            "terraform": ("TERRAFORM_PROVIDERS", "render_terraform"),
        },
    )
