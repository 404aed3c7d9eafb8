"""The spec's credential syntax ECR adds: a Secrets Manager secret, by ARN, that the registry
reads itself (mirrorspec never reads its value).

- `credentials: {name: {aws-secret-arn: ARN}}` (`CREDENTIAL_FORMS`): a secret holding the whole
  upstream login; a pull-through cache rule names it (`credentialArn`), so its name must start
  with `ecr-pullthroughcache/` (checked when the rule is planned, `native`).
- `{aws-secret-arn: ARN, key: K}` as a `username`/`password` reference (`SECRET_REFERENCES`).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ...spec import CredentialForm, SecretReference

__all__ = ["CREDENTIAL_FORMS", "SECRET_REFERENCES", "AwsSecretRef"]

# arn:<partition>:secretsmanager:<region>:<account>:secret:<name> (the ARN format of the IAM
# user guide's Secrets Manager resource types).
_AWS_SECRET_ARN = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$"
_MEANING = "an AWS Secrets Manager secret ARN"


class AwsSecretRef(SecretReference):
    """An AWS Secrets Manager secret, by ARN; `key` picks a field of a JSON secret."""

    PLACEHOLDER: ClassVar[str] = "ARN"
    PATTERN_MEANINGS: ClassVar[dict[str, str]] = {_AWS_SECRET_ARN: _MEANING}

    aws_secret_arn: str = Field(pattern=_AWS_SECRET_ARN)
    key: str | None = None


SECRET_REFERENCES = {"aws-secret-arn": AwsSecretRef}
CREDENTIAL_FORMS = {"aws-secret-arn": CredentialForm(_AWS_SECRET_ARN, _MEANING)}
