"""Amazon ECR (`type: ecr`): pull-through cache, creation templates, replication, mirror copies.

Example target block (loaded by the provider contract tests):

```yaml
- name: aws-prod
  type: ecr
  registry: 123456789012.dkr.ecr.eu-west-1.amazonaws.com
  prefix: vendor
  # profile: prod                       # boto3 profile; default credential chain otherwise
  replicate-to:
    - region: us-east-1
    - {region: eu-central-1, account: "210987654321", profile: dr-account}
```

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .. import paths
from ..context import Endpoint, RunContext
from ..credentials import BasicAuth, register_secret, resolve_basic_auth
from ..errors import (
    MirrorspecError,
    ProviderAuthError,
    ProviderConflict,
    ProviderError,
    ProviderThrottled,
)
from ..plan import Artifact, Change, Note, Resource
from ..spec import EcrTarget, Source
from . import base

__all__ = [
    "IN_PLACE",
    "PERMISSIONS",
    "SUPPORT_KINDS",
    "Target",
    "apply",
    "cached",
    "capabilities",
    "check",
    "copy",
    "endpoint",
    "observe",
    "retire",
    "secret_credentials",
    "translate",
    "upstream_of",
]

Target = EcrTarget
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
    wanted_repos = dict.fromkeys(
        paths.destination(target.prefix, ctx.spec.layout_of(target), a.registry, a.repository)
        for a in artifacts
    )
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
    layout = ctx.spec.layout_of(target)
    while True:
        copies = [
            (host, paths.destination(target.prefix, layout, source.registry, repo.name))
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
        if credential.aws_secret_arn is not None:
            if f":secret:{SECRET_PREFIX}" not in credential.aws_secret_arn:
                raise MirrorspecError(
                    f"credentials '{source.credentials}': ECR pull-through cache needs a secret "
                    f"whose name starts with '{SECRET_PREFIX}'"
                )
            attrs["credentialSecret"] = _secret_name(credential.aws_secret_arn)
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


# --- observe -----------------------------------------------------------------------------


def observe(target: Any, ctx: RunContext) -> base.Observed:
    """Every PTC rule, creation template, our secrets, repositories under the prefix, the
    replication configuration's rules and our policy statements — with paginated list calls."""
    account, region = _account_region(target)
    ecr = ctx.aws_client("ecr", region, target.profile)
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
    secrets = ctx.aws_client("secretsmanager", region, target.profile)
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
    values = {}
    for source in ctx.spec.sources:
        upstream = upstream_of(source.registry)
        credential = ctx.spec.credentials.get(source.credentials or "")
        if upstream is None or not upstream.needs_secret or credential is None or credential.password is None:
            continue
        name = f"{SECRET_PREFIX}mirrorspec/{target.name}/{paths.host_segment(source.registry)}"
        values[name] = resolve_basic_auth(ctx.spec, source.credentials or "")
    return values


def secret_credentials(target: Any, ctx: RunContext) -> dict[str, str]:
    """Name of each Secrets Manager secret we create → the spec `credentials:` entry whose
    login it holds; `render terraform` turns these into sensitive variables, never values."""
    found = {}
    for source in ctx.spec.sources:
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
        policy = _read_policy(ctx.aws_client("ecr", region, profile))
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


# --- apply -------------------------------------------------------------------------------


def apply(change: Change, target: Any, ctx: RunContext) -> None:
    account, region = _account_region(target)
    ecr = ctx.aws_client("ecr", region, target.profile)
    with _mapped(target, f"{change.action} {change.resource} {change.id}"):
        if change.resource == REPOSITORY:
            _create_repository(ecr, account, change.id)
        elif change.resource == RULE:
            _apply_rule(ecr, ctx, target, account, region, change)
        elif change.resource == TEMPLATE:
            _apply_template(ecr, change)
        elif change.resource == SECRET:
            _apply_secret(ctx.aws_client("secretsmanager", region, target.profile), ctx, target, change)
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
        secrets = ctx.aws_client("secretsmanager", region, target.profile)
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


def _read_rules(ecr: Any) -> list[dict[str, Any]]:
    return list((ecr.describe_registry().get("replicationConfiguration") or {}).get("rules", []))


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
    ecr = ctx.aws_client("ecr", region, profile)
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
    first = document.read()
    wanted = merge(first)
    if document.normal(wanted) == document.normal(first):
        return
    if document.normal(document.read()) != document.normal(first):
        raise ProviderConflict(
            f"{document.name} changed by someone else while mirrorspec was writing it; nothing written; "
            "run plan again",
            provider="ecr",
            target=target.name,
            operation=document.operation,
        )
    document.write(wanted)
    if document.normal(document.read()) != document.normal(wanted):
        raise ProviderConflict(
            f"{document.name} is not what mirrorspec just wrote: someone else wrote it right after, or "
            "ECR rewrote it; run plan again",
            provider="ecr",
            target=target.name,
            operation=document.operation,
        )


# --- endpoint and errors -----------------------------------------------------------------


def endpoint(target: Any, ctx: RunContext) -> Endpoint:
    """The registry with a token from GetAuthorizationToken (user `AWS`), never printed."""
    import base64

    account, region = _account_region(target)
    ecr = ctx.aws_client("ecr", region, target.profile)
    with _mapped(target, "GetAuthorizationToken"):
        data = ecr.get_authorization_token(registryIds=[account])["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    register_secret(password)
    return ctx.reach(Endpoint(target.registry, BasicAuth(user, password)))


def _register_secret_string(value: str) -> None:
    """A pull-through cache secret is JSON (`username`, `accessToken`): the token may come
    back alone (an older one, rotated away from the spec's), so it is registered on its own
    as well as the whole document."""
    register_secret(value)
    try:
        document = json.loads(value)
    except ValueError:
        return
    if isinstance(document, dict):
        for key, item in document.items():
            if key != "username" and isinstance(item, str):
                register_secret(item)


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


_AUTH_CODES = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "ExpiredTokenException",
    "InvalidSignatureException",
}
_CONFLICT_CODES = {
    "LimitExceededException",
    "PullThroughCacheRuleAlreadyExistsException",
    "TemplateAlreadyExistsException",
    "ResourceExistsException",
    "RepositoryAlreadyExistsException",
}


@contextmanager
def _mapped(target: EcrTarget, operation: str) -> Iterator[None]:
    """Translate botocore's exceptions into ours, with the service's own one-line message."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        message = f"{operation}: {code}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(": ")
        kind: type[ProviderError] = ProviderError
        if code in _AUTH_CODES:
            kind = ProviderAuthError
        elif code in _CONFLICT_CODES:
            kind = ProviderConflict
        elif code in ("ThrottlingException", "TooManyRequestsException"):
            kind = ProviderThrottled
        raise kind(message, provider="ecr", target=target.name, operation=operation) from None
    except (NoCredentialsError, ProfileNotFound) as exc:
        raise ProviderAuthError(
            f"{operation}: {exc} (configure AWS credentials or the target's profile)",
            provider="ecr",
            target=target.name,
            operation=operation,
        ) from None
    except BotoCoreError as exc:
        raise ProviderError(
            f"{operation}: {exc}", provider="ecr", target=target.name, operation=operation
        ) from None
