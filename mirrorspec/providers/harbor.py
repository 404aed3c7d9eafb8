"""Harbor (`type: harbor`): registry endpoints, replication policies and executions, proxy cache.

Example target block (loaded by the provider contract tests):

```yaml
- name: dc1
  type: harbor
  url: https://harbor.internal.example.com   # Harbor's API (/api/v2.0) and registry (/v2/)
  project: vendor                            # every destination lives in this project
  credentials: harbor-admin                  # a sysadmin or a system-level robot account
  schedule: "0 0 */6 * * *"                  # optional: 6-field cron, seconds first and 0
  # insecure: true                           # plain HTTP or unverified TLS, shown in every plan
  # ca-bundle: certs/internal-ca.pem
```

What each part of the spec becomes (facts and sources: research/harbor.md):

- Every upstream host gets one **registry endpoint** named `mirrorspec-<project>-<host>`, of the
  adapter type Harbor has for it (`docker-hub`, `github-ghcr`, `aws-ecr`, `azure-acr`,
  `google-gcr`; `docker-registry` for any other OCI registry — Quay and GitLab too: Harbor's own
  `quay` and `gitlab` adapters are off its default adapter whitelist since v2.14 and `quay` takes
  a JSON credential file), with the source's credentials and the description
  `managed-by: mirrorspec; project <project>`. Harbor masks secrets on read (`*****`), so a
  changed upstream password cannot be seen: the plan says so, and `rotate_credentials` on the run
  context (`apply --rotate-credentials`) re-sends every secret. The credentials are the source's
  username/password as the adapter reads them: an IAM access key id and secret for `aws-ecr`
  (whose endpoint URL is the registry host — unverified against a real Harbor), `_json_key` and
  the key file's content for `google-gcr`.
- **Mirror mode**: one pull-based **replication policy** per source repository, named
  `mirrorspec/<destination path>` (`#2`, `#3`… when the tag list is split). Its name filter is
  the exact repository (a wildcard would make Harbor list the upstream's `_catalog`, which GHCR,
  Quay and Docker Hub refuse or charge for), its tag filter the resolved versions as an exact
  doublestar list `{1.2.0,1.5.3}` — Harbor has no semver — split across policies so that each
  policy's filters, as Harbor stores them (JSON in a `varchar(1024)` column), fit: a longer
  value is a database error Harbor answers with a bare 500. The plan notes every split. The
  destination is exact: `dest_namespace` is the destination path without the repository and
  `dest_namespace_replace_count` 0, so `charts/platform` from `public.cr.seqera.io` lands at
  `vendor/public.cr.seqera.io/charts/platform` as `paths.destination` says. PUT replaces a
  policy whole (an omitted `enabled` disables it, an omitted replace count flattens the path),
  so every write carries every field, `deletion` and the ignored-on-write `replicate_deletion`
  both.
- **Apply** writes a changed policy, starts an execution of it and waits (progress at INFO),
  failing when it ends `Failed` or `Stopped`, or "succeeds" having matched nothing. Tags the
  engine finds missing at plan time are native copies (`copy()`): the execution of their
  policy — the one apply already ran, or a new one — must have a succeeded task for the source
  repository; the engine then checks every digest. New upstream versions change the tag filter,
  so the next plan updates the policy.
- **Cache mode**: repositories that take every tag are served by a **proxy-cache project** per
  upstream (`POST /projects` with `registry_id`). Project names cannot hold `/`, so the DESIGN
  path `vendor/docker.io/library/redis` becomes `vendor-docker.io/library/redis` — the closest
  faithful mapping, stated in the plan. Harbor gives such a project a retention policy that
  deletes what was not pulled within 7 days: the plan notes it. Version-filtered repositories
  are mirrored by replication, as above, with a note.
- **Observe** lists registries, policies and projects with `page_size=100`, following `Link`
  and checking `X-Total-Count`. Ownership: an endpoint is ours when its description names
  mirrorspec and this project; a policy when its description names mirrorspec and its
  `dest_namespace` lies in this project; a proxy-cache project when its name starts with
  `<project>-` and its endpoint is ours. Everything else is listed, never changed.
- The HTTP client is our own thin `requests` session (the `harborapi` package is dormant): basic
  auth on every call, its own `X-Request-Id`, and **no cookies** — Harbor enforces CSRF only
  on requests that carry its `sid` session cookie.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import urllib3

from .. import paths
from ..context import Endpoint, RunContext
from ..credentials import redact, resolve_basic_auth
from ..errors import (
    ProviderAuthError,
    ProviderConflict,
    ProviderError,
    ProviderThrottled,
)
from ..files import read_ca_bundle
from ..plan import Artifact, Change, Copy, Note, Resource
from ..redaction import clip
from ..spec import HarborTarget
from ..tls_failures import explain_tls_failure
from . import base

__all__ = [
    "ENGINE",
    "FILTERS_COLUMN",
    "IN_PLACE",
    "PERMISSIONS",
    "SUPPORT_KINDS",
    "Target",
    "adapter_of",
    "apply",
    "cached",
    "capabilities",
    "check",
    "copy",
    "endpoint",
    "observe",
    "translate",
]

log = logging.getLogger(__name__)

Target = HarborTarget
MANAGED = "managed-by: mirrorspec"
ENGINE = "harbor-replication"
PAGE_SIZE = 100  # the contract's maximum (larger → 422)
# Characters of a policy's filters as Harbor stores them: `replication_policy.filters` is
# varchar(1024) — goharbor/harbor make/migrations/postgresql/0001_initial_schema.up.sql, never
# altered by a later migration (checked up to c50c7ddd6ea4e335a480b49c618281882ab7eec9).
FILTERS_COLUMN = 1024
MAX_REGISTRY_NAME = 64
EXECUTION_TIMEOUT = 3600.0  # seconds one execution may run before apply stops it
SKIPPED_RUNS = 3  # re-runs after Harbor skipped ours for a running execution of the policy
POLL_INTERVAL = (0.2, 5.0)  # first and longest wait between execution polls, seconds
RETRY_BACKOFF = 0.5  # seconds; doubled per retry (a longer Retry-After wins, up to the max)
RETRY_AFTER_MAX = 30.0  # seconds: a confused Retry-After must not stall a run
CREATE_ATTEMPTS = 4  # for a POST whose lost answer can be recovered (`_Api.create`)
MASKED = "masked"  # what a set secret looks like: Harbor returns it as "*****"

ENDPOINT = "registry-endpoint"
POLICY = "replication-policy"
PROXY = "proxy-cache-project"
PROJECT = "project"

# Harbor permissions (system robot resource:action, research/harbor.md §1) each verb uses.
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "observe": ("registry:list", "replication-policy:list", "replication-adapter:list", "project:list"),
    "apply": (
        "registry:create",
        "registry:update",
        "registry:delete",
        "replication-policy:create",
        "replication-policy:update",
        "replication-policy:delete",
        "replication:create",
        "replication:read",
        "replication:list",
        "project:create",
        "sysadmin (proxy-cache projects)",
    ),
}
# An endpoint's type cannot change (RegistryUpdate has no type); a proxy-cache project's
# registry cannot change either. A policy's PUT replaces everything, so it is always `update`.
IN_PLACE: dict[str, tuple[str, ...]] = {
    ENDPOINT: ("url", "insecure", "description", "access_key", "secret", "ca_certificate"),
    PROXY: (),
}
SUPPORT_KINDS = (PROJECT,)
PROXY_CACHE_TYPES = frozenset(
    {
        "docker-hub",
        "harbor",
        "azure-acr",
        "ali-acr",
        "aws-ecr",
        "google-gcr",
        "docker-registry",
        "github-ghcr",
        "jfrog-artifactory",
    }
)
_ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_GLOB = re.compile(r"[*?\[\]{}\\]")


def capabilities(target: Any) -> base.Capabilities:
    # A proxy-cache project can front any upstream: `docker-registry` is a permitted type.
    return base.Capabilities(cache_upstreams=frozenset({"*"}), native_mirror=True)


# --- upstreams and names -----------------------------------------------------------------


def adapter_of(host: str) -> tuple[str, str]:
    """(Harbor adapter type, endpoint URL) for an upstream registry host."""
    host = paths.normalize_registry(host)
    if host == paths.DOCKER_HUB:
        return "docker-hub", "https://hub.docker.com"  # the adapter pulls from registry-1.docker.io
    if host == "ghcr.io":
        return "github-ghcr", "https://ghcr.io"
    if host.endswith(".azurecr.io"):
        return "azure-acr", f"https://{host}"
    if _ECR_HOST.match(host):
        return "aws-ecr", f"https://{host}"
    if host == "gcr.io" or host.endswith((".gcr.io", "-docker.pkg.dev")):
        return "google-gcr", f"https://{host}"
    return "docker-registry", f"https://{host}"


def _endpoint_name(target: HarborTarget, host: str) -> str:
    name = f"mirrorspec-{target.project}-{paths.host_segment(host)}"
    if len(name) <= MAX_REGISTRY_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_REGISTRY_NAME - 9]}-{digest}"


def _endpoint_mark(target: HarborTarget) -> str:
    return f"{MANAGED}; project {target.project}"


def _proxy_name(target: HarborTarget, host: str) -> str:
    # Project names are ^[a-z0-9]+(?:[._-][a-z0-9]+)*$: no '/', no '_'.
    return f"{target.project}-{paths.host_segment(host).replace('_', '-')}"


def _policy_name(destination: str, part: int) -> str:
    return f"mirrorspec/{destination}" + (f"#{part}" if part > 1 else "")


def _segments(description: str) -> set[str]:
    return {s.strip() for s in description.split(";")}


@dataclass(frozen=True)
class _Upstream:
    host: str
    adapter: str
    url: str
    credentials: str | None
    insecure: bool
    ca_bundle: str | None


def _upstream(ctx: RunContext, host: str) -> _Upstream:
    host = paths.normalize_registry(host)
    adapter, url = adapter_of(host)
    for source in ctx.spec.sources:
        if paths.normalize_registry(source.registry) == host:
            return _Upstream(host, adapter, url, source.credentials, source.insecure, source.ca_bundle)
    return _Upstream(host, adapter, url, None, False, None)  # reached only through Helm dependencies


def _ca_fingerprint(ctx: RunContext, ca_bundle: str | None) -> str:
    pem = _read_ca(ctx, ca_bundle)
    return "sha256:" + hashlib.sha256(pem.strip().encode()).hexdigest() if pem else ""


def _read_ca(ctx: RunContext, ca_bundle: str | None) -> str:
    if not ca_bundle:
        return ""
    # Certificates are ASCII; text around them (a bundle's comments) need not be UTF-8.
    return read_ca_bundle(ctx.spec.base_dir / ca_bundle).decode("utf-8", "replace")


# --- translate ---------------------------------------------------------------------------


def cached(target: Any, ctx: RunContext) -> frozenset[str]:
    """Source repositories a proxy-cache project serves (cache mode, every tag)."""
    if ctx.spec.mode_of(target) != "cache":
        return frozenset()
    served = set()
    for source in ctx.spec.sources:
        host = paths.normalize_registry(source.registry)
        if adapter_of(host)[0] not in PROXY_CACHE_TYPES:
            continue
        served |= {
            f"{host}/{paths.normalize_repository(source.registry, r.name)}"
            for r in source.repositories
            if r.all_tags
        }
    return frozenset(served)


def translate(artifacts: Sequence[Artifact], target: Any, ctx: RunContext) -> base.Desired:
    """Endpoints, the project, proxy-cache projects and policies the spec asks for."""
    notes: list[Note] = []
    groups: dict[tuple[str, str], list[str]] = {}
    for artifact in artifacts:
        tags = groups.setdefault((artifact.registry, artifact.repository), [])
        if artifact.tag not in tags:
            tags.append(artifact.tag)
    cache_hosts = _cache_hosts(target, ctx, notes)
    hosts = list(dict.fromkeys([*(host for host, _ in groups), *cache_hosts]))
    rotate = ctx.rotate_credentials

    resources = [_endpoint_resource(target, ctx, _upstream(ctx, host), rotate) for host in hosts]
    if groups:
        resources.append(Resource(PROJECT, target.project, {}, managed=False))
    for host in cache_hosts:
        resources.append(
            Resource(PROXY, _proxy_name(target, host), {"registry": _endpoint_name(target, host)})
        )
    for (host, repository), tags in groups.items():
        policies = _policies(target, ctx, host, repository, tags)
        resources += policies
        if len(policies) > 1:
            notes.append(
                Note(
                    "info",
                    f"{host}/{repository}: {len(tags)} versions do not fit one Harbor replication "
                    f"policy (Harbor stores a policy's filters in {FILTERS_COLUMN} characters of "
                    f"JSON); split across {len(policies)} policies",
                )
            )

    for resource in resources:
        if resource.kind == ENDPOINT and resource.attrs["ca_certificate"]:
            # The field, its column and its use arrived in Harbor v2.15.0 (goharbor/harbor
            # 7f5ac5b57b37, #22535; make/migrations/postgresql/0180_2.15.0_schema.up.sql).
            notes.append(
                Note(
                    "warning",
                    f"registry endpoint {resource.id} carries the source's ca-bundle as ca_certificate, "
                    "which Harbor supports since v2.15.0; on an older Harbor this is unverified (the "
                    "field is likely dropped: the endpoint would not trust that CA, and every plan "
                    "would show it changed)",
                )
            )
    if any(r.kind == ENDPOINT and r.attrs["secret"] != "none" for r in resources):
        notes.append(
            Note(
                "info",
                "Harbor returns registry secrets masked: a changed upstream password cannot be "
                "detected; run `mirrorspec apply --rotate-credentials` to re-send them",
            )
        )
    if groups and target.schedule:
        notes.append(
            Note(
                "info",
                f"the schedule ({target.schedule}) re-runs the listed versions only: Harbor filters "
                "have no version ranges, so new upstream versions arrive with the next apply",
            )
        )
    native = frozenset(f"{host}/{repository}" for host, repository in groups)
    return base.Desired(resources=tuple(resources), native=native, native_engine=ENGINE, notes=tuple(notes))


def _cache_hosts(target: HarborTarget, ctx: RunContext, notes: list[Note]) -> list[str]:
    """Upstream hosts served by a proxy-cache project, with notes for what is mirrored instead."""
    if ctx.spec.mode_of(target) != "cache":
        return []
    hosts = []
    for source in ctx.spec.sources:
        host = paths.normalize_registry(source.registry)
        adapter = adapter_of(host)[0]
        if adapter not in PROXY_CACHE_TYPES:
            notes.append(
                Note(
                    "info",
                    f"{host}: Harbor cannot proxy-cache a {adapter} registry; mirroring it by replication",
                )
            )
            continue
        for repo in source.repositories:
            if not repo.all_tags:
                notes.append(
                    Note(
                        "info",
                        f"{host}/{paths.normalize_repository(source.registry, repo.name)}: a proxy-cache "
                        "project cannot filter tags, and this repository selects versions; "
                        "mirroring them by replication",
                    )
                )
        cached_repos = [r for r in source.repositories if r.all_tags]
        if not cached_repos:
            continue
        project = _proxy_name(target, host)
        example = paths.normalize_repository(source.registry, cached_repos[0].name)
        design = paths.destination(target.project, ctx.spec.layout_of(target), host, example)
        notes.append(
            Note(
                "warning",
                f"{host} is served by proxy-cache project {project}: pull {project}/{example}; Harbor "
                f"cannot serve {design} (a proxy-cache project is one path component, and project "
                "names hold no '/')",
            )
        )
        hosts.append(host)
    return hosts


def _endpoint_resource(target: HarborTarget, ctx: RunContext, upstream: _Upstream, rotate: bool) -> Resource:
    username, secret = "", "none"
    if upstream.credentials:
        auth = resolve_basic_auth(ctx.spec, upstream.credentials)
        username, secret = auth.username, ("re-send" if rotate else MASKED)
    attrs = {
        "type": upstream.adapter,
        "url": upstream.url,
        "insecure": upstream.insecure,
        "description": _endpoint_mark(target),
        "access_key": username,
        "secret": secret,
        "ca_certificate": _ca_fingerprint(ctx, upstream.ca_bundle),
    }
    return Resource(ENDPOINT, _endpoint_name(target, upstream.host), attrs)


def _tag_filters(repository: str, tags: Sequence[str]) -> list[str]:
    """Exact doublestar tag filters covering `tags`, as few as fit: each with the name filter
    of `repository` must fit Harbor's filters column (`_filters_column`)."""
    chunks: list[list[str]] = [[]]
    for tag in tags:
        candidate = [*chunks[-1], tag]
        if (
            chunks[-1]
            and len(_filters_column(_filters(repository, _alternatives(candidate)))) > FILTERS_COLUMN
        ):
            chunks.append([tag])
        else:
            chunks[-1] = candidate
    return [_alternatives(chunk) for chunk in chunks if chunk]


