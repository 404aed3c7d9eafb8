"""`mirrorspec render terraform`: the example specs' native rules as `.tf.json`.

The CLI runs in-process with only the run context pointed at local upstream registries; the
target is unreachable on purpose (its SDK factories raise, its hosts point at a closed port),
which proves rendering reads nothing from it. Every rendered file is checked for:

- structure: valid JSON, only Terraform's top-level keys, `terraform.required_providers`;
- the real resource types and argument names, against each provider's schema as its source
  declares it (`ARGUMENTS` below: required arguments present, no unknown one);
- secrets: every login is a variable, every password variable is `sensitive`, and no canary
  (nor any user name read from the environment) is in the file or on stdout/stderr;
- Terraform itself, offline. `terraform validate` needs the providers' schemas, which cannot
  be downloaded here (the real `hashicorp/aws` schema checks the ECR files, from a local
  provider mirror, in test_terraform_aws_roundtrip.py; azurerm and harbor are not installed);
  instead `terraform providers` loads the file as configuration (it rejects unknown top-level keys,
  bad labels, duplicate resources, malformed `variable`/`provider` blocks and names the
  providers required), and a stand-in copy whose resources become built-in `terraform_data`
  (same bodies, references rewritten) goes through `terraform validate`, which parses every
  expression and resolves every reference to a variable, resource or data source.

And against each provider's test bed: the resources in the file are exactly those the plan
would create on an empty target.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import provider_beds as beds
import pytest
from emulators.ecr import EcrEmulator

from mirrorspec import cli, cli_common, engine, render_terraform, terraform_document
from mirrorspec.context import Endpoint, RunContext
from mirrorspec.providers.acr.clients import AZURE_CREDENTIAL, AZURE_MANAGEMENT
from mirrorspec.providers.ecr.clients import AWS
from mirrorspec.spec import load_spec

EXAMPLES = beds.EXAMPLES
TOP_LEVEL = {"//", "terraform", "provider", "variable", "data", "resource", "output", "locals"}
META = {"//", "depends_on", "provider", "count", "for_each", "lifecycle"}

# Resource type → (required arguments, optional arguments), as the providers' sources declare
# them: hashicorp/terraform-provider-aws internal/service/{ecr,secretsmanager}, hashicorp/
# terraform-provider-azurerm internal/services/containers (research/acr.md §5), goharbor/
# terraform-provider-harbor provider/resource_{registry,replication,project}.go (research/
# harbor.md §8). Nested blocks are checked by `BLOCKS`.
ARGUMENTS: dict[str, tuple[set[str], set[str]]] = {
    "aws_ecr_pull_through_cache_rule": (
        {"ecr_repository_prefix", "upstream_registry_url"},
        {"credential_arn", "custom_role_arn", "upstream_repository_prefix"},
    ),
    "aws_ecr_repository_creation_template": (
        {"prefix", "applied_for"},
        {
            "description",
            "custom_role_arn",
            "encryption_configuration",
            "image_tag_mutability",
            "lifecycle_policy",
            "repository_policy",
            "resource_tags",
        },
    ),
    "aws_ecr_repository": (
        {"name"},
        {"force_delete", "image_tag_mutability", "encryption_configuration", "image_scanning_configuration"},
    ),
    "aws_ecr_replication_configuration": (set(), {"replication_configuration"}),
    "aws_ecr_registry_policy": ({"policy"}, set()),
    "aws_secretsmanager_secret": (set(), {"name", "name_prefix", "description", "kms_key_id", "policy"}),
    "aws_secretsmanager_secret_version": (
        {"secret_id"},
        {"secret_string", "secret_binary", "version_stages"},
    ),
    "azurerm_container_registry_cache_rule": (
        {"name", "container_registry_id", "source_repo", "target_repo"},
        {"credential_set_id"},
    ),
    "azurerm_container_registry_credential_set": (
        {"name", "container_registry_id", "login_server", "identity", "authentication_credentials"},
        set(),
    ),
    "harbor_registry": (
        {"provider_name", "name", "endpoint_url"},
        {"description", "access_id", "access_secret", "insecure", "ca_certificate"},
    ),
    "harbor_replication": (
        {"name", "action", "registry_id"},
        {
            "schedule",
            "filters",
            "dest_namespace",
            "dest_namespace_replace",
            "override",
            "enabled",
            "deletion",
            "copy_by_chunk",
            "single_active_replication",
            "speed",
            "execute_on_changed",
            "description",
        },
    ),
    "harbor_project": (
        {"name"},
        {
            "public",
            "vulnerability_scanning",
            "registry_id",
            "storage_quota",
            "force_destroy",
            "cve_allowlist",
        },
    ),
}
# (resource type, block path) → the block's arguments.
BLOCKS: dict[tuple[str, str], set[str]] = {
    ("aws_ecr_replication_configuration", "replication_configuration"): {"rule"},
    ("aws_ecr_replication_configuration", "replication_configuration.rule"): {
        "destination",
        "repository_filter",
    },
    ("aws_ecr_replication_configuration", "replication_configuration.rule.destination"): {
        "region",
        "registry_id",
    },
    ("aws_ecr_replication_configuration", "replication_configuration.rule.repository_filter"): {
        "filter",
        "filter_type",
    },
    ("azurerm_container_registry_credential_set", "identity"): {"type"},
    ("azurerm_container_registry_credential_set", "authentication_credentials"): {
        "username_secret_id",
        "password_secret_id",
    },
    ("harbor_replication", "filters"): {"name", "tag", "labels", "decoration", "resource"},
}
# What each example target renders to (the registry target has no native rules).
EXPECTED_TYPES = {
    ("ecr.yaml", "aws-prod"): {  # docker.io is copied, not cached: no secret (issue 13)
        "aws_ecr_pull_through_cache_rule",
        "aws_ecr_repository_creation_template",
        "aws_ecr_repository",
        "aws_ecr_replication_configuration",
        "aws_ecr_registry_policy",
    },
    ("acr.yaml", "azure-prod"): {
        "azurerm_container_registry_credential_set",
        "azurerm_container_registry_cache_rule",
    },
    ("harbor.yaml", "dc1"): {"harbor_registry", "harbor_project", "harbor_replication"},
    ("seqera.yaml", "aws-prod"): {"aws_ecr_repository", "aws_ecr_replication_configuration"},
    ("seqera.yaml", "azure-prod"): set(),  # mirror mode: imports only, no native rules
    ("seqera.yaml", "dc1"): {"harbor_registry", "harbor_project", "harbor_replication"},
    ("seqera.yaml", "lab"): set(),
}
PROVIDER_OF = {"aws-prod": "hashicorp/aws", "azure-prod": "hashicorp/azurerm", "dc1": "goharbor/harbor"}
IDS = [f"{spec}:{target}" for spec, target in sorted(EXPECTED_TYPES)]
# User names the specs read from the environment: not secret, but rendering must not resolve them.
ENV_USERS = ("hub-bot", "seqera-bot", "lab-bot")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return beds.seed(tmp_path_factory.mktemp("render-seed"))


@pytest.fixture(scope="module")
def ups(seeded: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[beds.Upstreams]:
    # Read-only for every test here: one set of upstream registries for the module.
    with beds.upstreams(seeded, tmp_path_factory.mktemp("render-upstreams")) as started:
        yield started


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    beds.set_environment(monkeypatch)


def _unreachable(*args: Any) -> Any:
    raise AssertionError("render terraform must not reach the target")


def test_more_replication_destinations_than_the_aws_provider_takes_is_one_line(
    ups: beds.Upstreams, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """ECR takes 100 destinations in a rule, hashicorp/aws's schema 25: a file terraform would
    reject is never written."""
    text = (EXAMPLES / "ecr.yaml").read_text()
    given = '      - {region: eu-central-1, account: "210987654321", profile: dr}\n'
    assert given in text
    many = "".join(f'      - {{region: us-east-1, account: "2109876543{i:02d}"}}\n' for i in range(25))
    spec = tmp_path / "ecr.yaml"
    spec.write_text(text.replace(given, given + many))  # 27 destinations
    out_file = tmp_path / "mirror.tf.json"
    code, out, err = render_cli(ups, monkeypatch, capsys, str(spec), "-t", "aws-prod", "-o", str(out_file))
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (
        "error: target 'aws-prod': 27 replication destinations; the Terraform AWS provider takes at "
        "most 25 per rule (aws_ecr_replication_configuration), so leave replication to `mirrorspec "
        "apply` (ECR takes up to 100) or give fewer"
    )
    assert not out_file.exists()


def render_cli(
    ups: beds.Upstreams,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
) -> tuple[int, str, str]:
    """`mirrorspec render terraform ...` in-process, reaching the upstreams and not the target."""
    closed = Endpoint("127.0.0.1:9", insecure=True)  # discard port: nothing listens
    overrides = {**ups.overrides(), beds.HARBOR_HOST: closed, beds.LAB_HOST: closed}
    monkeypatch.setattr(
        cli_common,
        "RunContext",
        partial(
            RunContext,
            registry_overrides=overrides,
            client_factories=dict.fromkeys((AWS, AZURE_CREDENTIAL, AZURE_MANAGEMENT), _unreachable),
        ),
    )
    with pytest.raises(SystemExit) as exit_:
        cli.main(["render", "terraform", *argv])
    out = capsys.readouterr()
    return int(exit_.value.code or 0), out.out, out.err


# --- checks shared by the tests ------------------------------------------------------------


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "//":
                yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def references(text: str) -> set[str]:
    """`var.x`, `data.t.l` and `t.l` references in the interpolations of one string."""
    found: set[str] = set()
    for expression in re.findall(r"(?<!\$)\$\{(.*)\}", text):
        expression = re.sub(r'"[^"]*"', '""', expression)  # quoted strings hold no references
        found |= {f"var.{m}" for m in re.findall(r"\bvar\.([A-Za-z_][\w-]*)", expression)}
        found |= {".".join(m) for m in re.findall(r"\b(data)\.([a-z]\w*)\.([A-Za-z_][\w-]*)", expression)}
        found |= {
            ".".join(m)
            for m in re.findall(r"(?<![.\w])((?:aws|azurerm|harbor)_\w+)\.([A-Za-z_][\w-]*)", expression)
        }
    return found


def check_structure(document: dict[str, Any], expected_types: set[str]) -> None:
    assert set(document) <= TOP_LEVEL
    assert isinstance(document["//"], list) and document["//"][0].startswith("Generated by")
    required = document["terraform"]["required_providers"]
    for name, requirement in required.items():
        assert requirement["source"] == render_terraform.terraform_providers()[name][0]
        assert requirement["version"].startswith(">= ")
    resources = document.get("resource", {})
    assert set(resources) == expected_types
    for rtype, blocks in resources.items():
        prefix = rtype.split("_", 1)[0]
        assert prefix in required, f"{rtype} needs provider {prefix} in required_providers"
        required_args, optional_args = ARGUMENTS[rtype]
        for label, body in blocks.items():
            assert re.fullmatch(r"[A-Za-z_][\w-]*", label), label
            arguments = set(body) - META
            assert required_args <= arguments, (rtype, label, required_args - arguments)
            assert arguments <= required_args | optional_args, (rtype, label, arguments - optional_args)
            for (btype, path), allowed in BLOCKS.items():
                if btype == rtype:
                    for block in _blocks(body, path.split(".")):
                        assert set(block) <= allowed, (rtype, path, set(block) - allowed)
            if "provider" in body:
                alias = body["provider"].split(".", 1)[1]
                assert alias in {p.get("alias") for p in document["provider"][prefix]}
    declared = {f"var.{name}" for name in document.get("variable", {})}
    declared |= {f"{t}.{label}" for t, blocks in resources.items() for label in blocks}
    declared |= {f"data.{t}.{label}" for t, blocks in document.get("data", {}).items() for label in blocks}
    for text in strings({k: v for k, v in document.items() if k != "terraform"}):
        assert references(text) <= declared, (text, references(text) - declared)
    for blocks in resources.values():
        for body in blocks.values():
            assert set(body.get("depends_on", [])) <= declared


def _blocks(body: Any, path: list[str]) -> Iterator[dict[str, Any]]:
    value = body.get(path[0]) if isinstance(body, dict) else None
    items = value if isinstance(value, list) else [] if value is None else [value]
    for item in items:
        if len(path) == 1:
            yield item
        else:
            yield from _blocks(item, path[1:])


def check_secrets(document: dict[str, Any], text: str) -> None:
    variables = document.get("variable", {})
    for name, variable in variables.items():
        assert "default" not in variable or not name.endswith("_password")
        if name.endswith("_password"):
            assert variable["sensitive"] is True
    secret_arguments = {"access_secret", "password", "secret_string"}

    def walk(value: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(value, dict):
            for key, item in value.items():
                yield key, item
                yield from walk(item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item)

    for key, value in walk({k: v for k, v in document.items() if k in ("resource", "provider")}):
        if key in secret_arguments:  # a password variable, and that variable sensitive
            passwords = {r[4:] for r in references(value) if r.startswith("var.") and r.endswith("_password")}
            assert passwords, (key, value)
            assert all(variables[name]["sensitive"] is True for name in passwords)
    for canary in (*beds.CANARIES, *ENV_USERS):
        assert canary not in text


# --- the CLI on every example target -------------------------------------------------------


@pytest.mark.parametrize(("spec", "target"), sorted(EXPECTED_TYPES), ids=IDS)
def test_example_targets_render_real_resources_and_no_secret(
    ups: beds.Upstreams,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spec: str,
    target: str,
) -> None:
    code, out, err = render_cli(ups, monkeypatch, capsys, str(EXAMPLES / spec), "--target", target)
    assert code == 0, err
    document = json.loads(out)
    check_structure(document, EXPECTED_TYPES[(spec, target)])
    check_secrets(document, out + err)
    required = document["terraform"]["required_providers"]
    if not EXPECTED_TYPES[(spec, target)] and target in PROVIDER_OF:
        assert "The spec asks this target for no native rules Terraform can manage." in document["//"]
    if target in PROVIDER_OF:
        assert [r["source"] for r in required.values()] == [PROVIDER_OF[target]]
    else:
        assert required == {} and "resource" not in document
        assert "registry targets have no native rules Terraform can manage." in document["//"]
    if spec == "seqera.yaml":  # mirror mode: every tag is copied, imported or replicated
        copies = [line for line in document["//"] if "tag(s) of 4 repository(ies)" in line]
        assert len(copies) == 1, document["//"]


def test_ecr_example_arguments(
    ups: beds.Upstreams, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Without its version-filtered docker.io repository, so that docker.io is cached too (issue
    # 13: a rule at vendor/docker.io would serve the copy's name from Docker Hub).
    text = (EXAMPLES / "ecr.yaml").read_text()
    postgres = text[text.index("      - name: bitnami/postgresql") : text.index("  - registry: quay.io")]
    spec = tmp_path / "ecr.yaml"
    spec.write_text(text.replace(postgres, ""))
    code, out, err = render_cli(ups, monkeypatch, capsys, str(spec), "-t", "aws-prod")
    assert code == 0, err
    document = json.loads(out)
    resources = document["resource"]
    secret_name = "ecr-pullthroughcache/mirrorspec/aws-prod/docker.io"
    ((secret_label, secret),) = resources["aws_secretsmanager_secret"].items()
    assert secret == {"name": secret_name, "description": "managed-by: mirrorspec"}
    ((version_label, version),) = resources["aws_secretsmanager_secret_version"].items()
    assert version["secret_id"] == f"${{aws_secretsmanager_secret.{secret_label}.id}}"
    assert version["secret_string"] == (
        "${jsonencode({username = var.dockerhub_username, accessToken = var.dockerhub_password})}"
    )
    assert document["variable"]["dockerhub_password"]["sensitive"] is True
    rules = {r["ecr_repository_prefix"]: r for r in resources["aws_ecr_pull_through_cache_rule"].values()}
    assert set(rules) == {"vendor/docker.io", "vendor/quay.io"}
    assert rules["vendor/docker.io"]["upstream_registry_url"] == "registry-1.docker.io"
    assert rules["vendor/docker.io"]["credential_arn"] == f"${{aws_secretsmanager_secret.{secret_label}.arn}}"
    assert rules["vendor/docker.io"]["depends_on"] == [f"aws_secretsmanager_secret_version.{version_label}"]
    assert rules["vendor/quay.io"]["upstream_registry_url"] == "quay.io"
    assert "credential_arn" not in rules["vendor/quay.io"]
    templates = {t["prefix"]: t for t in resources["aws_ecr_repository_creation_template"].values()}
    assert templates["vendor/quay.io"] == {
        "prefix": "vendor/quay.io",
        "applied_for": ["PULL_THROUGH_CACHE"],
        "description": "managed-by: mirrorspec",
    }
    assert sorted(r["name"] for r in resources["aws_ecr_repository"].values()) == [
        "vendor/cr.seqera.io/private/nf-tower-enterprise/backend",
    ]
    ((replication,),) = [list(resources["aws_ecr_replication_configuration"].values())]
    assert replication["replication_configuration"] == {
        "rule": [
            {
                "destination": [
                    {"region": "us-east-1", "registry_id": beds.ACCOUNT},
                    {"region": "eu-central-1", "registry_id": "210987654321"},
                ],
                "repository_filter": [{"filter": "vendor/", "filter_type": "PREFIX_MATCH"}],
            }
        ]
    }
    assert "Terraform owns it whole" in replication["//"]
    ((policy,),) = [list(resources["aws_ecr_registry_policy"].values())]
    statement = json.loads(policy["policy"])["Statement"][0]
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{beds.ACCOUNT}:root"}
    alias = policy["provider"].removeprefix("aws.")
    assert {"alias": alias, "region": "eu-central-1", "profile": "dr"} in document["provider"]["aws"]
    assert {"region": "eu-west-1"} in document["provider"]["aws"]
    # The singletons' warning reaches the person running it, not only the file.
    assert err.count("Terraform owns it whole") == 2
    assert "2 tag(s) of 1 repository(ies) are copied with skopeo" in err


def test_acr_example_arguments(
    ups: beds.Upstreams, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = render_cli(ups, monkeypatch, capsys, str(EXAMPLES / "acr.yaml"), "-t", "azure-prod")
    assert code == 0, err
    document = json.loads(out)
    registry_id = (
        f"/subscriptions/{beds.SUB}/resourceGroups/{beds.GROUP}"
        "/providers/Microsoft.ContainerRegistry/registries/mycompany"
    )
    resources = document["resource"]
    ((set_label, credential_set),) = resources["azurerm_container_registry_credential_set"].items()
    kv = "https://mycompany-kv.vault.azure.net/secrets"
    assert {k: v for k, v in credential_set.items() if k != "//"} == {
        "name": "mirrorspec-vendor-docker-io",
        "container_registry_id": registry_id,
        "login_server": "docker.io",
        "identity": {"type": "SystemAssigned"},
        "authentication_credentials": {
            "username_secret_id": f"{kv}/dockerhub-user",
            "password_secret_id": f"{kv}/dockerhub-token",
        },
    }
    rules = resources["azurerm_container_registry_cache_rule"]
    assert rules["vendor-docker-io-library-redis"] == {
        "name": "vendor-docker-io-library-redis",
        "container_registry_id": registry_id,
        "source_repo": "docker.io/library/redis",
        "target_repo": "vendor/docker.io/library/redis",
        "credential_set_id": f"${{azurerm_container_registry_credential_set.{set_label}.id}}",
    }
    assert "credential_set_id" not in rules["vendor-quay-io-prometheus-node-exporter"]
    assert document["provider"]["azurerm"] == [{"features": {}, "subscription_id": beds.SUB}]
    principal = document["output"]["credential_set_principal_ids"]["value"]
    assert principal == {
        "mirrorspec-vendor-docker-io": (
            f"${{azurerm_container_registry_credential_set.{set_label}.identity[0].principal_id}}"
        )
    }
    # Geo-replications and imports have no Terraform resource: said in the file and on stderr.
    comment = "\n".join(document["//"])
    for region in ("northeurope", "eastus"):
        assert f"geo-replication {region} is not rendered" in comment
        assert f"geo-replication {region} is not rendered" in err
    assert "imported by ACR (importImage), which Terraform has no resource for" in comment
    assert "variable" not in document  # Key Vault URIs are references, not secrets


def test_harbor_example_arguments(
    ups: beds.Upstreams, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = render_cli(ups, monkeypatch, capsys, str(EXAMPLES / "harbor.yaml"), "-t", "dc1")
    assert code == 0, err
    document = json.loads(out)
    resources = document["resource"]
    registries = {r["name"]: (label, r) for label, r in resources["harbor_registry"].items()}
    hub_label, hub = registries["mirrorspec-vendor-docker.io"]
    assert hub == {
        "provider_name": "docker-hub",
        "name": "mirrorspec-vendor-docker.io",
        "endpoint_url": "https://hub.docker.com",
        "description": "managed-by: mirrorspec; project vendor",
        "insecure": False,
        "access_id": "${var.dockerhub_username}",
        "access_secret": "${var.dockerhub_password}",
    }
    assert registries["mirrorspec-vendor-quay.io"][1]["provider_name"] == "docker-registry"
    assert "access_secret" not in registries["mirrorspec-vendor-quay.io"][1]  # anonymous upstream
    projects = {p["name"]: p for p in resources["harbor_project"].values()}
    assert projects["vendor"] == {"name": "vendor", "vulnerability_scanning": False}
    assert projects["vendor-docker.io"]["registry_id"] == f"${{harbor_registry.{hub_label}.registry_id}}"
    policies = {p["name"]: p for p in resources["harbor_replication"].values()}
    postgresql = policies["mirrorspec/vendor/docker.io/bitnami/postgresql"]
    assert postgresql == {
        "name": "mirrorspec/vendor/docker.io/bitnami/postgresql",
        "action": "pull",
        "registry_id": f"${{harbor_registry.{hub_label}.registry_id}}",
        "description": "managed-by: mirrorspec; source docker.io/bitnami/postgresql",
        "schedule": "0 0 2 * * *",
        "dest_namespace": "vendor/docker.io",
        "dest_namespace_replace": 0,
        "filters": [{"name": "bitnami/postgresql"}, {"tag": "{16.1.0,16.2.0}", "decoration": "matches"}],
        "enabled": True,
        "override": True,
        "deletion": False,
        "speed": 0,
        "copy_by_chunk": False,
        "single_active_replication": True,
        "execute_on_changed": True,
    }
    harbor_provider = document["provider"]["harbor"]
    assert harbor_provider == [
        {
            "url": "https://harbor.internal.example.com",
            "insecure": False,
            "username": "${var.harbor_admin_username}",
            "password": "${var.harbor_admin_password}",
        }
    ]


def test_output_file_and_errors(
    ups: beds.Upstreams,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    destination = tmp_path / "mirror.tf.json"
    destination.write_text("stale")
    code, out, err = render_cli(
        ups, monkeypatch, capsys, str(EXAMPLES / "harbor.yaml"), "-t", "dc1", "-o", str(destination)
    )
    assert code == 0 and out == ""
    assert f"wrote {destination}" in err
    assert "harbor_replication" in json.loads(destination.read_text())["resource"]

    code, out, err = render_cli(ups, monkeypatch, capsys, str(EXAMPLES / "harbor.yaml"), "-t", "nope")
    assert (code, out) == (1, "")
    assert err == "error: no target named 'nope' (targets: dc1)\n"
    # --target may be left out when the spec has one target (issue 18, item 8) ...
    only = tmp_path / "only.tf.json"
    code, out, err = render_cli(ups, monkeypatch, capsys, str(EXAMPLES / "harbor.yaml"), "-o", str(only))
    assert (code, out) == (0, "") and only.read_bytes() == destination.read_bytes()
    # ... and is asked for, by name, when it has several; a usage error is never 2
    seqera = str(EXAMPLES / "seqera.yaml")
    code, out, err = render_cli(ups, monkeypatch, capsys, seqera)
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {seqera} has ") and "choose one with --target (" in err, err


def test_literal_text_is_escaped_and_expressions_are_not() -> None:
    escaped = terraform_document.literal({"a": ["${x}", "%{if}"], "b": terraform_document.ref("var.y")})
    assert escaped == {"a": ["$${x}", "%%{if}"], "b": "${var.y}"}


# --- Terraform itself, offline ---------------------------------------------------------------

needs_terraform = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
TERRAFORM_ENV = {"CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": os.devnull, "TF_IN_AUTOMATION": "1"}


def terraform(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["terraform", *args, "-no-color"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **TERRAFORM_ENV},
        timeout=120,
        check=False,
    )


def stand_in(document: dict[str, Any]) -> dict[str, Any]:
    """The file with every resource, data source and provider block as a built-in
    `terraform_data` holding the same body (so nothing needs downloading), and every reference
    rewritten to match; variables and outputs are the file's own."""
    names: dict[str, str] = {}
    for rtype, blocks in document.get("resource", {}).items():
        names |= {f"{rtype}.{label}": f"terraform_data.{rtype}__{label}" for label in blocks}
    for dtype, blocks in document.get("data", {}).items():
        names |= {f"data.{dtype}.{label}": f"terraform_data.data__{dtype}__{label}" for label in blocks}

    def rewrite(value: Any) -> Any:
        if isinstance(value, str):
            for old, new in sorted(names.items(), key=lambda item: -len(item[0])):
                value = re.sub(rf"(?<![\w.-]){re.escape(old)}(?![\w-])", f"{new}.output", value)
            return value
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items() if k != "//"}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        return value

    stand: dict[str, Any] = {}
    for rtype, blocks in document.get("resource", {}).items():
        for label, body in blocks.items():
            shadow: dict[str, Any] = {"input": rewrite({k: v for k, v in body.items() if k not in META})}
            if "depends_on" in body:
                shadow["depends_on"] = [names[d] for d in body["depends_on"]]
            stand[f"{rtype}__{label}"] = shadow
    for dtype, blocks in document.get("data", {}).items():
        for label, body in blocks.items():
            stand[f"data__{dtype}__{label}"] = {"input": rewrite(body)}
    for name, configs in document.get("provider", {}).items():
        for i, config in enumerate(configs):
            stand[f"provider__{name}__{i}"] = {"input": rewrite(config)}
    out: dict[str, Any] = {"resource": {"terraform_data": stand}} if stand else {}
    for key in ("variable", "output"):
        if key in document:
            out[key] = rewrite(document[key])
    return out


