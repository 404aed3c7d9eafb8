"""The ECR provider against its test bed.

Real parts: moto in server mode (repositories, Secrets Manager, authorization tokens) behind
the contract emulator (`tests/emulators/ecr.py`: pull-through cache rules, creation templates,
multi-rule replication and registry policies, every request and response validated against
botocore's service model); real `docker-registry` servers standing in for the upstreams and
for the ECR registry endpoint (TLS + htpasswd accepting the user/password that
GetAuthorizationToken returns); real skopeo for the copies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import provider_beds as beds
import pytest
from emulators.ecr import EcrEmulator
from plan_helpers import converge, plan_changes, plan_notes
from testbed import RegistryServer, request_log

from mirrorspec import engine
from mirrorspec.cli import configure_logging
from mirrorspec.context import Endpoint, RunContext
from mirrorspec.errors import ProviderConflict
from mirrorspec.oci import RegistryClient
from mirrorspec.plan import Plan, to_json
from mirrorspec.providers.ecr.clients import AWS
from mirrorspec.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"
ECR_HOST = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
DOCKERHUB_CANARY = "dockerhub-canary-3b9f2e71c0"
SEQERA_CANARY = "seqera-canary-8d1a4c55e2"
FOREIGN_RULES = [
    {
        "destinations": [{"region": "ap-south-1", "registryId": ACCOUNT}],
        "repositoryFilters": [{"filter": "team-a", "filterType": "PREFIX_MATCH"}],
    },
    {
        "destinations": [
            {"region": "us-west-2", "registryId": ACCOUNT},
            {"region": "eu-north-1", "registryId": "999988887777"},
        ],
        "repositoryFilters": [
            {"filter": "team-b/api", "filterType": "PREFIX_MATCH"},
            {"filter": "team-b/web", "filterType": "PREFIX_MATCH"},
        ],
        "deleteReplication": {"enabled": True},
    },
    {"destinations": [{"region": "sa-east-1", "registryId": "111122223333"}]},
]
FOREIGN_STATEMENTS = [
    {
        "Sid": "team-c-replication",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
        "Action": "ecr:ReplicateImage",
        "Resource": f"arn:aws:ecr:eu-central-1:{ACCOUNT}:repository/*",
    },
    {
        "Effect": "Allow",
        "Principal": {"AWS": ["arn:aws:iam::777788889999:root"]},
        "Action": ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"],
        "Resource": f"arn:aws:ecr:eu-central-1:{ACCOUNT}:repository/shared/*",
    },
]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EcrEmulator]:
    with EcrEmulator() as emu:
        yield emu


@dataclass
class Bed:
    emu: EcrEmulator
    upstream: RegistryServer  # stands in for docker.io, quay.io and public.cr.seqera.io
    seqera: RegistryServer  # stands in for cr.seqera.io (login required)
    ecr: RegistryServer  # stands in for the ECR registry endpoint

    def ctx(self, spec: Any, workers: int = 4) -> RunContext:
        def aws_client(ctx: RunContext, service: str, region: str, profile: str | None) -> Any:
            return self.emu.client(service, region=region)

        return RunContext(
            spec,
            workers=workers,
            client_factories={AWS: aws_client},
            registry_overrides={
                **beds.Upstreams(self.upstream, self.seqera).overrides(),
                ECR_HOST: Endpoint(self.ecr.host, ca_bundle=str(self.ecr.ca_file)),
            },
        )

    def ecr_tags(self, repository: str) -> list[str]:
        with RegistryClient(
            self.ecr.host, username="AWS", password=f"{ACCOUNT}-auth-token", ca_bundle=str(self.ecr.ca_file)
        ) as client:
            return sorted(client.list_tags(repository))

    def client(self, service: str, region: str = "eu-west-1") -> Any:
        return self.emu.client(service, region=region)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Upstream registry contents, pushed once; each test starts its registries on a copy."""
    return beds.seed(tmp_path_factory.mktemp("ecr-upstreams"))