def _filters(repository: str, tag_filter: str) -> list[dict[str, str]]:
    return [
        {"type": "name", "value": repository},
        {"type": "tag", "value": tag_filter, "decoration": "matches"},
    ]


def _filters_column(filters: Sequence[Mapping[str, Any]]) -> str:
    """A policy's filters as Harbor stores them: `json.Marshal` of `[]*model.Filter` (fields
    `type`, `value`, `decoration,omitempty`: goharbor/harbor src/pkg/reg/model/policy.go,
    src/controller/replication/model/model.go `To`) — compact JSON with Go's escaping of `<`,
    `>`, `&`, U+2028 and U+2029. PostgreSQL's varchar(n) counts characters."""
    items = []
    for item in filters:
        out = {"type": item.get("type"), "value": item.get("value")}
        if item.get("decoration"):
            out["decoration"] = item["decoration"]
        items.append(out)
    text = json.dumps(items, separators=(",", ":"), ensure_ascii=False) if items else ""
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _alternatives(tags: Sequence[str]) -> str:
    return tags[0] if len(tags) == 1 else "{" + ",".join(tags) + "}"


def _filter_tags(value: str) -> set[str]:
    """The tags an exact filter written by `_alternatives` lists."""
    if value.startswith("{") and value.endswith("}"):
        return set(value[1:-1].split(","))
    return {value}


