"""The Harbor provider against its test bed.

Real parts: the Harbor API emulator (`tests/emulators/harbor.py`: every request and response
validated against Harbor v2.15.2's swagger.yaml; executions that list real upstreams and copy
with skopeo); real `docker-registry` servers standing in for the upstreams and for Harbor's own
storage (served by the emulator under /v2/, as Harbor serves its registry beside its API); real
skopeo. mirrorspec reaches the upstreams through `registry_overrides`; the emulator reaches
them through its own host map — "the network Harbor can reach" — so the two can disagree, as
they can in production.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import provider_beds as beds
import pytest
import requests
from emulators.harbor import FILTERS_COLUMN, SKIPPED, HarborEmulator, filters_column
from plan_helpers import converge, plan_changes, plan_notes
from testbed import (
    RegistryServer,
    add_tags,
    delete_tag,
    push_chart,
    push_image,
    request_log,
)

from mirrorspec import engine
from mirrorspec.context import Endpoint, RunContext
from mirrorspec.errors import ProviderAuthError, ProviderConflict, ProviderError, SpecError
from mirrorspec.oci import RegistryClient
from mirrorspec.plan import Artifact, Plan, to_json
from mirrorspec.providers import harbor
from mirrorspec.providers.harbor import (
    api as harbor_api,
    executions as harbor_executions,
    native as harbor_native,
)
from mirrorspec.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
HARBOR_HOST = "harbor.internal.example.com"
HARBOR_CANARY = "harbor-canary-51c9e0d7aa"
DOCKERHUB_CANARY = "dockerhub-canary-0b7f3e9c21"
SEQERA_CANARY = "seqera-canary-77d2a1c0f4"
ENGINE = "harbor-replication"

PLATFORM = "mirrorspec/vendor/public.cr.seqera.io/charts/platform"
REDIS_CHART = "mirrorspec/vendor/public.cr.seqera.io/charts/redis"
BACKEND = "mirrorspec/vendor/cr.seqera.io/private/nf-tower-enterprise/backend"
FRONTEND = "mirrorspec/vendor/cr.seqera.io/private/nf-tower-enterprise/frontend"


@dataclass
class Bed:
    emu: HarborEmulator
    upstream: RegistryServer  # docker.io, quay.io, public.cr.seqera.io (and ghcr.io for mirrorspec only)
    seqera: RegistryServer  # cr.seqera.io, login required
    backing: RegistryServer  # what Harbor stores

    def ctx(self, spec: Any) -> RunContext:
        return RunContext(
            spec,
            workers=4,
            registry_overrides={
                **beds.Upstreams(self.upstream, self.seqera).overrides("ghcr.io"),
                HARBOR_HOST: Endpoint(self.emu.host, ca_bundle=str(self.emu.ca_file)),
            },
        )

    def stored_tags(self, repository: str) -> list[str]:
        """Tags Harbor really stores, read from its backing registry."""
        with RegistryClient(self.backing.host, insecure=True) as client:
            return sorted(client.list_tags(repository))

    def stored_repositories(self) -> list[str]:
        response = requests.get(f"{self.backing.url}/v2/_catalog", timeout=10)
        return sorted(response.json()["repositories"] or [])

    def get(self, path: str, **params: Any) -> Any:
        response = self.emu.api("GET", path, params=params or None)
        assert response.status_code == 200, response.text
        return response.json()

    def policy(self, name: str) -> dict[str, Any]:
        (found,) = [p for p in self.get("/replication/policies", page_size=100) if p["name"] == name]
        return found  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Upstream registry contents, pushed once; each test starts its registries on a copy."""
    return beds.seed(tmp_path_factory.mktemp("harbor-upstreams"))


