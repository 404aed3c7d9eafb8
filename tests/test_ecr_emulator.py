"""The ECR emulator speaks the real contract: real boto3 clients, real botocore model, real moto.

Facts under test come from research/ecr.md (limits, documented errors, what moto 5 lacks) and
research/testbed.md §6 (moto server mode).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.model import ShapeResolver, StructureShape
from emulators import EMULATED_OPERATIONS, EcrEmulator, EmulatorBug, uncompilable_patterns, validate
from emulators.botocore_contract import compile_pattern, validate_request, validate_response

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
REGION = "eu-west-1"
ECR_MODEL = botocore.session.get_session().get_service_model("ecr")
SECRET_ARN_BASE = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret"
CREDS = json.dumps({"username": "mirror-bot", "accessToken": "s3cr3t"})

Client = Any


@pytest.fixture(scope="module")
def emulator() -> Iterator[EcrEmulator]:
    with EcrEmulator() as emu:
        yield emu


@pytest.fixture
def emu(emulator: EcrEmulator) -> Iterator[EcrEmulator]:
    emulator.reset()
    yield emulator
    emulator.check()


@pytest.fixture
def ecr(emu: EcrEmulator) -> Client:
    return emu.client("ecr", REGION)


@pytest.fixture
def secret(emu: EcrEmulator) -> Callable[..., str]:
    """``secret(name, region=REGION, value=CREDS)`` creates it in moto and returns its ARN."""
    clients: dict[str, Client] = {}

    def make(name: str = "ecr-pullthroughcache/hub", region: str = REGION, value: str = CREDS) -> str:
        if region not in clients:
            clients[region] = emu.client("secretsmanager", region)
        arn: str = clients[region].create_secret(Name=name, SecretString=value)["ARN"]
        return arn

    return make


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    code: str = excinfo.value.response["Error"]["Code"]
    return code


# ------------------------------------------------------------ validate()


def ptc_request() -> StructureShape:
    shape = ECR_MODEL.operation_model("CreatePullThroughCacheRule").input_shape
    assert shape is not None
    return shape


def replication_request() -> StructureShape:
    shape = ECR_MODEL.operation_model("PutReplicationConfiguration").input_shape
    assert shape is not None
    return shape


def one_rule(**extra: Any) -> dict[str, Any]:
    return {"destinations": [{"region": "us-west-2", "registryId": ACCOUNT}], **extra}


def test_validate_accepts_a_conforming_value() -> None:
    assert validate(ptc_request(), {"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": "quay.io"}) == []
    body = {
        "replicationConfiguration": {
            "rules": [
                one_rule(
                    repositoryFilters=[{"filter": "mirror/", "filterType": "PREFIX_MATCH"}],
                    deleteReplication={"enabled": True},
                )
            ]
        }
    }
    assert validate(replication_request(), body) == []
    assert validate_request(ECR_MODEL, "DescribeRegistry", {}) == []
    assert validate_response(ECR_MODEL, "DescribeRegistry", {"registryId": ACCOUNT, **body}) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {"upstreamRegistryUrl": "quay.io"},
            "at 'ecrRepositoryPrefix' failed to satisfy constraint: Member must not be null",
            id="missing-required",
        ),
        pytest.param(
            {"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": "quay.io", "bogus": 1},
            "Member 'bogus' is not defined",
            id="unknown-member",
        ),
        pytest.param(
            {"ecrRepositoryPrefix": "a" * 31, "upstreamRegistryUrl": "quay.io"},
            "Member must have length less than or equal to 30",
            id="too-long",
        ),
        pytest.param(
            {"ecrRepositoryPrefix": "a", "upstreamRegistryUrl": "quay.io"},
            "Member must have length greater than or equal to 2",
            id="too-short",
        ),
        pytest.param(
            {"ecrRepositoryPrefix": "Hub-", "upstreamRegistryUrl": "quay.io"},
            "Member must satisfy regular expression pattern",
            id="bad-pattern",
        ),
        pytest.param(
            {"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": "quay.io", "registryId": "12345"},
            "at 'registryId' failed to satisfy constraint: Member must satisfy regular expression",
            id="unanchored-pattern-is-full-match",
        ),
        pytest.param(
            {"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": "x", "upstreamRegistry": "harbor"},
            "Member must satisfy enum value set",
            id="bad-enum",
        ),
        pytest.param(
            {"ecrRepositoryPrefix": 42, "upstreamRegistryUrl": "quay.io"},
            "Member must be a string, not number",
            id="wrong-type",
        ),
    ],
)
def test_validate_catches_each_violation(body: dict[str, Any], expected: str) -> None:
    errors = validate(ptc_request(), body)
    assert len(errors) == 1, errors
    assert expected in errors[0]


def test_validate_catches_list_integer_boolean_and_timestamp_violations() -> None:
    too_many = {"replicationConfiguration": {"rules": [one_rule()] * 26}}
    assert validate(replication_request(), too_many) == [
        "Value '"
        + str([one_rule()] * 26)[:77]
        + "...' at 'replicationConfiguration.rules' failed to satisfy constraint: "
        "Member must have length less than or equal to 25"
    ]
    empty_filters = {"replicationConfiguration": {"rules": [one_rule(repositoryFilters=[])]}}
    assert "greater than or equal to 1" in validate(replication_request(), empty_filters)[0]
    not_bool = {"replicationConfiguration": {"rules": [one_rule(deleteReplication={"enabled": 1})]}}
    assert validate(replication_request(), not_bool) == [
        "Value '1' at 'replicationConfiguration.rules[0].deleteReplication.enabled' failed to satisfy "
        "constraint: Member must be a boolean, not number"
    ]
    bogus = {
        "replicationConfiguration": {
            "rules": [one_rule(repositoryFilters=[{"filter": "ab", "filterType": "X"}])]
        }
    }
    assert "rules[0].repositoryFilters[0].filterType" in validate(replication_request(), bogus)[0]
    describe = ECR_MODEL.operation_model("DescribePullThroughCacheRules")
    assert describe.input_shape is not None
    assert "less than or equal to 1000" in validate(describe.input_shape, {"maxResults": 1001})[0]
    assert "be an integer, not boolean" in validate(describe.input_shape, {"maxResults": True})[0]
    assert "be an integer, not string" in validate(describe.input_shape, {"maxResults": "10"})[0]
    assert "be an array, not string" in validate(describe.input_shape, {"ecrRepositoryPrefixes": "hub"})[0]
    assert (
        "length less than or equal to 100"
        in validate(describe.input_shape, {"ecrRepositoryPrefixes": ["hub"] * 101})[0]
    )
    rule: dict[str, Any] = {"ecrRepositoryPrefix": "hub", "createdAt": "2024-01-01T00:00:00Z"}
    out = {"pullThroughCacheRules": [rule]}
    assert "be epoch seconds" in validate_response(ECR_MODEL, "DescribePullThroughCacheRules", out)[0]
    rule["createdAt"] = 1_700_000_000.25
    assert validate_response(ECR_MODEL, "DescribePullThroughCacheRules", out) == []


def test_validate_maps_blobs_unions_documents_and_skipped_patterns() -> None:
    resolver = ShapeResolver(
        {
            "Top": {
                "type": "structure",
                "members": {
                    "tags": {"shape": "Tags"},
                    "data": {"shape": "Data"},
                    "choice": {"shape": "Choice"},
                    "doc": {"shape": "Doc"},
                    "label": {"shape": "JavaOnly"},
                },
            },
            "Tags": {"type": "map", "key": {"shape": "Key"}, "value": {"shape": "JavaOnly"}, "max": 2},
            "Key": {"type": "string", "pattern": "^[a-z]+$"},
            "JavaOnly": {"type": "string", "pattern": "[\\p{L}\\p{N}]+", "max": 3},
            "Data": {"type": "blob", "max": 4},
            "Choice": {
                "type": "structure",
                "union": True,
                "members": {"a": {"shape": "Int"}, "b": {"shape": "Int"}},
            },
            "Int": {"type": "integer"},
            "Doc": {"type": "structure", "members": {}, "document": True},
        }
    )
    top = resolver.get_shape_by_name("Top")
    skipped: list[str] = []
    ok = {"tags": {"k": "v"}, "data": "AAEC", "choice": {"a": 1}, "doc": {"any": [1, "x"]}, "label": "日本"}
    assert validate(top, ok, skipped=skipped) == []
    # A pattern Python cannot compile is a skip, never a silent pass.
    assert len(skipped) == 2
    assert all("not checked" in s and "bad escape \\p" in s for s in skipped)
    assert isinstance(compile_pattern("[\\p{L}\\p{N}]+"), str)

    bad = {"tags": {"K": "v", "a": "v", "b": "toolong"}, "data": "AAECAwQF", "choice": {"a": 1, "b": 2}}
    errors = validate(top, bad)
    assert any("at 'tags' failed" in e and "size less than or equal to 2" in e for e in errors)
    assert any("<key 'K'>" in e and "pattern" in e for e in errors)
    assert any("tags['b']" in e and "length less than or equal to 3" in e for e in errors)
    assert any("at 'data'" in e and "length less than or equal to 4" in e for e in errors)
    assert any("exactly one member of a union" in e for e in errors)
    assert "be valid base64" in validate(top, {"data": "%%%"})[0]


def test_every_ecr_pattern_compiles_and_sts_tag_patterns_do_not() -> None:
    assert uncompilable_patterns(ECR_MODEL) == {}
    sts = botocore.session.get_session().get_service_model("sts")
    assert set(uncompilable_patterns(sts)) == {
        "[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+",
        "[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*",
    }


# ------------------------------------------------------------ pull-through cache rules


def test_ptc_rules_round_trip_for_every_upstream_kind(ecr: Client, secret: Callable[..., str]) -> None:
    arn = secret()
    rules: list[dict[str, Any]] = [
        {"ecrRepositoryPrefix": "ecr-public", "upstreamRegistryUrl": "public.ecr.aws"},
        {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io", "upstreamRegistry": "quay"},
        {"ecrRepositoryPrefix": "k8s", "upstreamRegistryUrl": "registry.k8s.io"},
        {"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": "registry-1.docker.io", "credentialArn": arn},
        {"ecrRepositoryPrefix": "ghcr", "upstreamRegistryUrl": "ghcr.io", "credentialArn": arn},
        {"ecrRepositoryPrefix": "gitlab", "upstreamRegistryUrl": "registry.gitlab.com", "credentialArn": arn},
        {"ecrRepositoryPrefix": "acr", "upstreamRegistryUrl": "myregistry.azurecr.io", "credentialArn": arn},
        {"ecrRepositoryPrefix": "cgr", "upstreamRegistryUrl": "cgr.dev", "credentialArn": arn},
        {
            "ecrRepositoryPrefix": "same-acct",
            "upstreamRegistryUrl": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com",
            "upstreamRepositoryPrefix": "upstream-app",
        },
        {
            "ecrRepositoryPrefix": "other-acct",
            "upstreamRegistryUrl": f"{OTHER_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
            "customRoleArn": f"arn:aws:iam::{ACCOUNT}:role/ecr-ptc",
        },
    ]
    kinds = [
        "ecr-public",
        "quay",
        "k8s",
        "docker-hub",
        "github-container-registry",
        "gitlab-container-registry",
        "azure-container-registry",
        "chainguard",
        "ecr",
        "ecr",
    ]
    for rule, kind in zip(rules, kinds, strict=True):
        created = ecr.create_pull_through_cache_rule(**rule)
        assert created["upstreamRegistry"] == kind
        assert created["registryId"] == ACCOUNT
        expected = {**rule, "upstreamRegistry": kind}
        assert {k: created[k] for k in expected} == expected
    described = ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    assert [r["ecrRepositoryPrefix"] for r in described] == sorted(r["ecrRepositoryPrefix"] for r in rules)
    hub = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["hub"])["pullThroughCacheRules"]
    assert len(hub) == 1
    assert hub[0]["credentialArn"] == arn
    assert hub[0]["createdAt"] <= hub[0]["updatedAt"]
    assert set(hub[0]) == {
        "ecrRepositoryPrefix",
        "upstreamRegistryUrl",
        "createdAt",
        "updatedAt",
        "registryId",
        "upstreamRegistry",
        "credentialArn",
    }


def test_ptc_update_validate_delete(emu: EcrEmulator, ecr: Client, secret: Callable[..., str]) -> None:
    first = secret("ecr-pullthroughcache/one")
    second = secret("ecr-pullthroughcache/two", value='{"username": "u"}')
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="hub", upstreamRegistryUrl="registry-1.docker.io", credentialArn=first
    )
    valid = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="hub/")
    assert valid["isValid"] is True
    assert "failure" not in valid

    updated = ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="hub", credentialArn=second)
    assert updated["credentialArn"] == second
    assert set(updated) - {"ResponseMetadata"} == {
        "ecrRepositoryPrefix",
        "registryId",
        "updatedAt",
        "credentialArn",
    }
    invalid = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="hub")
    assert invalid["isValid"] is False
    assert "accessToken" in invalid["failure"]

    emu.client("secretsmanager", REGION).delete_secret(SecretId=second, ForceDeleteWithoutRecovery=True)
    gone = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="hub")
    assert gone["isValid"] is False
    assert "was not found" in gone["failure"]

    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="hub")["upstreamRegistryUrl"] == (
        "registry-1.docker.io"
    )
    deleted = ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="hub")
    assert deleted["ecrRepositoryPrefix"] == "hub"
    assert deleted["credentialArn"] == second
    assert ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"] == []


def test_ptc_paginator_and_the_50_rule_limit(ecr: Client) -> None:
    prefixes = [f"p{i:02d}" for i in range(50)]
    for prefix in reversed(prefixes):
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl="quay.io")
    with pytest.raises(ClientError) as excinfo:
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="one-too-many", upstreamRegistryUrl="quay.io")
    assert error_code(excinfo) == "LimitExceededException"

    pages = list(
        ecr.get_paginator("describe_pull_through_cache_rules").paginate(PaginationConfig={"PageSize": 20})
    )
    assert [len(p["pullThroughCacheRules"]) for p in pages] == [20, 20, 10]
    assert [r["ecrRepositoryPrefix"] for p in pages for r in p["pullThroughCacheRules"]] == prefixes
    assert "nextToken" in pages[0]
    assert "nextToken" not in pages[-1]
    whole = ecr.describe_pull_through_cache_rules()
    assert len(whole["pullThroughCacheRules"]) == 50
    assert "nextToken" not in whole
    capped = (
        ecr.get_paginator("describe_pull_through_cache_rules")
        .paginate(PaginationConfig={"PageSize": 7, "MaxItems": 10})
        .build_full_result()
    )
    assert len(capped["pullThroughCacheRules"]) == 10
    with pytest.raises(ClientError) as excinfo:
        ecr.describe_pull_through_cache_rules(nextToken="garbage")
    assert error_code(excinfo) == "InvalidParameterException"


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        pytest.param(
            {"upstreamRegistryUrl": "cr.example.io"},
            "UnsupportedUpstreamRegistryException",
            "isn't supported",
            id="vendor-registry",
        ),
        pytest.param(
            {"upstreamRegistryUrl": "https://quay.io"},
            "UnsupportedUpstreamRegistryException",
            "isn't supported",
            id="url-with-scheme",
        ),
        pytest.param(
            {"upstreamRegistryUrl": "ghcr.io", "upstreamRegistry": "quay"},
            "UnsupportedUpstreamRegistryException",
            "'quay'",
            id="url-does-not-fit-kind",
        ),
        pytest.param(
            {"upstreamRegistryUrl": "registry-1.docker.io"},
            "InvalidParameterException",
            "requires a credentialArn",
            id="docker-hub-without-credentials",
        ),
        pytest.param(
            {
                "upstreamRegistryUrl": "ghcr.io",
                "credentialArn": f"{SECRET_ARN_BASE}:ecr-pullthroughcache/nope",
            },
            "SecretNotFoundException",
            "was not found",
            id="secret-missing",
        ),
        pytest.param(
            {
                "upstreamRegistryUrl": "ghcr.io",
                "credentialArn": f"{SECRET_ARN_BASE}:my-team/ecr-pullthroughcache",
            },
            "ValidationException",
            "at 'credentialArn'",
            id="secret-name-prefix",
        ),
        pytest.param(
            {"upstreamRegistryUrl": f"{OTHER_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"},
            "InvalidParameterException",
            "customRoleArn is required",
            id="cross-account-ecr-without-role",
        ),
        pytest.param(
            {
                "upstreamRegistryUrl": f"{OTHER_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
                "customRoleArn": f"arn:aws:iam::{OTHER_ACCOUNT}:role/r",
            },
            "InvalidParameterException",
            "must be in the registry's account",
            id="role-in-other-account",
        ),
        pytest.param(
            {
                "ecrRepositoryPrefix": "ROOT",
                "upstreamRepositoryPrefix": "team",
                "upstreamRegistryUrl": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com",
            },
            "InvalidParameterException",
            "not ROOT",
            id="upstream-prefix-with-root",
        ),
    ],
)
def test_ptc_create_errors(ecr: Client, kwargs: dict[str, Any], code: str, message: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        ecr.create_pull_through_cache_rule(**{"ecrRepositoryPrefix": "cache", **kwargs})
    assert error_code(excinfo) == code
    assert message in excinfo.value.response["Error"]["Message"]


def test_ptc_secret_must_be_in_the_rules_region(ecr: Client, secret: Callable[..., str]) -> None:
    elsewhere = secret(region="us-east-1")
    with pytest.raises(ClientError) as excinfo:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="hub", upstreamRegistryUrl="registry-1.docker.io", credentialArn=elsewhere
        )
    assert error_code(excinfo) == "SecretNotFoundException"
    assert ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"] == []


def test_ptc_duplicate_update_and_not_found_errors(ecr: Client, secret: Callable[..., str]) -> None:
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
    for prefix in ("quay", "quay/"):
        with pytest.raises(ClientError) as excinfo:
            ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl="quay.io")
        assert error_code(excinfo) == "PullThroughCacheRuleAlreadyExistsException"

    with pytest.raises(ClientError) as excinfo:
        ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="quay")
    assert error_code(excinfo) == "InvalidParameterException"
    assert excinfo.value.response["Error"]["Message"] == (
        "Invalid input: Please set either credential arn or role arn to update the credentials"
    )
    missing_secret = f"{SECRET_ARN_BASE}:ecr-pullthroughcache/absent"
    with pytest.raises(ClientError) as excinfo:
        ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="quay", credentialArn=missing_secret)
    assert error_code(excinfo) == "SecretNotFoundException"

    arn = secret()
    calls: list[Callable[[], Any]] = [
        lambda: ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="nope", credentialArn=arn),
        lambda: ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="nope"),
        lambda: ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="nope"),
        lambda: ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["quay", "nope"]),
    ]
    for call in calls:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_code(excinfo) == "PullThroughCacheRuleNotFoundException"


def test_state_is_per_region(emu: EcrEmulator, ecr: Client) -> None:
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
    ecr.put_registry_policy(policyText=policy("ecr:ReplicateImage"))
    other = emu.client("ecr", "us-east-1")
    assert other.describe_pull_through_cache_rules()["pullThroughCacheRules"] == []
    with pytest.raises(ClientError) as excinfo:
        other.get_registry_policy()
    assert error_code(excinfo) == "RegistryPolicyNotFoundException"


# ------------------------------------------------------------ model constraints botocore lets through


def too_many_destinations() -> dict[str, Any]:
    destinations = [{"region": f"us-west-{i}", "registryId": ACCOUNT} for i in range(101)]
    return {"rules": [{"destinations": destinations}]}


@pytest.mark.parametrize(
    ("operation", "kwargs", "where"),
    [
        pytest.param(
            "create_pull_through_cache_rule",
            {"ecrRepositoryPrefix": "a" * 31, "upstreamRegistryUrl": "quay.io"},
            "ecrRepositoryPrefix",
            id="31-char-prefix",
        ),
        pytest.param(
            "create_pull_through_cache_rule",
            {"ecrRepositoryPrefix": "Mirror", "upstreamRegistryUrl": "quay.io"},
            "ecrRepositoryPrefix",
            id="prefix-pattern",
        ),
        pytest.param(
            "create_pull_through_cache_rule",
            {"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": "quay.io", "upstreamRegistry": "harbor"},
            "upstreamRegistry",
            id="unknown-upstream-enum",
        ),
        pytest.param(
            "describe_pull_through_cache_rules", {"maxResults": 1001}, "maxResults", id="max-results"
        ),
        pytest.param(
            "create_repository_creation_template",
            {"prefix": "team", "appliedFor": ["PULL_THROUGH_CACHE", "SOMETIMES"]},
            "appliedFor[1]",
            id="applied-for-enum",
        ),
        pytest.param(
            "create_repository_creation_template",
            {"prefix": "team", "appliedFor": ["REPLICATION"], "description": "d" * 257},
            "description",
            id="description-length",
        ),
        pytest.param(
            "put_replication_configuration",
            {
                "replicationConfiguration": {
                    "rules": [
                        {
                            "destinations": [{"region": "us-west-2", "registryId": ACCOUNT}],
                            "repositoryFilters": [{"filter": "mirror", "filterType": "BOGUS"}],
                        }
                    ]
                }
            },
            "filterType",
            id="filter-type-bogus",
        ),
        pytest.param(
            "put_replication_configuration",
            {
                "replicationConfiguration": {
                    "rules": [{"destinations": [{"region": "us-west-2", "registryId": ACCOUNT}]}] * 26
                }
            },
            "replicationConfiguration.rules'",
            id="26-rules",
        ),
        pytest.param(
            "put_replication_configuration",
            {"replicationConfiguration": too_many_destinations()},
            "destinations",
            id="101-destinations",
        ),
        pytest.param(
            "put_replication_configuration",
            {
                "replicationConfiguration": {
                    "rules": [
                        {
                            "destinations": [{"region": "us-west-2", "registryId": ACCOUNT}],
                            "repositoryFilters": [
                                {"filter": f"f{i:03d}", "filterType": "PREFIX_MATCH"} for i in range(101)
                            ],
                        }
                    ]
                }
            },
            "repositoryFilters",
            id="101-filters",
        ),
        pytest.param(
            "put_replication_configuration",
            {
                "replicationConfiguration": {
                    "rules": [{"destinations": [{"region": "us-west-2", "registryId": "1234"}]}]
                }
            },
            "registryId",
            id="registry-id-pattern",
        ),
    ],
)
def test_model_constraints_botocore_does_not_check_are_rejected(
    emu: EcrEmulator, ecr: Client, operation: str, kwargs: dict[str, Any], where: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        getattr(ecr, operation)(**kwargs)
    assert error_code(excinfo) == "ValidationException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert where in excinfo.value.response["Error"]["Message"]
    # It got past botocore's client-side checks: the emulator saw the call.
    assert len(emu.calls) == 1
    assert emu.calls[0][1] == kwargs


# ------------------------------------------------------------ repository creation templates


def test_creation_templates_round_trip_and_paginate(ecr: Client) -> None:
    created = ecr.create_repository_creation_template(
        prefix="hub",
        description="docker hub cache",
        appliedFor=["PULL_THROUGH_CACHE"],
        imageTagMutability="IMMUTABLE",
        encryptionConfiguration={"encryptionType": "AES256"},
        lifecyclePolicy=json.dumps({"rules": []}),
        resourceTags=[{"Key": "team", "Value": "platform"}],
        customRoleArn=f"arn:aws:iam::{ACCOUNT}:role/ecr-templates",
    )
    assert created["registryId"] == ACCOUNT
    template = created["repositoryCreationTemplate"]
    assert template["prefix"] == "hub"
    assert template["appliedFor"] == ["PULL_THROUGH_CACHE"]
    assert template["resourceTags"] == [{"Key": "team", "Value": "platform"}]

    updated = ecr.update_repository_creation_template(
        prefix="hub", appliedFor=["PULL_THROUGH_CACHE", "REPLICATION"]
    )
    assert updated["repositoryCreationTemplate"]["appliedFor"] == ["PULL_THROUGH_CACHE", "REPLICATION"]
    assert updated["repositoryCreationTemplate"]["imageTagMutability"] == "IMMUTABLE"
    assert updated["repositoryCreationTemplate"]["updatedAt"] >= template["createdAt"]

    for prefix in ("ROOT", "team-a", "team-b", "team-c"):
        ecr.create_repository_creation_template(prefix=prefix, appliedFor=["CREATE_ON_PUSH"])
    pages = list(
        ecr.get_paginator("describe_repository_creation_templates").paginate(PaginationConfig={"PageSize": 2})
    )
    assert [len(p["repositoryCreationTemplates"]) for p in pages] == [2, 2, 1]
    assert [t["prefix"] for p in pages for t in p["repositoryCreationTemplates"]] == [
        "ROOT",
        "hub",
        "team-a",
        "team-b",
        "team-c",
    ]
    some = ecr.describe_repository_creation_templates(prefixes=["team-b", "absent", "hub/"])
    assert [t["prefix"] for t in some["repositoryCreationTemplates"]] == ["hub", "team-b"]

    deleted = ecr.delete_repository_creation_template(prefix="hub")
    assert deleted["repositoryCreationTemplate"]["description"] == "docker hub cache"
    remaining = ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]
    assert [t["prefix"] for t in remaining] == ["ROOT", "team-a", "team-b", "team-c"]


def test_creation_template_errors(ecr: Client) -> None:
    ecr.create_repository_creation_template(prefix="hub", appliedFor=["PULL_THROUGH_CACHE"])
    with pytest.raises(ClientError) as excinfo:
        ecr.create_repository_creation_template(prefix="hub/", appliedFor=["REPLICATION"])
    assert error_code(excinfo) == "TemplateAlreadyExistsException"
    calls: list[Callable[[], Any]] = [
        lambda: ecr.update_repository_creation_template(prefix="nope", description="x"),
        lambda: ecr.delete_repository_creation_template(prefix="nope"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_code(excinfo) == "TemplateNotFoundException"
    with pytest.raises(ClientError) as excinfo:
        ecr.create_repository_creation_template(
            prefix="x", appliedFor=["REPLICATION"], lifecyclePolicy="{not json"
        )
    assert error_code(excinfo) == "InvalidParameterException"
    with pytest.raises(ClientError) as excinfo:
        ecr.create_repository_creation_template(
            prefix="x", appliedFor=["REPLICATION"], customRoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/r"
        )
    assert error_code(excinfo) == "InvalidParameterException"


# ------------------------------------------------------------ replication and registry policy


def test_replication_configuration_with_several_rules(ecr: Client) -> None:
    config = {
        "rules": [
            {
                "destinations": [{"region": "us-west-2", "registryId": ACCOUNT}],
                "repositoryFilters": [{"filter": "mirror/", "filterType": "PREFIX_MATCH"}],
                "deleteReplication": {"enabled": True},
            },
            {"destinations": [{"region": REGION, "registryId": OTHER_ACCOUNT}]},
            {
                "destinations": [{"region": f"ap-south-{i}", "registryId": ACCOUNT} for i in range(1, 4)],
                "repositoryFilters": [
                    {"filter": f"team-{i}", "filterType": "PREFIX_MATCH"} for i in range(5)
                ],
            },
        ]
    }
    put = ecr.put_replication_configuration(replicationConfiguration=config)
    assert put["replicationConfiguration"] == config
    described = ecr.describe_registry()
    assert described["registryId"] == ACCOUNT
    assert described["replicationConfiguration"] == config

    ecr.put_replication_configuration(replicationConfiguration={"rules": []})
    assert ecr.describe_registry()["replicationConfiguration"] == {"rules": []}

    with pytest.raises(ClientError) as excinfo:
        ecr.put_replication_configuration(
            replicationConfiguration={
                "rules": [{"destinations": [{"region": REGION, "registryId": ACCOUNT}]}]
            }
        )
    assert error_code(excinfo) == "InvalidParameterException"
    assert "cannot be the same as the source registry" in excinfo.value.response["Error"]["Message"]


def test_describe_registry_defaults_to_no_rules(ecr: Client) -> None:
    assert ecr.describe_registry()["replicationConfiguration"] == {"rules": []}


def policy(*actions: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "mirror",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
                    "Action": list(actions),
                    "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/*",
                }
            ],
        }
    )


def test_registry_policy_accepts_batch_import_upstream_image(ecr: Client) -> None:
    with pytest.raises(ClientError) as excinfo:
        ecr.get_registry_policy()
    assert error_code(excinfo) == "RegistryPolicyNotFoundException"

    text = policy("ecr:ReplicateImage", "ecr:BatchImportUpstreamImage", "ecr:CreateRepository")
    put = ecr.put_registry_policy(policyText=text)
    assert (put["registryId"], put["policyText"]) == (ACCOUNT, text)
    assert ecr.get_registry_policy()["policyText"] == text
    assert ecr.delete_registry_policy()["policyText"] == text
    for call in (ecr.get_registry_policy, ecr.delete_registry_policy):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_code(excinfo) == "RegistryPolicyNotFoundException"


@pytest.mark.parametrize(
    "text",
    [
        policy("ecr:*"),
        policy("ecr:ReplicateImage", "s3:GetObject"),
        "{not json",
        json.dumps({"Statement": []}),
    ],
    ids=["wildcard", "foreign-action", "not-json", "no-statements"],
)
def test_registry_policy_rejects_other_actions(ecr: Client, text: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        ecr.put_registry_policy(policyText=text)
    assert error_code(excinfo) == "InvalidParameterException"
    assert "'Invalid registry policy provided'" in excinfo.value.response["Error"]["Message"]


# ------------------------------------------------------------ forwarding to moto, calls


def test_forwarded_calls_reach_moto(emu: EcrEmulator, ecr: Client) -> None:
    repo = ecr.create_repository(repositoryName="mirror/nginx")["repository"]
    assert repo["repositoryUri"] == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mirror/nginx"
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["mirror/nginx"]
    auth = ecr.get_authorization_token()["authorizationData"][0]
    assert auth["proxyEndpoint"] == f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"

    secrets = emu.client("secretsmanager", REGION)
    arn = secrets.create_secret(Name="ecr-pullthroughcache/ghcr", SecretString=CREDS)["ARN"]
    assert secrets.describe_secret(SecretId=arn)["Name"] == "ecr-pullthroughcache/ghcr"
    assert emu.client("sts", REGION).get_caller_identity()["Account"] == ACCOUNT

    # An ECR operation moto does not implement is still forwarded (and fails there).
    with pytest.raises(ClientError):
        ecr.list_pull_time_update_exclusions()
    assert emu.operations == [
        "CreateRepository",
        "DescribeRepositories",
        "GetAuthorizationToken",
        "ListPullTimeUpdateExclusions",
    ]

    emu.reset()
    assert ecr.describe_repositories()["repositories"] == []


def test_calls_record_operations_and_bodies(
    emu: EcrEmulator, ecr: Client, secret: Callable[..., str]
) -> None:
    arn = secret()
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="hub", upstreamRegistryUrl="registry-1.docker.io", credentialArn=arn
    )
    ecr.create_repository(repositoryName="mirror/library/alpine")
    with pytest.raises(ClientError):
        ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="nope")
    ecr.describe_registry()
    # The emulator's own DescribeSecret goes straight to moto and is not recorded; nor are
    # other services' calls.
    assert emu.calls == [
        (
            "CreatePullThroughCacheRule",
            {
                "ecrRepositoryPrefix": "hub",
                "upstreamRegistryUrl": "registry-1.docker.io",
                "credentialArn": arn,
            },
        ),
        ("CreateRepository", {"repositoryName": "mirror/library/alpine"}),
        ("DeletePullThroughCacheRule", {"ecrRepositoryPrefix": "nope"}),
        ("DescribeRegistry", {}),
    ]
    assert set(EMULATED_OPERATIONS) <= set(ECR_MODEL.operation_names)


def test_a_contract_breach_by_the_emulator_is_loud(
    emu: EcrEmulator, ecr: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(emu._handlers, "DescribeRegistry", lambda ctx, body: {"registryId": "not-an-id"})
    with pytest.raises(ClientError) as excinfo:
        ecr.describe_registry()
    assert error_code(excinfo) == "ServerException"
    with pytest.raises(EmulatorBug, match="registryId"):
        emu.check()
    emu.internal_errors.clear()


def test_a_second_emulator_can_front_an_existing_moto(emu: EcrEmulator, ecr: Client) -> None:
    ecr.create_repository(repositoryName="shared/app")
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
    with EcrEmulator(moto=emu.moto_url) as second:
        other = second.client("ecr", REGION)
        # moto's state is shared; each emulator's own state is its own.
        assert [r["repositoryName"] for r in other.describe_repositories()["repositories"]] == ["shared/app"]
        assert other.describe_pull_through_cache_rules()["pullThroughCacheRules"] == []
        assert second.operations == ["DescribeRepositories", "DescribePullThroughCacheRules"]
    # Stopping the second emulator left the shared moto running.
    assert len(ecr.describe_repositories()["repositories"]) == 1
