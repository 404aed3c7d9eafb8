"""The ACR provider against its test bed.

Real parts: the azure-mgmt-containerregistry SDK (api-version 2023-07-01) over HTTPS against the
ARM contract emulator (`tests/emulators/acr.py`: every request and response validated against
`shared/azure/containerregistry-2023-07-01.json`; a request the spec rejects fails the test at
teardown); real `docker-registry` servers standing in for the upstreams and for the registry's
storage, behind the emulator's login server (`/oauth2/exchange`); real skopeo, run by the
emulator for imports and by mirrorspec for the copies import cannot do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import provider_beds as beds
import pytest
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.containerregistry import models
from emulators.acr import TOKEN_USER, AcrEmulator
from plan_helpers import converge, plan_changes, plan_notes
from testbed import RegistryServer, delete_tag, push_image, request_log, retag

from mirrorspec import cli, cli_common, engine
from mirrorspec.cli import configure_logging
from mirrorspec.context import Endpoint, RunContext
from mirrorspec.errors import (
    MirrorspecError,
    ProviderAuthError,
    ProviderConflict,
    ProviderError,
    ProviderThrottled,
    SpecError,
)
from mirrorspec.oci import RegistryClient
from mirrorspec.plan import Plan, to_json
from mirrorspec.providers import acr
from mirrorspec.providers.acr import api as acr_api
from mirrorspec.providers.acr.clients import AZURE_CREDENTIAL, AZURE_MANAGEMENT
from mirrorspec.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
SUB = "00000000-0000-0000-0000-000000000000"
GROUP = "registries"
REGISTRY_ID = (
    f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry/registries/mycompany"
)
DOCKERHUB_CANARY = "dockerhub-canary-4c7d1e09ab"
SEQERA_CANARY = "seqera-canary-91f0b3d7c6"
KV = "https://mycompany-kv.vault.azure.net/secrets"
TARGET = f"{{name: a, type: acr, subscription: {SUB}, resource-group: {GROUP}, registry: mycompany}}"


@dataclass
class Bed:
    emu: AcrEmulator
    upstream: RegistryServer  # stands in for docker.io, quay.io and public.cr.seqera.io
    seqera: RegistryServer  # stands in for cr.seqera.io (login required)
    storage: RegistryServer  # mycompany's content, behind the emulator's login server

    def ctx(self, spec: Any, workers: int = 4) -> RunContext:
        return RunContext(
            spec,
            workers=workers,
            client_factories={
                AZURE_MANAGEMENT: lambda ctx, subscription, target: self.emu.client(subscription),
                AZURE_CREDENTIAL: lambda ctx, target: self.emu.credential,
            },
            registry_overrides={
                **beds.Upstreams(self.upstream, self.seqera).overrides(),
                "mycompany.azurecr.io": Endpoint(
                    self.emu.login_host("mycompany"), ca_bundle=str(self.emu.ca_file)
                ),
                "smallshop.azurecr.io": Endpoint(
                    self.emu.login_host("smallshop"), ca_bundle=str(self.emu.ca_file)
                ),
            },
        )

    def tags(self, repository: str) -> list[str]:
        with RegistryClient(
            self.storage.host, username=TOKEN_USER, password=AcrEmulator.refresh_token, insecure=True
        ) as c:
            return sorted(c.list_tags(repository))

    def arm(self) -> Any:
        return self.emu.client(SUB)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Upstream registry contents, pushed once; each test starts its registries on a copy."""
    return beds.seed(tmp_path_factory.mktemp("acr-upstreams"))