@needs_terraform
@pytest.mark.parametrize(("spec", "target"), sorted(EXPECTED_TYPES), ids=IDS)
def test_terraform_loads_the_file_and_validates_its_expressions(
    ups: beds.Upstreams,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    spec: str,
    target: str,
) -> None:
    code, out, err = render_cli(ups, monkeypatch, capsys, str(EXAMPLES / spec), "-t", target)
    assert code == 0, err
    document = json.loads(out)
    module = tmp_path / "module"
    module.mkdir()
    (module / "mirror.tf.json").write_text(out)
    loaded = terraform("providers", cwd=module)
    assert loaded.returncode == 0, loaded.stderr
    if target in PROVIDER_OF:
        assert f"provider[registry.terraform.io/{PROVIDER_OF[target]}]" in loaded.stdout
    # Exactly the declared providers: no resource type falls back to an implied hashicorp/<x>.
    assert loaded.stdout.count("provider[") == len(document["terraform"]["required_providers"])
    # The real check needs the providers; where they can be installed, it runs.
    installed = terraform("init", "-input=false", "-backend=false", cwd=module)
    if installed.returncode == 0:
        validated = terraform("validate", cwd=module)
        assert validated.returncode == 0, validated.stdout + validated.stderr
    else:  # offline: the provider cannot be fetched, so `validate` cannot read its schema
        assert "provider" in installed.stderr and "registry.terraform.io" in installed.stderr
        assert "Missing required provider" in terraform("validate", cwd=module).stderr

    shadow = tmp_path / "stand-in"
    shadow.mkdir()
    (shadow / "mirror.tf.json").write_text(json.dumps(stand_in(document), indent=2))
    init = terraform("init", "-input=false", "-backend=false", cwd=shadow)
    assert init.returncode == 0, init.stdout + init.stderr
    validated = terraform("validate", cwd=shadow)
    assert validated.returncode == 0, validated.stdout + validated.stderr


