"""Issue 13: the ECR provider against what real ECR and Secrets Manager do differently from
what the provider first assumed (the emulator answers as the real services; see
`tests/emulators/ecr.py`, `_Fidelity`).

1. A pull-through cache rule serves *every* repository under its prefix from the upstream, so
   no copy may land under any rule's prefix, ours or foreign.
2. Replication filters are plain string prefixes: ours is `<prefix>/`, and foreign rules that
   also catch our repositories are reported.
3. Secrets Manager keeps a deleted secret's name for the recovery window (re-creating it is an
   InvalidRequestException; RestoreSecret is the way back) and ListSecrets may lag.

Real parts as in `test_ecr_provider.py` (its fixtures are reused): moto behind the contract
emulator, real docker-registry servers for the upstreams and the ECR endpoint, real skopeo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from plan_helpers import converge, plan_changes, plan_notes
from test_ecr_provider import (
    ACCOUNT,
    ECR_HOST,
    Bed,
    bed as bed,  # the fixtures, re-exported for pytest
    emulator as emulator,
    seeded as seeded,
)
from testbed import push_image

from mirrorspec import engine
from mirrorspec.errors import ProviderConflict
from mirrorspec.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
SECRET = "ecr-pullthroughcache/mirrorspec/aws/docker.io"

SPEC = """\
version: 1
mode: cache
layout: {layout}
credentials:
  dockerhub:
    username: {{env: DOCKERHUB_USER}}
    password: {{env: DOCKERHUB_TOKEN}}
sources:
  - registry: docker.io
    credentials: dockerhub
    repositories:
{docker}
  - registry: quay.io
    repositories:
      - name: prometheus/node-exporter
        all-tags: true
targets:
  - name: aws
    type: ecr
    registry: {host}
    prefix: vendor
