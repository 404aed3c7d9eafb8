"""`render terraform` for ECR against HashiCorp's own client: the real AWS provider.

HashiCorp's `hashicorp/aws` provider (from a local filesystem mirror, `terraform_aws.py`) is
evidence we did not write: its schema validates the `.tf.json` that `mirrorspec render
terraform` writes, and its client drives the ECR test bed (moto behind the ECR contract
emulator, `tests/emulators/ecr.py`) through the provider's `endpoints` block:

- validate: every ECR example target's file passes `terraform validate` with the real schema;
- Terraform → mirrorspec: `terraform apply` of the rendered file creates the native rules,
  then `mirrorspec plan` has no native change to make, and after `mirrorspec sync` (the copies
  Terraform cannot do) `plan --detailed-exitcode` and `audit` are in sync;
- mirrorspec → Terraform: after `mirrorspec apply`, `import` blocks bring every rendered
  resource into a Terraform state with no change planned for any (but two arguments of the
  secret that the provider never reads from AWS, `CONFIG_ONLY`), and after that import is
  applied `terraform plan -detailed-exitcode` finds nothing to do.

A request the emulator refuses from the provider fails the apply or the plan, and an answer
that breaks botocore's output shape fails the bed's check: either is an emulator or a rendering
defect, fixed where it is (the emulator's rules cite their sources).

Secrets reach Terraform as `TF_VAR_...` in its environment, never on its command line, and no
canary may appear in anything Terraform or mirrorspec prints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import provider_beds as beds
import pytest
from emulators.ecr import DUMMY_CREDENTIALS, EcrEmulator
from terraform_aws import Terraform, needs_aws_provider

from mirrorspec import cli, cli_common
from mirrorspec.context import RunContext
from mirrorspec.credentials import BasicAuth
from mirrorspec.providers.ecr import observed as ecr_provider
from mirrorspec.providers.ecr.clients import AWS

needs_terraform = needs_aws_provider()

EXAMPLES = beds.EXAMPLES
ECR_TARGETS = [("ecr.yaml", "aws-prod"), ("seqera.yaml", "aws-prod")]
# Attributes the provider never reads from AWS, so an import cannot know them and the first
# plan after it sets them in state (no API call): the provider's own import tests ignore them
# (hashicorp/terraform-provider-aws internal/service/secretsmanager/secret_test.go @03d6856,
# ImportStateVerifyIgnore).
CONFIG_ONLY = {"aws_secretsmanager_secret": {"recovery_window_in_days", "force_overwrite_replica_secret"}}
# A token with the characters Terraform's jsonencode escapes and Python's json.dumps does not
# (<, >, &; U+2028 and U+2029 too, but a spec password cannot hold those), and some that
# json.dumps escapes unless told not to (non-ASCII) or that both escape (quote, backslash).
AWKWARD_TOKEN = beds.DOCKERHUB_CANARY + '<&>"\\ é/'


def tf_vars() -> dict[str, str]:
    """The variables the ECR example's file declares, as the spec's environment sets them."""
    return {
        "TF_VAR_dockerhub_username": os.environ["DOCKERHUB_USER"],
        "TF_VAR_dockerhub_password": os.environ["DOCKERHUB_TOKEN"],
    }


@pytest.fixture(scope="module")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    return Terraform(tmp_path_factory.mktemp("terraform"))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return beds.seed(tmp_path_factory.mktemp("tf-seed"))


@pytest.fixture(scope="module")
def ups(seeded: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[beds.Upstreams]:
    with beds.upstreams(seeded, tmp_path_factory.mktemp("tf-upstreams")) as started:
        yield started


@pytest.fixture(scope="module")
def emulator() -> Iterator[EcrEmulator]:
    with EcrEmulator() as emu:
        yield emu


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    beds.set_environment(monkeypatch)


def mirrorspec(
    where: beds.Bed | beds.Upstreams,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
) -> tuple[int, str, str]:
    """The CLI in-process, its run context pointed at the bed (or only at the upstreams:
    rendering reads nothing from the target)."""
    if isinstance(where, beds.Bed):
        kwargs = where.context_kwargs()
    else:
        kwargs = {"registry_overrides": where.overrides(), "client_factories": {AWS: _unreachable}}
    monkeypatch.setattr(cli_common, "RunContext", partial(RunContext, **kwargs))
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(argv))
    out = capsys.readouterr()
    return int(exit_.value.code or 0), out.out, out.err


def _unreachable(*args: Any) -> Any:
    raise AssertionError("render terraform must not reach the target")


def render(
    where: beds.Bed | beds.Upstreams,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spec: str,
    target: str,
) -> dict[str, Any]:
    code, out, err = mirrorspec(where, monkeypatch, capsys, "render", "terraform", spec, "-t", target)
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def point_at(emulator: EcrEmulator, document: dict[str, Any], workdir: Path) -> dict[str, str]:
    """An override file that sends every `aws` provider block of the rendered file to the
    bed (the rendered file itself is used unchanged), and the environment Terraform needs:
    static test keys, and AWS config files of its own with the profiles the file names."""
    skips = {
        "skip_credentials_validation": True,
        "skip_metadata_api_check": True,
        "skip_region_validation": True,
    }
    # iam too: the provider asks IAM GetUser for the account id before STS
    # GetCallerIdentity, and nothing may leave the machine.
    endpoints = {
        "ecr": emulator.url,
        "secretsmanager": emulator.url,
        "sts": emulator.url,
        "iam": emulator.url,
    }
    blocks = []
    for block in document["provider"]["aws"]:
        override: dict[str, Any] = {"endpoints": [endpoints], **skips}
        if "alias" in block:
            override["alias"] = block["alias"]
        blocks.append(override)
    (workdir / "bed_override.tf.json").write_text(json.dumps({"provider": {"aws": blocks}}, indent=2))
    profiles = sorted({b["profile"] for b in document["provider"]["aws"] if "profile" in b})
    config = workdir / "aws-config"
    config.write_text("".join(f"[profile {p}]\n" for p in profiles))
    credentials = workdir / "aws-credentials"
    keys = (
        f"aws_access_key_id = {DUMMY_CREDENTIALS['aws_access_key_id']}\n"
        f"aws_secret_access_key = {DUMMY_CREDENTIALS['aws_secret_access_key']}\n"
    )
    credentials.write_text("".join(f"[{p}]\n{keys}" for p in ["default", *profiles]))
    return {
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        "AWS_PROFILE": "default",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def no_canary(*texts: str) -> None:
    for text in texts:
        for canary in beds.CANARIES:
            assert canary not in text


# --- the real schema ---------------------------------------------------------------------


@needs_terraform
@pytest.mark.parametrize(("spec", "target"), ECR_TARGETS, ids=[f"{s}:{t}" for s, t in ECR_TARGETS])
def test_the_real_aws_provider_validates_the_rendered_file(
    terraform: Terraform,
    ups: beds.Upstreams,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spec: str,
    target: str,
) -> None:
    document = render(ups, monkeypatch, capsys, str(EXAMPLES / spec), target)
    report = validate(terraform, f"validate-{spec}-{target}", document)
    assert report["valid"] is True and report["error_count"] == 0, report
    assert report["warning_count"] == 0, report["diagnostics"]


@needs_terraform
def test_the_real_schema_rejects_an_argument_the_resource_lacks(
    terraform: Terraform,
    ups: beds.Upstreams,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not vacuous: the API's `upstreamRegistry` has no argument in aws_ecr_pull_through_cache_rule
    (ECR infers it from the URL), and the real schema says so."""
    document = render(ups, monkeypatch, capsys, str(EXAMPLES / "ecr.yaml"), "aws-prod")
    for rule in document["resource"]["aws_ecr_pull_through_cache_rule"].values():
        rule["upstream_registry"] = "docker-hub"
    report = validate(terraform, "validate-broken", document)
    assert report["valid"] is False
    summaries = {(d["severity"], d["summary"]) for d in report["diagnostics"]}
    assert summaries == {("error", "Extraneous JSON object property")}, report["diagnostics"]
    assert all('"upstream_registry"' in d["detail"] for d in report["diagnostics"])