@pytest.fixture
def bed(
    seeded: dict[str, Path],
    registry_factory: Callable[..., RegistryServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Bed]:
    storage = registry_factory(users={TOKEN_USER: AcrEmulator.refresh_token})
    small = registry_factory(users={TOKEN_USER: AcrEmulator.refresh_token})
    beds.set_upstream_credentials(monkeypatch, DOCKERHUB_CANARY, SEQERA_CANARY)
    with beds.upstreams(seeded, tmp_path, SEQERA_CANARY) as ups:
        upstreams = {
            "docker.io": ups.upstream,
            "quay.io": ups.upstream,
            "public.cr.seqera.io": ups.upstream,
            "cr.seqera.io": ups.seqera,
        }
        with AcrEmulator(upstreams=upstreams) as emu:
            emu.add_registry(SUB, GROUP, "mycompany", backend=storage)
            emu.add_registry(SUB, GROUP, "smallshop", backend=small, sku="Standard")
            yield Bed(emu, ups.upstream, ups.seqera, storage)


def _copied(plan: Plan) -> dict[str, tuple[str, list[str]]]:
    return {
        c.destination_repository: (c.engine, [t.tag for t in c.tags]) for t in plan.targets for c in t.copies
    }


def test_example_spec_caches_imports_replicates_and_converges(bed: Bed) -> None:
    ctx = bed.ctx(load_spec(ROOT / "examples" / "acr.yaml"))
    seeded = len(request_log(bed.upstream))
    first, second = converge(ctx)
    assert plan_changes(first) == [
        ("create", "cache-rule", "vendor-docker-io-library-redis"),
        ("create", "cache-rule", "vendor-quay-io-prometheus-node-exporter"),
        ("create", "credential-set", "mirrorspec-vendor-docker-io"),
        ("create", "geo-replication", "eastus"),
        ("create", "geo-replication", "northeurope"),
    ]
    # Credential set before the rule that uses it: apply runs changes in plan order.
    order = [c.id for c in first.targets[0].changes]
    assert order.index("mirrorspec-vendor-docker-io") < order.index("vendor-docker-io-library-redis")
    assert _copied(first) == {
        "vendor/docker.io/bitnami/postgresql": ("acr-import", ["16.1.0", "16.2.0"]),
        "vendor/cr.seqera.io/private/nf-tower-enterprise/backend": ("acr-import", ["v25.1.0", "v25.1.3"]),
    }
    notes = plan_notes(first)
    assert "docker.io/bitnami/postgresql: the artifact cache cannot filter tags" in notes
    assert "cr.seqera.io: not an upstream the ACR artifact cache supports; the acr target imports it" in notes
    assert (
        "credential set mirrorspec-vendor-docker-io: its system-assigned identity (its principal id is known "
        f"once created) needs Key Vault secret get on {KV.rsplit('/', 1)[0]}"
    ) in notes
    assert second.empty, (plan_changes(second), _copied(second))
    assert "principal " in plan_notes(second)  # now it knows whom to grant
    # Every request of plan and apply was one the official spec accepts (checked again at teardown).
    assert bed.emu.violations == [] and bed.emu.internal_errors == []
    assert {c.operation for c in bed.emu.calls} >= {
        "Registries_Get",
        "CacheRules_List",
        "CredentialSets_List",
        "Replications_List",
        "CredentialSets_Create",
        "CacheRules_Create",
        "Replications_Create",
        "Registries_ImportImage",
    }

    # What ACR now holds, read back through the API.
    rules = bed.emu.cache_rules("mycompany")
    redis = rules["vendor-docker-io-library-redis"]["properties"]
    assert redis["sourceRepository"] == "docker.io/library/redis"
    assert redis["targetRepository"] == "vendor/docker.io/library/redis"
    assert redis["credentialSetResourceId"] == f"{REGISTRY_ID}/credentialSets/mirrorspec-vendor-docker-io"
    assert "credentialSetResourceId" not in rules["vendor-quay-io-prometheus-node-exporter"]["properties"]
    (hub,) = bed.emu.credential_sets("mycompany").values()
    assert hub["identity"]["type"] == "systemAssigned"  # as real ACR reads it back (recording)
    assert hub["properties"]["loginServer"] == "docker.io"
    (credential,) = hub["properties"]["authCredentials"]
    assert credential["usernameSecretIdentifier"] == f"{KV}/dockerhub-user"
    assert credential["passwordSecretIdentifier"] == f"{KV}/dockerhub-token"
    replications = bed.emu.replications("mycompany")
    assert sorted(replications) == ["eastus", "northeurope", "westeurope"]
    assert replications["eastus"]["tags"] == {"managed-by": "mirrorspec"}
    assert bed.tags("vendor/docker.io/bitnami/postgresql") == ["16.1.0", "16.2.0"]
    assert bed.tags("vendor/cr.seqera.io/private/nf-tower-enterprise/backend") == ["v25.1.0", "v25.1.3"]

    # Served by the cache, so never listed upstream; imported by ACR, not pushed by us.
    during = request_log(bed.upstream)[seeded:]
    assert during and not [line for line in during if "/redis/" in line or "node-exporter" in line]
    imports = [c for c in bed.emu.calls if c.operation == "Registries_ImportImage"]
    assert len(imports) == 4 and {c.body["mode"] for c in imports} == {"NoForce"}
    assert [
        p for m, p in bed.emu.login_requests if m in ("PUT", "POST", "PATCH") and p.startswith("/v2/")
    ] == []

    # audit --content is a real check of what the registry stores.
    assert engine.audit(ctx, content=True).in_sync
    delete_tag(bed.storage, "vendor/docker.io/bitnami/postgresql", "16.2.0", user=TOKEN_USER)
    report = engine.audit(ctx, content=True)
    assert not report.in_sync
    (missing,) = [c for c in report.targets[0].content or () if c.status != "present"]
    assert (missing.tag, missing.status) == ("16.2.0", "missing")
    ctx.close()


def test_seqera_example_azure_target_imports_chart_closure_and_images(bed: Bed) -> None:
    ctx = bed.ctx(load_spec(ROOT / "examples" / "seqera.yaml"))
    first, second = converge(ctx, targets=["azure-prod"])
    assert plan_changes(first) == []
    assert _copied(first) == {
        "vendor/public.cr.seqera.io/charts/platform": ("acr-import", ["1.2.0", "1.5.3"]),
        "vendor/public.cr.seqera.io/charts/redis": ("acr-import", ["18.0.1"]),
        "vendor/cr.seqera.io/private/nf-tower-enterprise/backend": ("acr-import", ["v25.1.0", "v25.1.3"]),
        "vendor/cr.seqera.io/private/nf-tower-enterprise/frontend": ("acr-import", ["v25.1.0", "v25.1.3"]),
    }
    assert second.empty, _copied(second)
    assert bed.tags("vendor/public.cr.seqera.io/charts/redis") == ["18.0.1"]
    assert engine.audit(ctx, targets=["azure-prod"], content=True).in_sync
    assert SEQERA_CANARY not in to_json(first)
    ctx.close()


def test_cli_plan_apply_audit_exit_codes(
    bed: Bed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real CLI, with only the context's factories pointed at the test bed."""
    seam = bed.ctx(load_spec(ROOT / "examples" / "acr.yaml"))
    monkeypatch.setattr(
        cli_common,
        "RunContext",
        partial(
            RunContext,
            client_factories=seam.client_factories,
            registry_overrides=seam.registry_overrides,
        ),
    )
    spec = str(ROOT / "examples" / "acr.yaml")

    def run(*argv: str) -> int:
        with pytest.raises(SystemExit) as exit_:
            cli.main(list(argv))
        return int(exit_.value.code or 0)

    assert run("plan", spec, "--detailed-exitcode") == 2
    assert run("apply", spec, "--yes") == 0
    assert run("plan", spec, "--detailed-exitcode") == 0
    assert run("audit", spec, "--content") == 0
    delete_tag(
        bed.storage, "vendor/cr.seqera.io/private/nf-tower-enterprise/backend", "v25.1.3", user=TOKEN_USER
    )
    assert run("audit", spec, "--content") == 2
    out = capsys.readouterr()
    assert DOCKERHUB_CANARY not in out.out + out.err and SEQERA_CANARY not in out.out + out.err


def test_a_moved_upstream_tag_is_imported_again_with_force(bed: Bed) -> None:
    ctx = bed.ctx(load_spec(ROOT / "examples" / "seqera.yaml"))
    converge(ctx, targets=["azure-prod"])
    moved = retag(
        bed.seqera, "private/nf-tower-enterprise/backend", "v25.1.3", seed="hotfix", user="seqera-bot"
    )
    first, second = converge(bed.ctx(load_spec(ROOT / "examples" / "seqera.yaml")), targets=["azure-prod"])
    ((copy,),) = [t.copies for t in first.targets]
    assert [(t.tag, t.reason, t.digest) for t in copy.tags] == [("v25.1.3", "digest-mismatch", moved)]
    last = [c for c in bed.emu.calls if c.operation == "Registries_ImportImage"][-1]
    assert last.body["mode"] == "Force" and last.body["source"]["sourceImage"].endswith(moved)
    assert second.empty


MIXED = """\
version: 1
sources:
  - registry: quay.io
    repositories:
      - name: prometheus/node-exporter
        all-tags: true
targets:
  - name: cached
    type: acr
    mode: cache
    subscription: 00000000-0000-0000-0000-000000000000
    resource-group: registries
    registry: mycompany
    prefix: vendor
  - name: imported
    type: acr
    mode: mirror
    subscription: 00000000-0000-0000-0000-000000000000
    resource-group: Registries
    registry: MyCompany
    prefix: vendor
"""


def _refused(bed: Bed, spec_text: str, match: str, **kwargs: Any) -> str:
    """Planning `spec_text` fails with one line matching `match`, and nothing was written."""
    with pytest.raises(MirrorspecError) as caught:
        engine.plan(bed.ctx(parse_spec(spec_text)), **kwargs)
    message = str(caught.value)
    assert re.search(match, message), message
    assert "\n" not in message
    assert bed.emu.writes == []
    return message


def test_cache_and_import_on_one_path_is_refused_before_any_change(bed: Bed) -> None:
    message = _refused(
        bed, MIXED, "caches vendor/quay.io/prometheus/node-exporter and target 'imported' imports"
    )
    assert "ACR refuses imports into a cache rule's repository" in message
    _refused(
        bed,
        MIXED,
        "imports vendor/quay.io/prometheus/node-exporter and target 'cached' caches",
        targets=["imported"],
    )

    # A rule we do not manage (we never create wildcard rules) that covers an import
    # destination is just as fatal.
    arm = bed.arm()
    rule = models.CacheRule(
        properties=models.CacheRuleProperties(
            source_repository="quay.io/*", target_repository="vendor/quay.io/*"
        )
    )
    arm.cache_rules.begin_create(GROUP, "mycompany", "team-quay", rule).result()
    writes = len(bed.emu.writes)
    only_import = (
        MIXED.split("  - name: cached")[0] + "  - name: imported" + MIXED.split("  - name: imported")[1]
    )
    with pytest.raises(
        ProviderConflict, match=r"cache rule team-quay \(vendor/quay.io/\*\) covers vendor/quay.io"
    ):
        engine.plan(bed.ctx(parse_spec(only_import)))
    assert len(bed.emu.writes) == writes


STANDARD = """\
version: 1
sources:
  - registry: quay.io
    repositories:
      - name: prometheus/node-exporter
        tags: ["v1.8.0"]
targets:
  - name: small
    type: acr
    subscription: 00000000-0000-0000-0000-000000000000
    resource-group: registries
    registry: smallshop
    replicate-to: [{region}]
"""


def test_replicate_to_on_a_standard_registry_or_its_home_region_is_refused(bed: Bed) -> None:
    message = _refused(bed, STANDARD.format(region="northeurope"), "replicate-to needs a Premium registry")
    assert "smallshop is Standard" in message
    premium = STANDARD.format(region="westeurope").replace("smallshop", "mycompany")
    _refused(bed, premium, "replicate-to lists westeurope, the registry's home region")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            ("replicate-to: [{region}]", "replicate-to: [West Europe]"),
            r"replicate-to\[0\]: 'West Europe' is not an Azure region name",
            id="region",
        ),
        pytest.param(
            ("registry: smallshop", "registry: small-shop"),
            r"registry: 'small-shop' is not a value matching the pattern",
            id="registry",
        ),
        pytest.param(
            (
                "replicate-to: [{region}]",
                "credential-sets: {quay.io: {username-secret: x, password-secret: y}}",
            ),
            r"username-secret: 'x' is not a versionless Key Vault secret URI",
            id="key-vault",
        ),
        pytest.param(
            ("targets:", "credentials:\n  hub: {azure-credential-set: hub_login}\ntargets:"),
            r"credentials › hub › azure-credential-set: the value is not letters, digits and single dashes",
            id="credential-set",
        ),
        # ARM's CredentialSetNameParameter: minLength 5, maxLength 50 (2023-07-01 spec)
        pytest.param(
            ("targets:", "credentials:\n  hub: {azure-credential-set: hub1}\ntargets:"),
            r"credentials › hub › azure-credential-set: expected at least 5 character\(s\)$",
            id="credential-set-short",
        ),
        pytest.param(
            ("targets:", "credentials:\n  hub: {azure-credential-set: " + "a" * 51 + "}\ntargets:"),
            r"credentials › hub › azure-credential-set: expected at most 50 character\(s\)$",
            id="credential-set-long",
        ),
    ],
)
def test_an_invalid_name_is_a_one_line_spec_error(
    edit: tuple[str, str], expected: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(STANDARD.replace(*edit).replace("{region}", "northeurope"))
    with pytest.raises(SpecError, match=expected):
        load_spec(spec_file)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["plan", str(spec_file)])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(expected, err), err


