"""ECR apply: one change at a time, idempotent; the replication configuration and the registry
policy are one document per registry, changed by read-modify-write (`_read_modify_write`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic

from ...context import RunContext
from ...errors import (
    ProviderConflict,
)
from ...plan import Change
from .api import _code, _mapped
from .clients import aws_client
from .native import MANAGED, REPLICATION, REPOSITORY, RULE, SECRET, STATEMENT, TEMPLATE, _account_region, _Doc
from .observed import (
    _delete_replication,
    _describe_secret,
    _is_ours,
    _read_policy,
    _read_rules,
    _secret_json,
    _statements,
    _wanted_secret_values,
)
from .target import EcrTarget

# --- apply -------------------------------------------------------------------------------


__all__ = [
    "apply",
]


def apply(change: Change, target: Any, ctx: RunContext) -> None:
    account, region = _account_region(target)
    ecr = aws_client(ctx, "ecr", region, target.profile)
    with _mapped(target, f"{change.action} {change.resource} {change.id}"):
        if change.resource == REPOSITORY:
            _create_repository(ecr, account, change.id)
        elif change.resource == RULE:
            _apply_rule(ecr, ctx, target, account, region, change)
        elif change.resource == TEMPLATE:
            _apply_template(ecr, change)
        elif change.resource == SECRET:
            _apply_secret(aws_client(ctx, "secretsmanager", region, target.profile), ctx, target, change)
        elif change.resource == REPLICATION:
            _apply_replication(ecr, target, change)
        elif change.resource == STATEMENT:
            _apply_statement(ctx, target, change)
        else:
            raise AssertionError(f"unknown ECR resource kind {change.resource}")


def _create_repository(ecr: Any, account: str, name: str) -> None:
    try:
        ecr.create_repository(registryId=account, repositoryName=name)
    except Exception as exc:
        if _code(exc) != "RepositoryAlreadyExistsException":  # created meanwhile: fine
            raise


def _apply_rule(
    ecr: Any, ctx: RunContext, target: EcrTarget, account: str, region: str, change: Change
) -> None:
    if change.action in ("delete", "replace"):
        ecr.delete_pull_through_cache_rule(registryId=account, ecrRepositoryPrefix=change.id)
    if change.action == "delete":
        return
    after = dict(change.after or {})
    arn = None
    if "credentialSecret" in after:
        secrets = aws_client(ctx, "secretsmanager", region, target.profile)
        arn = secrets.describe_secret(SecretId=after["credentialSecret"])["ARN"]
    if change.action == "update":
        ecr.update_pull_through_cache_rule(
            registryId=account, ecrRepositoryPrefix=change.id, credentialArn=arn
        )
        return
    params: dict[str, Any] = {
        "registryId": account,
        "ecrRepositoryPrefix": change.id,
        "upstreamRegistryUrl": after["upstreamRegistryUrl"],
        "upstreamRegistry": after["upstreamRegistry"],
    }
    if arn:
        params["credentialArn"] = arn
    try:
        ecr.create_pull_through_cache_rule(**params)
    except Exception as exc:
        # botocore retries a create whose answer was lost; the retry then finds our own rule.
        if _code(exc) != "PullThroughCacheRuleAlreadyExistsException":
            raise
        (rule,) = ecr.describe_pull_through_cache_rules(
            registryId=account, ecrRepositoryPrefixes=[change.id]
        )["pullThroughCacheRules"]
        if (
            rule.get("upstreamRegistryUrl") != params["upstreamRegistryUrl"]
            or rule.get("credentialArn") != arn
        ):
            raise


def _apply_template(ecr: Any, change: Change) -> None:
    if change.action in ("delete", "replace"):
        ecr.delete_repository_creation_template(prefix=change.id)
    if change.action == "delete":
        return
    after = dict(change.after or {})
    call = (
        ecr.update_repository_creation_template
        if change.action == "update"
        else ecr.create_repository_creation_template
    )
    try:
        call(prefix=change.id, appliedFor=after["appliedFor"], description=after["description"])
    except Exception as exc:
        if _code(exc) != "TemplateAlreadyExistsException":
            raise
        # A retried create whose first answer was lost: make it what we want.
        ecr.update_repository_creation_template(
            prefix=change.id, appliedFor=after["appliedFor"], description=after["description"]
        )


def _apply_secret(secrets: Any, ctx: RunContext, target: EcrTarget, change: Change) -> None:
    if change.action == "delete":
        try:
            secrets.delete_secret(SecretId=change.id, RecoveryWindowInDays=7)
        except Exception as exc:
            if not _scheduled_for_deletion(secrets, change.id, exc):  # already going: done
                raise
        return
    value = _secret_json(_wanted_secret_values(target, ctx)[change.id])
    if change.action == "create":
        try:
            secrets.create_secret(Name=change.id, SecretString=value, Description=MANAGED)
            return
        except Exception as exc:
            # A name in its recovery window (we pruned it less than 7 days ago) is refused with
            # InvalidRequestException "You can't create this secret because a secret with this
            # name is already scheduled for deletion." (the text AWS returns, as in
            # hashicorp/terraform-provider-aws#8219); RestoreSecret "Cancels the scheduled
            # deletion of a secret" (model doc), then the value is put as for an update.
            if _scheduled_for_deletion(secrets, change.id, exc):
                secrets.restore_secret(SecretId=change.id)
            elif _code(exc) != "ResourceExistsException":  # a retried create whose answer was lost
                raise
    secrets.put_secret_value(SecretId=change.id, SecretString=value)
    secrets.update_secret(SecretId=change.id, Description=MANAGED)


def _scheduled_for_deletion(secrets: Any, name: str, exc: BaseException) -> bool:
    """True when `exc` is Secrets Manager's InvalidRequestException and the secret is in its
    recovery window (model doc of InvalidRequestException: "The secret is scheduled for
    deletion" is one of its causes, so DescribeSecret's DeletedDate tells which)."""
    if _code(exc) != "InvalidRequestException":
        return False
    described = _describe_secret(secrets, name)
    return described is not None and described.get("DeletedDate") is not None


def _apply_replication(ecr: Any, target: EcrTarget, change: Change) -> None:
    """Put our rule into the registry's one replication configuration (where it was, else at
    the end), or take it out; every other rule is written back as read, in its order."""
    account, region = _account_region(target)
    wanted = None
    if change.action != "delete":
        after = dict(change.after or {})
        wanted = {"destinations": after["destinations"], "repositoryFilters": after["repositoryFilters"]}

    def merge(current: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _replace_ours(current, lambda rule: _is_ours(rule, change.id), wanted)

    def write(rules: list[dict[str, Any]]) -> None:
        ecr.put_replication_configuration(replicationConfiguration={"rules": rules})

    document = _Singleton(
        f"the replication configuration of registry {account} in {region}",
        "PutReplicationConfiguration",
        lambda: _read_rules(ecr),
        write,
        _normal_rules,
    )
    _read_modify_write(target, document, merge)


def _normal_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rules as compared between reads: an absent or empty filter list, and deleteReplication
    absent or off, mean the same (whether ECR fills either in on read is unconfirmed)."""
    normal = []
    for rule in rules:
        same = {k: v for k, v in rule.items() if k not in ("deleteReplication", "repositoryFilters")}
        if rule.get("repositoryFilters"):
            same["repositoryFilters"] = rule["repositoryFilters"]
        if _delete_replication(rule):
            same["deleteReplication"] = rule["deleteReplication"]
        normal.append(same)
    return normal


def _apply_statement(ctx: RunContext, target: EcrTarget, change: Change) -> None:
    """Put our statement into a destination registry's policy (where it was, else at the end),
    or take it out; every other statement is written back as read, in its order."""
    account, region, sid = change.id.split("/", 2)
    profile = next(
        (d.profile for d in target.replicate_to if d.account == account and d.region == region), None
    )
    if profile is None:
        raise ProviderConflict(
            f"the spec names no profile for account {account} in {region}; cannot reach its registry policy",
            provider="ecr",
            target=target.name,
            operation="PutRegistryPolicy",
        )
    ecr = aws_client(ctx, "ecr", region, profile)
    wanted = None if change.action == "delete" else dict(change.after or {})

    def merge(current: dict[str, Any] | None) -> dict[str, Any] | None:
        statements = _replace_ours(
            _statements(current), lambda s: isinstance(s, dict) and s.get("Sid") == sid, wanted
        )
        if not statements:
            return None  # ECR refuses a policy without statements: delete it instead
        return {**(current or {"Version": "2012-10-17"}), "Statement": statements}

    def write(policy: dict[str, Any] | None) -> None:
        if policy is None:
            ecr.delete_registry_policy()
        else:
            ecr.put_registry_policy(policyText=json.dumps(policy))

    document = _Singleton(
        f"the registry policy of registry {account} in {region}",
        "PutRegistryPolicy",
        lambda: _read_policy(ecr),
        write,
        lambda policy: None if policy is None else {**policy, "Statement": _statements(policy)},
    )
    _read_modify_write(target, document, merge)


def _replace_ours(items: Sequence[Any], ours: Callable[[Any], bool], wanted: Any | None) -> list[Any]:
    """`items` with ours replaced by `wanted` where the first of ours was (at the end if none
    was), or dropped when `wanted` is None; copies of ours go, everything else stays in order."""
    result = []
    placed = wanted is None
    for item in items:
        if not ours(item):
            result.append(item)
        elif not placed:
            result.append(wanted)
            placed = True
    if not placed:
        result.append(wanted)
    return result


@dataclass(frozen=True)
class _Singleton(Generic[_Doc]):
    """One of a registry's whole-document settings: the replication configuration, the policy."""

    name: str  # for messages: "the registry policy of registry <id> in <region>"
    operation: str
    read: Callable[[], _Doc]
    write: Callable[[_Doc], None]
    normal: Callable[[_Doc], object]  # what two reads are compared as


def _read_modify_write(target: EcrTarget, document: _Singleton[_Doc], merge: Callable[[_Doc], _Doc]) -> None:
    """Read, merge our part in, read again, write, read back.

    ECR offers no conditional write for these documents (no ETag, no version, no
    compare-and-set), so no read can close the window between the second read and the put: a
    write by someone else landing in it is replaced by ours and goes unnoticed. The second read
    keeps that window to one round trip and refuses to write over a change made while we were
    merging; the read-back reports a write that landed right after ours (or ECR rewriting the
    document), so that nobody's change is lost silently there.
    """
    where = {"provider": "ecr", "target": target.name, "operation": document.operation}
    first = document.read()
    wanted = merge(first)
    if document.normal(wanted) == document.normal(first):
        return
    if document.normal(document.read()) != document.normal(first):
        raise ProviderConflict(
            f"{document.name} changed by someone else while mirrorspec was writing it; nothing written; "
            "run plan again",
            **where,
        )
    document.write(wanted)
    if document.normal(document.read()) != document.normal(wanted):
        raise ProviderConflict(
            f"{document.name} is not what mirrorspec just wrote: someone else wrote it right after, or "
            "ECR rewrote it; run plan again",
            **where,
        )