@pytest.fixture
def bed(
    emulator: EcrEmulator,
    seeded: dict[str, Path],
    registry_factory: Callable[..., RegistryServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Bed]:
    emulator.reset()
    ecr = registry_factory(tls=True, users={"AWS": f"{ACCOUNT}-auth-token"})
    beds.set_upstream_credentials(monkeypatch, DOCKERHUB_CANARY, SEQERA_CANARY)
    with beds.upstreams(seeded, tmp_path, SEQERA_CANARY) as ups:
        yield Bed(emulator, ups.upstream, ups.seqera, ecr)
    emulator.check()


def _cached_example() -> str:
    """The example spec without its version-filtered docker.io repository, so that docker.io
    is served by a pull-through cache rule (with a secret) too; without replicate-to."""
    text = (ROOT / "examples" / "ecr.yaml").read_text().split("    replicate-to:")[0]
    postgres = text[text.index("      - name: bitnami/postgresql") : text.index("  - registry: quay.io")]
    return text.replace(postgres, "")


def _copied(plan: Plan) -> dict[str, list[str]]:
    return {c.destination_repository: [t.tag for t in c.tags] for t in plan.targets for c in t.copies}


def test_example_spec_plans_native_rules_copies_the_rest_and_converges(bed: Bed) -> None:
    ctx = bed.ctx(load_spec(ROOT / "examples" / "ecr.yaml"))
    seeded = len(request_log(bed.upstream))
    first, second = converge(ctx)
    assert plan_changes(first) == [
        ("create", "pull-through-cache-rule", "vendor/quay.io"),
        (
            "create",
            "registry-policy-statement",
            "210987654321/eu-central-1/mirrorspec-replicate-from-123456789012",
        ),
        ("create", "replication-rule", "vendor"),
        ("create", "repository", "vendor/cr.seqera.io/private/nf-tower-enterprise/backend"),
        ("create", "repository", "vendor/docker.io/bitnami/postgresql"),
        ("create", "repository", "vendor/docker.io/library/redis"),
        ("create", "repository-creation-template", "vendor/quay.io"),
    ]
    assert _copied(first) == {
        "vendor/docker.io/bitnami/postgresql": ["16.1.0", "16.2.0"],
        "vendor/docker.io/library/redis": ["7.2.4"],
        "vendor/cr.seqera.io/private/nf-tower-enterprise/backend": ["v25.1.0", "v25.1.3"],
    }
    notes = plan_notes(first)
    assert "docker.io/bitnami/postgresql: pull-through cache cannot filter tags" in notes
    assert "docker.io: its pull-through cache rule 'vendor/docker.io' would also serve" in notes
    assert "cr.seqera.io: not one of the 9 upstream registries" in notes
    assert second.empty, plan_changes(second)

    # What ECR now holds, read back through the API.
    ecr = bed.client("ecr")
    rules = {
        r["ecrRepositoryPrefix"]: r for r in ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    }
    assert set(rules) == {"vendor/quay.io"}
    assert rules["vendor/quay.io"]["upstreamRegistry"] == "quay"
    templates = ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]
    assert {t["prefix"] for t in templates} == {"vendor/quay.io"}
    (ours,) = ecr.describe_registry()["replicationConfiguration"]["rules"]
    assert ours["repositoryFilters"] == [{"filter": "vendor/", "filterType": "PREFIX_MATCH"}]
    assert ours["destinations"] == [
        {"region": "us-east-1", "registryId": ACCOUNT},
        {"region": "eu-central-1", "registryId": "210987654321"},
    ]
    assert bed.ecr_tags("vendor/docker.io/bitnami/postgresql") == ["16.1.0", "16.2.0"]

    # Served by the cache, so never listed upstream; the canary only reached the secret.
    during = request_log(bed.upstream)[seeded:]
    assert during and not [line for line in during if "node-exporter" in line]
    assert DOCKERHUB_CANARY not in to_json(first) + to_json(second)
    report = engine.audit(ctx, content=True)
    assert report.in_sync
    ctx.close()


