"""Where real ACR differs from what the provider assumed (issue 13: items 5, 6 and 8, ACR part).

Against the emulator as corrected by the recordings (tests/test_acr_recordings.py): credential
sets start Unhealthy/Forbidden until their identity may get the Key Vault secrets; a cache rule
on another ACR needs a user-assigned identity the 2023-07-01 contract cannot send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from acr_bed import SUB, acr_context
from emulators.acr import TOKEN_USER, AcrEmulator
from plan_helpers import converge, plan_changes, plan_notes
from testbed import RegistryServer, push_chart, push_image

from mirrorspec import engine
from mirrorspec.errors import ProviderConflict, SpecError
from mirrorspec.plan import Plan
from mirrorspec.spec import parse_spec

GROUP = "registries"
KV = "https://mycompany-kv.vault.azure.net/secrets"
TARGET = (
    f"{{name: azure, type: acr, subscription: {SUB}, resource-group: {GROUP}, registry: mycompany, "
    "prefix: vendor"
)


@pytest.fixture
def emu(registry_factory: Callable[..., RegistryServer]) -> Iterator[tuple[AcrEmulator, RegistryServer]]:
    upstream = registry_factory()
    push_image(upstream, "library/redis", "7.2.4")
    push_image(upstream, "hello-world", "1.0")
    push_chart(upstream, "charts/redis", "18.0.1")
    backend = registry_factory(users={TOKEN_USER: AcrEmulator.refresh_token})
    with AcrEmulator(upstreams={"docker.io": upstream, "quay.io": upstream}) as emulator:
        emulator.add_registry(SUB, GROUP, "mycompany", backend=backend)
        yield emulator, upstream


def _hub_spec() -> str:
    return (
        "version: 1\nmode: cache\n"
        "sources:\n  - registry: docker.io\n    repositories:\n"
        "      - {name: library/redis, all-tags: true}\n"
        f"targets:\n  - {TARGET},\n"
        f"     credential-sets: {{docker.io: {{username-secret: {KV}/hub-user, "
        f"password-secret: {KV}/hub-token}}}}}}\n"
    )


def test_plan_and_audit_show_an_unhealthy_credential_set_and_the_exact_grant_it_lacks(
    emu: tuple[AcrEmulator, RegistryServer],
) -> None:
    emulator, upstream = emu
    ctx = acr_context(emulator, parse_spec(_hub_spec()), upstream)
    first, second = converge(ctx)
    assert ("create", "credential-set", "mirrorspec-vendor-docker-io") in plan_changes(first)
    (found,) = emulator.credential_sets("mycompany").values()
    principal = found["identity"]["principalId"]
    grant = (
        f"credential set mirrorspec-vendor-docker-io is Unhealthy (Forbidden): ACR cannot read its Key Vault "
        f"secrets; grant principal {principal} the role 'Key Vault Secrets User' on key vault mycompany-kv "
        "(or, if the vault uses access policies, an access policy with secret get)"
    )
    assert grant in plan_notes(second)
    audit = engine.audit(ctx)
    assert grant in "\n".join(n.message for t in audit.targets for n in t.notes)

    emulator.grant_secret_get("mycompany-kv", principal)
    healthy = engine.plan(ctx)
    notes = plan_notes(healthy)
    assert "credential set mirrorspec-vendor-docker-io is Healthy" in notes
    assert "Key Vault Secrets User" not in notes and "Unhealthy" not in notes
    ctx.close()


def test_an_acr_upstream_is_imported_because_its_cache_rule_needs_an_identity_we_cannot_send(
    emu: tuple[AcrEmulator, RegistryServer],
) -> None:
    emulator, upstream = emu
    spec = parse_spec(
        "version: 1\nmode: cache\n"
        "sources:\n  - registry: upstreamregistry.azurecr.io\n    repositories:\n"
        "      - {name: hello-world, all-tags: true}\n"
        f"targets:\n  - {TARGET}}}\n"
    )
    ctx = acr_context(emulator, spec, upstream, also=("upstreamregistry.azurecr.io",))
    desired = engine.plan(ctx)
    assert [c for c in plan_changes(desired) if c[1] in ("cache-rule", "credential-set")] == []
    assert (
        "upstreamregistry.azurecr.io: caching from another ACR authenticates with a user-assigned managed "
        "identity on the cache rule, which the ACR management API 2023-07-01 that mirrorspec speaks cannot "
        "send (it came with a later preview API); the acr target imports it instead (importImage)"
    ) in plan_notes(desired)
    ctx.close()

    # A credential set for another ACR is the wrong mechanism: refused, with the alternative.
    with pytest.raises(
        SpecError, match=r"credential-sets: upstreamregistry\.azurecr\.io: .*managed identity"
    ):
        bad = parse_spec(
            "version: 1\nmode: cache\n"
            "sources:\n  - registry: upstreamregistry.azurecr.io\n    repositories:\n"
            "      - {name: hello-world, all-tags: true}\n"
            f"targets:\n  - {TARGET},\n"
            "     credential-sets: {upstreamregistry.azurecr.io: "
            f"{{username-secret: {KV}/u, password-secret: {KV}/p}}}}}}\n"
        )
        engine.plan(acr_context(emulator, bad, upstream, also=("upstreamregistry.azurecr.io",)))


def test_the_plan_says_unverified_where_it_relies_on_a_docs_only_upstream_or_a_chart_import(
    emu: tuple[AcrEmulator, RegistryServer],
) -> None:
    emulator, upstream = emu
    spec = parse_spec(
        "version: 1\nmode: cache\n"
        "sources:\n  - registry: quay.io\n    repositories:\n"
        "      - {name: library/redis, all-tags: true}\n"
        "      - {name: charts/redis, versions: '~18.0.0', helm-dependencies: true}\n"
        f"targets:\n  - {TARGET}}}\n"
    )
    ctx = acr_context(emulator, spec, upstream)
    notes = plan_notes(engine.plan(ctx))
    assert (
        "unverified: quay.io as an artifact-cache upstream rests on the docs' list of supported upstreams "
        "only (no recording here shows a cache rule for it)"
    ) in notes
    assert (
        "unverified: quay.io/charts/redis is a Helm chart, and the docs say import takes Helm charts from "
        "another Azure container registry only; importing it from quay.io is not shown to work"
    ) in notes
    ctx.close()


# --- a cache rule's credential set: added in place, removed only by delete + create -----------

RULE = "vendor-quay-io-library-redis"
QUAY_SET = "mirrorspec-vendor-quay-io"


def _quay_spec(*, credential_set: bool) -> str:
    sets = (
        f",\n     credential-sets: {{quay.io: {{username-secret: {KV}/quay-user, "
        f"password-secret: {KV}/quay-token}}}}"
        if credential_set
        else ""
    )
    return (
        "version: 1\nmode: cache\n"
        "sources:\n  - registry: quay.io\n    repositories:\n"
        "      - {name: library/redis, all-tags: true}\n"
        f"targets:\n  - {TARGET}{sets}}}\n"
    )


def _rule_change(plan: Plan) -> tuple[str, str]:
    (change,) = [c for t in plan.targets for c in t.changes if c.resource == "cache-rule" and c.id == RULE]
    return change.action, change.reason


def test_removing_a_rules_credential_set_is_planned_as_replace_and_converges(
    emu: tuple[AcrEmulator, RegistryServer],
) -> None:
    emulator, upstream = emu
    ctx = acr_context(emulator, parse_spec(_quay_spec(credential_set=True)), upstream)
    converge(ctx)
    ctx.close()
    assert emulator.cache_rules("mycompany")[RULE]["properties"]["credentialSetResourceId"].endswith(QUAY_SET)

    ctx = acr_context(emulator, parse_spec(_quay_spec(credential_set=False)), upstream)
    first, second = converge(ctx)
    ctx.close()
    action, reason = _rule_change(first)
    assert action == "replace"
    assert "ACR keeps a cache rule's credential set when a PATCH sets it to null" in reason
    assert "test_acr_cache.yaml #21-#24" in reason
    # Convergence: after apply the next plan is empty, and the rule has no credential set.
    assert second.empty, plan_changes(second)
    assert "credentialSetResourceId" not in emulator.cache_rules("mycompany")[RULE]["properties"]
    assert ("DELETE", RULE) in [(c.method, c.path.rsplit("/", 1)[-1]) for c in emulator.writes]


def test_removing_the_credential_set_of_a_rule_whose_repository_exists_is_refused_with_the_way_out(
    emu: tuple[AcrEmulator, RegistryServer],
) -> None:
    emulator, upstream = emu
    ctx = acr_context(emulator, parse_spec(_quay_spec(credential_set=True)), upstream)
    converge(ctx)
    ctx.close()
    # A pull through the rule stores the image in its target repository, as real ACR does.
    push_image(emulator.backend("mycompany"), "vendor/quay.io/library/redis", "7.2.4", user=TOKEN_USER)
    emulator.calls.clear()

    ctx = acr_context(emulator, parse_spec(_quay_spec(credential_set=False)), upstream)
    with pytest.raises(ProviderConflict) as caught:
        engine.plan(ctx)
    ctx.close()
    message = str(caught.value)
    assert "\n" not in message
    assert (
        f"cache rule {RULE}: ACR keeps a cache rule's credential set when a PATCH sets it to null "
        "(recording test_acr_cache.yaml #21-#24), and cannot re-create the rule without it because its "
        "repository vendor/quay.io/library/redis exists (ACR refuses a cache rule over an existing "
        "repository); keep credential-sets: quay.io, or delete the repository "
        "(az acr repository delete --name mycompany --repository vendor/quay.io/library/redis) and plan again"
    ) in message
    assert emulator.writes == []
    assert emulator.cache_rules("mycompany")[RULE]["properties"]["credentialSetResourceId"].endswith(QUAY_SET)


def test_adding_a_credential_set_to_a_rule_stays_in_place_says_unverified_and_converges(
    emu: tuple[AcrEmulator, RegistryServer],
) -> None:
    emulator, upstream = emu
    ctx = acr_context(emulator, parse_spec(_quay_spec(credential_set=False)), upstream)
    converge(ctx)
    ctx.close()
    assert "credentialSetResourceId" not in emulator.cache_rules("mycompany")[RULE]["properties"]

    ctx = acr_context(emulator, parse_spec(_quay_spec(credential_set=True)), upstream)
    first, second = converge(ctx)
    ctx.close()
    assert _rule_change(first)[0] == "update"
    assert (
        f"unverified: cache rule {RULE} takes its new credential set in place (PATCH "
        "credentialSetResourceId), which rests on the 2023-07-01 API model and the docs "
        "(az acr cache update --cred-set) only: no recording here shows such a PATCH take effect"
    ) in plan_notes(first)
    assert second.empty, plan_changes(second)
    assert emulator.cache_rules("mycompany")[RULE]["properties"]["credentialSetResourceId"].endswith(QUAY_SET)