@pytest.fixture
def bed(
    seeded: dict[str, Path],
    registry_factory: Callable[..., RegistryServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Bed]:
    with beds.upstreams(seeded, tmp_path, SEQERA_CANARY) as ups:
        backing = registry_factory()
        monkeypatch.setenv("HARBOR_USER", "admin")
        monkeypatch.setenv("HARBOR_PASSWORD", HARBOR_CANARY)
        beds.set_upstream_credentials(monkeypatch, DOCKERHUB_CANARY, SEQERA_CANARY)
        upstreams = {
            "hub.docker.com": ups.upstream,
            "quay.io": ups.upstream,
            "public.cr.seqera.io": ups.upstream,
            "cr.seqera.io": ups.seqera,
        }
        with HarborEmulator(backing, upstreams=upstreams, users={"admin": HARBOR_CANARY}) as emu:
            yield Bed(emu, ups.upstream, ups.seqera, backing)
            emu.wait_idle()


def _copied(plan: Plan) -> dict[str, tuple[str, list[str]]]:
    return {
        c.destination_repository: (c.engine, [t.tag for t in c.tags]) for t in plan.targets for c in t.copies
    }


def _seqera_dc1(bed: Bed, tmp_path: Path, edit: Callable[[str], str] = lambda text: text) -> RunContext:
    spec = tmp_path / "seqera.yaml"
    spec.write_text(edit((ROOT / "examples" / "seqera.yaml").read_text()))
    return bed.ctx(load_spec(spec))


# --- the examples ------------------------------------------------------------------------------


def test_harbor_example_applies_natively_and_converges(bed: Bed) -> None:
    ctx = bed.ctx(load_spec(ROOT / "examples" / "harbor.yaml"))
    seeded = len(request_log(bed.upstream))

    first, second = converge(ctx)

    assert plan_changes(first) == [
        ("create", "project", "vendor"),
        ("create", "proxy-cache-project", "vendor-docker.io"),
        ("create", "proxy-cache-project", "vendor-quay.io"),
        ("create", "registry-endpoint", "mirrorspec-vendor-cr.seqera.io"),
        ("create", "registry-endpoint", "mirrorspec-vendor-docker.io"),
        ("create", "registry-endpoint", "mirrorspec-vendor-quay.io"),
        ("create", "replication-policy", BACKEND),
        ("create", "replication-policy", "mirrorspec/vendor/docker.io/bitnami/postgresql"),
    ]
    assert _copied(first) == {
        "vendor/docker.io/bitnami/postgresql": (ENGINE, ["16.1.0", "16.2.0"]),
        "vendor/cr.seqera.io/private/nf-tower-enterprise/backend": (ENGINE, ["v25.1.0", "v25.1.3"]),
    }
    notes = plan_notes(first)
    assert "pull vendor-docker.io/library/redis; Harbor cannot serve vendor/docker.io/library/redis" in notes
    assert "deletes artifacts not pulled within 7 days" in notes
    assert "docker.io/bitnami/postgresql: a proxy-cache project cannot filter tags" in notes
    assert "apply --rotate-credentials" in notes
    assert second.empty, plan_changes(second)

    # What Harbor stores is exactly the selected versions, nothing else.
    assert bed.stored_repositories() == [
        "vendor/cr.seqera.io/private/nf-tower-enterprise/backend",
        "vendor/docker.io/bitnami/postgresql",
    ]
    assert bed.stored_tags("vendor/docker.io/bitnami/postgresql") == ["16.1.0", "16.2.0"]
    assert engine.audit(ctx, content=True).in_sync
    by_mirrorspec = list(bed.emu.requests)

    # What Harbor is configured with, read back through its API.
    endpoints = {r["name"]: r for r in bed.get("/registries")}
    hub = endpoints["mirrorspec-vendor-docker.io"]
    assert (hub["type"], hub["url"]) == ("docker-hub", "https://hub.docker.com")
    assert hub["credential"] == {"type": "basic", "access_key": "hub-bot", "access_secret": "*****"}
    assert hub["description"] == "managed-by: mirrorspec; project vendor"
    assert endpoints["mirrorspec-vendor-quay.io"]["type"] == "docker-registry"
    assert bed.emu.stored_secret("mirrorspec-vendor-cr.seqera.io") == SEQERA_CANARY
    policy = bed.policy("mirrorspec/vendor/docker.io/bitnami/postgresql")
    assert policy["filters"] == [
        {"type": "name", "value": "bitnami/postgresql"},
        {"type": "tag", "value": "{16.1.0,16.2.0}", "decoration": "matches"},
    ]
    assert (policy["dest_namespace"], policy["dest_namespace_replace_count"]) == ("vendor/docker.io", 0)
    assert policy["trigger"] == {"type": "scheduled", "trigger_settings": {"cron": "0 0 2 * * *"}}
    assert (policy["enabled"], policy["override"], policy["deletion"]) == (True, True, False)
    proxies = {p["name"]: p for p in bed.get("/projects") if p.get("registry_id")}
    assert proxies["vendor-docker.io"]["registry_id"] == hub["id"]
    assert set(proxies) == {"vendor-docker.io", "vendor-quay.io"}

    # Cached repositories were never listed upstream; names were exact, so no _catalog.
    during = request_log(bed.upstream)[seeded:]
    assert not [line for line in during if "_catalog" in line or "node-exporter" in line or "/redis/" in line]
    # The client: no cookies, an X-Request-Id per call, pages of 100.
    assert not [r for r in by_mirrorspec if r.sent_cookie]
    assert all(r.request_id for r in by_mirrorspec)
    lists = [
        r
        for r in by_mirrorspec
        if r.operation in ("listRegistries", "listReplicationPolicies", "listProjects")
    ]
    assert lists and all(r.query.get("page_size") == ["100"] for r in lists)
    for text in (to_json(first), to_json(second)):
        for canary in (HARBOR_CANARY, DOCKERHUB_CANARY, SEQERA_CANARY):
            assert canary not in text
    ctx.close()


def test_seqera_example_harbor_target_mirrors_chart_closure_and_images(bed: Bed, tmp_path: Path) -> None:
    ctx = _seqera_dc1(bed, tmp_path)

    first, second = converge(ctx, targets=["dc1"])

    assert _copied(first) == {
        "vendor/public.cr.seqera.io/charts/platform": (ENGINE, ["1.2.0", "1.5.3"]),
        "vendor/public.cr.seqera.io/charts/redis": (ENGINE, ["18.0.1"]),
        "vendor/cr.seqera.io/private/nf-tower-enterprise/backend": (ENGINE, ["v25.1.0", "v25.1.3"]),
        "vendor/cr.seqera.io/private/nf-tower-enterprise/frontend": (ENGINE, ["v25.1.0", "v25.1.3"]),
    }
    assert [c for c in plan_changes(first) if c[1] == "replication-policy"] == [
        ("create", "replication-policy", BACKEND),
        ("create", "replication-policy", FRONTEND),
        ("create", "replication-policy", PLATFORM),
        ("create", "replication-policy", REDIS_CHART),
    ]
    assert second.empty, plan_changes(second)
    assert bed.stored_tags("vendor/public.cr.seqera.io/charts/platform") == ["1.2.0", "1.5.3"]
    assert bed.stored_tags("vendor/public.cr.seqera.io/charts/redis") == ["18.0.1"]
    assert bed.stored_tags("vendor/cr.seqera.io/private/nf-tower-enterprise/frontend") == [
        "v25.1.0",
        "v25.1.3",
    ]
    assert len(bed.stored_repositories()) == 4
    assert engine.audit(ctx, targets=["dc1"], content=True).in_sync
    assert bed.policy(PLATFORM)["filters"][1]["value"] == "{1.2.0,1.5.3}"
    # Each changed policy ran once; the copies found their tags already there.
    assert len(bed.get("/replication/executions", page_size=100)) == 4
    ctx.close()


def test_a_new_upstream_version_updates_the_tag_filter_on_the_next_plan(bed: Bed, tmp_path: Path) -> None:
    ctx = _seqera_dc1(bed, tmp_path)
    converge(ctx, targets=["dc1"])
    redis = [{"name": "redis", "version": "~18.0.0", "repository": "oci://public.cr.seqera.io/charts"}]
    push_chart(bed.upstream, "charts/platform", "1.6.0", dependencies=redis)

    first, second = converge(ctx, targets=["dc1"])

    (change,) = first.targets[0].changes
    assert (change.action, change.resource, change.id) == ("update", "replication-policy", PLATFORM)
    assert change.reason == "differs in filters"
    assert change.after is not None
    assert change.after["filters"][1]["value"] == "{1.2.0,1.5.3,1.6.0}"
    assert _copied(first) == {"vendor/public.cr.seqera.io/charts/platform": (ENGINE, ["1.6.0"])}
    assert second.empty
    assert bed.stored_tags("vendor/public.cr.seqera.io/charts/platform") == ["1.2.0", "1.5.3", "1.6.0"]
    # The PUT carried the whole policy: nothing fell back to Harbor's zero values.
    (put,) = [r for r in bed.emu.requests if r.operation == "updateReplicationPolicy"]
    assert {"enabled", "dest_namespace_replace_count", "deletion", "replicate_deletion", "trigger"} <= set(
        put.body
    )
    assert put.body["enabled"] is True and put.body["dest_namespace_replace_count"] == 0
    assert bed.policy(PLATFORM)["enabled"] is True
    ctx.close()


def test_a_run_harbor_skips_for_a_running_execution_is_waited_for_and_run_again(
    bed: Bed, tmp_path: Path
) -> None:
    """Harbor skips a run started while another execution of the policy runs (issue 13, item
    7): apply waits for the running one and runs again, not a copy failure."""
    ctx = _seqera_dc1(bed, tmp_path)
    converge(ctx, targets=["dc1"])
    redis = [{"name": "redis", "version": "~18.0.0", "repository": "oci://public.cr.seqera.io/charts"}]
    push_chart(bed.upstream, "charts/platform", "1.6.0", dependencies=redis)
    plan = engine.plan(ctx, targets=["dc1"])
    policy_id = bed.policy(PLATFORM)["id"]
    bed.emu.release.clear()  # the schedule's run, started before apply, keeps running
    started = bed.emu.api("POST", "/replication/executions", json_body={"policy_id": policy_id})
    assert started.status_code == 201
    started_id = int(started.headers["Location"].rsplit("/", 1)[1])
    outcome: dict[str, Any] = {}
    applying = threading.Thread(target=lambda: outcome.update(result=engine.apply(ctx, plan)))
    applying.start()

    def executions() -> list[dict[str, Any]]:
        found = bed.get("/replication/executions", policy_id=policy_id, page_size=100, sort="id")
        return found  # type: ignore[no-any-return]

    deadline = time.monotonic() + 120  # generous: only a broken apply takes long here
    while not any(e["status_text"] == SKIPPED for e in executions()) and time.monotonic() < deadline:
        time.sleep(0.05)
    bed.emu.release.set()
    applying.join(timeout=300)

    assert not applying.is_alive()
    result = outcome["result"]
    assert result.ok, result.failures
    statuses = [(e["id"], e["status"], e["status_text"]) for e in executions() if e["id"] >= started_id]
    # The schedule's run, ours that Harbor skipped, ours again once it ended (the copy then found
    # its tag in place).
    assert statuses == [
        (started_id, "Succeed", ""),
        (started_id + 1, "Failed", SKIPPED),
        (started_id + 2, "Succeed", ""),
    ]
    assert bed.stored_tags("vendor/public.cr.seqera.io/charts/platform") == ["1.2.0", "1.5.3", "1.6.0"]
    ctx.close()


def test_a_running_execution_that_outlasts_the_deadline_is_a_one_line_error_and_not_stopped(
    bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _seqera_dc1(bed, tmp_path)
    converge(ctx, targets=["dc1"])
    redis = [{"name": "redis", "version": "~18.0.0", "repository": "oci://public.cr.seqera.io/charts"}]
    push_chart(bed.upstream, "charts/platform", "1.6.0", dependencies=redis)
    plan = engine.plan(ctx, targets=["dc1"])
    bed.emu.release.clear()
    started = bed.emu.api(
        "POST", "/replication/executions", json_body={"policy_id": bed.policy(PLATFORM)["id"]}
    )
    started_id = int(started.headers["Location"].rsplit("/", 1)[1])
    monkeypatch.setattr(harbor_executions, "EXECUTION_TIMEOUT", 0.5)
    try:
        result = engine.apply(ctx, plan)
        running = bed.get(f"/replication/executions/{started_id}")
    finally:
        bed.emu.release.set()

    failure = result.failures[0]
    assert failure.startswith(f"dc1: update replication-policy {PLATFORM}: ")
    assert f"was skipped while execution(s) {started_id} ran" in failure and "\n" not in failure
    assert running["status"] == "InProgress"  # not ours: never stopped
    assert not [r for r in bed.emu.requests if r.operation == "stopReplication"]


# --- ownership -------------------------------------------------------------------------------


def test_foreign_policies_and_endpoints_survive_apply_and_prune(bed: Bed, tmp_path: Path) -> None:
    foreign_endpoint = {
        "name": "team-a-upstream",
        "type": "docker-registry",
        "url": "https://public.cr.seqera.io",
        "description": "owned by team a",
    }
    assert bed.emu.api("POST", "/registries", json_body=foreign_endpoint).status_code == 201
    (foreign_id,) = [r["id"] for r in bed.get("/registries") if r["name"] == "team-a-upstream"]
    foreign_policy = {
        "name": "team-a-charts",
        "description": "managed-by: mirrorspec",  # looks like ours, but lands outside our project
        "src_registry": {"id": foreign_id},
        "dest_namespace": "team-a",
        "filters": [{"type": "name", "value": "charts/**"}],
        "trigger": {"type": "manual"},
        "enabled": True,
    }
    assert bed.emu.api("POST", "/replication/policies", json_body=foreign_policy).status_code == 201
    before = {"endpoint": bed.get(f"/registries/{foreign_id}"), "policy": bed.policy("team-a-charts")}

    ctx = _seqera_dc1(bed, tmp_path)
    converge(ctx, targets=["dc1"])
    # Drop the charts from the spec and prune: our policies for them go, nothing else does.
    pruned = _seqera_dc1(
        bed, tmp_path, lambda text: text.replace('versions: ">=1.2.0 <2.0.0"', 'versions: ">=9.0.0"')
    )
    first, second = converge(pruned, targets=["dc1"], prune=True)

    # In dependency order: the policies first, then the endpoint they used.
    assert [(c.action, c.resource, c.id) for c in first.targets[0].changes if c.action == "delete"] == [
        ("delete", "replication-policy", PLATFORM),
        ("delete", "replication-policy", REDIS_CHART),
        ("delete", "registry-endpoint", "mirrorspec-vendor-public.cr.seqera.io"),
    ]
    assert second.empty
    after = {"endpoint": bed.get(f"/registries/{foreign_id}"), "policy": bed.policy("team-a-charts")}
    assert after == before
    audit = engine.audit(pruned, targets=["dc1"])
    ownership = {(r.kind, r.id): r.managed for r in audit.targets[0].resources}
    assert ownership[("replication-policy", "team-a-charts")] is False
    assert ownership[("registry-endpoint", "team-a-upstream")] is False
    assert ownership[("replication-policy", BACKEND)] is True
    assert audit.targets[0].in_sync


def test_pruning_an_endpoint_a_foreign_policy_uses_is_a_one_line_conflict(bed: Bed, tmp_path: Path) -> None:
    ctx = _seqera_dc1(bed, tmp_path)
    converge(ctx, targets=["dc1"])
    ours = next(r for r in bed.get("/registries") if r["name"] == "mirrorspec-vendor-public.cr.seqera.io")
    borrowed = {
        "name": "team-b-borrows",
        "src_registry": {"id": ours["id"]},
        "dest_namespace": "team-b",
        "filters": [{"type": "name", "value": "charts/redis"}],
        "enabled": True,
    }
    assert bed.emu.api("POST", "/replication/policies", json_body=borrowed).status_code == 201

    pruned = _seqera_dc1(
        bed, tmp_path, lambda text: text.replace('versions: ">=1.2.0 <2.0.0"', 'versions: ">=9.0.0"')
    )
    result = engine.apply(pruned, engine.plan(pruned, targets=["dc1"], prune=True))

    (failure,) = result.failures
    assert "\n" not in failure
    assert failure.startswith(
        "dc1: delete registry-endpoint mirrorspec-vendor-public.cr.seqera.io: "
        "Harbor DELETE /registries/2: HTTP 412 PRECONDITION: "
    )
    assert "it is used by a replication policy or a proxy-cache project" in failure
    assert bed.policy("team-b-borrows")["src_registry"]["id"] == ours["id"]
    assert result.changed == 2  # our two policies were deleted


def test_a_foreign_endpoint_with_our_name_is_refused_at_plan_time(bed: Bed, tmp_path: Path) -> None:
    squatter = {"name": "mirrorspec-vendor-cr.seqera.io", "type": "docker-registry", "url": "https://quay.io"}
    assert bed.emu.api("POST", "/registries", json_body=squatter).status_code == 201
    with pytest.raises(ProviderConflict) as caught:
        engine.plan(_seqera_dc1(bed, tmp_path), targets=["dc1"])
    assert "registry-endpoint named mirrorspec-vendor-cr.seqera.io exists and is not managed" in str(
        caught.value
    )


# --- failures are one line, and nothing is left half-done unreported ------------------------


def test_an_upstream_harbor_cannot_reach_is_a_one_line_error(bed: Bed) -> None:
    push_image(bed.upstream, "acme/app", "1.0")  # mirrorspec reaches ghcr.io; "Harbor" cannot
    spec = parse_spec(
        "version: 1\n"
        "credentials:\n  harbor-admin:\n    username: {env: HARBOR_USER}\n"
        "    password: {env: HARBOR_PASSWORD}\n"
        "sources:\n"
        "  - registry: ghcr.io\n    repositories:\n      - name: acme/app\n        tags: ['1.0']\n"
        "  - registry: quay.io\n    repositories:\n      - name: prometheus/node-exporter\n"
        "        tags: ['v1.8.0']\n"
        "targets:\n"
        f"  - {{name: dc1, type: harbor, url: 'https://{HARBOR_HOST}', project: vendor, "
        "credentials: harbor-admin}\n"
    )
    ctx = bed.ctx(spec)

    result = engine.apply(ctx, engine.plan(ctx))

    assert all("\n" not in f for f in result.failures)
    endpoint_failure, policy_failure, copy_failure, *per_tag = result.failures
    # The engine may also name each tag the native copy left missing.
    assert all("ghcr.io/acme/app:1.0 has no manifest" in f for f in per_tag)
    assert endpoint_failure.startswith(
        "dc1: create registry-endpoint mirrorspec-vendor-ghcr.io: Harbor POST /registries: "
        "HTTP 400 BAD_REQUEST: the registry is unhealthy "
        "(Harbor could not reach https://ghcr.io with these credentials: check the URL"
    )
    assert "registry endpoint mirrorspec-vendor-ghcr.io does not exist" in policy_failure
    assert "no replication policy mirrorspec/vendor/ghcr.io/acme/app lists 1.0" in copy_failure
    # The reachable upstream was mirrored; nothing was created for the unreachable one.
    assert bed.stored_tags("vendor/quay.io/prometheus/node-exporter") == ["v1.8.0"]
    assert [r["name"] for r in bed.get("/registries")] == ["mirrorspec-vendor-quay.io"]
    assert [p["name"] for p in bed.get("/replication/policies")] == [
        "mirrorspec/vendor/quay.io/prometheus/node-exporter"
    ]
    again = engine.plan(ctx)
    assert [c[2] for c in plan_changes(again)] == [
        "mirrorspec-vendor-ghcr.io",
        "mirrorspec/vendor/ghcr.io/acme/app",
    ]


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 */6 * * *", "schedule: Harbor cron has 6 fields (seconds first)"),
        ("30 0 2 * * *", "schedule: Harbor requires the seconds field to be 0, found '30'"),
        ("0 * 2 * * *", "schedule: Harbor refuses '*' in the minutes field"),
        ("0 0 2 * * 8", "schedule: day-of-week field '8': '8' is outside 0-6"),
    ],
)
def test_a_bad_cron_is_a_one_line_spec_error(cron: str, message: str) -> None:
    text = (ROOT / "examples" / "harbor.yaml").read_text().replace('"0 0 2 * * *"', f'"{cron}"')
    with pytest.raises(SpecError) as caught:
        parse_spec(text, filename="harbor.yaml")
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("harbor.yaml:52:15: targets[0] (name='dc1') › ")
    assert message in str(caught.value)


