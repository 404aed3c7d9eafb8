"""Recording replay: the ACR emulator and the ACR provider answer to real Azure sessions.

The cassettes in `tests/contracts/azure/recordings/` were recorded by the Azure CLI's own tests
against real ACR in 2026 (SOURCE.md there). Their api-versions (2026-01-01-preview,
2026-09-01-preview) are newer than the 2023-07-01 contract we speak, so bodies are mapped: a key
the 2023-07-01 schema does not define is dropped from the recorded side (and listed, so that the
mapping is visible); everything else must match.

- The emulator: every recorded credential-set, cache-rule and replication request is sent to it
  as recorded (api-version aside), in recorded order; its status, LRO headers, the status polls
  and the key paths of every body must be the recording's, and so must the values that carry
  meaning (identity type and its casing, credential health, provisioning states).
- The provider: every request it makes for an operation the recordings also perform must have
  the recorded method and path shape, and its body only keys (with their casing) that the real
  service took or returned for that operation; an operation of ours the recordings never show
  fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from acr_bed import SUB, acr_context
from azure.mgmt.containerregistry import models
from emulators.acr import API_VERSION, SPEC, TOKEN_USER, AcrEmulator
from emulators.arm_contract import ArmSpec
from emulators.recordings import Exchange, key_paths, load, shape, value_at
from plan_helpers import converge, plan_changes
from testbed import RegistryServer, push_image

from mirrorspec.spec import parse_spec

GROUP, REGISTRY = "clitest.rg000001", "clireg000002"  # the names the recordings use
CACHE, IDENTITY, REPLICATION = (
    "test_acr_cache.yaml",
    "test_acr_cache_managed_identity.yaml",
    "test_acr_create_replication.yaml",
)
# Values that carry meaning, compared wherever the recording has them.
VALUES = (
    "type",
    "identity.type",
    "properties.provisioningState",
    "properties.loginServer",
    "properties.authCredentials[].name",
    "properties.authCredentials[].credentialHealth.status",
    "properties.authCredentials[].credentialHealth.errorCode",
    "properties.sourceRepository",
    "properties.targetRepository",
    "properties.status.displayStatus",
    "properties.regionEndpointEnabled",
    "properties.zoneRedundancy",
    "value[].identity.type",
    "value[].properties.authCredentials[].credentialHealth.status",
    "value[].properties.provisioningState",
)
SPEC_2023 = ArmSpec(SPEC)


@pytest.fixture
def emu(registry_factory: Callable[..., RegistryServer]) -> Iterator[AcrEmulator]:
    backend = registry_factory(users={TOKEN_USER: AcrEmulator.refresh_token})
    with AcrEmulator() as emulator:
        emulator.add_registry(SUB, GROUP, REGISTRY, backend=backend, location="westus")
        yield emulator


def _send(emu: AcrEmulator, method: str, url: str, body: Any = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {emu.credential.token}"}
    return requests.request(method, url, json=body, headers=headers, verify=str(emu.ca_file), timeout=30)


def _at(emu: AcrEmulator, exchange: Exchange) -> str:
    return f"{emu.url}{exchange.path}?api-version={API_VERSION}"


def _undefined(exchange: Exchange) -> set[str]:
    """Key paths of the recorded response that the 2023-07-01 schema does not define."""
    found = SPEC_2023.match(exchange.method, exchange.path)
    assert found is not None, f"{exchange.file} #{exchange.index}: not an operation of the 2023-07-01 spec"
    errors = SPEC_2023.response_errors(found[0], exchange.status, exchange.response, exchange.headers)
    out = set()
    for error in errors:
        if error.endswith(" is not defined by the spec"):
            where = error.removesuffix(" is not defined by the spec").removeprefix("body.")
            out.add(_unindex(where))
    return out


def _unindex(path: str) -> str:
    return re.sub(r"\[\d+\]", "[]", path)


def _mapped_keys(exchange: Exchange) -> tuple[set[str], set[str]]:
    """The recorded response's key paths without those 2023-07-01 lacks, and those dropped."""
    dropped = _undefined(exchange)
    keys = {
        k for k in key_paths(exchange.response) if not any(k == d or k.startswith(d + ".") for d in dropped)
    }
    return keys, dropped