def test_seqera_example_aws_target_mirrors_chart_closure_and_images(bed: Bed) -> None:
    ctx = bed.ctx(load_spec(ROOT / "examples" / "seqera.yaml"))
    first, second = converge(ctx, targets=["aws-prod"])
    assert _copied(first) == {
        "vendor/public.cr.seqera.io/charts/platform": ["1.2.0", "1.5.3"],
        "vendor/public.cr.seqera.io/charts/redis": ["18.0.1"],
        "vendor/cr.seqera.io/private/nf-tower-enterprise/backend": ["v25.1.0", "v25.1.3"],
        "vendor/cr.seqera.io/private/nf-tower-enterprise/frontend": ["v25.1.0", "v25.1.3"],
    }
    assert ("create", "replication-rule", "vendor") in plan_changes(first)
    assert second.empty, plan_changes(second)
    assert bed.ecr_tags("vendor/public.cr.seqera.io/charts/redis") == ["18.0.1"]
    assert engine.audit(ctx, targets=["aws-prod"], content=True).in_sync
    assert SEQERA_CANARY not in to_json(first)
    ctx.close()


def _replication_rules(bed: Bed) -> list[dict[str, Any]]:
    return bed.client("ecr").describe_registry()["replicationConfiguration"]["rules"]  # type: ignore[no-any-return]


def _statements(bed: Bed) -> list[dict[str, Any]]:
    policy = bed.client("ecr", "eu-central-1").get_registry_policy()["policyText"]
    return json.loads(policy)["Statement"]  # type: ignore[no-any-return]


def test_foreign_replication_rules_and_policy_statements_survive_apply_change_and_prune(
    bed: Bed, tmp_path: Path
) -> None:
    ecr = bed.client("ecr")
    ecr.put_replication_configuration(replicationConfiguration={"rules": FOREIGN_RULES})
    bed.client("ecr", "eu-central-1").put_registry_policy(
        policyText=json.dumps({"Version": "2012-10-17", "Statement": FOREIGN_STATEMENTS})
    )
    spec_text = (ROOT / "examples" / "ecr.yaml").read_text()
    spec_file = tmp_path / "ecr.yaml"

    spec_file.write_text(spec_text)
    _, second = converge(bed.ctx(load_spec(spec_file)))
    assert second.empty
    rules = _replication_rules(bed)
    assert rules[:3] == FOREIGN_RULES and len(rules) == 4
    assert _statements(bed)[:2] == FOREIGN_STATEMENTS

    # A spec change rewrites only our rule.
    spec_file.write_text(
        spec_text.replace("- region: us-east-1", "- region: us-east-1\n      - region: ap-northeast-1")
    )
    first, second = converge(bed.ctx(load_spec(spec_file)))
    assert ("update", "replication-rule", "vendor") in plan_changes(first)
    assert second.empty
    rules = _replication_rules(bed)
    assert rules[:3] == FOREIGN_RULES
    assert {"region": "ap-northeast-1", "registryId": ACCOUNT} in rules[3]["destinations"]

    # Dropping replicate-to and pruning removes our rule, and only ours.
    no_replication = spec_text.split("    replicate-to:")[0]
    spec_file.write_text(no_replication)
    first, second = converge(bed.ctx(load_spec(spec_file)), prune=True)
    assert ("delete", "replication-rule", "vendor") in plan_changes(first)
    assert _replication_rules(bed) == FOREIGN_RULES
    assert _statements(bed)[:2] == FOREIGN_STATEMENTS


CACHE_SPEC = """\
version: 1
mode: cache
sources:
  - registry: quay.io
    repositories:
      - name: prometheus/node-exporter
        all-tags: true
targets:
  - name: aws
    type: ecr
    registry: {host}
    prefix: {prefix}
"""