def test_a_repository_needing_a_wildcard_name_filter_is_refused(bed: Bed) -> None:
    ctx = bed.ctx(load_spec(ROOT / "examples" / "harbor.yaml"))
    target = ctx.spec.target("dc1")
    wildcard = Artifact("docker.io", "bitnami/*", "16.1.0", "sha256:" + "0" * 64)
    with pytest.raises(ProviderError) as caught:
        harbor.translate([wildcard], target, ctx)
    assert str(caught.value) == (
        "docker.io/bitnami/* would need a wildcard name filter, which makes Harbor list the upstream's "
        "whole _catalog (GHCR refuses it): name repositories exactly"
    )


def test_an_execution_that_matches_nothing_fails_the_apply(bed: Bed) -> None:
    ctx = bed.ctx(
        parse_spec(
            "version: 1\n"
            "credentials:\n  harbor-admin:\n    username: {env: HARBOR_USER}\n"
            "    password: {env: HARBOR_PASSWORD}\n"
            "sources:\n  - registry: docker.io\n    repositories:\n      - name: bitnami/postgresql\n"
            "        versions: '^16.0.0'\n"
            f"targets:\n  - {{name: dc1, type: harbor, url: 'https://{HARBOR_HOST}', project: vendor, "
            "credentials: harbor-admin}\n"
        )
    )
    plan = engine.plan(ctx)
    for tag in ("16.1.0", "16.2.0"):  # gone upstream between plan and apply
        delete_tag(bed.upstream, "bitnami/postgresql", tag)

    result = engine.apply(ctx, plan)

    # The policy's own run, and the copy's run: each "succeeded" with nothing, each one line.
    policy_failure, copy_failure, *per_tag = result.failures
    assert policy_failure.startswith(
        "dc1: create replication-policy mirrorspec/vendor/docker.io/bitnami/postgresql"
    )
    for failure in (policy_failure, copy_failure):
        assert "succeeded but matched nothing upstream (Harbor reports success for an empty run)" in failure
    assert all("\n" not in f for f in result.failures)
    assert all("has no manifest" in f for f in per_tag)
    assert copy_failure.startswith("dc1: harbor-replication docker.io/bitnami/postgresql")
    assert bed.stored_repositories() == []