@needs_terraform
def test_the_offline_checks_catch_broken_files(tmp_path: Path) -> None:
    """The two Terraform checks above are not vacuous: each rejects what it should."""
    broken_structure = {"resource": {"aws_ecr_repository": {"1-bad label": {"name": "x"}}}}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "main.tf.json").write_text(json.dumps(broken_structure))
    assert terraform("providers", cwd=tmp_path / "a").returncode == 1
    dangling = {
        "resource": {"aws_ecr_repository": {"r": {"name": "${var.nope}"}}},
        "output": {"o": {"value": "${aws_ecr_repository.missing.arn}"}},
    }
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "main.tf.json").write_text(json.dumps(stand_in(dangling)))
    assert terraform("init", "-input=false", "-backend=false", cwd=tmp_path / "b").returncode == 0
    validated = terraform("validate", cwd=tmp_path / "b")
    assert validated.returncode == 1
    assert "Reference to undeclared input variable" in validated.stderr
    assert "Reference to undeclared resource" in validated.stderr


# --- the file declares what apply would create ---------------------------------------------


@pytest.fixture(scope="module")
def ecr_emulator() -> Iterator[EcrEmulator]:
    with EcrEmulator() as emu:
        yield emu


BED_FOR: dict[str, Callable[..., Any]] = {
    "ecr": beds.ecr_bed,
    "acr": beds.acr_bed,
    "harbor": beds.harbor_bed,
    "registry": beds.registry_bed,
}


