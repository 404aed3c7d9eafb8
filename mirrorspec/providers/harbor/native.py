"""Harbor (`type: harbor`): registry endpoints, replication policies and executions, proxy cache.

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
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ... import paths
from ...chart_images import is_pinned
from ...context import RunContext
from ...credentials import resolve_basic_auth
from ...errors import (
    ProviderError,
)
from ...files import read_ca_bundle
from ...plan import Artifact, Note, Resource
from .. import base
from .target import HarborTarget

__all__ = [
    "ENDPOINT",
    "ENGINE",
    "FILTERS_COLUMN",
    "IN_PLACE",
    "MANAGED",
    "MASKED",
    "MAX_REGISTRY_NAME",
    "PERMISSIONS",
    "POLICY",
    "POLICY_COLUMNS",
    "PROJECT",
    "PROXY",
    "PROXY_CACHE_TYPES",
    "SUPPORT_KINDS",
    "adapter_of",
    "cached",
    "capabilities",
    "translate",
]

log = logging.getLogger(__package__)

MANAGED = "managed-by: mirrorspec"
ENGINE = "harbor-replication"
# Characters of a policy's filters as Harbor stores them: `replication_policy.filters` is
# varchar(1024) — goharbor/harbor make/migrations/postgresql/0001_initial_schema.up.sql, never
# altered by a later migration (checked up to c50c7ddd6ea4e335a480b49c618281882ab7eec9).
FILTERS_COLUMN = 1024
# `replication_policy.name` is varchar(256) (0001_initial_schema.up.sql) and `dest_namespace`
# varchar(256) (0004_1.8.0_schema.up.sql, which added it); no later migration in the index
# alters either. Harbor validates neither length, so a longer value is PostgreSQL's 22001, which
# Harbor answers as a bare 500 "internal server error" (src/lib/http/error.go `SendError`).
POLICY_COLUMNS = 256
MAX_REGISTRY_NAME = 64
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
    """`mirrorspec/<destination>[#part]`, cut to Harbor's column with a hash of the whole name
    (the same name on every run, so the next plan finds the policy it wrote)."""
    name = f"mirrorspec/{destination}"
    suffix = f"#{part}" if part > 1 else ""
    if len(name) + len(suffix) <= POLICY_COLUMNS:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: POLICY_COLUMNS - 9 - len(suffix)]}-{digest}{suffix}"


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
        if source.oci_layout is not None or adapter_of(host)[0] not in PROXY_CACHE_TYPES:
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
    layouts: dict[str, None] = {}  # oci-layout sources: copied into the project, never replicated
    for artifact in artifacts:
        if paths.is_layout_host(artifact.registry):
            layouts[artifact.registry] = None
            continue
        if is_pinned(artifact.tag):
            # A chart's image pinned by digest, under a tag upstream lacks: a tag filter matches
            # the upstream artifacts' own tags (goharbor/harbor src/pkg/reg/filter/artifact.go,
            # artifactTagFilter), so no policy could copy it. The engine copies it by digest
            # with skopeo.
            continue
        tags = groups.setdefault((artifact.registry, artifact.repository), [])
        if artifact.tag not in tags:
            tags.append(artifact.tag)
    cache_hosts = _cache_hosts(target, ctx, notes)
    hosts = list(dict.fromkeys([*(host for host, _ in groups), *cache_hosts]))
    rotate = ctx.rotate_credentials

    resources = [_endpoint_resource(target, ctx, _upstream(ctx, host), rotate) for host in hosts]
    if groups or layouts:
        resources.append(Resource(PROJECT, target.project, {}, managed=False))
    notes += [base.fallback_note("harbor", layout, base.LAYOUT_SOURCE_WHY) for layout in layouts]
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
        if source.settings_only or source.oci_layout is not None:  # no proxy-cache project
            continue  # (translate's note says why a layout is copied)
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
        design = target.destination(ctx.spec, host, example)
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
    destination = target.destination(ctx.spec, host, repository)
    namespace = destination[: -len(repository) - 1]  # dest = <namespace>/<repository>, count 0
    if len(namespace) > POLICY_COLUMNS:
        raise ProviderError(
            f"{host}/{repository}: the destination namespace {namespace[:60]}… is {len(namespace)} "
            f"characters, and Harbor stores a replication policy's in {POLICY_COLUMNS}: shorten the "
            "target's prefix or use a flatter layout",
            provider="harbor",
            target=target.name,
            operation="plan",
        )
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
