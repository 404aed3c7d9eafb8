"""B3's provider halves, each in a process of its own so that its wall time and peak RSS are
mirrorspec's alone (the provider's emulator runs in the harness, which counts its requests).

`provider_plan.py TYPE SPEC OVERRIDES_JSON [API_JSON]` plans SPEC with the `RunContext` a test
bed gives it and prints JSON: seconds spent in `engine.plan`, changes and tags planned, and
SDK clients built. TYPE says what API_JSON holds and how the management API is reached:

- `ecr`: `{"url": …}`; every boto3 client points at the ECR contract emulator (one per client
  the provider asks for, kept by RunContext for the run as in production). AWS API calls per
  operation are counted here, from botocore's `before-send` events (real HTTP requests,
  retries included), and printed as `api_calls`.
- `acr`: `{"url": …, "ca_file": …, "token": …}`; the Azure SDK client points at the ARM
  emulator with a static bearer token. The emulator records the calls (`AcrEmulator.calls`).
- `harbor`: no API_JSON; the spec's Harbor URL is reached through OVERRIDES_JSON like any
  registry. The emulator records the calls (`HarborEmulator.requests`).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any

calls: Counter[str] = Counter()
clients = 0


def ecr_factories(api: dict[str, Any]) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    def count(event_name: str, **_: Any) -> None:
        calls[event_name.split(".", 1)[1]] += 1

    def aws_client(ctx: Any, service: str, region: str, profile: str | None) -> Any:
        global clients
        clients += 1
        session = boto3.session.Session(
            region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        client = session.client(
            service,
            endpoint_url=api["url"],
            config=Config(retries={"mode": "standard", "max_attempts": 8}),
        )
        client.meta.events.register("before-send", count)
        return client

    from mirrorspec.providers.ecr.clients import AWS

    return {"client_factories": {AWS: aws_client}}


class StaticToken:
    """An azure-core TokenCredential that always hands out the emulator's token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, int(time.time()) + 3600)


def acr_factories(api: dict[str, Any]) -> dict[str, Any]:
    credential = StaticToken(api["token"])

    def azure_client(ctx: Any, subscription: str, target: Any) -> Any:
        from azure.mgmt.containerregistry import ContainerRegistryManagementClient

        from mirrorspec.providers.acr.clients import ACR_API_VERSION

        global clients
        clients += 1
        return ContainerRegistryManagementClient(
            credential,
            subscription,
            base_url=api["url"],
            connection_verify=api["ca_file"],
            api_version=ACR_API_VERSION,
            retry_total=0,
        )

    from mirrorspec.providers.acr.clients import AZURE_CREDENTIAL, AZURE_MANAGEMENT

    return {
        "client_factories": {
            AZURE_MANAGEMENT: azure_client,
            AZURE_CREDENTIAL: lambda ctx, target: credential,
        }
    }


def harbor_factories(api: dict[str, Any]) -> dict[str, Any]:
    return {}  # the Harbor provider reaches its URL through the registry overrides


FACTORIES = {"ecr": ecr_factories, "acr": acr_factories, "harbor": harbor_factories}


def main() -> None:
    kind, spec_path, overrides_json = sys.argv[1:4]
    api = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    from mirrorspec import engine
    from mirrorspec.context import Endpoint, RunContext
    from mirrorspec.skopeo.schedule import default_workers
    from mirrorspec.spec import load_spec

    overrides = {
        host: Endpoint(value["host"], ca_bundle=value.get("ca_bundle"))
        for host, value in json.loads(overrides_json).items()
    }
    ctx = RunContext(
        load_spec(spec_path),
        workers=default_workers(),
        registry_overrides=overrides,
        **FACTORIES[kind](api),
    )
    try:
        started = time.perf_counter()
        plan = engine.plan(ctx, spec_name=spec_path)
        seconds = time.perf_counter() - started
    finally:
        ctx.close()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "api_calls": dict(calls),
                "clients": clients,
                "changes": sum(len(t.changes) for t in plan.targets),
                "tags": sum(len(c.tags) for t in plan.targets for c in t.copies),
            }
        )
    )


if __name__ == "__main__":
    main()
