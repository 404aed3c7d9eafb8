"""ECR's SDK clients: boto3, one per service, region and profile for the run (`ctx.service_client`),
and the environment variables that hold AWS credentials (kept away from skopeo).
"""

from __future__ import annotations

from typing import Any

from ...context import RunContext
from ...optional_sdk import import_sdk

__all__ = ["AWS", "CLIENT_FACTORIES", "ENV_PREFIXES", "aws_client"]

AWS = "aws"  # the client kind: (service, region, profile) -> boto3 client

# The AWS SDKs' own variables (credentials, profiles, role ARNs): skopeo needs none of them.
ENV_PREFIXES = ("AWS_",)


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
