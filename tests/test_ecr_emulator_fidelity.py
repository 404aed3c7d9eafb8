"""Issue 13: the ECR emulator answers as the real services do where moto 5 does not.

Each behaviour and its source is documented in `tests/emulators/ecr.py` (`_Fidelity`,
`cache_rule_for`, `replicated_to`, `_fidelity_answer`): pull-through cache prefixes serve every
repository under them, replication filters are plain string prefixes, and Secrets Manager
refuses a name in its deletion window with InvalidRequestException while ListSecrets may lag.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from botocore.exceptions import ClientError
from emulators import EcrEmulator, EmulatorBug
from test_ecr_emulator import (
    ACCOUNT,
    CREDS,
    REGION,
    emu as emu,  # the fixtures, re-exported for pytest
    emulator as emulator,
)


def code_of(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


# ------------------------------------------------------------ pull-through cache prefixes


def test_a_rule_prefix_serves_every_repository_under_it_with_an_assumed_slash(emu: EcrEmulator) -> None:
    ecr = emu.client("ecr", REGION)
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="vendor/quay.io", upstreamRegistryUrl="quay.io")
    assert emu.cache_rule_for("vendor/quay.io/prometheus/node-exporter") == "vendor/quay.io"
    assert emu.cache_rule_for("vendor/quay.io-tools/x") is None  # "prefix/" only
    assert emu.cache_rule_for("vendor/docker.io/library/redis") is None
    assert emu.cache_rule_for("vendor/quay.io/x", region="us-east-1") is None  # per Region


def test_a_repository_created_under_a_rule_prefix_fails_the_test(emu: EcrEmulator) -> None:
    ecr = emu.client("ecr", REGION)
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="vendor/quay.io", upstreamRegistryUrl="quay.io")
    ecr.create_repository(repositoryName="vendor/cr.seqera.io/backend")  # not under it: fine
    ecr.create_repository(repositoryName="vendor/quay.io/pinned/app")
    assert emu.fidelity.cache_prefix_repositories == [("vendor/quay.io/pinned/app", "vendor/quay.io")]
    with pytest.raises(EmulatorBug, match=re.escape("'vendor/quay.io/pinned/app' is under pull-through")):
        emu.check()
    emu.fidelity.cache_prefix_repositories.clear()


def test_a_rule_created_over_existing_repositories_fails_the_test(emu: EcrEmulator) -> None:
    ecr = emu.client("ecr", REGION)
    ecr.create_repository(repositoryName="hub/private/backend")
    ecr.create_repository(repositoryName="hubble/x")
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="hub", upstreamRegistryUrl="quay.io")
    assert emu.fidelity.cache_prefix_repositories == [("hub/private/backend", "hub")]
    emu.fidelity.cache_prefix_repositories.clear()


# ------------------------------------------------------------ replication filters


def test_replication_filters_are_plain_string_prefixes(emu: EcrEmulator) -> None:
    ecr = emu.client("ecr", REGION)
    us = {"region": "us-east-1", "registryId": ACCOUNT}
    dr = {"region": "eu-central-1", "registryId": "210987654321"}
    ecr.put_replication_configuration(
        replicationConfiguration={
            "rules": [
                {
                    "destinations": [us],
                    "repositoryFilters": [{"filter": "vendor", "filterType": "PREFIX_MATCH"}],
                },
                {
                    "destinations": [dr],
                    "repositoryFilters": [{"filter": "team/", "filterType": "PREFIX_MATCH"}],
                },
            ]
        }
    )
    assert emu.replicated_to("vendor/docker.io/library/redis") == [us]
    assert emu.replicated_to("vendor-tools/builder") == [us]  # not what a path prefix would do
    assert emu.replicated_to("team/app") == [dr]
    assert emu.replicated_to("teamwork/app") == []
    # `vendor/` is valid (model pattern of RepositoryFilterValue) and catches only the path.
    ecr.put_replication_configuration(
        replicationConfiguration={
            "rules": [
                {
                    "destinations": [us],
                    "repositoryFilters": [{"filter": "vendor/", "filterType": "PREFIX_MATCH"}],
                }
            ]
        }
    )
    assert emu.replicated_to("vendor/docker.io/library/redis") == [us]
    assert emu.replicated_to("vendor-tools/builder") == []
    ecr.put_replication_configuration(replicationConfiguration={"rules": [{"destinations": [dr]}]})
    assert emu.replicated_to("anything/at-all") == [dr]


# ------------------------------------------------------------ Secrets Manager


def test_recreating_a_secret_in_its_deletion_window_is_an_invalid_request(emu: EcrEmulator) -> None:
    secrets = emu.client("secretsmanager", REGION)
    name = "ecr-pullthroughcache/mirrorspec/t/docker.io"
    secrets.create_secret(Name=name, SecretString=CREDS)
    with pytest.raises(ClientError) as taken:
        secrets.create_secret(Name=name, SecretString=CREDS)
    assert code_of(taken) == "ResourceExistsException"  # still alive: moto is right here

    secrets.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    with pytest.raises(ClientError) as scheduled:
        secrets.create_secret(Name=name, SecretString=CREDS)
    assert code_of(scheduled) == "InvalidRequestException"
    assert "already scheduled for deletion" in scheduled.value.response["Error"]["Message"]
    for call in (
        lambda: secrets.put_secret_value(SecretId=name, SecretString=CREDS),
        lambda: secrets.update_secret(SecretId=name, Description="x"),
        lambda: secrets.get_secret_value(SecretId=name),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert code_of(refused) == "InvalidRequestException"
    # ListSecrets omits it (model doc: "not including secrets that are marked for deletion").
    assert [s["Name"] for s in secrets.list_secrets()["SecretList"]] == []

    secrets.restore_secret(SecretId=name)
    secrets.put_secret_value(SecretId=name, SecretString=CREDS)
    assert json.loads(secrets.get_secret_value(SecretId=name)["SecretString"]) == json.loads(CREDS)


def test_a_lagging_secret_list_answers_as_before_while_describe_is_current(emu: EcrEmulator) -> None:
    secrets = emu.client("secretsmanager", REGION)
    query: dict[str, Any] = {"Filters": [{"Key": "name", "Values": ["ecr-pullthroughcache/"]}]}
    assert secrets.list_secrets(**query)["SecretList"] == []
    emu.lag_secret_list()
    secrets.create_secret(Name="ecr-pullthroughcache/new", SecretString=CREDS)
    assert secrets.list_secrets(**query)["SecretList"] == []  # the stale answer
    assert secrets.describe_secret(SecretId="ecr-pullthroughcache/new")["Name"] == "ecr-pullthroughcache/new"
    assert [s["Name"] for s in secrets.list_secrets()["SecretList"]] == [
        "ecr-pullthroughcache/new"
    ]  # new query
    emu.lag_secret_list(False)
    assert [s["Name"] for s in secrets.list_secrets(**query)["SecretList"]] == ["ecr-pullthroughcache/new"]