def test_prefix_over_30_characters_falls_back_to_copies_with_a_note(bed: Bed) -> None:
    prefix = "platform-team/vendored-images"  # + /quay.io = 37 characters
    ctx = bed.ctx(parse_spec(CACHE_SPEC.format(host=ECR_HOST, prefix=prefix)))
    plan = engine.plan(ctx)
    assert f"rule prefix '{prefix}/quay.io' breaks ECR's limit (2-30 characters" in plan_notes(plan)
    assert not [c for c in plan_changes(plan) if c[1] == "pull-through-cache-rule"]
    assert _copied(plan) == {f"{prefix}/quay.io/prometheus/node-exporter": ["v1.8.0"]}


def test_a_51st_pull_through_cache_rule_is_refused_at_plan_time(bed: Bed) -> None:
    ecr = bed.client("ecr")
    for i in range(50):
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=f"team{i:02d}",
            upstreamRegistryUrl="public.ecr.aws",
            upstreamRegistry="ecr-public",
        )
    ctx = bed.ctx(parse_spec(CACHE_SPEC.format(host=ECR_HOST, prefix="vendor")))
    with pytest.raises(ProviderConflict) as caught:
        engine.plan(ctx)
    assert "51 pull-through cache rules (50 exist, 1 to create): ECR allows 50 per registry" in str(
        caught.value
    )
    assert caught.value.target == "aws"


def test_rule_changes_in_place_only_for_credentials_and_prune_deletes_only_ours(bed: Bed) -> None:
    ecr = bed.client("ecr")
    secrets = bed.client("secretsmanager")
    other = secrets.create_secret(
        Name="ecr-pullthroughcache/someone-else",
        SecretString=json.dumps({"username": "u", "accessToken": "x1y2z3"}),
    )["ARN"]
    # Ours, but pointing elsewhere: quay needs a replace (upstream can't change in place),
    # docker.io only an in-place credential update.
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="vendor/quay.io", upstreamRegistryUrl="registry.k8s.io", upstreamRegistry="k8s"
    )
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="vendor/docker.io",
        upstreamRegistryUrl="registry-1.docker.io",
        upstreamRegistry="docker-hub",
        credentialArn=other,
    )
    # A stale rule of ours and a foreign one.
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="vendor/registry.k8s.io",
        upstreamRegistryUrl="registry.k8s.io",
        upstreamRegistry="k8s",
    )
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="other/quay.io", upstreamRegistryUrl="quay.io", upstreamRegistry="quay"
    )
    spec = _cached_example()
    ctx = bed.ctx(parse_spec(spec))
    plan = engine.plan(ctx)
    changes = plan_changes(plan)
    assert ("replace", "pull-through-cache-rule", "vendor/quay.io") in changes
    assert ("update", "pull-through-cache-rule", "vendor/docker.io") in changes
    assert not [c for c in changes if c[0] == "delete"]  # no --prune, no delete

    first, second = converge(ctx, prune=True)
    assert ("delete", "pull-through-cache-rule", "vendor/registry.k8s.io") in plan_changes(first)
    assert second.empty
    rules = {
        r["ecrRepositoryPrefix"]: r for r in ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    }
    assert set(rules) == {"vendor/docker.io", "vendor/quay.io", "other/quay.io"}
    assert rules["vendor/quay.io"]["upstreamRegistry"] == "quay"
    assert "mirrorspec/aws-prod/docker.io" in rules["vendor/docker.io"]["credentialArn"]
    assert "UpdatePullThroughCacheRule" in bed.emu.operations


