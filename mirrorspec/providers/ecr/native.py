"""Amazon ECR (`type: ecr`): pull-through cache, creation templates, replication, mirror copies.

Facts that shaped it (research/ecr.md):
- Pull-through cache (PTC) serves only 9 upstream kinds, has no tag filter, and a rule's
  prefix is 2-30 characters. So in cache mode an upstream becomes one rule whose prefix is
  the DESIGN path's `<prefix>/<host-segment>` (cached paths then equal the mirror paths),
  and only repositories that take every tag are served by it; version filters and other
  upstreams are mirrored by copying, with a note saying why.
- Docker Hub, GHCR, ACR, GitLab and Chainguard need a Secrets Manager secret named
  `ecr-pullthroughcache/...` holding `username` and `accessToken`.
- A rule can change only its credential in place; anything else is delete + create.
- The replication configuration and the registry policy are one document per registry and
  `Put*` replaces it whole, with no conditional write: we read it, change only our rule /
  statement, read it again and write only if nobody changed it meanwhile, then read it back
  and report it when it is not what we wrote (`_read_modify_write`).
- botocore checks only minimum lengths client-side, so limits are checked here at plan time.
- A rule serves *every* repository under its prefix from the upstream (issue 13): a copy
  pushed there would be replaced, tag by tag, by whatever the upstream serves under that name.
  So no copy may land under any rule's prefix, ours or foreign: an upstream is cached only
  when none of the repositories copied into the target fall under its rule's prefix, else the
  whole upstream is copied (`_drop_rules_over_copies`), and a foreign rule over a copy refuses
  the plan (`check`). The mapping `[prefix/][host/]repository` never changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ... import paths
from ...context import RunContext
from ...errors import (
    MirrorspecError,
    ProviderConflict,
)
from ...plan import Artifact, Note, Resource
from ...spec import Source
from .. import base
from .target import EcrTarget

__all__ = [
    "IN_PLACE",
    "MANAGED",
    "MAX_DESTINATIONS",
    "MAX_REPLICATION_RULES",
    "MAX_RULES",
    "PERMISSIONS",
    "REPLICATION",
    "REPOSITORY",
    "RULE",
    "SECRET",
    "SECRET_PREFIX",
    "STATEMENT",
    "SUPPORT_KINDS",
    "TEMPLATE",
    "Upstream",
    "cached",
    "capabilities",
    "check",
    "copy",
    "retire",
    "translate",
    "upstream_of",
]

_Doc = TypeVar("_Doc")
MANAGED = "managed-by: mirrorspec"
MAX_RULES = 50  # pull-through cache rules per registry, not adjustable (service quotas)
MAX_REPLICATION_RULES = 25  # botocore model
MAX_DESTINATIONS = 100  # per replication rule (botocore model)
SECRET_PREFIX = "ecr-pullthroughcache/"

RULE = "pull-through-cache-rule"
TEMPLATE = "repository-creation-template"
SECRET = "secret"
REPOSITORY = "repository"
REPLICATION = "replication-rule"
STATEMENT = "registry-policy-statement"

PERMISSIONS: dict[str, tuple[str, ...]] = {
    "observe": (
        "ecr:DescribePullThroughCacheRules",
        "ecr:DescribeRepositoryCreationTemplates",
        "ecr:DescribeRepositories",
        "ecr:DescribeRegistry",
        "ecr:GetRegistryPolicy",
        "ecr:GetAuthorizationToken",
        "secretsmanager:ListSecrets",
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
    ),
    "apply": (
        "ecr:CreatePullThroughCacheRule",
        "ecr:UpdatePullThroughCacheRule",
        "ecr:DeletePullThroughCacheRule",
        "ecr:CreateRepositoryCreationTemplate",
        "ecr:UpdateRepositoryCreationTemplate",
        "ecr:DeleteRepositoryCreationTemplate",
        "ecr:CreateRepository",
        "ecr:PutReplicationConfiguration",
        "ecr:PutRegistryPolicy",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:BatchCheckLayerAvailability",
        "ecr:PutImage",
        "secretsmanager:CreateSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:DescribeSecret",
        "secretsmanager:RestoreSecret",
        "secretsmanager:DeleteSecret",
    ),
}
IN_PLACE: dict[str, tuple[str, ...]] = {RULE: ("credentialSecret",)}
SUPPORT_KINDS = (REPOSITORY,)
copy = base.no_copy

_HOST = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
_PREFIX = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")


@dataclass(frozen=True)
class Upstream:
    """An upstream registry as ECR pull-through cache knows it."""

    kind: str  # upstreamRegistry enum value
    url: str  # upstreamRegistryUrl
    needs_secret: bool


_UPSTREAMS = {
    "docker.io": Upstream("docker-hub", "registry-1.docker.io", True),
    "ghcr.io": Upstream("github-container-registry", "ghcr.io", True),
    "quay.io": Upstream("quay", "quay.io", False),
    "registry.k8s.io": Upstream("k8s", "registry.k8s.io", False),
    "public.ecr.aws": Upstream("ecr-public", "public.ecr.aws", False),
    "registry.gitlab.com": Upstream("gitlab-container-registry", "registry.gitlab.com", True),
    "cgr.dev": Upstream("chainguard", "cgr.dev", True),
}


def upstream_of(host: str) -> Upstream | None:
    """The PTC upstream kind serving `host`, or None when PTC cannot serve it."""
    host = paths.normalize_registry(host)
    if host in _UPSTREAMS:
        return _UPSTREAMS[host]
    if host.endswith(".azurecr.io"):
        return Upstream("azure-container-registry", host, True)
    return None


def _account_region(target: EcrTarget) -> tuple[str, str]:
    match = _HOST.match(target.registry)
    assert match is not None, "the spec model validates the host"
    return match.group(1), match.group(2)


def capabilities(target: Any) -> base.Capabilities:
    return base.Capabilities(cache_upstreams=frozenset([*_UPSTREAMS, "*.azurecr.io"]), cross_region=True)


# --- translate ---------------------------------------------------------------------------


def cached(target: Any, ctx: RunContext) -> frozenset[str]:
    """Source repositories served by a pull-through cache rule (cache mode, every tag)."""
    return frozenset(repo for _, _, repos in _cache_rules(target, ctx) for repo in repos)


def translate(artifacts: Sequence[Artifact], target: Any, ctx: RunContext) -> base.Desired:
    """Rules, templates and secrets for cache mode; repositories for copies; our replication rule."""
    resources: list[Resource] = []
    notes: list[Note] = []
    if ctx.spec.mode_of(target) == "cache":
        for _, rule_resources, _ in _cache_rules(target, ctx, notes):
            resources += rule_resources
    # `artifacts` are what the engine will copy: each needs its repository before the push.
    wanted_repos = dict.fromkeys(target.destination(ctx.spec, a.registry, a.repository) for a in artifacts)
    for name in wanted_repos:
        prefix = next((r.id for r in resources if r.kind == RULE and _covers(r.id, name)), None)
        if prefix is not None:  # a copy the spec does not name (a chart's dependency) on a cached host
            raise MirrorspecError(
                f"target '{target.name}': '{name}' would be copied under the pull-through cache rule "
                f"prefix '{prefix}', where ECR serves every repository from the upstream; list its "
                "repository in the spec's sources, or use mode: mirror"
            )
    resources += [Resource(REPOSITORY, name, {}, managed=False) for name in wanted_repos]
    if target.replicate_to:
        resources += _replication(target, notes)
    return base.Desired(resources=tuple(resources), notes=tuple(notes))


def _cache_rules(
    target: EcrTarget, ctx: RunContext, notes: list[Note] | None = None
) -> list[tuple[str, list[Resource], list[str]]]:
    """(rule prefix, its resources, the source repositories it serves) per cacheable upstream."""
    if ctx.spec.mode_of(target) != "cache":
        return []
    notes = [] if notes is None else notes
    taken: dict[str, str] = {}
    rules: dict[str, tuple[str, list[Resource], list[str]]] = {}
    for source in ctx.spec.sources:
        if source.settings_only:  # selects nothing: no rule, and no note on why not
            continue
        if source.oci_layout is not None:
            notes.append(base.fallback_note("ecr", source.registry, base.LAYOUT_SOURCE_WHY))
            continue
        found = _cacheable(source, target, ctx, taken, notes)
        if found:
            prefix, resources = found
            host = paths.normalize_registry(source.registry)
            taken[prefix] = host
            repos = [
                f"{host}/{paths.normalize_repository(source.registry, r.name)}"
                for r in source.repositories
                if r.all_tags
            ]
            rules[host] = (prefix, resources, repos)
    _drop_rules_over_copies(target, ctx, rules, notes)
    return list(rules.values())


def _covers(rule_prefix: str, repository: str) -> bool:
    """True when a pull-through cache rule with this prefix serves `repository`.

    ECR user guide, "Customizing repository prefixes for ECR to ECR pull through cache": "All
    repositories using this prefix become pull through cache-enabled repositories for the
    upstream registry defined in the rule. For example, a prefix of prod applies to all
    repositories beginning with prod/"; "There is always an assumed / applied to the end of
    the prefix"; `ROOT` applies to every repository without a rule of its own
    (https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-through-cache-private-wildcards.html;
    the `ROOT` value and the optional trailing `/` are in botocore's ECR model,
    PullThroughCacheRuleRepositoryPrefix).
    """
    return rule_prefix == "ROOT" or repository.startswith(rule_prefix.rstrip("/") + "/")


def _drop_rules_over_copies(
    target: EcrTarget,
    ctx: RunContext,
    rules: dict[str, tuple[str, list[Resource], list[str]]],
    notes: list[Note],
) -> None:
    """Leave out every rule whose prefix covers a repository the spec has copied; its upstream
    is then copied whole, which may put it over another rule's prefix: repeat until stable.

    Why not cache next to the copies: ECR maps `<rule prefix>/<path>` to `<path>` upstream and
    nothing else, so a copy under the prefix (a version selection, another upstream in the flat
    layout) would serve any other tag of that name from the upstream, and moving the copies
    elsewhere would break the one path mapping (`paths.destination`) users pull by.
    """
    while True:
        copies = [
            (host, target.destination(ctx.spec, source.registry, repo.name))
            for source in ctx.spec.sources
            for repo in source.repositories
            for host in [paths.normalize_registry(source.registry)]
            if not (repo.all_tags and host in rules)
        ]
        for host, (prefix, _, _) in rules.items():
            hit = next(((origin, dest) for origin, dest in copies if _covers(prefix, dest)), None)
            if hit is None:
                continue
            origin, dest = hit
            fix = (
                f"give every {host} repository `all-tags: true` to cache it"
                if origin == host
                else "use layout: scoped to give each upstream its own prefix"
            )
            notes.append(
                Note(
                    "warning",
                    f"{host}: its pull-through cache rule '{prefix}' would also serve '{dest}', which is "
                    f"copied, and ECR serves every repository under a rule's prefix from the upstream; "
                    f"every {host} repository is copied with skopeo instead ({fix})",
                )
            )
            del rules[host]
            break
        else:
            return


def _rule_prefix(target: EcrTarget, ctx: RunContext, host: str) -> str:
    parts = [target.prefix.strip("/")] if target.prefix else []
    if ctx.spec.layout_of(target) == "scoped":
        parts.append(paths.host_segment(host))
    return "/".join(parts)


def _cacheable(
    source: Source, target: EcrTarget, ctx: RunContext, taken: dict[str, str], notes: list[Note]
) -> tuple[str, list[Resource]] | None:
    """The PTC rule (+ template, + secret) for one upstream, or None with a note saying why not."""
    host = paths.normalize_registry(source.registry)
    upstream = upstream_of(host)
    if upstream is None:
        notes.append(
            base.fallback_note(
                "ecr", host, "not one of the 9 upstream registries ECR pull-through cache supports"
            )
        )
        return None
    for repo in source.repositories:
        if not repo.all_tags:
            notes.append(
                base.fallback_note(
                    "ecr",
                    f"{host}/{repo.name}",
                    "pull-through cache cannot filter tags, and this repository selects versions",
                )
            )
    if not any(repo.all_tags for repo in source.repositories):
        return None
    prefix = _rule_prefix(target, ctx, host)
    why = None
    if not prefix:
        why = "a pull-through cache rule needs a prefix (set the target's prefix or use layout: scoped)"
    elif not 2 <= len(prefix) <= 30 or not _PREFIX.match(prefix):
        why = f"its rule prefix '{prefix}' breaks ECR's limit (2-30 characters, lower-case path)"
    elif prefix in taken:
        why = f"the rule prefix '{prefix}' is already used for {taken[prefix]} (flat layout)"
    elif upstream.needs_secret and source.credentials is None:
        why = f"ECR needs credentials for {upstream.kind}; give the source `credentials:`"
    if why:
        notes.append(base.fallback_note("ecr", host, why))
        return None
    attrs: dict[str, Any] = {"upstreamRegistry": upstream.kind, "upstreamRegistryUrl": upstream.url}
    resources: list[Resource] = []
    if upstream.needs_secret:
        assert source.credentials is not None
        credential = ctx.spec.credentials[source.credentials]
        secret_arn = credential.form("aws-secret-arn")
        if secret_arn is not None:
            if f":secret:{SECRET_PREFIX}" not in secret_arn:
                raise MirrorspecError(
                    f"credentials '{source.credentials}': ECR pull-through cache needs a secret "
                    f"whose name starts with '{SECRET_PREFIX}'"
                )
            attrs["credentialSecret"] = _secret_name(secret_arn)
        else:
            name = f"{SECRET_PREFIX}mirrorspec/{target.name}/{paths.host_segment(host)}"
            attrs["credentialSecret"] = name
            resources.append(Resource(SECRET, name, {"credential": "current", "description": MANAGED}))
    if upstream.kind == "chainguard":
        notes.append(
            Note(
                "warning",
                f"unverified: ECR pull-through cache from cgr.dev (rule '{prefix}'): botocore's ECR "
                "model lists the upstreamRegistry value 'chainguard' but not its upstreamRegistryUrl, "
                "and no test here has seen ECR accept 'cgr.dev'",
            )
        )
    resources.append(Resource(RULE, prefix, attrs))
    resources.append(
        Resource(TEMPLATE, prefix, {"appliedFor": ["PULL_THROUGH_CACHE"], "description": MANAGED})
    )
    return prefix, resources


def _replication(target: EcrTarget, notes: list[Note]) -> list[Resource]:
    account, region = _account_region(target)
    if not target.prefix:
        raise MirrorspecError(
            f"target '{target.name}': replicate-to needs a prefix (ECR replicates by repository prefix)"
        )
    if len(target.replicate_to) > MAX_DESTINATIONS:
        raise MirrorspecError(
            f"target '{target.name}': {len(target.replicate_to)} replication destinations; "
            f"ECR allows {MAX_DESTINATIONS} per rule"
        )
    destinations = []
    resources: list[Resource] = []
    for dest in target.replicate_to:
        dest_account = dest.account or account
        if dest_account == account and dest.region == region:
            raise MirrorspecError(f"target '{target.name}': cannot replicate {region} to itself")
        destinations.append({"region": dest.region, "registryId": dest_account})
        if dest_account != account:
            statement = _replicate_statement(account, dest_account, dest.region)
            if dest.profile:
                resources.append(
                    Resource(STATEMENT, f"{dest_account}/{dest.region}/{statement['Sid']}", statement)
                )
            else:
                policy = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
                notes.append(
                    Note(
                        "warning",
                        f"replication to account {dest_account} needs its registry policy (in "
                        f"{dest.region}) to allow this account; give a profile for it, or merge: {policy}",
                    )
                )
    filters = [{"filter": _replication_filter(target.prefix), "filterType": "PREFIX_MATCH"}]
    resources.append(
        Resource(
            REPLICATION,
            target.prefix.strip("/"),
            {"destinations": destinations, "repositoryFilters": filters},
        )
    )
    return resources


def _replication_filter(prefix: str) -> str:
    """`<prefix>/`: a PREFIX_MATCH filter is a plain string prefix of the repository name (API
    reference, RepositoryFilter: "the repository name prefix"), so `vendor` would also
    replicate `vendor-tools/*`. The trailing `/` is valid: botocore's ECR model pattern for
    RepositoryFilterValue is `^(?:[a-z0-9]+(?:[._-][a-z0-9]*)*/)*[a-z0-9]*(?:[._-][a-z0-9]*)*$`,
    and terraform-provider-aws (internal/service/ecr/replication_configuration.go, commit
    00a35305) validates only that `filter` is set. mirrorspec up to issue 13 wrote `<prefix>`:
    `_is_ours` still recognises that rule, and the next apply rewrites it."""
    return prefix.strip("/") + "/"


def _replicate_statement(source_account: str, dest_account: str, region: str) -> dict[str, Any]:
    return {
        "Sid": f"mirrorspec-replicate-from-{source_account}",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{source_account}:root"},
        "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
        "Resource": f"arn:aws:ecr:{region}:{dest_account}:repository/*",
    }


def _secret_name(arn: str) -> str:
    """The secret's name: the ARN's last part without the 6-character random suffix."""
    name = arn.split(":secret:", 1)[1]
    return re.sub(r"-[A-Za-z0-9]{6}$", "", name)


# --- plan-time limits --------------------------------------------------------------------


def check(desired: base.Desired, observed: base.Observed, target: Any) -> tuple[Note, ...]:
    """Refuse at plan time what ECR would refuse half-way through apply."""
    have_rules = {r.id for r in observed.resources if r.kind == RULE}
    want_rules = {r.id for r in desired.resources if r.kind == RULE}
    total = len(have_rules | want_rules)
    if total > MAX_RULES:
        raise ProviderConflict(
            f"{total} pull-through cache rules ({len(have_rules)} exist, {len(want_rules - have_rules)} "
            f"to create): ECR allows {MAX_RULES} per registry",
            provider="ecr",
            target=target.name,
            operation="plan",
        )
    foreign = [r for r in observed.resources if r.kind == REPLICATION and not r.managed]
    ours = [r for r in desired.resources if r.kind == REPLICATION]
    if len(foreign) + len(ours) > MAX_REPLICATION_RULES:
        raise ProviderConflict(
            f"{len(foreign)} other replication rules + ours exceed ECR's {MAX_REPLICATION_RULES}",
            provider="ecr",
            target=target.name,
            operation="plan",
        )
    _refuse_foreign_rules_over_copies(desired, observed, target)
    notes = []
    if any(r.kind == RULE for r in desired.resources):
        notes.append(
            Note(
                "info",
                "pull-through cache is lazy: a repository and its tags appear at the first pull "
                "through the ECR URI, and tags refresh at most once a day",
            )
        )
    return tuple(notes)


def _rules_over_copies(desired: base.Desired, observed: base.Observed) -> list[tuple[Resource, str]]:
    """(observed rule the spec does not ask for, a copy destination it covers)."""
    copies = [r.id for r in desired.resources if r.kind == REPOSITORY]
    wanted = {r.id for r in desired.resources if r.kind == RULE}
    found = []
    for rule in observed.resources:
        if rule.kind == RULE and rule.id not in wanted:
            dest = next((d for d in copies if _covers(rule.id, d)), None)
            if dest is not None:
                found.append((rule, dest))
    return found


def _refuse_foreign_rules_over_copies(
    desired: base.Desired, observed: base.Observed, target: EcrTarget
) -> None:
    for rule, dest in _rules_over_copies(desired, observed):
        if not rule.managed:
            raise ProviderConflict(
                f"pull-through cache rule '{rule.id}' (not mirrorspec's) would serve '{dest}', where "
                f"mirrorspec copies: ECR would fetch any tag missing there from "
                f"{rule.attrs.get('upstreamRegistryUrl')}; delete or move that rule, or use another prefix",
                provider="ecr",
                target=target.name,
                operation="plan",
            )


def retire(desired: base.Desired, observed: base.Observed, target: Any) -> tuple[Resource, ...]:
    """Rules mirrorspec made that now cover a copy destination (the spec added a version
    selection or another upstream): the plan deletes them before the copies, with or without
    `--prune`, since keeping one would serve the copies' names from the upstream."""
    return tuple(rule for rule, _ in _rules_over_copies(desired, observed) if rule.managed)