@pytest.mark.parametrize(
    "text",
    [
        "vendor/docker.io/library/redis",
        "a",
        "x/" * 40 + "tail",
        "platform-team/vendored-images/registry.access.redhat.com/ubi9/ubi-minimal",
        "__/..",
        "mirrorspec  vendor.docker_io",
    ],
)
def test_generated_names_are_valid_readable_and_deterministic(text: str) -> None:
    name = acr.resource_name(text)
    assert re.fullmatch(r"^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$", name) and 5 <= len(name) <= 49, name
    assert acr.resource_name(text) == name
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-")
    if 5 <= len(slug) <= 49:
        assert name == slug
    else:
        assert name.startswith(slug[:40].strip("-")) and re.search(r"-[0-9a-f]{8}$", name)


def test_paths_whose_readable_names_collide_get_distinct_valid_names(bed: Bed) -> None:
    spec = parse_spec(
        "version: 1\nmode: cache\nlayout: flat\n"
        "sources:\n"
        "  - registry: quay.io\n    repositories:\n      - {name: team/app.web, all-tags: true}\n"
        "  - registry: ghcr.io\n    repositories:\n      - {name: team/app-web, all-tags: true}\n"
        f"targets:\n  - {TARGET}\n"
    )
    desired = acr.translate((), spec.targets[0], bed.ctx(spec))
    names = sorted(r.id for r in desired.resources if r.kind == acr.CACHE_RULE)
    assert len(set(names)) == 2 and all(n.startswith("team-app-web-") for n in names), names