"""
REDIS = "      - name: redis\n        all-tags: true"
POSTGRES = '      - name: bitnami/postgresql\n        versions: "^16.0.0"'


def spec(docker: str = REDIS, layout: str = "scoped", extra: str = "") -> Any:
    return parse_spec(SPEC.format(layout=layout, docker=docker, host=ECR_HOST) + extra)


def rules(bed: Bed) -> set[str]:
    ecr = bed.client("ecr")
    return {
        r["ecrRepositoryPrefix"] for r in ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    }


def copied(plan: Any) -> set[str]:
    return {c.destination_repository for t in plan.targets for c in t.copies}


# --- 1. no copy under a pull-through cache prefix ---------------------------------------------


def test_a_host_with_a_version_selected_repository_is_copied_not_cached(bed: Bed) -> None:
    """The example spec: docker.io has redis (every tag) and bitnami/postgresql (^16). A rule
    at vendor/docker.io would also serve vendor/docker.io/bitnami/postgresql, any tag, from
    Docker Hub: so docker.io is copied whole and quay.io alone is cached."""
    push_image(bed.upstream, "library/redis", "7.2.4")
    ctx = bed.ctx(load_spec(ROOT / "examples" / "ecr.yaml"))
    first, second = converge(ctx)
    assert not [c for c in plan_changes(first) if c[1] == "pull-through-cache-rule" and "docker.io" in c[2]]
    assert {"vendor/docker.io/library/redis", "vendor/docker.io/bitnami/postgresql"} <= copied(first)
    notes = plan_notes(first)
    assert "docker.io: its pull-through cache rule 'vendor/docker.io' would also serve" in notes
    assert "'vendor/docker.io/bitnami/postgresql'" in notes
    assert second.empty, plan_changes(second)
    assert rules(bed) == {"vendor/quay.io"}
    assert bed.ecr_tags("vendor/docker.io/library/redis") == ["7.2.4"]
    assert engine.audit(ctx, content=True).in_sync
    ctx.close()
    # (the bed's teardown runs emulator.check(): no repository under any rule's prefix)


def test_flat_layout_caches_nothing_when_anything_is_copied(bed: Bed) -> None:
    """Flat: the rule's prefix is the target's prefix, so it would cover every copy."""
    push_image(bed.upstream, "library/redis", "7.2.4")
    plan = engine.plan(bed.ctx(spec(layout="flat")))
    assert not [c for c in plan_changes(plan) if c[1] == "pull-through-cache-rule"]
    assert "its pull-through cache rule 'vendor' would also serve 'vendor/" in plan_notes(plan)
    # One upstream, every repository cached: nothing is copied, so the rule is safe.
    alone = "version: 1\nmode: cache\nlayout: flat\nsources:\n  - registry: quay.io\n    repositories:\n"
    alone += "      - name: prometheus/node-exporter\n        all-tags: true\n"
    alone += f"targets:\n  - name: aws\n    type: ecr\n    registry: {ECR_HOST}\n    prefix: vendor\n"
    assert ("create", "pull-through-cache-rule", "vendor") in plan_changes(
        engine.plan(bed.ctx(parse_spec(alone)))
    )


def test_a_foreign_rule_over_a_copy_destination_is_refused_at_plan_time(bed: Bed) -> None:
    # ROOT: an ECR-to-ECR rule that serves every repository without a rule of its own.
    bed.client("ecr").create_pull_through_cache_rule(
        ecrRepositoryPrefix="ROOT",
        upstreamRegistryUrl=f"{'1' * 12}.dkr.ecr.eu-west-1.amazonaws.com",
        upstreamRegistry="ecr",
        customRoleArn=f"arn:aws:iam::{ACCOUNT}:role/ptc",
    )
    with pytest.raises(ProviderConflict) as caught:
        engine.plan(bed.ctx(spec(docker=POSTGRES)))
    message = str(caught.value)
    assert "\n" not in message
    assert (
        "pull-through cache rule 'ROOT' (not mirrorspec's) would serve 'vendor/docker.io/bitnami/postgresql'"
        in (message)
    )
    assert "delete or move that rule, or use another prefix" in message


def test_our_own_rule_left_over_a_copy_destination_is_deleted_without_prune(bed: Bed) -> None:
    """Cached docker.io, then the spec adds a version-selected docker.io repository: the rule
    mirrorspec made must go before the copies, --prune or not."""
    push_image(bed.upstream, "library/redis", "7.2.4")
    converge(bed.ctx(spec()))
    assert rules(bed) == {"vendor/docker.io", "vendor/quay.io"}
    first, second = converge(bed.ctx(spec(docker=REDIS + "\n" + POSTGRES)))
    assert ("delete", "pull-through-cache-rule", "vendor/docker.io") in plan_changes(first)
    assert second.empty, plan_changes(second)
    assert rules(bed) == {"vendor/quay.io"}


def test_a_rule_relying_on_cgr_dev_says_unverified(bed: Bed) -> None:
    text = "version: 1\nmode: cache\ncredentials:\n  cg:\n    username: u\n"
    text += "    password: {env: DOCKERHUB_TOKEN}\n"
    text += "sources:\n  - registry: cgr.dev\n    credentials: cg\n    repositories:\n"
    text += "      - name: chainguard/static\n        all-tags: true\n"
    text += f"targets:\n  - name: aws\n    type: ecr\n    registry: {ECR_HOST}\n    prefix: vendor\n"
    plan = engine.plan(bed.ctx(parse_spec(text)))
    assert ("create", "pull-through-cache-rule", "vendor/cgr.dev") in plan_changes(plan)
    assert "unverified: ECR pull-through cache from cgr.dev" in plan_notes(plan)


# --- 2. replication filters ------------------------------------------------------------------

REPLICATE = "    replicate-to:\n      - region: us-east-1\n"
US = {"region": "us-east-1", "registryId": ACCOUNT}


def test_our_replication_filter_catches_exactly_our_repositories(bed: Bed) -> None:
    converge(bed.ctx(spec(extra=REPLICATE)))
    (ours,) = bed.client("ecr").describe_registry()["replicationConfiguration"]["rules"]
    assert ours["repositoryFilters"] == [{"filter": "vendor/", "filterType": "PREFIX_MATCH"}]
    assert bed.emu.replicated_to("vendor/quay.io/prometheus/node-exporter") == [US]
    assert bed.emu.replicated_to("vendor-tools/builder") == []


def test_a_rule_with_the_old_filter_is_ours_and_is_rewritten(bed: Bed) -> None:
    old = {"destinations": [US], "repositoryFilters": [{"filter": "vendor", "filterType": "PREFIX_MATCH"}]}
    bed.client("ecr").put_replication_configuration(replicationConfiguration={"rules": [old]})
    first, second = converge(bed.ctx(spec(extra=REPLICATE)))
    assert ("update", "replication-rule", "vendor") in plan_changes(first)
    assert second.empty
    (ours,) = bed.client("ecr").describe_registry()["replicationConfiguration"]["rules"]
    assert ours["repositoryFilters"] == [{"filter": "vendor/", "filterType": "PREFIX_MATCH"}]


def test_audit_names_foreign_replication_rules_that_also_catch_our_repositories(bed: Bed) -> None:
    foreign = [
        {"destinations": [US], "repositoryFilters": [{"filter": "vend", "filterType": "PREFIX_MATCH"}]},
        {"destinations": [US], "repositoryFilters": [{"filter": "team-a", "filterType": "PREFIX_MATCH"}]},
        {"destinations": [{"region": "sa-east-1", "registryId": "111122223333"}]},
    ]
    bed.client("ecr").put_replication_configuration(replicationConfiguration={"rules": foreign})
    ctx = bed.ctx(spec(extra=REPLICATE))
    converge(ctx)
    (target,) = engine.audit(ctx).targets
    notes = "\n".join(n.message for n in target.notes)
    assert "replication rule 'vend' (not mirrorspec's) also replicates repositories under 'vendor/'" in notes
    assert (
        "replication rule 'rule-2' (not mirrorspec's) has no filter: it replicates every repository" in notes
    )
    assert "team-a" not in notes


# --- 3. Secrets Manager ----------------------------------------------------------------------


def test_prune_then_re_add_within_the_recovery_window_restores_the_secret(bed: Bed) -> None:
    converge(bed.ctx(spec()))
    arn = bed.client("secretsmanager").describe_secret(SecretId=SECRET)["ARN"]
    quay_only = parse_spec(
        SPEC.format(layout="scoped", docker="", host=ECR_HOST).replace(
            "  - registry: docker.io\n    credentials: dockerhub\n    repositories:\n\n", ""
        )
    )
    first, _ = converge(bed.ctx(quay_only), prune=True)
    assert ("delete", "secret", SECRET) in plan_changes(first)
    assert bed.client("secretsmanager").describe_secret(SecretId=SECRET).get("DeletedDate") is not None

    first, second = converge(bed.ctx(spec()))
    assert ("create", "secret", SECRET) in plan_changes(first)
    assert second.empty, plan_changes(second)
    secrets = bed.client("secretsmanager")
    described = secrets.describe_secret(SecretId=SECRET)
    # The same secret (a new one would get a new ARN suffix), no longer scheduled for deletion.
    assert described["ARN"] == arn and described.get("DeletedDate") is None
    value = json.loads(secrets.get_secret_value(SecretId=SECRET)["SecretString"])
    assert value["username"] == "hub-bot"


def test_a_plan_right_after_apply_ignores_a_stale_secret_list(bed: Bed) -> None:
    ctx = bed.ctx(spec())
    first = engine.plan(ctx)
    assert ("create", "secret", SECRET) in plan_changes(first)
    bed.emu.lag_secret_list()  # ListSecrets now answers what it answered for that plan: nothing
    try:
        assert engine.apply(ctx, first).ok
        second = engine.plan(ctx)
        assert second.empty, plan_changes(second)
        assert engine.audit(ctx).in_sync
    finally:
        bed.emu.lag_secret_list(False)