@pytest.mark.parametrize(
    ("spec", "target"),
    [("ecr.yaml", "aws-prod"), ("acr.yaml", "azure-prod"), ("harbor.yaml", "dc1"), ("seqera.yaml", "lab")],
    ids=["ecr", "acr", "harbor", "registry"],
)
def test_the_file_declares_exactly_what_the_plan_creates_on_an_empty_target(
    ups: beds.Upstreams, ecr_emulator: EcrEmulator, tmp_path: Path, spec: str, target: str
) -> None:
    kind = load_spec(EXAMPLES / spec).target(target).type
    args = (ecr_emulator, ups, tmp_path) if kind == "ecr" else (ups, tmp_path)
    with BED_FOR[kind](*args) as bed:
        loaded = load_spec(bed.spec(spec, tmp_path))
        ctx = bed.ctx(loaded)
        try:
            plan = engine.plan(ctx, targets=[target])
            rendered = render_terraform.render(ctx, loaded.target(target))
        finally:
            ctx.close()
    (target_plan,) = plan.targets
    created = {(c.resource, c.id) for c in target_plan.changes}
    assert {c.action for c in target_plan.changes} <= {"create"}
    left_out = {
        (kind_, id_)
        for kind_, id_ in created
        if any(n.message.startswith(f"{kind_} {id_} is not rendered") for n in rendered.notes)
    }
    assert set(rendered.addresses) | left_out == created
    assert set(rendered.addresses).isdisjoint(left_out)
    if kind == "acr":
        assert left_out == {("geo-replication", "eastus"), ("geo-replication", "northeurope")}
    else:
        assert left_out == set()
    document = rendered.document
    for address in set(rendered.addresses.values()):
        rtype, label = address.split(".")
        assert label in document["resource"][rtype]