def _same_values(recorded: Any, ours: Any, where: str) -> list[str]:
    problems = []
    for path in VALUES:
        want = value_at(recorded, path)
        if want and value_at(ours, path) != want:
            problems.append(f"{where}: {path} is {value_at(ours, path)}, the recording has {want}")
    return problems


def _replay(emu: AcrEmulator, exchanges: list[Exchange]) -> tuple[list[str], set[str], int]:
    """Send every recorded request of ours to the emulator; return the differences, the key
    paths the mapping dropped, and how many exchanges were compared."""
    problems: list[str] = []
    dropped_all: set[str] = set()
    compared = 0
    position = 0
    while position < len(exchanges):
        exchange = exchanges[position]
        position += 1
        if exchange.shape == "registry" or exchange.polls:
            continue  # registries are created by hand here; polls follow their operation below
        where = f"{exchange.file} #{exchange.index} {exchange.method} {exchange.shape}"
        response = _send(emu, exchange.method, _at(emu, exchange), exchange.request)
        compared += 1
        if response.status_code != exchange.status:
            problems.append(f"{where}: answered {response.status_code}, the recording {exchange.status}")
            continue
        ours = response.json() if response.content else None
        if exchange.response is None:
            if ours is not None:
                problems.append(f"{where}: a body, where the recording has none")
        else:
            keys, dropped = _mapped_keys(exchange)
            dropped_all |= dropped
            if key_paths(ours) != keys:
                problems.append(
                    f"{where}: keys differ: ours only {sorted(key_paths(ours) - keys)}, "
                    f"recording only {sorted(keys - key_paths(ours))}"
                )
            problems += _same_values(exchange.response, ours, where)
        header = {201: "azure-asyncoperation", 202: "location"}.get(exchange.status)
        if header is None:
            continue
        if header not in exchange.headers or header not in {k.lower() for k in response.headers}:
            problems.append(f"{where}: {header} header: recording {header in exchange.headers}, ours missing")
            continue
        recorded_polls = []
        while position < len(exchanges) and exchanges[position].polls:
            recorded_polls.append(exchanges[position])
            position += 1
        problems += _follow(emu, response.headers[header], recorded_polls, exchange, where)
    return problems, dropped_all, compared


def _follow(emu: AcrEmulator, url: str, recorded: list[Exchange], started: Exchange, where: str) -> list[str]:
    """Poll the emulator's LRO URL as the SDK would, and compare with the recorded polls."""
    problems: list[str] = []
    assert recorded, f"{where}: the recording has no poll after it"
    final = recorded[-1]
    if final.shape == "operationResults":  # Location: 202 while running, then the final status
        for _ in range(10):
            answer = _send(emu, "GET", url)
            if answer.status_code != 202:
                break
        if (answer.status_code, answer.content) != (final.status, b""):
            problems.append(
                f"{where}: Location poll ended {answer.status_code} {answer.content!r}, "
                f"recording {final.status} with no body"
            )
        return problems
    # Azure-AsyncOperation: 200 with {"status": ...}, running states then Succeeded.
    running = {e.response["status"] for e in recorded[:-1]} | {
        str((started.response or {}).get("properties", {}).get("provisioningState"))
    }
    for _ in range(10):
        answer = _send(emu, "GET", url)
        body = answer.json()
        if answer.status_code != 200 or set(body) != set(final.response):
            problems.append(
                f"{where}: poll answered {answer.status_code} {body}, recording 200 {final.response}"
            )
            break
        if "azure-asyncoperation" not in {k.lower() for k in answer.headers}:
            problems.append(f"{where}: the poll lacks Azure-AsyncOperation, which the recording's has")
        if body["status"] == final.response["status"]:
            break
        if body["status"] not in running:
            problems.append(f"{where}: poll said {body['status']}, the recording only {sorted(running)}")
            break
    else:
        problems.append(f"{where}: the poll never said {final.response['status']}")
    return problems


