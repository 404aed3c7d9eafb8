"""ECR observe: pull-through cache rules, creation templates, replication, registry policy and the
Secrets Manager secrets our rules use, read with list calls (paginated).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ... import paths
from ...context import RunContext
from ...credentials import BasicAuth, resolve_basic_auth
from ...errors import (
    MirrorspecError,
)
from ...plan import Note, Resource
from .. import base
from .api import _code, _mapped, _register_secret_string
from .clients import aws_client
from .native import (
    MANAGED,
    REPLICATION,
    REPOSITORY,
    RULE,
    SECRET,
    SECRET_PREFIX,
    STATEMENT,
    TEMPLATE,
    _account_region,
    _replicate_statement,
    _replication_filter,
    _secret_name,
    upstream_of,
)
from .target import EcrTarget

# --- observe -----------------------------------------------------------------------------


__all__ = [
    "observe",
    "secret_credentials",
]


def observe(target: Any, ctx: RunContext) -> base.Observed:
    """Every PTC rule, creation template, our secrets, repositories under the prefix, the
    replication configuration's rules and our policy statements — with paginated list calls."""
    account, region = _account_region(target)
    ecr = aws_client(ctx, "ecr", region, target.profile)
    resources: list[Resource] = []
    with _mapped(target, "observe"):
        for page in ecr.get_paginator("describe_pull_through_cache_rules").paginate(registryId=account):
            for rule in page.get("pullThroughCacheRules", []):
                attrs = {
                    "upstreamRegistry": rule.get("upstreamRegistry"),
                    "upstreamRegistryUrl": rule["upstreamRegistryUrl"],
                }
                if rule.get("credentialArn"):
                    attrs["credentialSecret"] = _secret_name(rule["credentialArn"])
                prefix = rule["ecrRepositoryPrefix"]
                resources.append(Resource(RULE, prefix, attrs, managed=_owned(target, ctx, prefix)))
        for page in ecr.get_paginator("describe_repository_creation_templates").paginate():
            for template in page.get("repositoryCreationTemplates", []):
                attrs = {
                    "appliedFor": sorted(template.get("appliedFor", [])),
                    "description": template.get("description", ""),
                }
                managed = MANAGED in attrs["description"]
                resources.append(Resource(TEMPLATE, template["prefix"], attrs, managed=managed))
        resources += _observe_secrets(target, ctx, region)
        if target.prefix:
            for page in ecr.get_paginator("describe_repositories").paginate(registryId=account):
                for repo in page.get("repositories", []):
                    name = repo["repositoryName"]
                    if name.startswith(target.prefix.strip("/") + "/"):
                        resources.append(Resource(REPOSITORY, name, {}, managed=False))
        rules = _read_rules(ecr)
    replication = _observe_replication(target, rules)
    resources += replication
    for dest in target.replicate_to:
        if dest.profile and dest.account and dest.account != account:
            resources += _observe_statements(ctx, dest.account, dest.region, dest.profile, target)
    return base.Observed(
        resources=tuple(resources), notes=tuple(_foreign_replication_notes(target, replication))
    )


def _foreign_replication_notes(target: EcrTarget, replication: Sequence[Resource]) -> list[Note]:
    """Other replication rules that also replicate repositories under our prefix: a filter is a
    plain string prefix (`_replication_filter`), and a rule without filters replicates every
    repository (API reference, RepositoryFilter: "If no filters are added, the contents of all
    repositories are replicated")."""
    if not target.prefix:
        return []
    ours = _replication_filter(target.prefix)
    notes = []
    for rule in replication:
        if rule.managed:
            continue
        where = ", ".join(f"{d['region']}/{d['registryId']}" for d in rule.attrs.get("destinations", []))
        filters = [str(f.get("filter", "")) for f in rule.attrs.get("repositoryFilters") or []]
        if not filters:
            notes.append(
                Note(
                    "warning",
                    f"replication rule '{rule.id}' (not mirrorspec's) has no filter: it replicates every "
                    f"repository, those under '{ours}' included, to {where}",
                )
            )
            continue
        caught = [f for f in filters if ours.startswith(f) or f.startswith(ours)]
        if caught:
            notes.append(
                Note(
                    "warning",
                    f"replication rule '{rule.id}' (not mirrorspec's) also replicates repositories under "
                    f"'{ours}' to {where}: its filter '{caught[0]}' is a plain string prefix of repository "
                    "names",
                )
            )
    return notes