def test_a_failed_execution_fails_the_apply_with_the_task_log(bed: Bed, tmp_path: Path) -> None:
    ctx = _seqera_dc1(bed, tmp_path)
    converge(ctx, targets=["dc1"])
    redis = [{"name": "redis", "version": "~18.0.0", "repository": "oci://public.cr.seqera.io/charts"}]
    push_chart(bed.upstream, "charts/platform", "1.6.0", dependencies=redis)
    plan = engine.plan(ctx, targets=["dc1"])
    # The new chart's package blob is lost upstream after the plan: listing works, copying not.
    manifest = requests.get(
        f"{bed.upstream.url}/v2/charts/platform/manifests/1.6.0",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    ).json()
    layer = manifest["layers"][0]["digest"]
    assert (
        requests.delete(f"{bed.upstream.url}/v2/charts/platform/blobs/{layer}", timeout=10).status_code == 202
    )

    result = engine.apply(ctx, plan)

    # The changed policy's run, the copy's own run (and, from the engine, each tag still missing).
    assert len(result.failures) >= 2
    policy_failure = result.failures[0]
    assert "\n" not in policy_failure
    assert policy_failure.startswith(f"dc1: update replication-policy {PLATFORM}: replication execution ")
    assert " ended Failed: charts/platform [3 item(s) in total]: copying charts/platform:1.6.0 failed" in (
        policy_failure
    )
    assert bed.stored_tags("vendor/public.cr.seqera.io/charts/platform") == ["1.2.0", "1.5.3"]