def _policies(
    target: HarborTarget, ctx: RunContext, host: str, repository: str, tags: list[str]
) -> list[Resource]:
    if _GLOB.search(repository):
        # Unreachable from a validated spec today; a glob would make Harbor list `_catalog`.
        raise ProviderError(
            f"{host}/{repository} would need a wildcard name filter, which makes Harbor list the "
            "upstream's whole _catalog (GHCR refuses it): name repositories exactly",
            provider="harbor",
            target=target.name,
            operation="plan",
        )
    destination = paths.destination(target.project, ctx.spec.layout_of(target), host, repository)
    namespace = destination[: -len(repository) - 1]  # dest = <namespace>/<repository>, count 0
    trigger = (
        {"type": "scheduled", "cron": target.schedule} if target.schedule else {"type": "manual", "cron": ""}
    )
    filters = _tag_filters(repository, tags)
    resources = []
    for part, tag_filter in enumerate(filters, start=1):
        description = f"{MANAGED}; source {host}/{repository}"
        if len(filters) > 1:
            description += f"; part {part}/{len(filters)}"
        attrs = {
            "src_registry": _endpoint_name(target, host),
            "dest_namespace": namespace,
            "dest_namespace_replace_count": 0,
            "filters": _filters(repository, tag_filter),
            "trigger": trigger,
            "enabled": True,
            "override": True,
            "deletion": False,
            "speed": 0,
            "copy_by_chunk": False,
            "single_active_replication": True,
            "description": description,
        }
        resources.append(Resource(POLICY, _policy_name(destination, part), attrs))
    return resources