def test_audit_lists_foreign_rules_and_names_the_field_of_an_edited_one(bed: Bed) -> None:
    spec = _cached_example()
    ctx = bed.ctx(parse_spec(spec))
    converge(ctx)
    ecr = bed.client("ecr")
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="other/quay.io", upstreamRegistryUrl="quay.io", upstreamRegistry="quay"
    )
    ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="vendor/quay.io")
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="vendor/quay.io",
        upstreamRegistryUrl="public.ecr.aws",
        upstreamRegistry="ecr-public",
    )
    (target,) = engine.audit(ctx).targets
    ownership = {(r.kind, r.id): r.managed for r in target.resources}
    assert ownership[("pull-through-cache-rule", "other/quay.io")] is False
    assert ownership[("pull-through-cache-rule", "vendor/docker.io")] is True
    (drift,) = target.drift
    assert (drift.action, drift.id) == ("replace", "vendor/quay.io")
    assert "upstreamRegistry" in drift.reason and "upstreamRegistryUrl" in drift.reason
    assert not target.in_sync


def test_a_rotated_upstream_token_updates_the_secret(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _cached_example()
    converge(bed.ctx(parse_spec(spec)))
    monkeypatch.setenv("DOCKERHUB_TOKEN", "rotated-" + DOCKERHUB_CANARY)
    first, second = converge(bed.ctx(parse_spec(spec)))
    assert plan_changes(first) == [("update", "secret", "ecr-pullthroughcache/mirrorspec/aws-prod/docker.io")]
    assert second.empty
    value = bed.client("secretsmanager").get_secret_value(
        SecretId="ecr-pullthroughcache/mirrorspec/aws-prod/docker.io"
    )
    assert json.loads(value["SecretString"])["accessToken"] == "rotated-" + DOCKERHUB_CANARY


def test_cross_account_replication_without_a_profile_gives_the_exact_policy_to_merge(bed: Bed) -> None:
    spec = CACHE_SPEC.format(host=ECR_HOST, prefix="vendor") + (
        '    replicate-to:\n      - {region: eu-central-1, account: "210987654321"}\n'
    )
    plan = engine.plan(bed.ctx(parse_spec(spec)))
    note = next(n.message for n in plan.targets[0].notes if "registry policy" in n.message)
    policy = json.loads(note.split("merge: ", 1)[1])
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert statement["Action"] == ["ecr:CreateRepository", "ecr:ReplicateImage"]
    assert statement["Resource"] == "arn:aws:ecr:eu-central-1:210987654321:repository/*"
    assert not [c for c in plan_changes(plan) if c[1] == "registry-policy-statement"]


def test_upstream_secret_never_reaches_logs_or_plan(bed: Bed, capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging(2)  # the CLI's -vv
    try:
        ctx = bed.ctx(load_spec(ROOT / "examples" / "ecr.yaml"))
        first, second = converge(ctx)
    finally:
        logging.getLogger().handlers.clear()
    logged = capfd.readouterr().err
    assert "DEBUG" in logged  # debug logging really was on
    for text in (logged, to_json(first), to_json(second), repr(first)):
        assert DOCKERHUB_CANARY not in text
        assert SEQERA_CANARY not in text
        assert f"{ACCOUNT}-auth-token" not in text


def test_sync_plans_and_copies_without_touching_native_rules(bed: Bed) -> None:
    """`sync` (engine.plan(copies_only=True)): the plan's copies and notes, no native change;
    applying it copies the tags and creates no rule."""
    ctx = bed.ctx(load_spec(ROOT / "examples" / "ecr.yaml"))
    full = engine.plan(ctx)
    only = engine.plan(ctx, copies_only=True)
    assert plan_changes(full)  # the example has native rules to create
    assert only == replace(full, targets=tuple(replace(t, changes=()) for t in full.targets))
    result = engine.apply(ctx, only, copies_only=True)
    assert result.ok, result.failures
    assert result.changed == 0
    assert bed.client("ecr").describe_pull_through_cache_rules()["pullThroughCacheRules"] == []
    assert bed.ecr_tags("vendor/docker.io/bitnami/postgresql") == ["16.1.0", "16.2.0"]
    assert [t.changes for t in engine.plan(ctx, copies_only=True).targets] == [()]
    ctx.close()
