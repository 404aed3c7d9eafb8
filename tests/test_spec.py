"""The spec loader: every bad input is one `SpecError` at the right `file:line:col` saying what
was expected; good input becomes typed models with the documented defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML
from spec_text import MINIMAL_HEAD

from mirrorspec.errors import SpecError
from mirrorspec.providers.acr.credentials import AzureKeyVaultRef
from mirrorspec.providers.acr.target import AcrTarget
from mirrorspec.providers.ecr.target import EcrReplication, EcrTarget
from mirrorspec.providers.harbor.target import HarborTarget
from mirrorspec.providers.registry.target import RegistryTarget
from mirrorspec.spec import (
    EnvRef,
    FileRef,
    Repository,
    json_schema,
    load_spec,
    parse_spec,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "seqera.yaml"

# Building blocks with fixed line numbers, so that each case's expected position can be
# checked by eye. HEAD is lines 1-6; a target appended after it starts at line 7.
HEAD = MINIMAL_HEAD
# Lines 7-10.
TARGETS = """\
targets:
  - name: lab
    type: registry
    registry: internal.example.com
"""
VALID = HEAD + TARGETS
# Lines 2-5 when it follows `version: 1`.
CREDENTIALS = """\
credentials:
  hub:
    username: {env: HUB_USER}
    password: {env: HUB_TOKEN}