# --- observe -----------------------------------------------------------------------------


def observe(target: Any, ctx: RunContext) -> base.Observed:
    """Policies, proxy-cache projects, the target project and registry endpoints (in the
    order prune deletes them), each listed with paginated calls."""
    with _session(target, ctx) as api, _mapped(target, "observe"):
        registries = api.list("/registries")
        policies = api.list("/replication/policies")
        projects = api.list("/projects")
        adapters = set(api.get("/replication/adapters"))
    by_id = {int(r["id"]): r for r in registries}
    ours = {
        int(r["id"])
        for r in registries
        if {MANAGED, f"project {target.project}"} <= _segments(r.get("description") or "")
    }
    resources: list[Resource] = []
    for policy in policies:
        attrs = _policy_attrs(policy, by_id)
        namespace = attrs["dest_namespace"]
        managed = MANAGED in _segments(attrs["description"]) and (
            namespace == target.project or namespace.startswith(target.project + "/")
        )
        resources.append(Resource(POLICY, str(policy["name"]), attrs, managed=managed))
    for project in projects:
        registry_id = int(project.get("registry_id") or 0)
        name = str(project["name"])
        if registry_id:
            registry_name = str(by_id.get(registry_id, {}).get("name") or f"#{registry_id}")
            managed = name.startswith(f"{target.project}-") and registry_id in ours
            resources.append(Resource(PROXY, name, {"registry": registry_name}, managed=managed))
        if name == target.project:
            resources.append(Resource(PROJECT, name, {"registry_id": registry_id}, managed=False))
    notes = []
    for registry in registries:
        resources.append(
            Resource(
                ENDPOINT,
                str(registry["name"]),
                _endpoint_attrs(registry),
                managed=int(registry["id"]) in ours,
            )
        )
        if int(registry["id"]) in ours and registry.get("status") not in (None, "", "healthy"):
            notes.append(
                Note(
                    "warning",
                    f"registry endpoint {registry['name']} is {registry['status']} (Harbor's last check)",
                )
            )
    wanted = {adapter_of(s.registry)[0] for s in ctx.spec.sources}
    for adapter in sorted(wanted - adapters):
        notes.append(
            Note(
                "warning",
                f"this Harbor does not offer the {adapter} adapter (REPLICATION_ADAPTER_WHITELIST): "
                "creating its endpoints may work, but Harbor considers the adapter unsupported",
            )
        )
    return base.Observed(resources=tuple(resources), notes=tuple(notes))


def _endpoint_attrs(registry: Mapping[str, Any]) -> dict[str, Any]:
    credential = registry.get("credential") or {}
    pem = registry.get("ca_certificate") or ""
    return {
        "type": registry.get("type", ""),
        "url": str(registry.get("url", "")).rstrip("/"),
        "insecure": bool(registry.get("insecure")),
        "description": registry.get("description") or "",
        "access_key": credential.get("access_key") or "",
        "secret": MASKED if credential.get("access_secret") else "none",
        "ca_certificate": "sha256:" + hashlib.sha256(pem.strip().encode()).hexdigest() if pem else "",
    }