def test_rules_change_in_place_only_for_their_credential_set_and_prune_deletes_only_ours(bed: Bed) -> None:
    arm = bed.arm()
    # A credential set nobody manages here, for the same login server, and rules that use or
    # resemble ours: docker.io's needs an in-place update, quay.io's a replace.
    other = models.CredentialSet(
        identity=models.IdentityProperties(type="SystemAssigned"),
        properties=models.CredentialSetProperties(
            login_server="docker.io",
            auth_credentials=[
                models.AuthCredential(
                    name="Credential1",
                    username_secret_identifier=f"{KV}/u",
                    password_secret_identifier=f"{KV}/p",
                )
            ],
        ),
    )
    arm.credential_sets.begin_create(GROUP, "mycompany", "team-hub", other).result()

    def rule(name: str, source: str, target: str, credential_set: str | None = None) -> None:
        properties = models.CacheRuleProperties(source_repository=source, target_repository=target)
        if credential_set:
            properties.credential_set_resource_id = f"{REGISTRY_ID}/credentialSets/{credential_set}"
        arm.cache_rules.begin_create(
            GROUP, "mycompany", name, models.CacheRule(properties=properties)
        ).result()

    rule(
        "vendor-docker-io-library-redis",
        "docker.io/library/redis",
        "vendor/docker.io/library/redis",
        "team-hub",
    )
    rule(
        "vendor-quay-io-prometheus-node-exporter",
        "quay.io/prometheus/other",
        "vendor/quay.io/prometheus/node-exporter",
    )
    rule("vendor-quay-io-stale", "quay.io/stale/app", "vendor/quay.io/stale/app")  # ours, not in the spec
    rule("team-quay", "quay.io/team/app", "team/app")  # foreign
    spec = (ROOT / "examples" / "acr.yaml").read_text().split("    replicate-to:")[0]
    ctx = bed.ctx(parse_spec(spec))
    plan = engine.plan(ctx)
    changes = plan_changes(plan)
    assert ("update", "cache-rule", "vendor-docker-io-library-redis") in changes
    assert ("replace", "cache-rule", "vendor-quay-io-prometheus-node-exporter") in changes
    assert not [c for c in changes if c[0] == "delete"]  # no --prune, no delete

    first, second = converge(ctx, prune=True)
    assert ("delete", "cache-rule", "vendor-quay-io-stale") in plan_changes(first)
    assert second.empty, plan_changes(second)
    rules = bed.emu.cache_rules("mycompany")
    assert set(rules) == {
        "vendor-docker-io-library-redis",
        "vendor-quay-io-prometheus-node-exporter",
        "team-quay",
    }
    assert rules["vendor-quay-io-prometheus-node-exporter"]["properties"]["sourceRepository"] == (
        "quay.io/prometheus/node-exporter"
    )
    assert rules["vendor-docker-io-library-redis"]["properties"]["credentialSetResourceId"].endswith(
        "/mirrorspec-vendor-docker-io"
    )
    assert "team-hub" in bed.emu.credential_sets("mycompany")  # foreign: kept
    assert "CacheRules_Update" in bed.emu.operations()

    # A new Key Vault secret for the password: the credential set changes in place.
    rotated = spec.replace("secrets/dockerhub-token", "secrets/dockerhub-token-2025")
    first, second = converge(bed.ctx(parse_spec(rotated)))
    assert plan_changes(first) == [("update", "credential-set", "mirrorspec-vendor-docker-io")]
    assert second.empty
    (hub,) = [s for n, s in bed.emu.credential_sets("mycompany").items() if n.startswith("mirrorspec")]
    assert hub["properties"]["authCredentials"][0]["passwordSecretIdentifier"] == f"{KV}/dockerhub-token-2025"