def _observe_replication(target: EcrTarget, rules: Sequence[Mapping[str, Any]]) -> list[Resource]:
    """Our rule (once, even if an earlier failure left copies) and every other rule, each with
    an id of its own: its only filter when that is free, else one no prefix can spell."""
    prefix = target.prefix.strip("/") if target.prefix else None
    ours = [rule for rule in rules if prefix is not None and _is_ours(rule, prefix)]
    resources = []
    if prefix is not None and ours:
        # Copies of ours concatenate their destinations, so they differ from the spec and the
        # next apply writes one rule in their place.
        attrs = {
            "destinations": [d for rule in ours for d in rule.get("destinations", [])],
            "repositoryFilters": ours[0].get("repositoryFilters", []),
        }
        resources.append(Resource(REPLICATION, prefix, attrs, managed=True))
    taken = {prefix or ""}
    for index, rule in enumerate(rules):
        if prefix is not None and _is_ours(rule, prefix):
            continue
        filters = rule.get("repositoryFilters") or []
        rule_id = str(filters[0]["filter"]) if len(filters) == 1 else f"rule-{index}"
        if rule_id in taken:
            rule_id = f"{rule_id} #{index}"  # a space: never a repository prefix
        taken.add(rule_id)
        attrs = {"destinations": rule.get("destinations", []), "repositoryFilters": filters}
        resources.append(Resource(REPLICATION, rule_id, attrs, managed=False))
    return resources


def _is_ours(rule: Mapping[str, Any], prefix: str) -> bool:
    """Exactly the rule mirrorspec writes: one PREFIX_MATCH filter, `<prefix>/` (or `<prefix>`,
    as versions before issue 13 wrote it), and no deleteReplication (we never turn it on). ECR
    rules carry no owner or description, so a rule that also names our prefix among other
    filters, or turns deletes on, is someone else's."""
    filters = rule.get("repositoryFilters")
    return filters in (
        [{"filter": _replication_filter(prefix), "filterType": "PREFIX_MATCH"}],
        [{"filter": prefix.strip("/"), "filterType": "PREFIX_MATCH"}],
    ) and not _delete_replication(rule)


def _delete_replication(rule: Mapping[str, Any]) -> bool:
    return bool((rule.get("deleteReplication") or {}).get("enabled"))


def _owned(target: EcrTarget, ctx: RunContext, rule_prefix: str) -> bool:
    if target.prefix:
        ours = target.prefix.strip("/")
        return rule_prefix == ours or rule_prefix.startswith(ours + "/")
    # Without a prefix only the scoped host segments of our own sources count as ours.
    return rule_prefix in {paths.host_segment(s.registry) for s in ctx.spec.sources}


def _observe_secrets(target: EcrTarget, ctx: RunContext, region: str) -> list[Resource]:
    secrets = aws_client(ctx, "secretsmanager", region, target.profile)
    name_prefix = f"{SECRET_PREFIX}mirrorspec/{target.name}/"
    wanted = _wanted_secret_values(target, ctx)
    # ListSecrets "might not reflect changes from the last five minutes" and lists no secret
    # "marked for deletion"; "You can get more recent information for a specific secret by
    # calling DescribeSecret" (botocore secretsmanager model, ListSecrets doc). So the list
    # only finds names; each one, and each secret the spec wants, is then read by name.
    names = set(wanted)
    for page in secrets.get_paginator("list_secrets").paginate(
        Filters=[{"Key": "name", "Values": [name_prefix]}]
    ):
        for secret in page.get("SecretList", []):
            if secret["Name"].startswith(name_prefix):  # the name filter matches words; be exact
                names.add(secret["Name"])
    found: list[Resource] = []
    for name in sorted(names):
        described = _describe_secret(secrets, name)
        if described is None or described.get("DeletedDate") is not None:
            continue  # absent, or scheduled for deletion: creating it again restores it
        current = "stale"
        if name in wanted:
            value = secrets.get_secret_value(SecretId=described["ARN"]).get("SecretString", "")
            _register_secret_string(value)
            if _same_secret(value, wanted[name]):
                current = "current"
        description = described.get("Description", "")
        found.append(
            Resource(
                SECRET,
                name,
                {"credential": current, "description": description},
                managed=MANAGED in description,
            )
        )
    return found


