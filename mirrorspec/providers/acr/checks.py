"""ACR plan-time limits: rule counts, names, imports and cache rules that would overlap, rules over
existing repositories — checked against the observed state before anything changes.
"""

from __future__ import annotations

from typing import Any

from ...plan import Note
from .. import base
from .native import (
    CACHE_RULE,
    CREDENTIAL_SET,
    KEEPS_CREDENTIAL_SET,
    MAX_CACHE_RULES,
    REPLICATION,
    AcrDesired,
    AcrObserved,
    _conflict,
)
from .observed import _drops_credential_set

# --- plan-time limits --------------------------------------------------------------------


__all__ = [
    "check",
]


def _covers(rule_target: str, repository: str) -> bool:
    """Whether a cache rule's target repository (static, `path/*` or `*`) covers `repository`."""
    if rule_target == "*":
        return True
    if rule_target.endswith("/*"):
        return repository.startswith(rule_target[:-1])
    return rule_target == repository


def check(desired: base.Desired, observed: base.Observed, target: Any) -> tuple[Note, ...]:
    """Refuse at plan time what ACR would refuse half-way through apply."""
    imports = desired.imports if isinstance(desired, AcrDesired) else frozenset()
    sku = observed.sku if isinstance(observed, AcrObserved) else ""
    location = observed.location if isinstance(observed, AcrObserved) else ""
    existing = observed.existing if isinstance(observed, AcrObserved) else frozenset()
    want_rules = {r.id: r for r in desired.resources if r.kind == CACHE_RULE}
    have_rules = {r.id: r for r in observed.resources if r.kind == CACHE_RULE}
    total = len(set(have_rules) | set(want_rules))
    if total > MAX_CACHE_RULES:
        raise _conflict(
            target,
            f"{total} cache rules ({len(have_rules)} exist, {len(set(want_rules) - set(have_rules))} to "
            f"create): ACR allows {MAX_CACHE_RULES} per registry",
        )
    regions = [r.id for r in desired.resources if r.kind == REPLICATION]
    if regions and sku != "Premium":
        raise _conflict(
            target,
            f"replicate-to needs a Premium registry, and {target.registry} is {sku or 'not Premium'} "
            "(upgrade its SKU or drop replicate-to)",
        )
    if location and location in regions:
        raise _conflict(target, f"replicate-to lists {location}, the registry's home region")
    for rule in want_rules.values():
        path = rule.attrs["targetRepository"]
        have = have_rules.get(rule.id)
        same_rule = have is not None and all(
            have.attrs[k] == rule.attrs[k] for k in ("sourceRepository", "targetRepository")
        )
        if (
            have is not None
            and same_rule
            and path in existing
            and _drops_credential_set(have.attrs, rule.attrs)
        ):
            host = str(rule.attrs["sourceRepository"]).split("/", 1)[0]
            raise _conflict(
                target,
                f"cache rule {rule.id}: {KEEPS_CREDENTIAL_SET}, and cannot re-create the rule without it "
                f"because its repository {path} exists (ACR refuses a cache rule over an existing "
                f"repository); keep credential-sets: {host}, or delete the repository (az acr repository "
                f"delete --name {target.registry} --repository {path}) and plan again",
            )
        if path in existing:
            raise _conflict(
                target,
                f"repository {path} already exists, and ACR cannot create cache rule {rule.id} over it "
                "(delete the repository, or select versions so that it is imported)",
            )
        other = next(
            (h for h in have_rules.values() if h.id != rule.id and h.attrs["targetRepository"] == path), None
        )
        if other is not None:
            raise _conflict(target, f"cache rule {other.id} already targets {path} (wanted: {rule.id})")
    notes = []
    for rule in want_rules.values():
        have = have_rules.get(rule.id)
        if (
            have is not None
            and rule.attrs["credentialSet"]
            and have.attrs["credentialSet"] != rule.attrs["credentialSet"]
            and all(have.attrs[k] == rule.attrs[k] for k in ("sourceRepository", "targetRepository"))
        ):
            # The 2023-07-01 model's CacheRuleUpdateProperties.credentialSetResourceId and the
            # docs (`az acr cache update --cred-set`, "Update or add a credential set to an
            # existing cache rule": https://learn.microsoft.com/azure/container-registry/artifact-cache-cli)
            # say a PATCH sets it; the one recorded cache-rule PATCH (null) was ignored.
            notes.append(
                Note(
                    "info",
                    f"unverified: cache rule {rule.id} takes its new credential set in place (PATCH "
                    "credentialSetResourceId), which rests on the 2023-07-01 API model and the docs "
                    "(az acr cache update --cred-set) only: no recording here shows such a PATCH take effect",
                )
            )
    for have in have_rules.values():
        covered = sorted(path for path in imports if _covers(have.attrs["targetRepository"], path))
        if not covered or have.id in want_rules:
            continue
        if not have.managed:
            raise _conflict(
                target,
                f"cache rule {have.id} ({have.attrs['targetRepository']}) covers {covered[0]}, which is "
                "to be imported; ACR refuses imports into a cache rule's repository",
            )
        notes.append(
            Note(
                "warning",
                f"our stale cache rule {have.id} covers {covered[0]}, which is now imported: "
                "apply --prune deletes the rule first; without it the import fails",
            )
        )
    have_sets = {r.id: r for r in observed.resources if r.kind == CREDENTIAL_SET}
    for cred in (r for r in desired.resources if r.kind == CREDENTIAL_SET):
        if cred.id in have_sets:
            continue  # observe says how it is, and for an unhealthy one which grant is missing
        vault = str(cred.attrs["passwordSecret"]).split("/secrets/", 1)[0]
        notes.append(
            Note(
                "info",
                f"credential set {cred.id}: its system-assigned identity (its principal id is known once "
                f"created) needs Key Vault secret get on {vault} (role 'Key Vault Secrets User', or an "
                "access policy with secret get); until then ACR reports it Unhealthy (Forbidden)",
            )
        )
    if want_rules:
        notes.append(
            Note(
                "info",
                "the artifact cache is lazy: a cached repository and its tags appear at the first "
                "pull through the registry, and new upstream tags are fetched only when pulled",
            )
        )
    return tuple(notes)