def test_a_rule_over_an_existing_repository_is_refused_at_plan_time(bed: Bed) -> None:
    push_image(bed.storage, "vendor/quay.io/prometheus/node-exporter", "v1.0.0", user=TOKEN_USER)
    spec = (ROOT / "examples" / "acr.yaml").read_text()
    _refused(
        bed, spec, r"repository vendor/quay.io/prometheus/node-exporter already exists, and ACR cannot create"
    )


def test_more_than_1000_rules_are_refused_at_plan_time(bed: Bed) -> None:
    for i in range(999):
        bed.emu.seed_cache_rule("mycompany", f"team-rule-{i:04d}", f"quay.io/team/a{i}", f"team/a{i}")
    message = _refused(bed, (ROOT / "examples" / "acr.yaml").read_text(), "1001 cache rules")
    assert "(999 exist, 2 to create): ACR allows 1000 per registry" in message
    lists = [c for c in bed.emu.calls if c.operation == "CacheRules_List"]
    assert len(lists) == 10  # 100 per page: every nextLink followed


def test_upstreams_without_a_usable_credential_set_are_imported_with_a_note(bed: Bed) -> None:
    spec = (ROOT / "examples" / "acr.yaml").read_text().split("    credential-sets:")[0]
    plan = engine.plan(bed.ctx(parse_spec(spec)))
    assert "docker.io: a cache rule reads its login from Key Vault through a credential set" in plan_notes(
        plan
    )
    assert [c for c in plan_changes(plan) if c[1] == "cache-rule"] == [
        ("create", "cache-rule", "vendor-quay-io-prometheus-node-exporter")
    ]
    # Key Vault references in the credentials themselves, or an existing set by name, work too.
    by_reference = spec.replace(
        "    username: {env: DOCKERHUB_USER}\n    password: {env: DOCKERHUB_TOKEN}",
        f"    username: {{azure-key-vault-secret: {KV}/hub-user}}\n"
        f"    password: {{azure-key-vault-secret: {KV}/hub-token}}",
    ).replace('        versions: "^16.0.0"', "        all-tags: true")
    changes = plan_changes(engine.plan(bed.ctx(parse_spec(by_reference))))
    assert ("create", "credential-set", "mirrorspec-vendor-docker-io") in changes
    existing = by_reference.split("credentials:\n  dockerhub:")[0] + (
        "credentials:\n  dockerhub: {azure-credential-set: team-hub}\n  seqera:"
        + by_reference.split("  seqera:", 1)[1]
    )
    plan = engine.plan(bed.ctx(parse_spec(existing)))
    assert not [c for c in plan_changes(plan) if c[1] == "credential-set"]
    rule = next(c for t in plan.targets for c in t.changes if c.id == "vendor-docker-io-library-redis")
    assert rule.after is not None and rule.after["credentialSet"] == "team-hub"