"""


def with_credentials(credentials: str) -> str:
    """`version: 1`, then `credentials` from line 2, then a valid source and target."""
    return "version: 1\n" + credentials + VALID.removeprefix("version: 1\n")


@dataclass(frozen=True)
class Bad:
    id: str
    text: str
    where: str  # "line:col", 1-based
    expect: str  # a substring of the message that says what was expected
    absent: str | None = None  # must not appear anywhere in the error (a secret)


BAD = [
    # --- YAML itself ------------------------------------------------------------------
    Bad("unclosed-bracket", "version: 1\nsources: [a, b\ntargets: []\n", "3:8", "expected ',' or ']'"),
    Bad(
        "bad-indentation",
        "version: 1\nsources:\n  - registry: x\n   repositories: []\n",
        "4:4",
        "invalid YAML: expected <block end>, but found '<block mapping start>' "
        "(is the indentation consistent?)",
    ),
    Bad("tab", "version: 1\nsources:\n\t- registry: x\n", "3:1", "YAML does not allow tabs"),
    Bad("duplicate-key", "version: 1\nversion: 1\n", "2:1", 'invalid YAML: found duplicate key "version"'),
    Bad(
        "duplicate-nested-key",
        HEAD.replace("        tags:", "        name: valkey\n        tags:"),
        "6:9",
        'found duplicate key "name"',
    ),
    Bad("document-is-a-list", "- version: 1\n", "1:1", "the spec must be a YAML mapping"),
    Bad("document-is-a-string", "version 1\n", "1:1", "the spec must be a YAML mapping"),
    Bad("document-is-empty", "# nothing here\n", "1:1", "the spec must be a YAML mapping"),
    # --- version, checked before anything else ------------------------------------------
    Bad("version-missing", "sources: []\ncolour: blue\n", "1:1", "version: expected 1, found nothing"),
    Bad(
        "version-2-with-unknown-keys",
        "version: 2\nmirrors: {}\ncolour: blue\n",
        "1:10",
        "version: expected 1, found 2",
    ),
    Bad("version-as-string", 'version: "1"\n', "1:10", "version: expected 1, found '1'"),
    Bad("version-as-bool", "version: true\n", "1:10", "version: expected 1, found True"),
    # --- unknown keys: the message lists the valid ones ---------------------------------
    Bad(
        "unknown-top-level-key",
        VALID + "colour: blue\n",
        "11:1",
        "unknown key 'colour' (expected one of: credentials, layout, mode, sources, targets, version)",
    ),
    Bad(
        "unknown-source-key",
        HEAD.replace("    repositories:", "    insecur: true\n    repositories:") + TARGETS,
        "4:5",
        "sources[0] (registry='docker.io'): unknown key 'insecur' "
        "(expected one of: ca-bundle, credentials, insecure, oci-layout, registry, repositories)",
    ),
    Bad(
        "unknown-repository-key",
        HEAD + "        helm-deps: true\n" + TARGETS,
        "7:9",
        "sources[0] (registry='docker.io') › repositories[0] (name='redis'): unknown key 'helm-deps' "
        "(expected one of: all-tags, chart-images, helm-dependencies, name, on-moved, signatures, tag-regex, "
        "tags, versions)",
    ),
    Bad(
        "on-moved-not-a-choice",
        HEAD + "        on-moved: always\n" + TARGETS,
        "7:19",
        "repositories[0] (name='redis') › on-moved: expected 'keep' or 'overwrite', found 'always'",
    ),
    Bad(
        # `registry` is both this target type's tag and one of its keys.
        "unknown-registry-target-key",
        VALID + "    bogus: 1\n",
        "11:5",
        "targets[0] (name='lab'): unknown key 'bogus' "
        "(expected one of: ca-bundle, credentials, insecure, layout, mode, name, prefix, registry, type)",
    ),
    Bad(
        # After a target of another type: the keys listed are this target's own.
        "unknown-ecr-target-key",
        VALID
        + "  - name: aws\n    type: ecr\n"
        + "    registry: 123456789012.dkr.ecr.eu-west-1.amazonaws.com\n"
        + "    replicate_to: []\n",
        "14:5",
        "targets[1] (name='aws'): unknown key 'replicate_to' "
        "(expected one of: layout, mode, name, prefix, profile, registry, replicate-to, type)",
    ),
    Bad(
        "unknown-acr-target-key",
        HEAD
        + "targets:\n  - name: az\n    type: acr\n"
        + "    subscription: 00000000-0000-0000-0000-000000000000\n"
        + "    resource-group: rg\n    registry: mycompany\n    location: westeurope\n",
        "13:5",
        "targets[0] (name='az'): unknown key 'location' (expected one of: client-id, credential-sets, "
        "layout, mode, name, prefix, registry, replicate-to, resource-group, subscription, tenant-id, type)",
    ),
    Bad(
        "unknown-harbor-target-key",
        VALID
        + "  - name: dc1\n    type: harbor\n    url: https://harbor.example.com\n"
        + "    project: vendor\n    prefix: mirror\n",
        "15:5",
        "targets[1] (name='dc1'): unknown key 'prefix' (expected one of: ca-bundle, credentials, insecure, "
        "layout, mode, name, project, schedule, type, url)",
    ),
    Bad(
        "unknown-credential-key",
        with_credentials(CREDENTIALS + "    token: {env: HUB_PAT}\n"),
        "6:5",
        "credentials › hub: unknown key 'token' "
        "(expected one of: aws-secret-arn, azure-credential-set, password, username)",
    ),
    Bad(
        "unknown-key-in-secret-reference",
        with_credentials(CREDENTIALS.replace("{env: HUB_TOKEN}", "{env: HUB_TOKEN, default: x}")),
        "5:32",
        "credentials › hub › password: unknown key 'default' (expected one of: env)",
    ),
    Bad(
        "unknown-replicate-to-key",
        HEAD
        + "targets:\n  - name: aws\n    type: ecr\n"
        + "    registry: 123456789012.dkr.ecr.eu-west-1.amazonaws.com\n"
        + "    replicate-to:\n      - region: us-east-1\n        acount: '210987654321'\n",
        "13:9",
        "targets[0] (name='aws') › replicate-to[0]: unknown key 'acount' "
        "(expected one of: account, profile, region)",
    ),
    # --- wrong types ------------------------------------------------------------------
    Bad(
        "string-where-list-expected",
        VALID.replace('tags: ["7.2.4"]', 'tags: "7.2.4"'),
        "6:15",
        "sources[0] (registry='docker.io') › repositories[0] (name='redis') › tags: "
        "expected a valid list, found '7.2.4'",
    ),
    Bad(
        "int-where-string-expected",
        VALID.replace("name: redis", "name: 42"),
        "5:15",
        "sources[0] (registry='docker.io') › repositories[0] › name: expected a valid string, found 42",
    ),
    Bad(
        "int-where-string-expected-in-registry-target",
        VALID + "    prefix: 7\n",
        "11:13",
        "targets[0] (name='lab') › prefix: expected a valid string, found 7",
    ),
    Bad(
        "scalar-where-mapping-expected",
        "version: 1\nsources:\n  - docker.io\n" + TARGETS,
        "3:5",
        "sources[0]: expected a mapping, found 'docker.io'",
    ),
    Bad(
        "null-where-list-expected",
        "version: 1\nsources:\n" + TARGETS,
        "2:1",
        "sources: expected a valid list, found nothing",
    ),
    Bad(
        "bad-mode",
        "version: 1\nmode: mirrors\n" + VALID.removeprefix("version: 1\n"),
        "2:7",
        "mode: expected 'mirror' or 'cache'",
    ),
    Bad(
        "bad-layout-in-registry-target",
        VALID + "    layout: scope\n",
        "11:13",
        "targets[0] (name='lab') › layout: expected 'scoped' or 'flat', found 'scope'",
    ),
    # --- tag selection ----------------------------------------------------------------
    Bad(
        "constraint-not-a-version",
        VALID.replace('tags: ["7.2.4"]', 'versions: ">=foo"'),
        "6:19",
        "sources[0] (registry='docker.io') › repositories[0] (name='redis') › versions: "
        "invalid version constraint '>=foo'",
    ),
    Bad(
        "constraint-bad-operator",
        VALID.replace('tags: ["7.2.4"]', 'versions: ">>1"'),
        "6:19",
        "versions: invalid version constraint '>>1': expected a version or comparison",
    ),
    Bad(
        "two-tag-selectors",
        VALID.replace('tags: ["7.2.4"]', 'tags: ["7.2.4"]\n        tag-regex: "^7"'),
        "5:9",
        "repositories[0] (name='redis'): use only one tag selector, not tags and tag-regex",
    ),
    Bad(
        "no-tag-selector",
        VALID.replace('        tags: ["7.2.4"]\n', ""),
        "5:9",
        "repositories[0] (name='redis'): select tags with one of: versions, tags, tag-regex "
        "(or all-tags: true",
    ),
    Bad(
        "bad-regex",
        VALID.replace('tags: ["7.2.4"]', "tag-regex: '^v(1'"),
        "6:20",
        "repositories[0] (name='redis') › tag-regex: invalid tag regex '^v(1': missing )",
    ),
    Bad(
        "bad-glob",
        VALID.replace('tags: ["7.2.4"]', 'tags: ["7.2.*", "v7/*"]'),
        "6:15",
        "repositories[0] (name='redis') › tags: invalid tag glob 'v7/*': '/' cannot occur in a tag",
    ),
    Bad(
        "empty-tag-list",
        VALID.replace('tags: ["7.2.4"]', "tags: []"),
        "6:9",
        "repositories[0] (name='redis') › tags: expected at least 1 item",
    ),
    # --- names and hosts --------------------------------------------------------------
    Bad(
        "invalid-repository-name",
        VALID.replace("name: redis", "name: Library/Redis"),
        "5:15",
        "'Library/Redis' is not a valid repository name (lower-case path components",
    ),
    Bad(
        "registry-host-with-scheme",
        VALID.replace("registry: docker.io", "registry: https://docker.io"),
        "3:15",
        "sources[0] (registry='https://docker.io') › registry: 'https://docker.io' is not a registry "
        "host (host or host:port, no scheme or path)",
    ),
    Bad(
        "registry-host-with-path",
        VALID.replace("registry: internal.example.com", "registry: internal.example.com/mirror"),
        "10:15",
        "targets[0] (name='lab') › registry: 'internal.example.com/mirror' is not a registry host",
    ),
    Bad(
        "invalid-prefix",
        VALID + "    prefix: Vendor Mirror\n",
        "11:13",
        "targets[0] (name='lab') › prefix: 'Vendor Mirror' is not a repository path prefix",
    ),
    Bad(
        "invalid-target-name",
        VALID.replace("name: lab", "name: Lab_1"),
        "8:11",
        "targets[0] (name='Lab_1') › name: 'Lab_1' is not a name of lower-case letters, digits and '-'",
    ),
    # --- target types -----------------------------------------------------------------
    Bad(
        "unknown-target-type",
        VALID.replace("type: registry", "type: acrr"),
        "9:11",
        "targets[0] (name='lab'): type 'acrr' is not one of: "
        "acr, ecr, harbor, indexed-registry, oci-layout, registry",
    ),
    Bad(
        "missing-target-type",
        VALID.replace("    type: registry\n", ""),
        "8:5",
        "targets[0] (name='lab'): missing required key 'type' "
        "(one of: acr, ecr, harbor, indexed-registry, oci-layout, registry)",
    ),
    Bad(
        "missing-required-key",
        HEAD + "targets:\n  - name: dc1\n    type: harbor\n    url: https://harbor.example.com\n",
        "8:5",
        "targets[0] (name='dc1'): missing required key 'project'",
    ),
    Bad(
        "ecr-registry-host",
        HEAD
        + "targets:\n  - name: aws\n    type: ecr\n    registry: 12345.dkr.ecr.eu-west-1.amazonaws.com\n",
        "10:15",
        "targets[0] (name='aws') › registry: '12345.dkr.ecr.eu-west-1.amazonaws.com' is not an ECR "
        "registry host (<12-digit account>.dkr.ecr.<region>.amazonaws.com)",
    ),
    Bad(
        "acr-subscription-not-a-uuid",
        HEAD
        + "targets:\n  - name: az\n    type: acr\n    subscription: my-subscription\n"
        + "    resource-group: rg\n    registry: mycompany\n",
        "10:19",
        "targets[0] (name='az') › subscription: 'my-subscription' is not a UUID",
    ),
    Bad(
        "harbor-cron-with-5-fields",
        HEAD
        + "targets:\n  - name: dc1\n    type: harbor\n    url: https://harbor.example.com\n"
        + '    project: vendor\n    schedule: "0 */6 * * *"\n',
        "12:15",
        "targets[0] (name='dc1') › schedule: Harbor cron has 6 fields (seconds first)",
    ),
    # --- across the document ----------------------------------------------------------
    Bad(
        "duplicate-target-names",
        VALID + "  - name: lab\n    type: registry\n    registry: other.example.com\n",
        "11:11",
        "targets[1] (name='lab') › name: duplicate target name 'lab' (also targets[0])",
    ),
    Bad(
        "flat-layout-overlap",
        "version: 1\nsources:\n"
        + "  - registry: quay.io\n    repositories:\n      - name: library/redis\n        tags: ['7']\n"
        + "  - registry: docker.io\n    repositories:\n      - name: redis\n        tags: ['7']\n"
        + TARGETS
        + "    prefix: mirror\n    layout: flat\n",
        "9:15",
        "sources[1] (registry='docker.io') › repositories[0] (name='redis') › name: "
        "'docker.io/library/redis' and 'quay.io/library/redis' both map to 'mirror/library/redis' "
        "in target 'lab' (use layout: scoped or another prefix)",
    ),
    Bad(
        "same-repository-twice",
        HEAD + "      - name: library/redis\n        versions: '>=7'\n" + TARGETS,
        "7:15",
        "sources[0] (registry='docker.io') › repositories[1] (name='library/redis') › name: "
        "repository 'docker.io/library/redis' is listed twice",
    ),
    Bad(
        "unknown-source-credentials",
        with_credentials(CREDENTIALS).replace(
            "  - registry: docker.io\n", "  - registry: docker.io\n    credentials: dockerhub\n"
        ),
        "8:18",
        "sources[0] (registry='docker.io') › credentials: unknown credentials 'dockerhub' (hub)",
    ),
    Bad(
        "unknown-target-credentials",
        VALID + "    credentials: lab-push\n",
        "11:18",
        "targets[0] (name='lab') › credentials: unknown credentials 'lab-push' (none are defined)",
    ),
    # --- credentials: references only, and never echoed --------------------------------
    Bad(
        "literal-password",
        with_credentials(CREDENTIALS.replace("{env: HUB_TOKEN}", "dckr_pat_S3cr3tValue")),
        "5:15",
        "credentials › hub › password: a literal password is refused: secrets never go in the spec; "
        "write {env: VAR} or {file: path}",
        absent="S3cr3t",
    ),
    Bad(
        "literal-numeric-password",
        with_credentials(CREDENTIALS.replace("{env: HUB_TOKEN}", "'12345678'")),
        "5:15",
        "a literal password is refused",
        absent="12345678",
    ),
    Bad(
        "password-pasted-as-env-name",
        with_credentials(CREDENTIALS.replace("{env: HUB_TOKEN}", "{env: 'hunter2!'}")),
        "5:21",
        "credentials › hub › password › env: the value is not an environment variable name",
        absent="hunter2",
    ),
    Bad(
        "bad-env-var-name",
        with_credentials(CREDENTIALS.replace("HUB_USER", "HUB-USER")),
        "4:21",
        "credentials › hub › username › env: the value is not an environment variable name",
    ),
    Bad(
        "password-and-aws-secret",
        with_credentials(
            CREDENTIALS + "    aws-secret-arn: arn:aws:secretsmanager:eu-west-1:123456789012:secret:hub\n"
        ),
        "4:5",
        "credentials › hub: give exactly one of: username + password, aws-secret-arn, azure-credential-set",
    ),
    Bad(
        "password-without-username",
        with_credentials("credentials:\n  hub:\n    password: {env: HUB_TOKEN}\n"),
        "4:5",
        "credentials › hub: username and password go together",
    ),
    Bad(
        "not-a-reference",
        with_credentials(CREDENTIALS.replace("{env: HUB_TOKEN}", "{vault: secret/hub}")),
        "5:15",
        "credentials › hub › password: expected a reference: {env: VAR}, {file: path}",
    ),
    Bad(
        # ECR reads a whole login from one secret (a pull-through cache rule's credentialArn),
        # never one field of it: a per-field ARN would pass validate and fail every plan.
        "aws-secret-arn-as-a-password",
        with_credentials(
            CREDENTIALS.replace(
                "{env: HUB_TOKEN}",
                "{aws-secret-arn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:x', key: pw}",
            )
        ),
        "5:15",
        "credentials › hub › password: expected a reference: {env: VAR}, {file: path}",
    ),
]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", BAD, ids=[case.id for case in BAD])
def test_bad_spec_reports_position_and_expectation(tmp_path: Path, case: Bad) -> None:
    path = write(tmp_path, case.text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    error = caught.value
    assert error.location == f"{path}:{case.where}", error.message
    assert case.expect in error.message
    assert str(error) == f"{path}:{case.where}: {error.message}"
    assert "\n" not in str(error)
    if case.absent is not None:
        assert case.absent not in str(error)


def test_cases_are_distinct() -> None:
    assert len({case.id for case in BAD}) == len(BAD)
    assert len({case.text for case in BAD}) == len(BAD)


def test_every_bad_case_differs_from_a_valid_spec() -> None:
    """The building blocks themselves are valid, so each case fails for its one reason."""
    parse_spec(VALID)
    parse_spec(with_credentials(CREDENTIALS))


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as caught:
        load_spec(missing)
    assert caught.value.location == str(missing)
    assert "cannot read spec" in caught.value.message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"version: 1\nname: \xff\xfe\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.location == f"{path}:2:7"
    assert caught.value.message == "spec is not UTF-8 text (byte 0xff)"


def test_parse_spec_labels_locations_with_filename() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec("version: 2\n", filename="inline.yaml")
    assert caught.value.location == "inline.yaml:1:10"


# --- good specs ---------------------------------------------------------------------------


def test_example_validates() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.base_dir == EXAMPLE.parent
    assert [s.registry for s in spec.sources] == ["public.cr.seqera.io", "cr.seqera.io"]
    assert [t.name for t in spec.targets] == ["aws-prod", "azure-prod", "dc1", "lab"]
    assert [type(t) for t in spec.targets] == [EcrTarget, AcrTarget, HarborTarget, RegistryTarget]
    assert sorted(spec.credentials) == ["harbor-admin", "lab-push", "seqera"]
    chart = spec.sources[0].repositories[0]
    assert chart.name == "charts/platform"
    assert chart.versions == ">=1.2.0 <2.0.0"
    assert chart.follow_dependencies == "all"
    assert spec.sources[1].credentials == "seqera"
    assert spec.sources[1].repositories[0].tags == ["v25.1.*"]


def test_defaults() -> None:
    spec = parse_spec(VALID)
    assert spec.mode == "mirror"
    assert spec.layout == "scoped"
    assert spec.credentials == {}
    target = spec.targets[0]
    assert isinstance(target, RegistryTarget)
    assert target.mode is None and target.layout is None
    assert spec.mode_of(target) == "mirror"
    assert spec.layout_of(target) == "scoped"
    assert target.prefix is None and target.insecure is False
    repo = spec.sources[0].repositories[0]
    assert repo.all_tags is False and repo.follow_dependencies == "none"


def test_target_overrides_mode_and_layout() -> None:
    text = (
        "version: 1\nmode: cache\nlayout: flat\n"
        + HEAD.removeprefix("version: 1\n")
        + TARGETS
        + "  - name: strict\n    type: registry\n    registry: other.example.com\n"
        + "    mode: mirror\n    layout: scoped\n"
    )
    spec = parse_spec(text)
    inherits, overrides = spec.targets
    assert (spec.mode_of(inherits), spec.layout_of(inherits)) == ("cache", "flat")
    assert (spec.mode_of(overrides), spec.layout_of(overrides)) == ("mirror", "scoped")
    assert spec.target("strict") is overrides


def test_unknown_target_name() -> None:
    with pytest.raises(SpecError, match=r"no target named 'prod' \(targets: lab\)"):
        parse_spec(VALID).target("prod")


def test_kebab_case_keys_map_to_fields() -> None:
    text = (
        "version: 1\n"
        "credentials:\n"
        "  aws:\n"
        "    aws-secret-arn: arn:aws:secretsmanager:eu-west-1:123456789012:secret:hub\n"
        "  files:\n"
        "    username: robot\n"
        "    password: {file: secrets/token}\n"
        "  vault:\n"
        "    username: {env: U}\n"
        "    password: {azure-key-vault-secret: 'https://kv1.vault.azure.net/secrets/pw'}\n"
        "sources:\n"
        "  - registry: ghcr.io\n"
        "    ca-bundle: certs/ca.pem\n"
        "    repositories:\n"
        "      - name: org/chart\n"
        "        tag-regex: '^v1\\.'\n"
        "        helm-dependencies: newest\n"
        "      - name: org/tool\n"
        "        all-tags: true\n"
        "targets:\n"
        "  - name: aws\n"
        "    type: ecr\n"
        "    registry: 123456789012.dkr.ecr.eu-west-1.amazonaws.com\n"
        "    replicate-to: [{region: us-east-1, account: '210987654321'}]\n"
        "  - name: az\n"
        "    type: acr\n"
        "    subscription: 00000000-0000-0000-0000-000000000000\n"
        "    resource-group: registries\n"
        "    registry: mycompany\n"
        "    tenant-id: t\n"
        "    client-id: c\n"
    )
    spec = parse_spec(text)
    assert spec.credentials["aws"].form("aws-secret-arn") is not None
    assert spec.credentials["files"].username == "robot"
    assert spec.credentials["files"].password == FileRef(file="secrets/token")
    assert spec.credentials["vault"].username == EnvRef(env="U")
    password = spec.credentials["vault"].password
    assert isinstance(password, AzureKeyVaultRef)
    assert password.azure_key_vault_secret == "https://kv1.vault.azure.net/secrets/pw"
    source = spec.sources[0]
    assert source.ca_bundle == "certs/ca.pem"
    chart, tool = source.repositories
    assert chart.tag_regex == "^v1\\."
    assert chart.helm_dependencies == "newest" and chart.follow_dependencies == "newest"
    assert tool.all_tags is True
    aws, az = spec.targets
    assert isinstance(aws, EcrTarget) and aws.replicate_to[0].account == "210987654321"
    assert isinstance(az, AcrTarget)
    assert (az.resource_group, az.tenant_id, az.client_id) == ("registries", "t", "c")


def test_snake_case_names_are_for_python_callers_only() -> None:
    """Files use the kebab-case keys (see the `unknown-ecr-target-key` case); code may use
    field names."""
    repo = Repository(name="org/app", tag_regex="^v1")
    assert repo.tag_regex == "^v1"
    target = EcrTarget(
        name="aws",
        type="ecr",
        registry="123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        replicate_to=[EcrReplication(region="us-east-1")],
    )
    assert target.replicate_to[0].region == "us-east-1"


def test_prefix_may_have_slashes_around_it() -> None:
    spec = parse_spec(VALID + "    prefix: /vendor/mirror/\n")
    target = spec.targets[0]
    assert isinstance(target, RegistryTarget) and target.prefix == "/vendor/mirror/"


def test_positions_are_kept_for_later_errors(tmp_path: Path) -> None:
    path = write(tmp_path, with_credentials(CREDENTIALS))
    spec = load_spec(path)
    assert spec.location_of(("credentials", "hub", "password")) == f"{path}:5:15"
    assert spec.location_of(("targets", 0)) == f"{path}:12:5"


# --- JSON Schema ------------------------------------------------------------------------------


def test_json_schema_is_valid_draft_2020_12() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    json.dumps(schema)  # plain data


def test_json_schema_accepts_the_example_and_rejects_unknown_keys() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    data = YAML(typ="safe").load(EXAMPLE.read_text(encoding="utf-8"))
    assert list(validator.iter_errors(data)) == []
    data["colour"] = "blue"
    assert not validator.is_valid(data)
    properties = json_schema()["properties"]
    assert "sources" in properties and "targets" in properties


def test_credential_syntax_comes_from_the_installed_providers() -> None:
    """The core knows `{env}`, `{file}` and username + password; every other reference kind and
    provider-native form is what an installed provider declares, and the spec, its errors and
    its schema all follow the declarations."""
    from mirrorspec import providers

    forms = sorted(kind for _, declared in providers.declared("CREDENTIAL_FORMS") for kind in declared)
    references = sorted(kind for _, declared in providers.declared("SECRET_REFERENCES") for kind in declared)
    assert forms and references, "no built-in provider declares credential syntax"
    schema = json_schema()["$defs"]["Credential"]["properties"]
    assert sorted(schema) == sorted(["username", "password", *forms])
    head = "version: 1\nsources: [{registry: docker.io, repositories: [{name: a/b, tags: [x]}]}]\n"
    head += "targets: [{name: t, type: registry, registry: 'localhost:5000'}]\ncredentials:\n  c:"
    with pytest.raises(SpecError) as empty:
        parse_spec(head + " {}\n")
    assert empty.value.message.endswith(f"give exactly one of: {', '.join(['username + password', *forms])}")
    with pytest.raises(SpecError) as unknown:
        parse_spec(head + "\n    username: u\n    password: {no-such-kind: x}\n")
    listed = unknown.value.message.split("expected a reference: ", 1)[1]
    for kind in ("env", "file", *references):
        assert f"{{{kind}: " in listed, kind