def _describe_secret(secrets: Any, name: str) -> dict[str, Any] | None:
    try:
        return dict(secrets.describe_secret(SecretId=name))
    except Exception as exc:
        if _code(exc) == "ResourceNotFoundException":
            return None
        raise


def _wanted_secret_values(target: EcrTarget, ctx: RunContext) -> dict[str, BasicAuth]:
    """Name of each Secrets Manager secret we create → the login it must hold, read now."""
    wanted = secret_credentials(target, ctx)
    return {name: resolve_basic_auth(ctx.spec, entry) for name, entry in wanted.items()}


def secret_credentials(target: Any, ctx: RunContext) -> dict[str, str]:
    """Name of each Secrets Manager secret we create → the spec `credentials:` entry whose
    login it holds; `render terraform` turns these into sensitive variables, never values."""
    found = {}
    for source in ctx.spec.sources:
        if source.settings_only:  # no cache rule, so no secret for one
            continue
        upstream = upstream_of(source.registry)
        credential = ctx.spec.credentials.get(source.credentials or "")
        if upstream is None or not upstream.needs_secret or credential is None or credential.password is None:
            continue
        name = f"{SECRET_PREFIX}mirrorspec/{target.name}/{paths.host_segment(source.registry)}"
        found[name] = source.credentials or ""
    return found


def _secret_json(auth: BasicAuth) -> str:
    """The secret's JSON, byte for byte as Terraform's `jsonencode` writes it for `render
    terraform`'s `secret_string`: keys sorted, no spaces, non-ASCII kept, and `<`, `>`, `&`,
    U+2028, U+2029 as `\\u` escapes (https://developer.hashicorp.com/terraform/language/functions/
    jsonencode; checked with terraform 1.11). terraform-provider-aws compares `secret_string` as
    text, so any other spelling of the same JSON makes `terraform plan` replace the version."""
    text = json.dumps(
        {"username": auth.username, "accessToken": auth.password},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def _same_secret(value: str, auth: BasicAuth) -> bool:
    """Whether the secret holds this login: ECR reads the JSON keys, not the spelling, so a
    value Terraform (or an older mirrorspec, with spaces) wrote is as current as ours."""
    try:
        document: object = json.loads(value)
    except ValueError:
        return False
    return document == {"username": auth.username, "accessToken": auth.password}


def _observe_statements(
    ctx: RunContext, account: str, region: str, profile: str, target: EcrTarget
) -> list[Resource]:
    """Our statement in a destination account's registry policy: ours by its exact Sid. Other
    `mirrorspec-` Sids are other installations' (another source account replicating there)."""
    with _mapped(target, "GetRegistryPolicy"):
        policy = _read_policy(aws_client(ctx, "ecr", region, profile))
    sid = _our_sid(target)
    return [
        Resource(STATEMENT, f"{account}/{region}/{sid}", dict(s), managed=True)
        for s in _statements(policy)
        if isinstance(s, dict) and s.get("Sid") == sid
    ]


def _our_sid(target: EcrTarget) -> str:
    account, _ = _account_region(target)
    return str(_replicate_statement(account, "", "")["Sid"])


def _read_policy(ecr: Any) -> dict[str, Any] | None:
    """The registry policy as ECR holds it, or None when the registry has none."""
    try:
        text = ecr.get_registry_policy()["policyText"]
    except Exception as exc:
        if _code(exc) == "RegistryPolicyNotFoundException":
            return None
        raise
    try:
        policy = json.loads(text)
    except ValueError:
        policy = None
    if not isinstance(policy, dict):  # ECR validates the text it stores: not expected
        raise MirrorspecError("the registry policy ECR returned is not a JSON object")
    return policy


def _statements(policy: Mapping[str, Any] | None) -> list[Any]:
    """`Statement` is a list or, legally, one statement object."""
    found = (policy or {}).get("Statement", [])
    return [found] if isinstance(found, dict) else list(found)


def _read_rules(ecr: Any) -> list[dict[str, Any]]:
    return list((ecr.describe_registry().get("replicationConfiguration") or {}).get("rules", []))
