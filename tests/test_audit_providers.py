"""Issue 6's audit acceptance, on every provider's test bed (registry, ecr, acr, harbor).

One scenario per target type, each on the provider's own test bed (`provider_beds.py`) with
its example spec unchanged (seqera.yaml's `lab` target for `registry`), driven through the
real CLI — only `cli_common.RunContext` is pointed at the bed, as `test_acr_provider.py` does:

1. `apply` → `audit --content` exits 0: every native rule ours, no drift, every tag present.
2. Then, behind mirrorspec's back, through the registry's own API or storage:
   - a foreign rule → listed in `resources` with `managed: false`, never drift;
   - one of our rules edited → a drift item naming the edited field in `reason`;
   - a wanted tag deleted → content `missing`; another re-tagged → `digest-mismatch`
   `audit --content` exits 2, and so does a plain `audit`, which checks the tags too (issue
   18, item 4); `audit --rules-only` exits 2 where rules drifted and 3 (tags not checked,
   never 0) otherwise; `engine.audit` says `in_sync` False. Every JSON document validates
   against the published audit schema.
3. `apply` again → `audit --content` exits 0 with the foreign rule still there, untouched.

A `registry` target has no native rules, so its scenario plants no rule and checks that the
audit lists none; its content checks are the same as everyone's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import provider_beds as beds
import pytest
from azure.mgmt.containerregistry import models
from emulators.ecr import EcrEmulator
from jsonschema import Draft202012Validator
from testbed import delete_tag, retag

from mirrorspec import cli, cli_common, engine, schemas
from mirrorspec.context import RunContext
from mirrorspec.spec import load_spec

AUDIT_SCHEMA = Draft202012Validator(schemas.audit_schema())
# Foreign rules a bed starts with: an ACR Premium registry's replication in its home region.
BASELINE_FOREIGN = {"acr": {("geo-replication", "westeurope")}}


@dataclass(frozen=True)
class Scenario:
    spec: str
    target: str
    # Plants a foreign rule and edits one of ours; returns the foreign (kind, id)s and the
    # drift expected as (action, kind, id, edited field). None: the target has no rules.
    plant: Callable[[beds.Bed], tuple[set[tuple[str, str]], tuple[str, str, str, str]]] | None
    deleted: tuple[str, str]  # (repository, tag) removed from the target's storage
    retagged: tuple[str, str]  # (repository, tag) moved to other content


# --- what each scenario plants --------------------------------------------------------------


def plant_ecr(bed: beds.Bed) -> tuple[set[tuple[str, str]], tuple[str, str, str, str]]:
    ecr = bed.emulator.client("ecr")
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="team-a/quay.io", upstreamRegistryUrl="quay.io", upstreamRegistry="quay"
    )
    (ours,) = ecr.describe_registry()["replicationConfiguration"]["rules"]
    edited = {**ours, "destinations": ours["destinations"][:1]}  # someone dropped eu-central-1
    foreign = {
        "destinations": [{"region": "ap-south-1", "registryId": beds.ACCOUNT}],
        "repositoryFilters": [{"filter": "team-a", "filterType": "PREFIX_MATCH"}],
    }
    ecr.put_replication_configuration(replicationConfiguration={"rules": [foreign, edited]})
    return (
        {("pull-through-cache-rule", "team-a/quay.io"), ("replication-rule", "team-a")},
        ("update", "replication-rule", "vendor", "destinations"),
    )


def plant_acr(bed: beds.Bed) -> tuple[set[tuple[str, str]], tuple[str, str, str, str]]:
    arm = bed.emulator.client(beds.SUB)

    def rule(name: str, source: str, target: str) -> None:
        properties = models.CacheRuleProperties(source_repository=source, target_repository=target)
        arm.cache_rules.begin_create(
            beds.GROUP, "mycompany", name, models.CacheRule(properties=properties)
        ).result()

    rule("team-quay", "quay.io/team/app", "team/app")
    ours = "vendor-quay-io-prometheus-node-exporter"
    arm.cache_rules.begin_delete(beds.GROUP, "mycompany", ours).result()
    rule(ours, "quay.io/prometheus/other", "vendor/quay.io/prometheus/node-exporter")
    return {("cache-rule", "team-quay")}, ("replace", "cache-rule", ours, "sourceRepository")


def plant_harbor(bed: beds.Bed) -> tuple[set[tuple[str, str]], tuple[str, str, str, str]]:
    emu = bed.emulator

    def ok(response: Any) -> Any:
        assert response.status_code in (200, 201), response.text
        return response

    ok(
        emu.api(
            "POST",
            "/registries",
            json_body={"name": "team-a-upstream", "type": "docker-registry", "url": "https://quay.io"},
        )
    )
    registries = ok(emu.api("GET", "/registries", params={"page_size": 100})).json()
    (team_a,) = [r["id"] for r in registries if r["name"] == "team-a-upstream"]
    foreign = {
        "name": "team-a-charts",
        "description": "owned by team a",
        "src_registry": {"id": team_a},
        "dest_namespace": "team-a",
        "filters": [{"type": "name", "value": "team/app"}],
        "trigger": {"type": "manual"},
        "enabled": True,
    }
    ok(emu.api("POST", "/replication/policies", json_body=foreign))
    name = "mirrorspec/vendor/docker.io/bitnami/postgresql"
    policies = ok(emu.api("GET", "/replication/policies", params={"page_size": 100})).json()
    (ours,) = [p for p in policies if p["name"] == name]
    ok(emu.api("PUT", f"/replication/policies/{ours['id']}", json_body={**ours, "enabled": False}))
    return (
        {("replication-policy", "team-a-charts"), ("registry-endpoint", "team-a-upstream")},
        ("update", "replication-policy", name, "enabled"),
    )


SCENARIOS = {
    "registry": Scenario(
        "seqera.yaml",
        "lab",
        None,
        ("mirror/public.cr.seqera.io/charts/platform", "1.5.3"),
        ("mirror/cr.seqera.io/private/nf-tower-enterprise/backend", "v25.1.0"),
    ),
    "ecr": Scenario(
        "ecr.yaml",
        "aws-prod",
        plant_ecr,
        ("vendor/docker.io/bitnami/postgresql", "16.2.0"),
        ("vendor/cr.seqera.io/private/nf-tower-enterprise/backend", "v25.1.0"),
    ),
    "acr": Scenario(
        "acr.yaml",
        "azure-prod",
        plant_acr,
        ("vendor/docker.io/bitnami/postgresql", "16.2.0"),
        ("vendor/cr.seqera.io/private/nf-tower-enterprise/backend", "v25.1.0"),
    ),
    "harbor": Scenario(
        "harbor.yaml",
        "dc1",
        plant_harbor,
        ("vendor/docker.io/bitnami/postgresql", "16.2.0"),
        ("vendor/cr.seqera.io/private/nf-tower-enterprise/backend", "v25.1.0"),
    ),
}


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return beds.seed(tmp_path_factory.mktemp("audit-seed"))


@pytest.fixture(scope="module")
def ecr_emulator() -> Iterator[EcrEmulator]:
    with EcrEmulator() as emu:
        yield emu


@pytest.fixture
def bed(
    request: pytest.FixtureRequest,
    seeded: dict[str, Path],
    ecr_emulator: EcrEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[beds.Bed]:
    beds.set_environment(monkeypatch)
    kind = request.param
    with (
        beds.upstreams(seeded, tmp_path / "upstreams") as ups,
        beds.bed_of(kind, ups, tmp_path, ecr_emulator) as ready,
    ):
        yield ready


class Cli:
    """The real CLI in-process, its run context pointed at the bed; outputs checked for canaries."""

    def __init__(
        self, bed: beds.Bed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.capsys = capsys
        monkeypatch.setattr(cli_common, "RunContext", partial(RunContext, **bed.context_kwargs()))

    def __call__(self, *argv: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_:
            cli.main(list(argv))
        out = self.capsys.readouterr()
        for canary in beds.CANARIES:
            assert canary not in out.out + out.err
        return int(exit_.value.code or 0), out.out

    def audit(self, spec: Path, target: str, *extra: str) -> tuple[int, dict[str, Any]]:
        code, out = self("audit", str(spec), "--target", target, "--format", "json", *extra)
        document = json.loads(out)
        AUDIT_SCHEMA.validate(document)
        (audited,) = document["targets"]
        assert document["in_sync"] is audited["in_sync"] is (code == 0)
        return code, audited


# --- the acceptance -------------------------------------------------------------------------


@pytest.mark.parametrize("bed", sorted(SCENARIOS), indirect=True)
def test_audit_reports_foreign_edited_missing_and_moved_then_apply_restores(
    bed: beds.Bed,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    scenario = SCENARIOS[bed.kind]
    spec = bed.spec(scenario.spec, tmp_path)
    target = scenario.target
    run = Cli(bed, monkeypatch, capsys)

    def engine_in_sync() -> bool:
        ctx = bed.ctx(load_spec(spec))
        try:
            return engine.audit(ctx, targets=[target], content=True).in_sync
        finally:
            ctx.close()

    assert run("apply", str(spec), "--target", target, "--yes")[0] == 0
    code, audited = run.audit(spec, target, "--content")
    assert code == 0, audited
    assert audited["drift"] == [] and audited["content"]
    assert {c["status"] for c in audited["content"]} == {"present"}
    # What the bed already had that is not ours (ACR: the registry's home-region replication).
    before = {(r["kind"], r["id"]) for r in audited["resources"] if not r["managed"]}
    assert before == (BASELINE_FOREIGN.get(bed.kind, set()))
    assert engine_in_sync()
    wanted = {(c["destination"].split("/", 1)[1], c["tag"]): c for c in audited["content"]}

    if scenario.plant is None:
        foreign: set[tuple[str, str]] = set()
        edit = None
        assert audited["resources"] == []  # registry targets have no native rules to list
    else:
        foreign, edit = scenario.plant(bed)
    delete_tag(bed.storage, *scenario.deleted, user=bed.storage_user)
    moved = retag(bed.storage, *scenario.retagged, seed="tampered", user=bed.storage_user)

    code, audited = run.audit(spec, target, "--content")
    assert code == 2
    listed = {(r["kind"], r["id"]): r["managed"] for r in audited["resources"]}
    for rule in foreign:
        assert listed[rule] is False, (rule, listed)
    drifted = {(d["resource"], d["id"]) for d in audited["drift"]}
    assert drifted.isdisjoint(foreign)  # foreign rules are listed, never drift
    if edit is None:
        assert audited["resources"] == [] and audited["drift"] == []
    else:
        action, kind, ident, changed = edit
        (item,) = audited["drift"]
        assert (item["action"], item["resource"], item["id"]) == (action, kind, ident)
        assert changed in item["reason"]
        assert item["before"][changed] != item["after"][changed]
    statuses = {(c["destination"].split("/", 1)[1], c["tag"]): c for c in audited["content"]}
    assert set(statuses) == set(wanted)
    missing = statuses.pop(scenario.deleted)
    assert (missing["status"], missing["actual"]) == ("missing", None)
    mismatch = statuses.pop(scenario.retagged)
    assert (mismatch["status"], mismatch["actual"]) == ("digest-mismatch", moved)
    assert mismatch["expected"] == wanted[scenario.retagged]["expected"] != moved
    assert {c["status"] for c in statuses.values()} == {"present"}
    assert not engine_in_sync()

    # Without --content the tags are still checked (issue 18, item 4): the same drift.
    code, audited = run.audit(spec, target)
    assert code == 2
    assert {
        (c["destination"].split("/", 1)[1], c["tag"]) for c in audited["content"] if c["status"] != "present"
    } == {
        scenario.deleted,
        scenario.retagged,
    }
    # --rules-only compares rules only: drift where one was edited; otherwise the tags it did
    # not look at make it exit 3, never 0.
    code, audited = run.audit(spec, target, "--rules-only")
    assert audited["content"] is None and audited["unchecked"] == len(wanted)
    assert code == (3 if edit is None else 2)

    # apply puts back what is ours; the foreign rule stays, and is no reason to exit 2.
    assert run("apply", str(spec), "--target", target, "--yes")[0] == 0
    code, audited = run.audit(spec, target, "--content")
    assert code == 0, audited
    assert {(r["kind"], r["id"]) for r in audited["resources"] if not r["managed"]} == before | foreign
    assert engine_in_sync()