@pytest.mark.parametrize("name", [CACHE, REPLICATION])
def test_the_emulator_answers_the_recorded_requests_as_real_acr_did(emu: AcrEmulator, name: str) -> None:
    problems, dropped, compared = _replay(emu, load(name))
    assert problems == []
    assert compared >= (15 if name == CACHE else 10)
    # The mapping from the newer api-versions dropped nothing for these operations: every key
    # real ACR sent back is one the 2023-07-01 contract defines.
    assert dropped == set()
    assert emu.violations == [] and emu.internal_errors == []


def test_a_cache_rule_with_a_managed_identity_is_outside_the_2023_07_01_contract(emu: AcrEmulator) -> None:
    """ACR-to-ACR caching: real ACR took an `identity` (UserAssigned) on a cache rule at
    2026-03-01-preview (test_acr_cache_managed_identity.yaml #7). The 2023-07-01 contract, and
    the SDK we pin (azure-mgmt-containerregistry 15.0.0), have no such key."""
    (create,) = [e for e in load(IDENTITY) if e.method == "PUT" and e.shape == "cacheRules/{name}"]
    assert create.api_version == "2026-03-01-preview"
    assert create.request["identity"]["type"] == "UserAssigned" and create.status == 201
    assert create.response["identity"]["type"] == "userAssigned"  # read back in lower camel case, too
    response = _send(emu, "PUT", _at(emu, create), create.request)
    assert response.status_code == 400
    (violation,) = emu.take_violations()
    assert "body.identity is not defined by the spec" in violation
    assert "identity" not in models.CacheRule().__class__.__dict__
    assert "identity" not in models.CacheRuleUpdateParameters().__class__.__dict__


# --- the provider's requests ---------------------------------------------------------------

KV = "https://mycompany-kv.vault.azure.net/secrets"


def _spec(extra: str = "", *, replicate: bool = True, local: str = "") -> Any:
    """Two cached upstreams (docker.io with our credential set), or, with `local`, only an
    insecure local source (copied with skopeo, no native resource at all)."""
    text = (
        "version: 1\nmode: cache\nlayout: scoped\n"
        + (
            "sources:\n"
            "  - registry: docker.io\n    repositories:\n      - {name: library/redis, all-tags: true}\n"
            "  - registry: quay.io\n    repositories:\n"
            "      - {name: prometheus/node-exporter, all-tags: true}\n"
            if not local
            else f"sources:\n  - registry: {local}\n    insecure: true\n    repositories:\n"
            '      - {name: library/redis, tags: ["7.2.4"]}\n'
        )
        + "targets:\n"
        f"  - {{name: azure, type: acr, subscription: {SUB}, resource-group: {GROUP}, registry: {REGISTRY},"
        " prefix: vendor"
        + (", replicate-to: [eastus]" if replicate else "")
        + ",\n     credential-sets: {docker.io: {"
        f"username-secret: {KV}/hub-user, password-secret: {KV}/hub-token{extra}}}}}}}\n"
    )
    return parse_spec(text)