def validate(terraform: Terraform, name: str, document: dict[str, Any]) -> dict[str, Any]:
    workdir = terraform.workdir(name)
    (workdir / "mirror.tf.json").write_text(json.dumps(document))
    validated = terraform.run("validate", "-json", cwd=workdir)
    report: dict[str, Any] = json.loads(validated.stdout)
    assert (validated.returncode == 0) == report["valid"], validated.stderr
    return report


# --- Terraform applies, mirrorspec agrees ------------------------------------------------


@needs_terraform
def test_terraform_apply_then_mirrorspec_is_in_sync(
    terraform: Terraform,
    ups: beds.Upstreams,
    emulator: EcrEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    spec = str(EXAMPLES / "ecr.yaml")
    with beds.ecr_bed(emulator, ups, tmp_path) as bed:
        document = render(bed, monkeypatch, capsys, spec, "aws-prod")
        workdir = terraform.workdir("terraform-first")
        (workdir / "mirror.tf.json").write_text(json.dumps(document))
        env = {**point_at(emulator, document, workdir), **tf_vars()}
        applied = terraform.run("apply", "-auto-approve", "-input=false", cwd=workdir, env=env)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        no_canary(applied.stdout, applied.stderr)

        code, out, err = mirrorspec(
            bed, monkeypatch, capsys, "plan", spec, "-t", "aws-prod", "--format", "json"
        )
        assert code == 0, err
        (planned,) = json.loads(out)["targets"]
        assert planned["changes"] == []
        assert planned["copies"]  # what only mirrorspec does
        code, out, err = mirrorspec(bed, monkeypatch, capsys, "sync", spec, "-t", "aws-prod")
        assert code == 0, out + err
        code, out, err = mirrorspec(
            bed, monkeypatch, capsys, "plan", spec, "-t", "aws-prod", "--detailed-exitcode"
        )
        assert code == 0, out + err
        code, out, err = mirrorspec(bed, monkeypatch, capsys, "audit", spec, "-t", "aws-prod")
        assert code == 0, out + err


# --- mirrorspec applies, Terraform imports and agrees ------------------------------------


def import_ids(emulator: EcrEmulator, document: dict[str, Any]) -> dict[str, str]:
    """Terraform address → the import id each resource type documents (the provider's
    `Importer`: names and prefixes, the secret's ARN, `ARN|version id`, the registry id),
    looked up as a user would, through the API."""
    secrets = emulator.client("secretsmanager", region="eu-west-1")
    ids = {}
    for rtype, blocks in document["resource"].items():
        for label, body in blocks.items():
            address = f"{rtype}.{label}"
            if rtype == "aws_secretsmanager_secret":
                ids[address] = secrets.describe_secret(SecretId=body["name"])["ARN"]
            elif rtype == "aws_secretsmanager_secret_version":
                (secret,) = [
                    s
                    for s in document["resource"]["aws_secretsmanager_secret"].values()
                    if body["secret_id"] == f"${{aws_secretsmanager_secret.{label}.id}}"
                ]
                value = secrets.get_secret_value(SecretId=secret["name"])
                ids[address] = f"{value['ARN']}|{value['VersionId']}"
            elif rtype == "aws_ecr_pull_through_cache_rule":
                ids[address] = body["ecr_repository_prefix"]
            elif rtype == "aws_ecr_repository_creation_template":
                ids[address] = body["prefix"]
            elif rtype == "aws_ecr_repository":
                ids[address] = body["name"]
            elif rtype == "aws_ecr_replication_configuration":
                ids[address] = emulator.client("ecr", region="eu-west-1").describe_registry()["registryId"]
            elif rtype == "aws_ecr_registry_policy":
                alias = body["provider"].removeprefix("aws.")
                (config,) = [p for p in document["provider"]["aws"] if p.get("alias") == alias]
                ecr = emulator.client("ecr", region=config["region"])
                ids[address] = ecr.get_registry_policy()["registryId"]
            else:
                raise AssertionError(f"no import id for {rtype}")
    return ids


def imported_as_is(address: str, change: dict[str, Any]) -> bool:
    """Imported, and no argument the provider reads from AWS to be changed."""
    if "importing" not in change:
        return False
    if change["actions"] == ["no-op"]:
        return True
    before, after = change["before"], change["after"]
    changed = {k for k in {*before, *after} if before.get(k) != after.get(k)}
    changed |= {k for k, unknown in change["after_unknown"].items() if unknown}
    return change["actions"] == ["update"] and changed <= CONFIG_ONLY.get(address.split(".")[0], set())


@needs_terraform
def test_mirrorspec_apply_then_terraform_imports_without_a_change(
    terraform: Terraform,
    ups: beds.Upstreams,
    emulator: EcrEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("DOCKERHUB_TOKEN", AWKWARD_TOKEN)
    spec = str(EXAMPLES / "ecr.yaml")
    with beds.ecr_bed(emulator, ups, tmp_path) as bed:
        code, out, err = mirrorspec(bed, monkeypatch, capsys, "apply", spec, "-t", "aws-prod", "--yes")
        assert code == 0, out + err
        document = render(bed, monkeypatch, capsys, spec, "aws-prod")
        workdir = terraform.workdir("mirrorspec-first")
        (workdir / "mirror.tf.json").write_text(json.dumps(document))
        ids = import_ids(emulator, document)
        imports = [{"to": address, "id": id_} for address, id_ in sorted(ids.items())]
        (workdir / "imports.tf.json").write_text(json.dumps({"import": imports}, indent=2))
        env = {**point_at(emulator, document, workdir), **tf_vars()}
        planned = terraform.run("plan", "-input=false", "-out=import.tfplan", cwd=workdir, env=env)
        assert planned.returncode == 0, planned.stdout + planned.stderr
        shown = terraform.run("show", "-json", "import.tfplan", cwd=workdir, env=env)
        assert shown.returncode == 0, shown.stderr
        changes = {c["address"]: c["change"] for c in json.loads(shown.stdout)["resource_changes"]}
        assert set(changes) == set(ids)
        differing = {a: c for a, c in changes.items() if not imported_as_is(a, c)}
        assert differing == {}, planned.stdout
        applied = terraform.run("apply", "-input=false", "import.tfplan", cwd=workdir, env=env)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        again = terraform.run("plan", "-input=false", "-detailed-exitcode", cwd=workdir, env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        no_canary(
            planned.stdout, planned.stderr, applied.stdout, again.stdout
        )  # not `show -json`: it holds sensitive values


# --- what the provider showed the emulator lacked -----------------------------------------


def test_a_creation_template_reads_back_mutable_tags_when_created_without(emulator: EcrEmulator) -> None:
    """The model: "If this parameter is omitted, the default setting of MUTABLE will be used"
    (CreateRepositoryCreationTemplateRequest.imageTagMutability). mirrorspec omits it; the
    provider's import of such a template planned a change until the emulator filled it in."""
    emulator.reset()
    ecr = emulator.client("ecr")
    ecr.create_repository_creation_template(prefix="vendor/quay.io", appliedFor=["PULL_THROUGH_CACHE"])
    ecr.create_repository_creation_template(
        prefix="vendor/ghcr.io", appliedFor=["PULL_THROUGH_CACHE"], imageTagMutability="IMMUTABLE"
    )
    templates = ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]
    assert {t["prefix"]: t["imageTagMutability"] for t in templates} == {
        "vendor/ghcr.io": "IMMUTABLE",
        "vendor/quay.io": "MUTABLE",
    }
    emulator.check()


# --- the secret's bytes -------------------------------------------------------------------

PASSWORDS = [
    "plain-token-1234",
    '<script>&"quoted"\\back',
    "ünïcödé-ß-日本-😀",
    "slash/and\\u0041-not-an-escape",
    "${not} %{a} template",
]


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed (it is on CI)")
def test_the_secret_mirrorspec_writes_is_what_jsonencode_writes(tmp_path: Path) -> None:
    """`render terraform` sets `secret_string = jsonencode({username, accessToken})` and the
    provider compares it as text: `mirrorspec apply` must write the same bytes, or Terraform
    replaces the version after an import. Terraform's own jsonencode is the reference (no
    provider needed)."""
    document = {
        "variable": {f"p{i}": {"type": "string"} for i in range(len(PASSWORDS))},
        "output": {
            f"o{i}": {"value": f'${{jsonencode({{username = "bot", accessToken = var.p{i}}})}}'}
            for i in range(len(PASSWORDS))
        },
    }
    (tmp_path / "main.tf.json").write_text(json.dumps(document))
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": os.devnull,
        "CHECKPOINT_DISABLE": "1",
        **{f"TF_VAR_p{i}": password for i, password in enumerate(PASSWORDS)},
    }
    run = partial(subprocess.run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    applied = run(["terraform", "apply", "-auto-approve", "-input=false", "-no-color"])
    assert applied.returncode == 0, applied.stdout + applied.stderr
    outputs = json.loads(run(["terraform", "output", "-json"]).stdout)
    for i, password in enumerate(PASSWORDS):
        written = ecr_provider._secret_json(BasicAuth("bot", password))
        assert written == outputs[f"o{i}"]["value"], password
        assert ecr_provider._same_secret(outputs[f"o{i}"]["value"], BasicAuth("bot", password))
    # An older mirrorspec wrote `json.dumps(..., sort_keys=True)`: still the same login.
    assert ecr_provider._same_secret(
        json.dumps({"username": "bot", "accessToken": "x"}), BasicAuth("bot", "x")
    )
    assert not ecr_provider._same_secret('{"username": "bot", "accessToken": "y"}', BasicAuth("bot", "x"))
    assert not ecr_provider._same_secret("not json", BasicAuth("bot", "x"))
