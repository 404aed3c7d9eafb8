"""B3's floor for an ECR, ACR or Harbor target: what a plan of that target cannot avoid.

The registry requests of `bench/floor.py` (the same ones the plan makes: a tag listing and a
HEAD per selected tag at the source, a HEAD per selected tag at the target's registry endpoint,
`concurrency` in flight per registry, credentials sent up front), plus the provider's
management API calls the plan makes (4-6), each made once by a bare client: the provider's own
SDK client where mirrorspec talks to the API through one (boto3 for ECR, azure-mgmt for ACR;
its import and client set-up count, as they do for mirrorspec), a bare `requests.Session` for
Harbor's REST API and ACR's token exchange. The API calls run in a thread beside the source's
requests from the start; the destination's HEADs wait only for the login an API call hands out
(ECR's authorization token, ACR's refresh token). No spec, no validation, no retries.

`provider_floor.py TYPE CONFIG_JSON` (CONFIG: `floor.py`'s, plus `"api"`: what TYPE's calls
need) prints JSON: the registry requests by kind, and for ECR the API calls by operation
(botocore `before-send` events; the ACR and Harbor emulators record their own).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import requests
from floor import registry_requests

Login = tuple[str, str]
calls: Counter[str] = Counter()


def ecr(api: dict[str, Any]) -> Login:
    """The six calls of an ECR plan (`providers/ecr/observed.py`, `api.py`); the destination
    login is GetAuthorizationToken's."""
    import boto3
    from botocore.config import Config

    def count(event_name: str, **_: Any) -> None:
        calls[event_name.split(".", 1)[1]] += 1

    session = boto3.session.Session(
        region_name=api["region"], aws_access_key_id="testing", aws_secret_access_key="testing"
    )

    def client(service: str) -> Any:
        made = session.client(
            service, endpoint_url=api["url"], config=Config(retries={"mode": "standard", "max_attempts": 8})
        )
        made.meta.events.register("before-send", count)
        return made

    registry, secrets = client("ecr"), client("secretsmanager")
    account = api["account"]
    data = registry.get_authorization_token(registryIds=[account])["authorizationData"][0]
    registry.describe_pull_through_cache_rules(registryId=account)
    registry.describe_repository_creation_templates()
    registry.describe_repositories(registryId=account)
    registry.describe_registry()
    secrets.list_secrets(Filters=[{"Key": "name", "Values": [api["secret_prefix"]]}])
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return user, password


class StaticToken:
    """An azure-core TokenCredential handing out the emulator's token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, int(time.time()) + 3600)


def acr(api: dict[str, Any]) -> Login:
    """The five ARM calls of an ACR plan (`providers/acr/observed.py`, `api.py`: the registry is
    read twice, for its state and for its login server) and the token exchange at the login
    server, whose refresh token is the destination login."""
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    client = ContainerRegistryManagementClient(
        StaticToken(api["token"]),
        api["subscription"],
        base_url=api["url"],
        connection_verify=api["ca_file"],
        api_version=api["api_version"],
        retry_total=0,
    )
    group, name = api["resource_group"], api["registry"]
    login_server = client.registries.get(group, name).login_server
    client.registries.get(group, name)
    list(client.cache_rules.list(group, name))
    list(client.credential_sets.list(group, name))
    list(client.replications.list(group, name))
    with requests.Session() as session:
        session.trust_env = False
        answer = session.post(
            f"https://{api['login_host']}/oauth2/exchange",
            data={"grant_type": "access_token", "service": login_server, "access_token": api["token"]},
            verify=api["ca_file"],
        )
        answer.raise_for_status()
    return api["token_user"], str(answer.json()["refresh_token"])


def harbor(api: dict[str, Any]) -> Login:
    """The four list calls of a Harbor plan (`providers/harbor/observed.py`), one page each; the
    destination login is the spec's."""
    login = (api["user"], os.environ[api["password_env"]])
    with requests.Session() as session:
        session.trust_env = False
        session.auth = login
        session.verify = api["ca_file"]
        session.headers["Accept"] = "application/json"
        for path in ("/registries", "/replication/policies", "/projects"):
            got = session.get(f"{api['url']}/api/v2.0{path}", params={"page": 1, "page_size": 100})
            got.raise_for_status()
        session.get(f"{api['url']}/api/v2.0/replication/adapters").raise_for_status()
    return login


APIS: dict[str, Callable[[dict[str, Any]], Login]] = {"ecr": ecr, "acr": acr, "harbor": harbor}


def main() -> None:
    kind, config_json = sys.argv[1:3]
    config: dict[str, Any] = json.loads(config_json)
    login: Future[Login] = Future()

    def management() -> None:
        try:
            login.set_result(APIS[kind](config["api"]))
        except BaseException as exc:  # the destination's requests fail with it
            login.set_exception(exc)

    thread = threading.Thread(target=management)
    thread.start()
    counts = registry_requests(config, login.result)
    thread.join()
    login.result()  # an API call that failed fails the floor, even if no HEAD waited for it
    print(json.dumps({"requests": dict(counts), "api_calls": dict(calls)}))


if __name__ == "__main__":
    main()
