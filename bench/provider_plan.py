"""B3's ECR half, in a process of its own so that its wall time and peak RSS are mirrorspec's
alone (the ECR contract emulator and moto run in the harness).

`ecr_plan.py EMULATOR_URL SPEC OVERRIDES_JSON` plans SPEC with every boto3 client pointed at
the emulator (one new client per `ctx.aws_client` call, as RunContext does in production) and
prints JSON: seconds spent in `engine.plan`, AWS API calls per operation (counted from
botocore's `before-send` events, i.e. real HTTP requests, retries included), clients built,
changes and tags planned.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any


def main() -> None:
    url, spec_path, overrides_json = sys.argv[1:4]
    import boto3
    from botocore.config import Config

    from mirrorspec import engine
    from mirrorspec.context import Endpoint, RunContext
    from mirrorspec.copy import default_workers
    from mirrorspec.spec import load_spec

    calls: Counter[str] = Counter()
    clients = 0

    def count(event_name: str, **_: Any) -> None:
        calls[event_name.split(".", 1)[1]] += 1

    def aws_client(service: str, region: str, profile: str | None) -> Any:
        nonlocal clients
        clients += 1
        session = boto3.session.Session(
            region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        client = session.client(
            service,
            endpoint_url=url,
            config=Config(retries={"mode": "standard", "max_attempts": 8}),
        )
        client.meta.events.register("before-send", count)
        return client

    overrides = {
        host: Endpoint(value["host"], ca_bundle=value.get("ca_bundle"))
        for host, value in json.loads(overrides_json).items()
    }
    ctx = RunContext(
        load_spec(spec_path),
        workers=default_workers(),
        aws_client_factory=aws_client,
        registry_overrides=overrides,
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
