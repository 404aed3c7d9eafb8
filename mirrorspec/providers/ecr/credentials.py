"""The spec's credential syntax ECR adds: a Secrets Manager secret, by ARN, that the registry
reads itself (mirrorspec never reads its value).

- `credentials: {name: {aws-secret-arn: ARN}}` (`CREDENTIAL_FORMS`): a secret holding the whole
  upstream login; a pull-through cache rule names it (`credentialArn`), so its name must start
  with `ecr-pullthroughcache/` (checked when the rule is planned, `native`).

No `username`/`password` reference kind (`SECRET_REFERENCES` is empty): a pull-through cache rule
takes a whole login as one secret, and nothing else in ECR reads one field of a secret, so a
per-field `{aws-secret-arn: ARN, key: K}` would be accepted by `validate` and then refused by
every plan. `{env: VAR}` / `{file: path}` logins are written to Secrets Manager by the provider.
"""

from __future__ import annotations

from ...spec import CredentialForm, SecretReference

__all__ = ["CREDENTIAL_FORMS", "SECRET_REFERENCES"]

# arn:<partition>:secretsmanager:<region>:<account>:secret:<name> (the ARN format of the IAM
# user guide's Secrets Manager resource types).
_AWS_SECRET_ARN = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$"
_MEANING = "an AWS Secrets Manager secret ARN"


SECRET_REFERENCES: dict[str, type[SecretReference]] = {}
CREDENTIAL_FORMS = {"aws-secret-arn": CredentialForm(_AWS_SECRET_ARN, _MEANING)}