def _policy_attrs(policy: Mapping[str, Any], registries: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """A policy as Harbor returns it, normalised to the shape `_policies` writes."""

    def registry_name(ref: Mapping[str, Any] | None) -> str:
        ident = int((ref or {}).get("id") or 0)
        if ident == 0:
            return ""
        return str(registries.get(ident, {}).get("name") or (ref or {}).get("name") or f"#{ident}")

    filters = []
    for item in policy.get("filters") or []:
        normalised = {"type": item.get("type"), "value": item.get("value")}
        if item.get("type") in ("tag", "label"):
            normalised["decoration"] = item.get("decoration") or "matches"
        filters.append(normalised)
    trigger = policy.get("trigger") or {}
    count = policy.get("dest_namespace_replace_count")
    attrs: dict[str, Any] = {
        "src_registry": registry_name(policy.get("src_registry")),
        "dest_namespace": policy.get("dest_namespace") or "",
        "dest_namespace_replace_count": -1 if count is None else int(count),
        "filters": filters,
        "trigger": {
            "type": trigger.get("type") or "manual",
            "cron": (trigger.get("trigger_settings") or {}).get("cron") or "",
        },
        "enabled": bool(policy.get("enabled")),
        "override": bool(policy.get("override")),
        "deletion": bool(policy.get("deletion") or policy.get("replicate_deletion")),
        "speed": max(int(policy.get("speed") or 0), 0),
        "copy_by_chunk": bool(policy.get("copy_by_chunk")),
        "single_active_replication": bool(policy.get("single_active_replication")),
        "description": policy.get("description") or "",
    }
    dest = registry_name(policy.get("dest_registry"))
    if dest:  # push-based: never ours, shown as it is
        attrs["dest_registry"] = dest
    return attrs


# --- plan-time checks --------------------------------------------------------------------


def check(desired: base.Desired, observed: base.Observed, target: Any) -> tuple[Note, ...]:
    """Refuse at plan time what would collide with Harbor's state, and say what Harbor does
    by default that a reader would not expect."""
    have = {(r.kind, r.id): r for r in observed.resources}
    for wanted in desired.resources:
        found = have.get((wanted.kind, wanted.id))
        if found is None:
            continue
        if wanted.kind == PROJECT and found.attrs.get("registry_id"):
            raise ProviderConflict(
                f"project {wanted.id} is a proxy-cache project: Harbor skips replication into it; "
                "choose another project",
                provider="harbor",
                target=target.name,
                operation="plan",
            )
        if wanted.kind != PROJECT and not found.managed:
            raise ProviderConflict(
                f"a {wanted.kind} named {wanted.id} exists and is not managed by mirrorspec "
                f"(no '{MANAGED}' for project {target.project}): rename or remove it",
                provider="harbor",
                target=target.name,
                operation="plan",
            )
    notes = []
    proxies = [r.id for r in desired.resources if r.kind == PROXY]
    if proxies:
        notes.append(
            Note(
                "info",
                f"proxy-cache project(s) {', '.join(proxies)} fetch on demand; Harbor gives each a "
                "retention policy that deletes artifacts not pulled within 7 days (edit it to keep more)",
            )
        )
    return tuple(notes)


# --- apply -------------------------------------------------------------------------------


def apply(change: Change, target: Any, ctx: RunContext) -> None:
    with _session(target, ctx) as api, _mapped(target, f"{change.action} {change.resource} {change.id}"):
        if change.resource == ENDPOINT:
            _apply_endpoint(api, target, ctx, change)
        elif change.resource == PROJECT:
            _create_project(api, {"project_name": change.id, "metadata": {"public": "false"}}, exists_ok=True)
        elif change.resource == PROXY:
            _apply_proxy(api, change)
        elif change.resource == POLICY:
            _apply_policy(api, target, ctx, change)
        else:
            raise AssertionError(f"unknown Harbor resource kind {change.resource}")


def _apply_endpoint(api: _Api, target: HarborTarget, ctx: RunContext, change: Change) -> None:
    if change.action in ("delete", "replace"):
        registry = api.find("/registries", change.id)
        if registry is not None:
            api.delete(
                f"/registries/{registry['id']}",
                conflict="it is used by a replication policy or a proxy-cache project",
            )
    if change.action == "delete":
        return
    after = dict(change.after or {})
    upstream = _upstream(ctx, _host_of_url(str(after["url"])))
    auth = resolve_basic_auth(ctx.spec, upstream.credentials) if upstream.credentials else None
    pem = _read_ca(ctx, upstream.ca_bundle)
    unhealthy = (
        f"Harbor could not reach {after['url']} with these credentials: "
        "check the URL, the credentials and Harbor's network access to it"
    )
    if change.action == "update":
        registry = api.find("/registries", change.id)
        if registry is None:
            raise ProviderError(
                f"registry endpoint {change.id} disappeared since the plan; re-run plan",
                provider="harbor",
                target=target.name,
                operation="update",
            )
        update: dict[str, Any] = {
            "name": change.id,
            "description": after["description"],
            "url": after["url"],
            "insecure": after["insecure"],
        }
        if auth is not None:
            update.update(credential_type="basic", access_key=auth.username, access_secret=auth.password)
        if pem:
            update["ca_certificate"] = pem
        api.put(f"/registries/{registry['id']}", update, bad_request=unhealthy)
        return
    body: dict[str, Any] = {
        "name": change.id,
        "type": after["type"],
        "url": after["url"],
        "insecure": after["insecure"],
        "description": after["description"],
    }
    if auth is not None:
        body["credential"] = {"type": "basic", "access_key": auth.username, "access_secret": auth.password}
    if pem:
        body["ca_certificate"] = pem
    api.create_named("/registries", body, bad_request=unhealthy)


def _host_of_url(url: str) -> str:
    """The upstream host an endpoint URL written by `adapter_of` stands for."""
    netloc = urlsplit(url).netloc
    return {"hub.docker.com": paths.DOCKER_HUB}.get(netloc, netloc)


def _create_project(api: _Api, body: Mapping[str, Any], *, exists_ok: bool = False) -> None:
    try:
        api.create_named("/projects", body)
    except _HarborError as exc:
        if not (exists_ok and exc.status == 409):
            raise


def _apply_proxy(api: _Api, change: Change) -> None:
    if change.action in ("delete", "replace"):
        api.delete(
            f"/projects/{change.id}",
            headers={"X-Is-Resource-Name": "true"},
            conflict="the project still holds cached repositories; delete them first",
        )
    if change.action == "delete":
        return
    registry_name = str((change.after or {})["registry"])
    registry = api.find("/registries", registry_name)
    if registry is None:
        raise _HarborError(
            404, "NOT_FOUND", f"registry endpoint {registry_name} does not exist (was its creation refused?)"
        )
    _create_project(
        api, {"project_name": change.id, "registry_id": int(registry["id"]), "metadata": {"public": "false"}}
    )


def _apply_policy(api: _Api, target: HarborTarget, ctx: RunContext, change: Change) -> None:
    existing = api.find("/replication/policies", change.id)
    if change.action == "delete":
        if existing is not None:
            api.delete(f"/replication/policies/{existing['id']}", conflict="an execution of it is running")
        return
    after = dict(change.after or {})
    registry = api.find("/registries", str(after["src_registry"]))
    if registry is None:
        raise _HarborError(
            404,
            "NOT_FOUND",
            f"registry endpoint {after['src_registry']} does not exist (was its creation refused?)",
        )
    body = _policy_body(change.id, after, int(registry["id"]))
    stored = len(_filters_column(body["filters"]))
    if stored > FILTERS_COLUMN:
        # Never sent: Harbor would answer a bare 500 (a database error), which looks transient.
        raise ProviderError(
            f"its filters take {stored} characters as Harbor stores them, more than the "
            f"{FILTERS_COLUMN} its column holds; re-run plan, which splits them",
            provider="harbor",
            target=target.name,
            operation=change.action,
        )
    if existing is None:
        policy_id = api.create_named("/replication/policies", body)
    else:
        policy_id = int(existing["id"])
        api.put(f"/replication/policies/{policy_id}", body)
    _run_policy(api, target, policy_id, change.id)


def _policy_body(name: str, attrs: Mapping[str, Any], registry_id: int) -> dict[str, Any]:
    """The whole policy: Harbor's PUT rebuilds it from the body, omitted fields become zero."""
    trigger = attrs["trigger"]
    return {
        "name": name,
        "description": attrs["description"],
        "src_registry": {"id": registry_id},
        "dest_namespace": attrs["dest_namespace"],
        "dest_namespace_replace_count": attrs["dest_namespace_replace_count"],
        "trigger": {"type": trigger["type"], "trigger_settings": {"cron": trigger["cron"]}},
        "filters": [dict(f) for f in attrs["filters"]],
        "enabled": attrs["enabled"],
        "override": attrs["override"],
        "deletion": attrs["deletion"],  # the field Harbor reads
        "replicate_deletion": attrs["deletion"],  # the documented one, ignored on write
        "speed": attrs["speed"],
        "copy_by_chunk": attrs["copy_by_chunk"],
        "single_active_replication": attrs["single_active_replication"],
    }


# --- executions --------------------------------------------------------------------------


def _run_policy(api: _Api, target: HarborTarget, policy_id: int, name: str) -> dict[str, Any]:
    """Start an execution of a policy, wait for it, fail unless it replicated something.

    Our policies set `single_active_replication`, so Harbor (v2.14.0+) skips a run started while
    another execution of the policy is running — a schedule's, or another apply's — and marks it
    `Failed` "Execution skipped: ..." at once. That is no copy failure: wait for the running one
    to end and run again (the running one may predate our policy update), at most
    SKIPPED_RUNS times, all within EXECUTION_TIMEOUT."""
    deadline = time.monotonic() + EXECUTION_TIMEOUT
    skipped = 0
    while True:
        execution = _start_and_wait(api, target, policy_id, name, deadline)
        if not _was_skipped(execution):
            break
        skipped += 1
        if skipped > SKIPPED_RUNS:
            raise _HarborError(
                409,
                "SKIPPED",
                f"replication execution {execution['id']} of {name} was skipped {skipped} times: other "
                "executions of the policy keep running (single active replication); re-run apply later",
            )
        _wait_for_running(api, target, policy_id, name, int(execution["id"]), deadline)
    status = execution.get("status")
    if status != "Succeed":
        detail = _failure_detail(api, execution["id"]) or execution.get("status_text") or ""
        raise _HarborError(
            500,
            str(status).upper(),
            f"replication execution {execution['id']} of {name} ended {status}"
            + (f": {detail}" if detail else ""),
        )
    if not execution.get("total"):
        raise _HarborError(
            500,
            "NOTHING_REPLICATED",
            f"replication execution {execution['id']} of {name} succeeded but matched nothing upstream "
            "(Harbor reports success for an empty run): check the endpoint's URL and credentials",
        )
    return execution


def _was_skipped(execution: Mapping[str, Any]) -> bool:
    """Harbor's single-active-replication skip: the execution is marked Error (shown `Failed`)
    with "Execution skipped: active replication still in progress." — goharbor/harbor
    src/controller/replication/execution.go `Start` (added in 221037378ad2, v2.14.0) and
    src/server/v2.0/handler/replication.go `convertExecution`, at c50c7ddd6ea4."""
    return execution.get("status") == "Failed" and str(execution.get("status_text") or "").startswith(
        "Execution skipped"
    )


def _start_and_wait(
    api: _Api, target: HarborTarget, policy_id: int, name: str, deadline: float
) -> dict[str, Any]:
    """Start one execution and poll it until it is no longer InProgress (stopping it at the
    deadline: it is ours)."""
    before = _latest_execution(api, policy_id)

    def lost() -> int | None:
        latest = _latest_execution(api, policy_id)
        return latest if latest is not None and latest != before else None

    execution_id = api.create("/replication/executions", {"policy_id": policy_id}, lost=lost)
    log.info("%s: replication policy %s: execution %d started", target.name, name, execution_id)
    wait, last = POLL_INTERVAL[0], None
    while True:
        execution: dict[str, Any] = api.get(f"/replication/executions/{execution_id}")
        progress = (execution.get("succeed", 0), execution.get("failed", 0), execution.get("total", 0))
        if progress != last:
            log.info(
                "%s: %s: execution %d %s, %d of %d task(s) done, %d failed",
                target.name,
                name,
                execution_id,
                execution.get("status"),
                progress[0] + progress[1],
                progress[2],
                progress[1],
            )
            last = progress
        if execution.get("status") != "InProgress":
            return execution
        if time.monotonic() > deadline:
            api.put(f"/replication/executions/{execution_id}", None)
            raise _HarborError(
                408,
                "TIMEOUT",
                f"execution {execution_id} still running after {EXECUTION_TIMEOUT:.0f}s; stopped it",
            )
        time.sleep(wait)
        wait = min(wait * 1.5, POLL_INTERVAL[1])


def _wait_for_running(
    api: _Api, target: HarborTarget, policy_id: int, name: str, skipped_id: int, deadline: float
) -> None:
    """Wait until no execution of the policy is InProgress. Not ours to stop: at the deadline,
    fail and say which are still running."""
    wait, logged = POLL_INTERVAL[0], ""
    while True:
        running = api.list("/replication/executions", {"policy_id": policy_id, "status": "InProgress"})
        if not running:
            return
        ids = ", ".join(str(e.get("id")) for e in running)
        if time.monotonic() > deadline:
            raise _HarborError(
                408,
                "TIMEOUT",
                f"replication execution {skipped_id} of {name} was skipped while execution(s) {ids} ran, "
                f"still running after {EXECUTION_TIMEOUT:.0f}s; re-run apply when they end",
            )
        if ids != logged:
            log.info(
                "%s: %s: execution %d skipped while execution(s) %s run (single active replication); "
                "waiting to run it again",
                target.name,
                name,
                skipped_id,
                ids,
            )
            logged = ids
        time.sleep(wait)
        wait = min(wait * 1.5, POLL_INTERVAL[1])


def _latest_execution(api: _Api, policy_id: int) -> int | None:
    """The id of the policy's newest execution, or None before its first."""
    response = api.request(
        "GET",
        "/replication/executions",
        params={"policy_id": policy_id, "sort": "-id", "page": 1, "page_size": 1},
    )
    executions = _json(response)
    return int(executions[0]["id"]) if isinstance(executions, list) and executions else None


def _failure_detail(api: _Api, execution_id: int) -> str:
    tasks = api.list(f"/replication/executions/{execution_id}/tasks", {"status": "Failed"})
    if not tasks:
        return ""
    task = tasks[0]
    text = api.text(f"/replication/executions/{execution_id}/tasks/{task['id']}/log")
    lines = [line for line in text.splitlines() if line.strip()]
    failing = [line for line in lines if re.search(r"error|fail", line, re.IGNORECASE)]
    last = (failing or lines or [""])[-1]
    return clip(f"{task.get('src_resource', '')}: {last}")


def copy(copy: Copy, target: Any, ctx: RunContext) -> None:
    """Bring the missing tags of one repository in through its policies' executions.

    Apply already ran an execution of every policy it changed; tags that one brought in are
    not replicated twice. For the rest, every policy part listing a missing tag runs again,
    and each run must show a succeeded task for the source repository (an execution whose
    filters matched nothing also ends `Succeed`). The engine then checks every digest.
    """
    _, _, repository = copy.source.partition("/")
    _, _, destination = copy.destination.partition("/")
    registry = ctx.client(endpoint(target, ctx))
    missing = {t.tag for t in copy.tags if registry.digest(destination, t.tag) != t.digest}
    if not missing:
        return
    base_name = _policy_name(destination, 1)
    with _session(target, ctx) as api, _mapped(target, f"replicate {copy.source}"):
        mine = [
            p
            for p in api.list("/replication/policies", {"q": f"name=~{base_name}"})
            if p.get("name") == base_name or str(p.get("name")).startswith(base_name + "#")
        ]
        chosen, covered = [], set()
        for policy in mine:
            listed: set[str] = set()
            for item in policy.get("filters") or []:
                if item.get("type") == "tag":
                    listed |= _filter_tags(str(item.get("value")))
            if listed & missing:
                chosen.append(policy)
                covered |= listed
        if missing - covered:
            raise _HarborError(
                404,
                "NOT_FOUND",
                f"no replication policy {base_name} lists {', '.join(sorted(missing - covered))} "
                "(was its change applied?)",
            )
        for policy in chosen:
            execution = _run_policy(api, target, int(policy["id"]), str(policy["name"]))
            tasks = api.list(f"/replication/executions/{execution['id']}/tasks")
            if not any(
                t.get("status") == "Succeed" and _resource_name(t.get("src_resource")) == repository
                for t in tasks
            ):
                raise _HarborError(
                    500,
                    "NOTHING_REPLICATED",
                    f"replication execution {execution['id']} of {policy['name']} succeeded but copied "
                    f"nothing from {repository}",
                )


def _resource_name(resource: Any) -> str:
    """`library/redis [3 item(s) in total]` → `library/redis` (flow/stage.go getResourceName)."""
    return str(resource or "").split(" [", 1)[0]


# --- endpoint and HTTP -------------------------------------------------------------------


def endpoint(target: Any, ctx: RunContext) -> Endpoint:
    """Harbor's registry: the API's host, with the target's credentials and TLS settings."""
    host = urlsplit(target.url).netloc
    return ctx.reach(
        ctx.endpoint(
            host, credentials=target.credentials, insecure=target.insecure, ca_bundle=target.ca_bundle
        )
    )


class _HarborError(Exception):
    """A Harbor answer other than the expected one, with Harbor's own code and message."""

    def __init__(
        self, status: int, code: str, message: str, *, call: str = "", request_id: str = "", hint: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status  # also classifies errors we raise ourselves (call == "")
        self.code = code
        self.message = message
        self.call = call  # "POST /registries" when Harbor answered
        self.request_id = request_id
        self.hint = hint
        self.retry_after: float | None = None  # seconds, from a 429's or 503's Retry-After


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Refuse every cookie: with Harbor's `sid` cookie, writes need a CSRF token."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


_NO_BODY = object()


class _Api:
    """Harbor's REST API v2.0 for one target: basic auth, no cookies, an X-Request-Id per call."""

    def __init__(self, target: HarborTarget, ctx: RunContext) -> None:
        reach = endpoint(target, ctx)
        scheme = urlsplit(target.url).scheme
        self.base = f"{scheme}://{reach.host}/api/v2.0"
        self.verify: bool | str = False if reach.insecure else (reach.ca_bundle or True)
        if reach.insecure:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify=
        session.cookies.set_policy(_NoCookies())
        session.headers.update({"Accept": "application/json", "User-Agent": "mirrorspec"})
        if reach.auth is not None:
            session.auth = (reach.auth.username, reach.auth.password)
        # The run's deadlines and per-host budget (`--timeout`), and counted retries of
        # timeouts and of 429/5xx: 500 too, Harbor answers it for passing database and
        # job-service trouble, and these methods are safe to repeat (a DELETE's 404 counts as
        # done). POSTs are retried by `create`, which looks first.
        adapter = ctx.transport.adapter(
            retries=4,
            backoff=RETRY_BACKOFF,
            methods=frozenset({"GET", "PUT", "DELETE"}),
            statuses=frozenset({429, 500, 502, 503, 504}),
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        self.session = session

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = _NO_BODY,
        headers: Mapping[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
        bad_request: str = "",
        conflict: str = "",
    ) -> requests.Response:
        request_id = uuid.uuid4().hex
        response = self.session.request(
            method,
            self.base + path,
            params=params,
            json=None if body is _NO_BODY else body,
            headers={"X-Request-Id": request_id, **(headers or {})},
            verify=self.verify,
        )
        if response.status_code not in expect:
            code, message = _error_of(response)
            hint = (
                bad_request
                if response.status_code == 400
                else conflict
                if response.status_code == 412
                else ""
            )
            error = _HarborError(
                response.status_code,
                code,
                message,
                call=f"{method} {path}",
                request_id=response.headers.get("X-Request-Id", request_id),
                hint=hint,
            )
            retry_after = response.headers.get("Retry-After", "")
            error.retry_after = float(retry_after) if retry_after.isdigit() else None
            raise error
        return response

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return _json(self.request("GET", path, params=params))

    def text(self, path: str) -> str:
        return self.request("GET", path, headers={"Accept": "text/plain"}).text

    def list(self, path: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of a list operation: `page_size=100`, following `Link: rel="next"`,
        and checking the count against `X-Total-Count`."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            response = self.request(
                "GET", path, params={**(params or {}), "page": page, "page_size": PAGE_SIZE}
            )
            chunk = _json(response)
            if not isinstance(chunk, list):
                raise _HarborError(response.status_code, "UNEXPECTED", f"GET {path} did not answer a list")
            items += chunk
            following = _next_page(response.headers.get("Link", ""))
            if following is None or not chunk:
                break
            page = following
        total = response.headers.get("X-Total-Count")
        if total is not None and total.isdigit() and int(total) != len(items):
            raise _HarborError(
                409,
                "CONFLICT",
                f"GET {path} returned {len(items)} of {total} items (changed while listing?); re-run",
            )
        return items

    def find(self, path: str, name: str) -> dict[str, Any] | None:
        """The item called exactly `name` (`q=name=<name>` is exact; the old `name=` is fuzzy)."""
        found = [i for i in self.list(path, {"q": f"name={name}"}) if i.get("name") == name]
        return found[0] if found else None

    def create_named(self, path: str, body: Mapping[str, Any], *, bad_request: str = "") -> int:
        """Create the item called `body["name"]` (`project_name` for projects): names are
        unique, so after a lost answer the retry finds it by name rather than make another."""
        name = str(body.get("name") or body.get("project_name"))

        def lost() -> int | None:
            found = self.find(path, name)
            return None if found is None else int(found.get("id") or found.get("project_id") or 0)

        return self.create(path, body, bad_request=bad_request, lost=lost)

    def create(
        self,
        path: str,
        body: Any,
        *,
        bad_request: str = "",
        lost: Callable[[], int | None] | None = None,
    ) -> int:
        """POST → 201 with the new id only in `Location`.

        A POST is not idempotent, so it is retried only when `lost` is given: after a reset
        connection, a 429 or a 5xx, Harbor may have created the object and lost only the
        answer. `lost()` looks for it (by its unique name, say) and returns its id, so the
        retry finds it instead of creating a second one; None means it was not created.
        """
        attempt = 1
        while True:
            try:
                return self._create_once(path, body, bad_request)
            except (_HarborError, requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                transient = not isinstance(exc, _HarborError) or exc.status == 429 or exc.status >= 500
                conflict = isinstance(exc, _HarborError) and exc.status == 409 and attempt > 1
                if lost is None or attempt >= CREATE_ATTEMPTS or not (transient or conflict):
                    raise
                wait = RETRY_BACKOFF * 2 ** (attempt - 1)
                if isinstance(exc, _HarborError) and exc.retry_after is not None:
                    wait = max(wait, min(exc.retry_after, RETRY_AFTER_MAX))
                log.info("POST %s: %s; looking for what it may have created", path, exc)
                time.sleep(wait)
                found = lost()
                if found is not None:
                    return found
                if conflict:  # someone else's object of that name appeared meanwhile
                    raise
                attempt += 1

    def _create_once(self, path: str, body: Any, bad_request: str) -> int:
        response = self.request("POST", path, body=body, expect=(201,), bad_request=bad_request)
        location = response.headers.get("Location", "")
        ident = location.rstrip("/").rsplit("/", 1)[-1]
        if not ident.isdigit():
            if path == "/projects":
                return 0  # created; its id is not needed
            raise _HarborError(
                201, "UNEXPECTED", f"POST {path} answered 201 without an id in Location ({location!r})"
            )
        return int(ident)

    def put(self, path: str, body: Any, *, bad_request: str = "") -> None:
        self.request("PUT", path, body=_NO_BODY if body is None else body, bad_request=bad_request)

    def delete(self, path: str, *, headers: Mapping[str, str] | None = None, conflict: str = "") -> None:
        self.request("DELETE", path, headers=headers, expect=(200, 404), conflict=conflict)


@contextmanager
def _session(target: HarborTarget, ctx: RunContext) -> Iterator[_Api]:
    api = _Api(target, ctx)
    try:
        yield api
    finally:
        api.close()


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise _HarborError(
            response.status_code,
            "UNEXPECTED",
            f"{response.request.method} {urlsplit(response.url).path} answered "
            f"{response.headers.get('Content-Type') or 'no content type'}, not JSON (is the url Harbor's?)",
        ) from None


def _error_of(response: requests.Response) -> tuple[str, str]:
    try:
        errors = response.json().get("errors") or []
        first = errors[0] if errors else {}
        return str(first.get("code") or ""), " ".join(str(first.get("message") or "").split())
    except (ValueError, AttributeError, IndexError):
        return "", clip(response.text, 200)


def _next_page(link: str) -> int | None:
    """The page number of `rel="next"` in Harbor's Link header (host-relative, unescaped query)."""
    for part in link.split(","):
        if 'rel="next"' in part:
            url = part.split(";", 1)[0].strip().strip("<>")
            page = parse_qs(urlsplit(url).query).get("page", [""])[0]
            if page.isdigit():
                return int(page)
    return None


_HINTS = {
    401: "check the target's credentials (a sysadmin or a system robot account)",
    403: "the account lacks a Harbor permission (replication needs system scope)",
}


@contextmanager
def _mapped(target: HarborTarget, operation: str) -> Iterator[None]:
    """Translate Harbor's answers and requests' exceptions into ours, on one line, redacted.
    The message does not repeat `operation`: the caller's report names it (engine: `dc1:
    create registry-endpoint X: ...`); it is kept on the exception."""
    try:
        yield
    except _HarborError as exc:
        message = exc.message
        if exc.call:
            hint = exc.hint or _HINTS.get(exc.status, "")
            code = f" {exc.code}" if exc.code else ""
            message = f"Harbor {exc.call}: HTTP {exc.status}{code}: {exc.message}" + (
                f" ({hint})" if hint else ""
            )
            message += f" [X-Request-Id {exc.request_id}]" if exc.request_id else ""
        kind: type[ProviderError] = ProviderError
        if exc.status in (401, 403):
            kind = ProviderAuthError
        elif exc.status in (409, 412):
            kind = ProviderConflict
        elif exc.status == 429:
            kind = ProviderThrottled
        raise kind(
            redact(" ".join(message.split())), provider="harbor", target=target.name, operation=operation
        ) from None
    except requests.exceptions.SSLError as exc:
        # The real reason; never "insecure" for a certificate that does not verify.
        explained = explain_tls_failure(str(exc), target.url)
        raise ProviderError(
            redact(explained or f"TLS failed talking to {target.url}: {_reason(exc)}"),
            provider="harbor",
            target=target.name,
            operation=operation,
        ) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise ProviderError(
            redact(f"cannot reach Harbor at {target.url}: {_reason(exc)}"),
            provider="harbor",
            target=target.name,
            operation=operation,
        ) from None
    except requests.exceptions.RequestException as exc:
        raise ProviderError(
            redact(f"{type(exc).__name__} talking to {target.url}: {_reason(exc)}"),
            provider="harbor",
            target=target.name,
            operation=operation,
        ) from None


def _reason(exc: BaseException) -> str:
    text = str(exc.args[0] if exc.args else exc)
    match = re.search(r"\(Caused by (\w+\(.*)\)$", text)
    return clip(match.group(1) if match else text)
