"""ECR's edge: where copies land (an authorization token as login) and boto3 errors mapped to
mirrorspec's provider errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ...context import Endpoint, RunContext
from ...credentials import BasicAuth, register_secret
from ...errors import (
    ProviderAuthError,
    ProviderConflict,
    ProviderError,
    ProviderThrottled,
)
from .clients import aws_client
from .native import _account_region
from .target import EcrTarget

# --- endpoint and errors -----------------------------------------------------------------


__all__ = [
    "endpoint",
]


def endpoint(target: Any, ctx: RunContext) -> Endpoint:
    """The registry with a token from GetAuthorizationToken (user `AWS`), never printed."""
    import base64

    account, region = _account_region(target)
    ecr = aws_client(ctx, "ecr", region, target.profile)
    with _mapped(target, "GetAuthorizationToken"):
        data = ecr.get_authorization_token(registryIds=[account])["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    register_secret(password)
    return ctx.reach(Endpoint(target.registry, BasicAuth(user, password)))


def _register_secret_string(value: str) -> None:
    """A pull-through cache secret is JSON (`username`, `accessToken`): the token may come
    back alone (an older one, rotated away from the spec's), so it is registered on its own
    as well as the whole document."""
    register_secret(value)
    try:
        document = json.loads(value)
    except ValueError:
        return
    if isinstance(document, dict):
        for key, item in document.items():
            if key != "username" and isinstance(item, str):
                register_secret(item)


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


_AUTH_CODES = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "ExpiredTokenException",
    "InvalidSignatureException",
}
_CONFLICT_CODES = {
    "LimitExceededException",
    "PullThroughCacheRuleAlreadyExistsException",
    "TemplateAlreadyExistsException",
    "ResourceExistsException",
    "RepositoryAlreadyExistsException",
}


@contextmanager
def _mapped(target: EcrTarget, operation: str) -> Iterator[None]:
    """Translate botocore's exceptions into ours, with the service's own one-line message."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

    where = {"provider": "ecr", "target": target.name, "operation": operation}
    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        message = f"{operation}: {code}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(": ")
        kind: type[ProviderError] = ProviderError
        if code in _AUTH_CODES:
            kind = ProviderAuthError
        elif code in _CONFLICT_CODES:
            kind = ProviderConflict
        elif code in ("ThrottlingException", "TooManyRequestsException"):
            kind = ProviderThrottled
        raise kind(message, **where) from None
    except (NoCredentialsError, ProfileNotFound) as exc:
        hint = "configure AWS credentials or the target's profile"
        raise ProviderAuthError(f"{operation}: {exc} ({hint})", **where) from None
    except BotoCoreError as exc:
        raise ProviderError(f"{operation}: {exc}", **where) from None