def test_every_request_the_provider_makes_has_a_shape_real_acr_accepted(
    emu: AcrEmulator, registry_factory: Callable[..., RegistryServer]
) -> None:
    upstream = registry_factory()
    push_image(upstream, "library/redis", "7.2.4")
    push_image(upstream, "prometheus/node-exporter", "v1.8.0")
    emu.reset()
    # A rule on a credential set that is not ours: our plan moves it to ours in place (PATCH).
    arm = emu.client(SUB)
    foreign = models.CredentialSet(
        identity=models.IdentityProperties(type="SystemAssigned"),
        properties=models.CredentialSetProperties(
            login_server="docker.io",
            auth_credentials=[
                models.AuthCredential(
                    name="Credential1",
                    username_secret_identifier=f"{KV}/u",
                    password_secret_identifier=f"{KV}/p",
                )
            ],
        ),
    )
    arm.credential_sets.begin_create(GROUP, REGISTRY, "team-hub", foreign).result()
    rule = models.CacheRuleProperties(
        source_repository="docker.io/library/redis",
        target_repository="vendor/docker.io/library/redis",
        credential_set_resource_id=f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/"
        f"Microsoft.ContainerRegistry/registries/{REGISTRY}/credentialSets/team-hub",
    )
    arm.cache_rules.begin_create(
        GROUP, REGISTRY, "vendor-docker-io-library-redis", models.CacheRule(properties=rule)
    ).result()
    arm.close()
    emu.calls.clear()

    def run(spec: Any, **kwargs: Any) -> list[tuple[str, str, str]]:
        ctx = acr_context(emu, spec, upstream)
        try:
            first, second = converge(ctx, **kwargs)
        finally:
            ctx.close()
        assert second.empty, plan_changes(second)
        return plan_changes(first)

    done = run(_spec())
    assert ("update", "cache-rule", "vendor-docker-io-library-redis") in done
    assert ("create", "credential-set", "mirrorspec-vendor-docker-io") in done
    assert ("create", "geo-replication", "eastus") in done
    # A rotated secret: the credential set changes in place (PATCH).
    assert ("update", "credential-set", "mirrorspec-vendor-docker-io") in run(_spec(extra="-2"))
    # Everything pruned: DELETE of rules, the set and the replication.
    gone = run(_spec(extra="-2", replicate=False, local=upstream.host), prune=True)
    assert {(a, r) for a, r, _ in gone} >= {
        ("delete", "cache-rule"),
        ("delete", "credential-set"),
        ("delete", "geo-replication"),
    }

    recorded: dict[tuple[str, str], list[Exchange]] = {}
    for name in (CACHE, REPLICATION):
        for exchange in load(name):
            recorded.setdefault((exchange.method, exchange.shape), []).append(exchange)
    problems = []
    seen = set()
    for call in emu.calls:
        found = shape(call.path)
        if (
            found is None
            or found == "registry"
            or found == "operationResults"
            or found.endswith("{operation}")
        ):
            continue
        key = (call.method, found)
        seen.add(key)
        if key not in recorded:
            problems.append(f"{call.method} {found}: no recording performs it (unverified)")
            continue
        if call.body is None:
            continue
        # Keys of the same resource, whatever the method: real ACR took `tags` in a
        # replication's PATCH (#14) and echoes them on every read.
        allowed = set()
        for (_, other), exchanges in recorded.items():
            if other == found:
                for exchange in exchanges:
                    allowed |= key_paths(exchange.request) | key_paths(exchange.response)
        extra = key_paths(call.body) - allowed
        if extra:
            problems.append(f"{call.method} {found}: keys real ACR never took or gave: {sorted(extra)}")
        for path in ("identity.type", "properties.authCredentials[].name"):
            ours = value_at(call.body, path)
            theirs = [v for e in recorded[key] for v in value_at(e.request, path)]
            if ours and theirs and set(ours) - set(theirs):
                problems.append(f"{call.method} {found}: {path} {ours}, the recording sent {theirs}")
    assert problems == []
    assert seen >= {
        ("PUT", "credentialSets/{name}"),
        ("PATCH", "credentialSets/{name}"),
        ("DELETE", "credentialSets/{name}"),
        ("GET", "credentialSets"),
        ("PUT", "cacheRules/{name}"),
        ("PATCH", "cacheRules/{name}"),
        ("DELETE", "cacheRules/{name}"),
        ("GET", "cacheRules"),
        ("PUT", "replications/{name}"),
        ("DELETE", "replications/{name}"),
        ("GET", "replications"),
    }
