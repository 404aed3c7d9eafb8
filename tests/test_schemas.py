"""The published JSON Schemas (`mirrorspec/schemas.py`) describe what the CLI really prints.

Real documents come from the console script against real registries — plans with copies
(missing and digest-mismatch, Helm dependencies), audits with and without `--content`, in
sync and drifted, with notes — and from the ECR provider against its test bed (native
changes with `before`/`after`, foreign resources, drift items). Each must validate with
Draft 2020-12; mutated documents must not, so the schema is strict enough to notice a field
that `to_json()` adds or drops.
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import cli_runner
import pytest
from emulators.ecr import EcrEmulator
from jsonschema import Draft202012Validator
from testbed import push_chart, push_image, retag, start_registry

from mirrorspec import engine, schemas
from mirrorspec.context import Endpoint, RunContext
from mirrorspec.plan import to_json
from mirrorspec.providers.ecr.clients import AWS
from mirrorspec.spec import json_schema, parse_spec

ACCOUNT = "123456789012"
ECR_HOST = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"

SPEC = """\
version: 1
sources:
  - registry: {upstream}
    insecure: true
    repositories:
      - name: team/app
        tags: ["v1.*"]
      - name: charts/platform
        versions: "1.0.0"
        helm-dependencies: true
targets:
  - name: lab
    type: registry
    registry: {destination}
    prefix: mirror
    insecure: true
"""


def mirrorspec(*args: str, check: int = 0) -> subprocess.CompletedProcess[str]:
    return cli_runner.run(*args, check=check, timeout=120)


def cli_json(*args: str, check: int = 0) -> Any:
    return json.loads(mirrorspec(*args, "--format", "json", check=check).stdout)


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """name → a JSON document printed by the CLI, at each stage of mirroring."""
    workdir = tmp_path_factory.mktemp("schemas")
    with start_registry(workdir / "up") as upstream, start_registry(workdir / "down") as destination:
        for tag in ("v1.0.0", "v1.1.0", "v2.0.0"):
            push_image(upstream, "team/app", tag, seed=tag)
        push_chart(upstream, "charts/redis", "18.0.1")
        push_chart(
            upstream,
            "charts/platform",
            "1.0.0",
            dependencies=[
                {"name": "redis", "version": "~18.0.0", "repository": f"oci://{upstream.host}/charts"},
                {"name": "legacy", "version": "1.0.0", "repository": "https://charts.example.com"},
            ],
        )
        spec = workdir / "spec.yaml"
        spec.write_text(SPEC.format(upstream=upstream.host, destination=destination.host))
        s = str(spec)
        docs = {
            "plan-copies": cli_json("plan", s),
            "audit-missing": cli_json("audit", s, "--content", check=2),
            "audit-no-content": cli_json("audit", s, "--rules-only", check=3),
        }
        mirrorspec("sync", s)
        retag(destination, f"mirror/{upstream.host.replace(':', '_')}/team/app", "v1.0.0", seed="other")
        docs["plan-mismatch"] = cli_json("plan", s)
        docs["audit-mismatch"] = cli_json("audit", s, "--content", check=2)
        mirrorspec("sync", s)
        docs["plan-empty"] = cli_json("plan", s)
        docs["audit-in-sync"] = cli_json("audit", s, "--content")
        yield docs


def test_the_cli_documents_cover_every_case(documents: dict[str, Any]) -> None:
    # Guards the fixture: the schema tests below mean something only if these hold.
    copies = documents["plan-copies"]["targets"][0]["copies"]
    assert {t["reason"] for c in copies for t in c["tags"]} == {"missing"}
    assert any(a["dependency_of"] for a in documents["plan-copies"]["artifacts"])
    levels = {n["level"] for n in documents["plan-copies"]["targets"][0]["notes"]}
    assert levels == {"info", "warning"}
    mismatch = documents["plan-mismatch"]["targets"][0]["copies"]
    assert [t["reason"] for c in mismatch for t in c["tags"]] == ["digest-mismatch"]
    statuses = {c["status"] for c in documents["audit-mismatch"]["targets"][0]["content"]}
    assert statuses == {"present", "digest-mismatch"}
    assert documents["audit-no-content"]["targets"][0]["content"] is None
    assert documents["audit-no-content"]["targets"][0]["unchecked"] > 0
    assert documents["plan-empty"]["empty"] is True
    assert documents["audit-in-sync"]["in_sync"] is True
    assert documents["audit-missing"]["in_sync"] is False


CLI_DOCUMENTS = [
    "plan-copies",
    "audit-missing",
    "audit-no-content",
    "plan-mismatch",
    "audit-mismatch",
    "plan-empty",
    "audit-in-sync",
]


@pytest.mark.parametrize("name", CLI_DOCUMENTS)
def test_cli_output_validates_against_the_published_schema(documents: dict[str, Any], name: str) -> None:
    kind = name.split("-")[0]
    validator = Draft202012Validator(published(kind))

    assert list(validator.iter_errors(documents[name])) == []


@functools.cache
def published(kind: str) -> dict[str, Any]:
    """The schema exactly as `mirrorspec schema --output KIND` prints it."""
    printed: dict[str, Any] = json.loads(mirrorspec("schema", "--output", kind).stdout)
    return printed


# --- the ECR provider: native changes, foreign resources, drift ----------------------------


@pytest.fixture(scope="module")
def ecr_documents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("ecr-schemas")
    with (
        pytest.MonkeyPatch.context() as env,
        EcrEmulator() as emu,
        start_registry(workdir / "up") as upstream,
        start_registry(workdir / "ecr", tls=True, users={"AWS": f"{ACCOUNT}-auth-token"}) as ecr,
    ):
        env.setenv("SCHEMA_HUB_USER", "hub-bot")
        env.setenv("SCHEMA_HUB_TOKEN", "hub-token")
        push_image(upstream, "library/redis", "7.2.4")
        push_image(upstream, "team/app", "1.0.0")
        ecr_client = emu.client("ecr", "eu-west-1")
        # Someone else's rule (foreign), and our replication rule pointing elsewhere (drift).
        ecr_client.create_pull_through_cache_rule(
            ecrRepositoryPrefix="team-x", upstreamRegistryUrl="public.ecr.aws", upstreamRegistry="ecr-public"
        )
        ecr_client.put_replication_configuration(
            replicationConfiguration={
                "rules": [
                    {
                        "destinations": [{"region": "eu-north-1", "registryId": ACCOUNT}],
                        "repositoryFilters": [{"filter": "vendor", "filterType": "PREFIX_MATCH"}],
                    }
                ]
            }
        )
        spec = parse_spec(
            f"""\