# --- credentials -----------------------------------------------------------------------------


def test_masked_secrets_are_re_sent_only_with_rotate_credentials(
    bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _seqera_dc1(bed, tmp_path)
    converge(ctx, targets=["dc1"])
    rotated = "rotated-" + SEQERA_CANARY
    hashed = bcrypt.hashpw(rotated.encode(), bcrypt.gensalt(rounds=4)).decode()
    (bed.seqera.workdir / "htpasswd").write_text(f"seqera-bot:{hashed}\n")
    bed.seqera.users["seqera-bot"] = rotated
    monkeypatch.setenv("SEQERA_TOKEN", rotated)

    unseen = engine.plan(_seqera_dc1(bed, tmp_path), targets=["dc1"])
    assert unseen.empty  # Harbor answers "*****": the drift cannot be seen
    assert "a changed upstream password cannot be detected" in plan_notes(unseen)

    rotating = _seqera_dc1(bed, tmp_path)
    rotating.rotate_credentials = True  # type: ignore[attr-defined]  # `apply --rotate-credentials`
    first = engine.plan(rotating, targets=["dc1"])
    # Only endpoints with credentials have a secret to re-send (public.cr.seqera.io has none).
    assert plan_changes(first) == [("update", "registry-endpoint", "mirrorspec-vendor-cr.seqera.io")]
    (change,) = first.targets[0].changes
    assert change.reason == "differs in secret" and change.after is not None
    assert rotated not in to_json(first)
    assert engine.apply(rotating, first).ok
    assert bed.emu.stored_secret("mirrorspec-vendor-cr.seqera.io") == rotated

    # With the new secret Harbor can replicate again.
    push_image(bed.seqera, "private/nf-tower-enterprise/frontend", "v25.1.9", user="seqera-bot")
    _, second = converge(_seqera_dc1(bed, tmp_path), targets=["dc1"])
    assert second.empty
    assert "v25.1.9" in bed.stored_tags("vendor/cr.seqera.io/private/nf-tower-enterprise/frontend")


def test_wrong_harbor_credentials_are_a_one_line_auth_error(
    bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARBOR_PASSWORD", "not-the-password")
    with pytest.raises(ProviderAuthError) as caught:
        engine.plan(_seqera_dc1(bed, tmp_path), targets=["dc1"])
    message = str(caught.value)
    assert message.startswith(
        "dc1: Harbor GET /registries: HTTP 401 UNAUTHORIZED: unauthorized (check the target's credentials"
    )
    assert "\n" not in message and "not-the-password" not in message


# --- scale: pagination and split filters -----------------------------------------------------


def test_observe_reads_every_page(bed: Bed, tmp_path: Path) -> None:
    for i in range(105):
        body = {"name": f"other-{i:03d}", "type": "docker-registry", "url": "https://quay.io"}
        assert bed.emu.api("POST", "/registries", json_body=body).status_code == 201

    audit = engine.audit(_seqera_dc1(bed, tmp_path), targets=["dc1"])

    endpoints = [r for r in audit.targets[0].resources if r.kind == "registry-endpoint"]
    assert len(endpoints) == 105 and not any(r.managed for r in endpoints)
    pages = [r.query for r in bed.emu.requests if r.operation == "listRegistries"]
    assert pages == [{"page": ["1"], "page_size": ["100"]}, {"page": ["2"], "page_size": ["100"]}]


def test_a_long_tag_list_is_split_across_policies(
    bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A smaller column: the backend's "{v25.1.0,v25.1.3}" no longer fits, each tag alone does.
    single, both = (
        len(
            harbor_native._filters_column(
                harbor_native._filters("private/nf-tower-enterprise/frontend", tags)
            )
        )
        for tags in ("v25.1.0", "{v25.1.0,v25.1.3}")
    )
    monkeypatch.setattr(harbor_native, "FILTERS_COLUMN", single)
    assert both - 1 > single
    ctx = _seqera_dc1(bed, tmp_path)

    first, second = converge(ctx, targets=["dc1"])

    policies = [c[2] for c in plan_changes(first) if c[1] == "replication-policy"]
    assert BACKEND in policies and BACKEND + "#2" in policies and FRONTEND + "#2" in policies
    assert PLATFORM in policies and PLATFORM + "#2" not in policies
    assert bed.policy(BACKEND)["filters"][1]["value"] == "v25.1.0"
    assert bed.policy(BACKEND + "#2")["filters"][1]["value"] == "v25.1.3"
    assert bed.policy(BACKEND + "#2")["description"].endswith("; part 2/2")
    assert (
        "cr.seqera.io/private/nf-tower-enterprise/backend: 2 versions do not fit one Harbor "
        "replication policy" in plan_notes(first)
    )
    assert second.empty
    assert bed.stored_tags("vendor/cr.seqera.io/private/nf-tower-enterprise/backend") == [
        "v25.1.0",
        "v25.1.3",
    ]


def _tool_spec(versions: str) -> str:
    return (
        "version: 1\n"
        "credentials:\n  harbor-admin:\n    username: {env: HARBOR_USER}\n"
        "    password: {env: HARBOR_PASSWORD}\n"
        "sources:\n  - registry: quay.io\n    repositories:\n"
        f"      - name: team/data-platform/tool\n        versions: '{versions}'\n"
        f"targets:\n  - {{name: dc1, type: harbor, url: 'https://{HARBOR_HOST}', project: vendor, "
        "credentials: harbor-admin}\n"
    )


def test_a_semver_range_of_143_versions_never_overflows_harbors_filters_column(bed: Bed) -> None:
    """Harbor stores all of a policy's filters as JSON in a varchar(1024) column; a longer one
    is a 500 (issue 13, item 4). A range resolving to 143 versions (about 1,100 characters of
    tag filter) is split across policies, each of whose filters fits, and the plan says so."""
    versions = [f"16.{minor}.{patch}" for minor in range(13) for patch in range(11)]
    push_image(bed.upstream, "team/data-platform/tool", versions[0])
    add_tags(bed.upstream, "team/data-platform/tool", versions[0], versions[1:])
    ctx = bed.ctx(parse_spec(_tool_spec("^16.0.0")))

    first, second = converge(ctx)

    assert "do not fit one Harbor replication policy" in plan_notes(first)
    assert "split across 2 policies" in plan_notes(first)
    policies = [p for p in bed.emu.policies() if p["name"].startswith("mirrorspec/")]
    assert len(policies) == 2
    assert all(len(filters_column(p["filters"])) <= FILTERS_COLUMN for p in policies)
    assert not [r for r in bed.emu.requests if r.status >= 500]  # nothing the database refused
    assert second.empty
    assert bed.stored_tags("vendor/quay.io/team/data-platform/tool") == sorted(versions)


def test_a_plan_whose_filters_overflow_the_column_is_refused_before_sending(
    bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan made elsewhere (or by an older mirrorspec) must not make Harbor's database refuse a
    body: the 500 it would answer looks transient and would be retried."""
    ctx = _seqera_dc1(bed, tmp_path)
    plan = engine.plan(ctx, targets=["dc1"])
    monkeypatch.setattr(harbor_native, "FILTERS_COLUMN", 100)

    result = engine.apply(ctx, plan)

    refused = [f for f in result.failures if "as Harbor stores them" in f]
    assert refused and all("\n" not in f for f in refused)
    assert any(f.startswith(f"dc1: create replication-policy {BACKEND}: its filters take ") for f in refused)
    assert all(f.endswith("than the 100 its column holds; re-run plan, which splits them") for f in refused)
    sent = [r.body["filters"] for r in bed.emu.requests if r.operation == "createReplicationPolicy"]
    assert all(len(filters_column(f)) <= 100 for f in sent)  # only those that fit were sent


def test_an_endpoint_ca_certificate_is_marked_unverified_for_harbor_before_2_15(
    bed: Bed, tmp_path: Path
) -> None:
    """`ca_certificate` on registry endpoints arrived in Harbor v2.15.0 (issue 13, item 8)."""
    shutil.copy(bed.emu.ca_file, tmp_path / "upstream-ca.pem")
    text = _tool_spec("^16.0.0").replace(
        "  - registry: quay.io\n", "  - registry: quay.io\n    ca-bundle: upstream-ca.pem\n"
    )
    (tmp_path / "spec.yaml").write_text(text)
    push_image(bed.upstream, "team/data-platform/tool", "16.0.0")
    plan = engine.plan(bed.ctx(load_spec(tmp_path / "spec.yaml")))

    (note,) = [line for line in plan_notes(plan).splitlines() if "ca_certificate" in line]
    assert "mirrorspec-vendor-quay.io" in note and "unverified" in note and "v2.15.0" in note
    assert "mirrorspec-vendor" not in plan_notes(engine.plan(bed.ctx(parse_spec(_tool_spec("^16.0.0")))))


# --- cache mode ------------------------------------------------------------------------------


def test_dropping_a_cached_upstream_prunes_its_proxy_project_then_its_endpoint(
    bed: Bed, tmp_path: Path
) -> None:
    ctx = bed.ctx(load_spec(ROOT / "examples" / "harbor.yaml"))
    converge(ctx)
    text = (ROOT / "examples" / "harbor.yaml").read_text()
    without_quay = text.replace(
        "  - registry: quay.io\n    repositories:\n"
        "      - name: prometheus/node-exporter\n        all-tags: true\n",
        "",
    )
    spec = tmp_path / "harbor.yaml"
    spec.write_text(without_quay)

    first, second = converge(bed.ctx(load_spec(spec)), prune=True)

    deletes = [(c.action, c.resource, c.id) for t in first.targets for c in t.changes]
    assert deletes == [
        ("delete", "proxy-cache-project", "vendor-quay.io"),
        ("delete", "registry-endpoint", "mirrorspec-vendor-quay.io"),
    ]
    assert second.empty
    assert "vendor-quay.io" not in [p["name"] for p in bed.get("/projects")]


# --- the error boundary ----------------------------------------------------------------------


def _subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def test_every_requests_exception_is_mapped_to_a_provider_error() -> None:
    target = parse_spec(
        "version: 1\nsources:\n  - registry: quay.io\n    repositories:\n      - {name: a/b, tags: ['1']}\n"
        "targets:\n  - {name: dc1, type: harbor, url: 'https://h.example.com', project: p}\n"
    ).target("dc1")
    classes = {
        c for c in _subclasses(requests.exceptions.RequestException) if c.__module__.startswith("requests")
    }
    assert requests.exceptions.SSLError in classes and requests.exceptions.ReadTimeout in classes
    for cls in sorted(classes, key=lambda c: c.__name__):
        try:
            error = cls("boom")
        except TypeError:  # JSONDecodeError wants (msg, doc, pos)
            error = cls("boom", "", 0)
        with pytest.raises(ProviderError) as caught, harbor_api._mapped(target, "observe"):
            raise error
        assert caught.value.target == "dc1" and caught.value.provider == "harbor"
    statuses = {401: ProviderAuthError, 403: ProviderAuthError, 409: ProviderConflict, 412: ProviderConflict}
    for status, kind in statuses.items():
        with pytest.raises(kind), harbor_api._mapped(target, "apply"):
            raise harbor_api._HarborError(status, "X", "no")


def test_adapter_types_by_upstream_host() -> None:
    assert harbor.adapter_of("docker.io") == ("docker-hub", "https://hub.docker.com")
    assert harbor.adapter_of("index.docker.io") == ("docker-hub", "https://hub.docker.com")
    assert harbor.adapter_of("ghcr.io") == ("github-ghcr", "https://ghcr.io")
    assert harbor.adapter_of("mycompany.azurecr.io")[0] == "azure-acr"
    assert harbor.adapter_of("123456789012.dkr.ecr.eu-west-1.amazonaws.com")[0] == "aws-ecr"
    assert harbor.adapter_of("europe-docker.pkg.dev")[0] == "google-gcr"
    assert harbor.adapter_of("gcr.io")[0] == "google-gcr"
    assert harbor.adapter_of("quay.io") == ("docker-registry", "https://quay.io")
    assert harbor.adapter_of("registry.example.com:5000") == (
        "docker-registry",
        "https://registry.example.com:5000",
    )


def test_a_policy_name_longer_than_harbors_column_is_cut_with_a_hash() -> None:
    """`replication_policy.name` is varchar(256), and `mirrorspec/<destination>[#part]` can be
    longer behind a short Harbor host name (a destination reference itself stops at 255
    characters, host included). The name is cut with a hash of the whole, the same on every run,
    so that the next plan finds the policy it wrote; parts keep their suffix."""
    destination = "vendor/quay.io/team/" + "x" * 240
    first, second = harbor_native._policy_name(destination, 1), harbor_native._policy_name(destination, 2)
    assert len(first) == len(second) == harbor_native.POLICY_COLUMNS
    assert first.startswith("mirrorspec/vendor/quay.io/team/xxx") and second.endswith("#2")
    assert first == harbor_native._policy_name(destination, 1)
    assert first[:-9].startswith(second[:-11]) and first[-8:] == second[-10:-2]  # one hash of the whole
    other = harbor_native._policy_name(destination[:-1] + "y", 1)
    assert other != first and len(other) == harbor_native.POLICY_COLUMNS
    short = "vendor/quay.io/team/app"
    assert harbor_native._policy_name(short, 1) == f"mirrorspec/{short}"


def test_a_destination_namespace_longer_than_harbors_column_is_refused_at_plan(bed: Bed) -> None:
    """`dest_namespace` is varchar(256) too, and cannot be cut: one line, before anything is sent."""
    push_image(bed.upstream, "team/data-platform/tool", "16.0.0")
    project = "p" * 250
    ctx = bed.ctx(parse_spec(_tool_spec("^16.0.0").replace("project: vendor", f"project: {project}")))
    with pytest.raises(ProviderError) as refused:
        engine.plan(ctx, targets=["dc1"])
    message = str(refused.value)
    assert "\n" not in message
    assert "quay.io/team/data-platform/tool: the destination namespace" in message
    assert message.endswith(
        "is 258 characters, and Harbor stores a replication policy's in 256: shorten the "
        "target's prefix or use a flatter layout"
    )
    assert not [r for r in bed.emu.requests if r.method in ("POST", "PUT", "DELETE")]