def test_a_source_import_cannot_reach_is_copied_with_skopeo_through_the_login_server(bed: Bed) -> None:
    spec = parse_spec(
        "version: 1\n"
        "sources:\n"
        f"  - registry: {bed.upstream.host}\n    insecure: true\n    repositories:\n"
        '      - {name: prometheus/node-exporter, tags: ["v1.8.0"]}\n'
        f"targets:\n  - {TARGET}\n"
    )
    ctx = bed.ctx(spec)
    first, second = converge(ctx)
    segment = bed.upstream.host.replace(":", "_")
    assert _copied(first) == {f"{segment}/prometheus/node-exporter": ("skopeo", ["v1.8.0"])}
    assert "ACR import cannot reach a private address" in plan_notes(first) or "insecure" in plan_notes(first)
    assert second.empty
    assert bed.tags(f"{segment}/prometheus/node-exporter") == ["v1.8.0"]
    assert bed.emu.exchanges >= 1
    ctx.close()


def test_upstream_secrets_never_reach_logs_or_plan(bed: Bed, capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging(2)  # the CLI's -vv
    try:
        ctx = bed.ctx(load_spec(ROOT / "examples" / "acr.yaml"))
        first, second = converge(ctx)
    finally:
        logging.getLogger().handlers.clear()
    logged = capfd.readouterr().err
    assert "DEBUG" in logged  # debug logging really was on
    for text in (logged, to_json(first), to_json(second), repr(first)):
        assert DOCKERHUB_CANARY not in text
        assert SEQERA_CANARY not in text
        assert AcrEmulator.refresh_token not in text
        assert bed.emu.credential.token not in text
    # The Seqera login went to ACR only inside the import requests that need it.
    carrying = [c for c in bed.emu.calls if SEQERA_CANARY in str(c.body)]
    assert carrying and {c.operation for c in carrying} == {"Registries_ImportImage"}


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (ClientAuthenticationError("no token"), ProviderAuthError),
        (ResourceExistsError("exists"), ProviderConflict),
        (ResourceNotFoundError("gone"), ProviderError),
        (ServiceRequestError("connection refused"), ProviderError),
        (ServiceResponseError("connection reset"), ProviderError),
        (AzureError("something else"), ProviderError),
    ],
)
def test_every_azure_core_error_we_promise_to_handle_is_mapped(
    raised: Exception, expected: type[Exception]
) -> None:
    target = parse_spec(STANDARD.format(region="northeurope")).targets[0]
    with pytest.raises(expected) as caught, acr_api._mapped(target, "op"):  # type: ignore[arg-type]
        raise raised
    assert type(caught.value) is expected
    assert caught.value.__cause__ is None or caught.value.__suppress_context__


def test_throttling_and_forbidden_statuses_are_mapped_by_status() -> None:
    target = parse_spec(STANDARD.format(region="northeurope")).targets[0]

    for status, expected in ((429, ProviderThrottled), (403, ProviderAuthError), (409, ProviderConflict)):
        error = HttpResponseError(message="nope")
        error.status_code = status
        with pytest.raises(expected), acr_api._mapped(target, "op"):  # type: ignore[arg-type]
            raise error
