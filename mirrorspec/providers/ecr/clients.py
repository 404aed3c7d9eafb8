"""ECR's SDK clients: boto3, one per service, region and profile for the run (`ctx.service_client`),
and the environment variables that hold AWS secrets (scrubbed from every output).
"""

from __future__ import annotations

from typing import Any

from ...context import RunContext
from ...optional_sdk import import_sdk

__all__ = ["AWS", "CLIENT_FACTORIES", "SECRET_VARIABLES", "aws_client"]

AWS = "aws"  # the client kind: (service, region, profile) -> boto3 client

# The secret half of the credentials botocore's EnvProvider reads: the access key's secret and
# a temporary session's token (AWS_SECURITY_TOKEN is the older name botocore still accepts).
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def aws_client(ctx: RunContext, service: str, region: str, profile: str | None = None) -> Any:
    """The run's boto3 client for `service` in `region` under `profile`."""
    return ctx.service_client(AWS, service, region, profile)


def _build_aws_client(ctx: RunContext, service: str, region: str, profile: str | None) -> Any:
    """A boto3 client in standard retry mode (throttling is retried with backoff)."""
    # Imported here so that specs without ECR targets never need it (an extra).
    boto3 = import_sdk("boto3", extra="aws", what="the AWS SDK for ecr targets")
    botocore_config = import_sdk("botocore.config", extra="aws", what="the AWS SDK")

    # Sessions are not thread-safe, clients are: one session per client, built here.
    session = boto3.Session(profile_name=profile, region_name=region)
    config = botocore_config.Config(retries={"mode": "standard", "max_attempts": 8})
    return session.client(service, config=config)


CLIENT_FACTORIES = {AWS: _build_aws_client}
