"""ACR's edge: the registry login (our Azure token exchanged for a refresh token, as `az acr login`
does) and Azure SDK errors mapped to mirrorspec's provider errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ...context import Endpoint, RunContext
from ...credentials import BasicAuth, redact, register_secret
from ...errors import (
    MirrorspecError,
    ProviderAuthError,
    ProviderConflict,
    ProviderError,
)
from ...redaction import clip
from ...tls_failures import explain_tls_failure
from ..api_errors import error_for_status, request_reason
from .clients import azure_client, azure_credential
from .target import AcrTarget

__all__ = [
    "ARM_SCOPE",
    "EXCHANGE_BACKOFF",
    "TOKEN_USER",
    "endpoint",
]

ARM_SCOPE = "https://management.azure.com/.default"
EXCHANGE_BACKOFF = 0.5  # seconds before the token exchange's second retry; doubles after
TOKEN_USER = "00000000-0000-0000-0000-000000000000"

# --- endpoint and errors -----------------------------------------------------------------


def endpoint(target: Any, ctx: RunContext) -> Endpoint:
    """The login server, with a refresh token exchanged for our Azure token (never printed)."""
    import requests

    client = azure_client(ctx, target.subscription, target)
    with _mapped(target, "get registry"):
        registry = client.registries.get(target.resource_group, target.registry)
        token = azure_credential(ctx, target).get_token(ARM_SCOPE).token
    register_secret(token)
    login_server = str(registry.login_server or f"{target.registry.lower()}.azurecr.io")
    reached = ctx.reach(Endpoint(login_server))
    data = {"grant_type": "access_token", "service": login_server, "access_token": token}
    if target.tenant_id:
        data["tenant"] = target.tenant_id
    url = f"https://{reached.host}/oauth2/exchange"
    # The exchange only mints a token, so repeating it is safe: retried like a GET, or one
    # reset connection or 503 from the login server fails the whole plan. The run's transport
    # bounds it (`--timeout`: deadline, counted retries, the host's budget).
    adapter = ctx.transport.adapter(retries=5, backoff=EXCHANGE_BACKOFF, methods=frozenset({"POST"}))
    try:
        with requests.Session() as session:
            session.trust_env = False  # like RegistryClient: verify= must not be overridden
            session.mount("https://", adapter)
            response = session.post(
                url, data=data, verify=False if reached.insecure else (reached.ca_bundle or True)
            )
    except requests.RequestException as exc:
        # A TLS failure keeps its real reason, and never suggests `insecure`.
        reason = (
            explain_tls_failure(str(exc), reached.host)
            if isinstance(exc, requests.exceptions.SSLError)
            else None
        )
        raise ProviderError(
            redact(f"token exchange at {login_server}: {reason or request_reason(exc)}"),
            provider="acr",
            target=target.name,
            operation="oauth2/exchange",
        ) from None
    try:
        refresh = response.json().get("refresh_token") if response.status_code == 200 else None
    except ValueError:  # not JSON: not a login server
        refresh = None
    if not refresh:
        unavailable = response.status_code == 429 or response.status_code >= 500  # after the retries
        kind = ProviderError if unavailable else ProviderAuthError
        hint = (
            "the login server kept failing; retry later"
            if unavailable
            else "does the identity have a role on the registry, e.g. AcrPush?"
        )
        raise kind(
            redact(
                f"token exchange at {login_server} answered {response.status_code}: "
                f"{clip(response.text, 200)} ({hint})"
            ),
            provider="acr",
            target=target.name,
            operation="oauth2/exchange",
        )
    register_secret(refresh)
    return ctx.reach(Endpoint(login_server, BasicAuth(TOKEN_USER, refresh)))


@contextmanager
def _mapped(target: AcrTarget, operation: str) -> Iterator[None]:
    """Translate azure-core's exceptions into ours, with ARM's one-line code and message."""
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ServiceRequestError,
        ServiceResponseError,
    )

    where = {"provider": "acr", "target": target.name, "operation": operation}
    try:
        yield
    except MirrorspecError:
        raise
    except ClientAuthenticationError as exc:
        hint = "sign in with `az login`, or set tenant-id/client-id"
        raise ProviderAuthError(redact(f"{operation}: {_message(exc)} ({hint})"), **where) from None
    except HttpResponseError as exc:
        kind = ProviderConflict if isinstance(exc, ResourceExistsError) else error_for_status(exc.status_code)
        raise kind(redact(f"{operation}: {_message(exc)}"), **where) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise ProviderError(redact(f"{operation}: cannot reach Azure: {exc.message}"), **where) from None
    except AzureError as exc:
        raise ProviderError(redact(f"{operation}: {exc.message}"), **where) from None


def _message(exc: Any) -> str:
    """`Code: message` from an ARM error body, else the SDK's first line."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    if code or message:
        return f"{code or 'Error'}: {message or ''}".rstrip(": ")
    status = getattr(exc, "status_code", None)
    text = str(getattr(exc, "message", None) or exc).splitlines()[0]
    return f"{status} {text}" if status else text