version: 1
mode: cache
credentials:
  hub:
    username: {{env: SCHEMA_HUB_USER}}
    password: {{env: SCHEMA_HUB_TOKEN}}
sources:
  - registry: docker.io
    credentials: hub
    repositories:
      - name: redis
        all-tags: true
  - registry: {upstream.host}
    insecure: true
    repositories:
      - name: team/app
        tags: ["1.*"]
targets:
  - name: aws
    type: ecr
    registry: {ECR_HOST}
    prefix: vendor
    replicate-to:
      - region: us-east-1
"""
        )

        def aws_client(ctx: RunContext, service: str, region: str, profile: str | None) -> Any:
            return emu.client(service, region=region)

        ctx = RunContext(
            spec,
            client_factories={AWS: aws_client},
            registry_overrides={
                "docker.io": Endpoint(upstream.host, insecure=True),
                ECR_HOST: Endpoint(ecr.host, ca_bundle=str(ecr.ca_file)),
            },
        )
        try:
            yield {
                "plan": json.loads(to_json(engine.plan(ctx, spec_name="ecr.yaml"))),
                "audit": json.loads(to_json(engine.audit(ctx, content=True, spec_name="ecr.yaml"))),
            }
        finally:
            ctx.close()


def test_ecr_plan_and_audit_validate(ecr_documents: dict[str, Any]) -> None:
    plan, audit = ecr_documents["plan"], ecr_documents["audit"]
    changes = plan["targets"][0]["changes"]
    assert {c["action"] for c in changes} >= {"create", "update"}
    assert any(c["before"] is not None and c["after"] is not None for c in changes)
    (target,) = audit["targets"]
    assert target["drift"] and target["content"]
    assert any(not r["managed"] for r in target["resources"])

    assert list(Draft202012Validator(published("plan")).iter_errors(plan)) == []
    assert list(Draft202012Validator(published("audit")).iter_errors(audit)) == []


# --- the schemas themselves ----------------------------------------------------------------


@pytest.mark.parametrize("kind", schemas.KINDS)
def test_schemas_are_valid_draft_2020_12(kind: str) -> None:
    schema = published(kind)

    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema == json.loads(json.dumps(schemas.schema(kind)))


def test_schema_without_output_is_the_spec_schema() -> None:
    assert json.loads(mirrorspec("schema").stdout) == json_schema()


def test_an_unknown_schema_kind_is_a_usage_error() -> None:
    proc = mirrorspec("schema", "--output", "terraform", check=1)
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ")


@pytest.mark.parametrize("kind", ["plan", "audit"])
def test_every_property_is_required_described_and_closed(kind: str) -> None:
    schema = published(kind)
    objects = [schema, *schema["$defs"].values()]
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert set(obj["required"]) == set(obj["properties"]), obj["title"]
        assert obj["description"]
        for name, prop in obj["properties"].items():
            assert prop.get("description"), f"{obj['title']}.{name}"
    assert schema["properties"]["version"]["const"] == 1


def test_derived_fields_are_in_the_schema() -> None:
    plan, audit = published("plan"), published("audit")
    assert plan["properties"]["empty"]["type"] == "boolean"
    assert plan["$defs"]["TargetPlan"]["properties"]["empty"]["type"] == "boolean"
    assert audit["properties"]["in_sync"]["type"] == "boolean"
    assert audit["$defs"]["TargetAudit"]["properties"]["in_sync"]["type"] == "boolean"


# --- mutated documents fail ----------------------------------------------------------------


def _drop(path: tuple[Any, ...]) -> Callable[[Any], None]:
    def mutate(doc: Any) -> None:
        for key in path[:-1]:
            doc = doc[key]
        del doc[path[-1]]

    return mutate


def _set(path: tuple[Any, ...], value: Any) -> Callable[[Any], None]:
    def mutate(doc: Any) -> None:
        for key in path[:-1]:
            doc = doc[key]
        doc[path[-1]] = value

    return mutate


MUTATIONS = {
    "plan-copies": {
        "missing version": _drop(("version",)),
        "missing empty": _drop(("empty",)),
        "missing copy tag digest": _drop(("targets", 0, "copies", 0, "tags", 0, "digest")),
        "missing dependency_of": _drop(("artifacts", 0, "dependency_of")),
        "version is a string": _set(("version",), "1"),
        "version 2": _set(("version",), 2),
        "empty is a string": _set(("empty",), "false"),
        "tags is an object": _set(("targets", 0, "copies", 0, "tags"), {}),
        "unknown reason": _set(("targets", 0, "copies", 0, "tags", 0, "reason"), "stale"),
        "unknown note level": _set(("targets", 0, "notes", 0, "level"), "error"),
        "up_to_date is a string": _set(("targets", 0, "up_to_date"), "0"),
        "an extra field": _set(("targets", 0, "tag_count"), 2),
    },
    "audit-mismatch": {
        "missing in_sync": _drop(("in_sync",)),
        "missing target in_sync": _drop(("targets", 0, "in_sync")),
        "missing actual": _drop(("targets", 0, "content", 0, "actual")),
        "status unknown": _set(("targets", 0, "content", 0, "status"), "stale"),
        "content is a string": _set(("targets", 0, "content"), "none"),
        "drift is null": _set(("targets", 0, "drift"), None),
        "an extra field": _set(("targets", 0, "content", 0, "size"), 1),
    },
}


@pytest.mark.parametrize(
    ("name", "mutation"),
    [(name, mutation) for name, cases in MUTATIONS.items() for mutation in cases],
)
def test_a_mutated_document_fails_validation(documents: dict[str, Any], name: str, mutation: str) -> None:
    document = copy.deepcopy(documents[name])
    validator = Draft202012Validator(published(name.split("-")[0]))
    assert validator.is_valid(document)

    MUTATIONS[name][mutation](document)

    assert not validator.is_valid(document)


def test_a_change_with_a_bad_action_fails(ecr_documents: dict[str, Any]) -> None:
    document = copy.deepcopy(ecr_documents["plan"])
    document["targets"][0]["changes"][0]["action"] = "upsert"

    assert not Draft202012Validator(published("plan")).is_valid(document)


def test_field_docs_come_from_the_dataclasses() -> None:
    artifact = published("plan")["$defs"]["Artifact"]
    assert artifact["description"].startswith("One resolved upstream tag.")
    assert "digest" in artifact["properties"]["digest"]["description"].lower()
