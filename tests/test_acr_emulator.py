"""The ACR emulator speaks the official contract: the real SDK (azure-mgmt-containerregistry,
api-version 2023-07-01) over HTTPS against `tests/emulators/acr.py`, every request and response
checked against `shared/azure/containerregistry-2023-07-01.json`.

Facts under test come from research/acr.md (limits, documented errors, LRO behaviour).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.mgmt.containerregistry import models
from emulators.acr import API_VERSION, SPEC, TOKEN_USER, AcrEmulator
from emulators.arm_contract import ArmSpec
from testbed import RegistryServer, push_image

SUB = "00000000-0000-0000-0000-000000000000"
GROUP = "registries"
KV = "https://mirror-kv.vault.azure.net/secrets"
EXAMPLES = SPEC.parent / "examples"
PROVIDER = "Microsoft.ContainerRegistry"


@dataclass
class Bed:
    emu: AcrEmulator
    arm: Any  # ContainerRegistryManagementClient
    backend: RegistryServer
    upstream: RegistryServer

    def registry_id(self, name: str = "mycompany") -> str:
        return f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/{PROVIDER}/registries/{name}"


@pytest.fixture
def bed(registry_factory: Callable[..., RegistryServer]) -> Iterator[Bed]:
    upstream = registry_factory(users={"hub-bot": "hub-token-1234"})
    backend = registry_factory(users={TOKEN_USER: AcrEmulator.refresh_token})
    standard = registry_factory(users={TOKEN_USER: AcrEmulator.refresh_token})
    with AcrEmulator(upstreams={"docker.io": upstream}, page_size=3) as emu:
        emu.add_registry(SUB, GROUP, "mycompany", backend=backend)
        emu.add_registry(SUB, GROUP, "smallshop", backend=standard, sku="Standard")
        arm = emu.client(SUB)
        yield Bed(emu, arm, backend, upstream)
        arm.close()


def credential_set(login: str = "docker.io", kind: str = "SystemAssigned") -> models.CredentialSet:
    return models.CredentialSet(
        identity=models.IdentityProperties(type=kind),
        properties=models.CredentialSetProperties(
            login_server=login,
            auth_credentials=[
                models.AuthCredential(
                    name="Credential1",
                    username_secret_identifier=f"{KV}/hub-user",
                    password_secret_identifier=f"{KV}/hub-token",
                )
            ],
        ),
    )


def cache_rule(source: str, target: str, credential_set_id: str | None = None) -> models.CacheRule:
    properties = models.CacheRuleProperties(source_repository=source, target_repository=target)
    if credential_set_id:
        properties.credential_set_resource_id = credential_set_id
    return models.CacheRule(properties=properties)


def test_the_validator_accepts_every_official_example() -> None:
    spec = ArmSpec(SPEC)
    checked = 0
    for example_file in sorted(EXAMPLES.glob("*.json")):
        example = json.loads(example_file.read_text())
        op = next(o for o in spec.operations if _example_of(spec, o, example_file.name))
        params = {k: str(v) for k, v in example["parameters"].items() if k in op.path_params}
        body = next((v for k, v in example["parameters"].items() if op.body and k == op.body["name"]), None)
        assert spec.request_errors(op, params, {"api-version": [API_VERSION]}, body) == [], example_file.name
        for status, response in example["responses"].items():
            errors = spec.response_errors(op, int(status), response.get("body"), response.get("headers", {}))
            assert errors == [], (example_file.name, status)
            checked += 1
    assert checked >= 12


def _example_of(spec: ArmSpec, op: Any, name: str) -> bool:
    raw = spec.main["paths"][op.template][op.method.lower()].get("x-ms-examples", {})
    return any(str(ref.get("$ref", "")).endswith("/" + name) for ref in raw.values())


def test_credential_set_and_cache_rule_lifecycle_over_https_with_lro_polling(bed: Bed) -> None:
    created = bed.arm.credential_sets.begin_create(GROUP, "mycompany", "hub-login", credential_set()).result()
    assert created.identity.principal_id
    assert created.properties.provisioning_state == "Succeeded"
    set_id = f"{bed.registry_id()}/credentialSets/hub-login"
    rule = bed.arm.cache_rules.begin_create(
        GROUP, "mycompany", "vendor-redis", cache_rule("docker.io/library/redis", "vendor/redis", set_id)
    ).result()
    assert rule.properties.provisioning_state == "Succeeded"
    assert rule.properties.credential_set_resource_id == set_id

    operations = bed.emu.operations()
    # PUT 201 + Azure-AsyncOperation → InProgress → Succeeded → final GET of the resource.
    assert operations[:4] == ["CredentialSets_Create", "poll", "poll", "CredentialSets_Get"]
    assert [c.status for c in bed.emu.calls[:4]] == [201, 200, 200, 200]

    bed.arm.cache_rules.begin_delete(GROUP, "mycompany", "vendor-redis").result()
    bed.arm.credential_sets.begin_delete(GROUP, "mycompany", "hub-login").result()
    assert bed.emu.cache_rules("mycompany") == {} == bed.emu.credential_sets("mycompany")
    deletes = [c.status for c in bed.emu.calls if c.method == "DELETE"]
    assert deletes == [202, 202]
    # Deleting what is gone answers 204, the only other status the SDK accepts.
    bed.arm.cache_rules.begin_delete(GROUP, "mycompany", "vendor-redis").result()
    assert bed.emu.calls[-1].status == 204


def test_lists_follow_next_link(bed: Bed) -> None:
    for i in range(7):
        bed.emu.seed_cache_rule("mycompany", f"rule-{i:02d}", f"quay.io/team/app{i}", f"team/app{i}")
    names = [r.name for r in bed.arm.cache_rules.list(GROUP, "mycompany")]
    assert names == [f"rule-{i:02d}" for i in range(7)]
    lists = [c for c in bed.emu.calls if c.operation == "CacheRules_List"]
    assert len(lists) == 3  # page_size 3


def test_a_malformed_request_is_rejected_and_recorded(bed: Bed) -> None:
    # Sent as-is, past the SDK: a name too short, a read-only property and an unknown one.
    url = f"{bed.emu.url}{bed.registry_id()}/cacheRules/abc?api-version={API_VERSION}"
    body = {
        "properties": {"sourceRepository": "quay.io/a/b", "targetRepository": "b", "provisioningState": "x"}
    }
    body["properties"]["colour"] = "blue"
    response = requests.put(
        url,
        json=body,
        headers={"Authorization": f"Bearer {bed.emu.credential.token}"},
        verify=str(bed.emu.ca_file),
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "InvalidRequestContent"
    assert "cacheRuleName 'abc' is shorter than 5" in error["message"]
    assert "provisioningState is read-only" in error["message"]
    assert "colour is not defined by the spec" in error["message"]
    (violation,) = bed.emu.take_violations()
    assert violation.startswith("CacheRules_Create PUT")

    # The SDK's default api-version (2025-11-01) is not what the emulator speaks.
    with pytest.raises(HttpResponseError):
        bed.emu.client(SUB, api_version="2025-11-01").cache_rules.get(GROUP, "mycompany", "abcde")
    (violation,) = bed.emu.take_violations()
    assert "api-version must be 2023-07-01" in violation
    assert bed.emu.cache_rules("mycompany") == {}


def test_documented_cache_rule_conflicts(bed: Bed) -> None:
    arm = bed.arm
    with pytest.raises(HttpResponseError) as caught:
        arm.cache_rules.begin_create(
            GROUP, "mycompany", "hub-redis", cache_rule("docker.io/library/redis", "redis")
        )
    assert "EnforceDockerAuthentication" in str(caught.value)
    with pytest.raises(HttpResponseError) as caught:
        arm.cache_rules.begin_create(GROUP, "mycompany", "harbor", cache_rule("harbor.example.com/a/b", "b"))
    assert "UnsupportedUpstream" in str(caught.value)

    arm.cache_rules.begin_create(
        GROUP, "mycompany", "team-all", cache_rule("quay.io/team/*", "team/*")
    ).result()
    with pytest.raises(ResourceExistsError, match="overlaps the wildcard rule team-all"):
        arm.cache_rules.begin_create(
            GROUP, "mycompany", "team-sub", cache_rule("quay.io/team/x/*", "team/x/*")
        )
    # A static rule may overlap a wildcard one, but not another static rule's target.
    arm.cache_rules.begin_create(
        GROUP, "mycompany", "team-app", cache_rule("quay.io/team/app", "team/app")
    ).result()
    with pytest.raises(ResourceExistsError, match="already targets team/app"):
        arm.cache_rules.begin_create(
            GROUP, "mycompany", "team-app2", cache_rule("quay.io/other/app", "team/app")
        )

    # The target repository must not exist; for a wildcard, no repository it matches.
    push_image(bed.backend, "vendor/redis", "7.2.4", user=TOKEN_USER)
    with pytest.raises(ResourceExistsError, match="repository vendor/redis already exists"):
        arm.cache_rules.begin_create(
            GROUP, "mycompany", "vendor-redis", cache_rule("quay.io/x/redis", "vendor/redis")
        )
    with pytest.raises(ResourceExistsError, match="repository vendor/redis already exists"):
        arm.cache_rules.begin_create(GROUP, "mycompany", "vendor-all", cache_rule("quay.io/x/*", "vendor/*"))

    # Only the credential set can change.
    with pytest.raises(ResourceExistsError, match="only the credential set can change"):
        arm.cache_rules.begin_create(
            GROUP, "mycompany", "team-app", cache_rule("quay.io/team/web", "team/app")
        )
    assert bed.emu.take_violations() == []


def test_the_thousand_and_first_rule_is_refused(bed: Bed) -> None:
    for i in range(1000):
        bed.emu.seed_cache_rule("mycompany", f"rule-{i:04d}", f"quay.io/t/a{i}", f"t/a{i}")
    with pytest.raises(ResourceExistsError, match="at most 1000 cache rules"):
        bed.arm.cache_rules.begin_create(GROUP, "mycompany", "one-more", cache_rule("quay.io/t/b", "t/b"))


def test_credential_sets_take_a_system_identity_only_and_cannot_go_while_used(bed: Bed) -> None:
    with pytest.raises(HttpResponseError, match="UserAssigned"):
        bed.arm.credential_sets.begin_create(
            GROUP, "mycompany", "hub-login", credential_set(kind="UserAssigned")
        )
    bed.arm.credential_sets.begin_create(GROUP, "mycompany", "hub-login", credential_set()).result()
    set_id = f"{bed.registry_id()}/credentialSets/hub-login"
    with pytest.raises(HttpResponseError, match="CredentialSetLoginServerMismatch"):
        bed.arm.cache_rules.begin_create(
            GROUP, "mycompany", "quay-app", cache_rule("quay.io/a/b", "a/b", set_id)
        )
    bed.arm.cache_rules.begin_create(
        GROUP, "mycompany", "hub-redis", cache_rule("docker.io/library/redis", "redis", set_id)
    ).result()
    with pytest.raises(ResourceExistsError, match="used by cache rule hub-redis"):
        bed.arm.credential_sets.begin_delete(GROUP, "mycompany", "hub-login")


def test_import_copies_for_real_and_refuses_existing_tags_and_cached_repositories(bed: Bed) -> None:
    digest = push_image(bed.upstream, "library/redis", "7.2.4")
    parameters = models.ImportImageParameters(
        source=models.ImportSource(
            registry_uri="docker.io",
            source_image=f"library/redis@{digest}",
            credentials=models.ImportSourceCredentials(username="hub-bot", password="hub-token-1234"),
        ),
        target_tags=["vendor/docker.io/library/redis:7.2.4"],
        mode="NoForce",
    )
    bed.arm.registries.begin_import_image(GROUP, "mycompany", parameters).result()
    head = requests.head(
        f"{bed.backend.url}/v2/vendor/docker.io/library/redis/manifests/7.2.4",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        auth=(TOKEN_USER, AcrEmulator.refresh_token),
        timeout=10,
    )
    assert head.headers["Docker-Content-Digest"] == digest

    with pytest.raises(ResourceExistsError, match="already exists"):
        bed.arm.registries.begin_import_image(GROUP, "mycompany", parameters)

    bed.emu.seed_cache_rule("mycompany", "hub-all", "docker.io/library/*", "cached/*")
    parameters.target_tags = ["cached/redis:7.2.4"]
    with pytest.raises(ResourceExistsError, match="CannotImportIntoCacheRuleRepository"):
        bed.arm.registries.begin_import_image(GROUP, "mycompany", parameters)

    # A wrong source password fails the operation while it runs, and is never echoed.
    parameters.target_tags = ["other/redis:7.2.4"]
    parameters.source.credentials = models.ImportSourceCredentials(
        username="hub-bot", password="wrong-pass-987"
    )
    with pytest.raises(HttpResponseError) as caught:
        bed.arm.registries.begin_import_image(GROUP, "mycompany", parameters).result()
    assert "ImportFailed" in str(caught.value) and "wrong-pass-987" not in str(caught.value)


def test_geo_replication_needs_premium_and_keeps_the_home_region(bed: Bed) -> None:
    replication = models.Replication(location="northeurope", tags={"managed-by": "mirrorspec"})
    with pytest.raises(HttpResponseError, match="Premium"):
        bed.arm.replications.begin_create(GROUP, "smallshop", "northeurope", replication)
    bed.arm.replications.begin_create(GROUP, "mycompany", "northeurope", replication).result()
    assert sorted(r.name for r in bed.arm.replications.list(GROUP, "mycompany")) == [
        "northeurope",
        "westeurope",
    ]
    with pytest.raises(HttpResponseError, match="home"):
        bed.arm.replications.begin_delete(GROUP, "mycompany", "westeurope")
    bed.arm.replications.begin_delete(GROUP, "mycompany", "northeurope").result()
    assert list(bed.emu.replications("mycompany")) == ["westeurope"]


def test_login_server_exchanges_our_token_and_serves_the_registry(bed: Bed) -> None:
    host = bed.emu.login_host("mycompany")
    ca = str(bed.emu.ca_file)
    exchange = f"https://{host}/oauth2/exchange"
    bad = requests.post(exchange, data={"grant_type": "access_token", "access_token": "x"}, verify=ca)
    assert bad.status_code == 401
    form = {
        "grant_type": "access_token",
        "service": "mycompany.azurecr.io",
        "access_token": bed.emu.credential.token,
    }
    refresh = requests.post(exchange, data=form, verify=ca).json()["refresh_token"]
    push_image(bed.backend, "team/app", "1.0", user=TOKEN_USER)
    tags = requests.get(f"https://{host}/v2/team/app/tags/list", auth=(TOKEN_USER, refresh), verify=ca)
    assert tags.json()["tags"] == ["1.0"]
