"""`render terraform`: one target's native rules as a Terraform `.tf.json` file.

For teams that want Terraform to own the registry settings instead of `mirrorspec apply`. The
resources come from the provider's own `translate()`, after the same resolution the plan does
(repositories a pull-through cache serves are not resolved, the rest are), so the file declares
exactly the native resources `apply` would create — with each Terraform provider's real
resource types and argument names:

- ecr: `aws_secretsmanager_secret` + `_version`, `aws_ecr_pull_through_cache_rule`,
  `aws_ecr_repository_creation_template`, `aws_ecr_repository` (mirror repositories),
  `aws_ecr_replication_configuration`, `aws_ecr_registry_policy`;
- acr: `azurerm_container_registry_credential_set`, `azurerm_container_registry_cache_rule`;
- harbor: `harbor_registry`, `harbor_project` (the target project, proxy-cache projects),
  `harbor_replication`.

Secrets are `variable` blocks marked `sensitive` — a login becomes `<credentials>_username` and
`<credentials>_password`, set with `TF_VAR_...` — and never values: rendering reads no secret
into the file (a literal username in the spec becomes the variable's default). Nothing is read
from the target either; only the upstream registries, to resolve versions.

What Terraform cannot express is left out and said in the file's top-level `//` comment and
as notes: copies (skopeo, ACR imports: `mirrorspec sync` does them), ACR geo-replications
(azurerm has only the `georeplications` block of `azurerm_container_registry`, which owns the
whole registry). ECR's replication configuration and registry policy are one document per
registry, which mirrorspec merges but Terraform owns whole: the file carries only our rule /
statements, with a warning that `terraform apply` would drop every other one.

Every literal string is escaped (`${` → `$${`, `%{` → `%%{`), since `.tf.json` strings are
templates; only the references this module writes are expressions.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import providers
from .context import RunContext
from .plan import Artifact, Note, Resource
from .providers import acr, ecr, harbor
from .providers.acr.target import AcrTarget
from .providers.base import Desired
from .providers.ecr.target import EcrTarget
from .providers.harbor.target import HarborTarget
from .resolve import resolve
from .spec import Credential, Target

__all__ = ["PROVIDERS", "TerraformFile", "desired_for", "render"]

# Terraform provider → (source, version constraint): the oldest releases with every resource
# and argument written here (aws 5.61.0 added aws_ecr_repository_creation_template, azurerm
# 4.16.0 the credential set, harbor 3.11 `single_active_replication`).
PROVIDERS: dict[str, tuple[str, str]] = {
    "aws": ("hashicorp/aws", ">= 5.61.0"),
    "azurerm": ("hashicorp/azurerm", ">= 4.16.0"),
    "harbor": ("goharbor/harbor", ">= 3.11.0"),
}

# Harbor adapter type → the terraform-provider-harbor `provider_name` it reads back as
# (client/registry.go GetRegistryType), so that a refresh shows no difference.
_HARBOR_PROVIDER_NAMES = {
    "docker-hub": "docker-hub",
    "docker-registry": "docker-registry",
    "github-ghcr": "github",
    "azure-acr": "azure",
    "aws-ecr": "aws",
    "google-gcr": "google",
    "harbor": "harbor",
    "quay": "quay",
    "gitlab": "gitlab",
    "jfrog-artifactory": "jfrog",
    "ali-acr": "alibaba",
}


class _Expr(str):
    """A Terraform expression this module wrote (`${...}`): not escaped like literal text."""


def _ref(expression: str) -> _Expr:
    return _Expr("${" + expression + "}")


def _literal(value: Any) -> Any:
    """`value` with every literal string escaped for a `.tf.json` template."""
    if isinstance(value, _Expr):
        return value
    if isinstance(value, str):
        return value.replace("${", "$${").replace("%{", "%%{")
    if isinstance(value, Mapping):
        return {key: _literal(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_literal(item) for item in value]
    return value


@dataclass(frozen=True)
class TerraformFile:
    """A rendered `.tf.json` document, the notes about it, and where each resource went."""

    document: dict[str, Any]
    notes: tuple[Note, ...]
    # (resource kind, id) of every rendered `Resource` → its Terraform address.
    addresses: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.document, indent=2) + "\n"


def desired_for(ctx: RunContext, target: Target) -> tuple[Desired, tuple[Artifact, ...], tuple[Note, ...]]:
    """What `plan` asks the provider for: `translate()` of the artifacts the target stores
    (not those a pull-through cache serves), with the resolution's notes."""
    provider = providers.get(target.type)
    cached = provider.cached(target, ctx)
    resolution = resolve(ctx, skip=cached)
    stored = tuple(a for a in resolution.artifacts if f"{a.registry}/{a.repository}" not in cached)
    return provider.translate(stored, target, ctx), stored, resolution.notes


def render(ctx: RunContext, target: Target, *, spec_name: str = "") -> TerraformFile:
    """The target's native resources, as `apply` would create them, as Terraform JSON."""
    desired, stored, notes = desired_for(ctx, target)
    out = _File(ctx, target)
    out.notes += [*notes, *desired.notes]
    if isinstance(target, EcrTarget):
        _ecr(out, desired.resources, target)
    elif isinstance(target, AcrTarget):
        _acr(out, desired.resources, target)
    elif isinstance(target, HarborTarget):
        _harbor(out, desired.resources, target)
    for resource in desired.resources:
        key = (resource.kind, resource.id)
        if key not in out.addresses and key not in out.left_out:
            out.leave_out(resource, "mirrorspec has no Terraform mapping for this kind of resource")
    _copies_note(out, target, stored, desired, spec_name or "SPEC")
    return out.finish(spec_name)


def _copies_note(
    out: _File, target: Target, stored: Sequence[Artifact], desired: Desired, spec_name: str
) -> None:
    if not stored:
        return
    repositories = {f"{a.registry}/{a.repository}" for a in stored}
    native = repositories & desired.native
    if target.type == "harbor" and native == repositories:
        out.notes.append(
            Note(
                "info",
                f"{len(stored)} tag(s) of {len(repositories)} repository(ies) are copied by the replication "
                "policies' executions (execute_on_changed starts one when Terraform creates or changes a "
                "policy); check them with `mirrorspec audit --content`",
            )
        )
        return
    how = "copied with skopeo"
    if native:
        how = "imported by ACR (importImage)" + (" or copied with skopeo" if native != repositories else "")
    out.notes.append(
        Note(
            "info",
            f"{len(stored)} tag(s) of {len(repositories)} repository(ies) are {how}, which Terraform has no "
            f"resource for: run `mirrorspec sync {spec_name} --target {target.name}` after terraform apply",
        )
    )


class _File:
    """The document being built: blocks by type, unique labels, notes, addresses."""

    def __init__(self, ctx: RunContext, target: Target) -> None:
        self.ctx = ctx
        self.target = target
        self.required: dict[str, dict[str, str]] = {}
        self.provider_blocks: dict[str, list[dict[str, Any]]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.data: dict[str, dict[str, dict[str, Any]]] = {}
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.notes: list[Note] = []
        self.addresses: dict[tuple[str, str], str] = {}
        self.left_out: set[tuple[str, str]] = set()

    def require(self, name: str, config: Mapping[str, Any]) -> None:
        source, version = PROVIDERS[name]
        self.required[name] = {"source": source, "version": version}
        self.provider_blocks.setdefault(name, []).append(_literal(dict(config)))

    def resource(self, rtype: str, name: str, body: Mapping[str, Any], *, of: Resource | None = None) -> str:
        """Add a resource block; returns its address (`type.label`)."""
        blocks = self.resources.setdefault(rtype, {})
        label = _label(name, blocks)
        blocks[label] = _literal(dict(body))
        address = f"{rtype}.{label}"
        if of is not None:
            self.addresses[(of.kind, of.id)] = address
        return address

    def data_source(self, dtype: str, name: str, body: Mapping[str, Any]) -> str:
        blocks = self.data.setdefault(dtype, {})
        for label, existing in blocks.items():
            if existing == _literal(dict(body)):
                return f"data.{dtype}.{label}"
        label = _label(name, blocks)
        blocks[label] = _literal(dict(body))
        return f"data.{dtype}.{label}"

    def login(self, credentials: str) -> tuple[str, str]:
        """References (`var.<name>`) to the `<credentials>_username` and sensitive `<credentials>_password`
        variables; a literal username in the spec is the default, nothing is resolved."""
        base = _identifier(credentials, dashes=False)  # TF_VAR_<name> must be an environment name
        user, password = f"{base}_username", f"{base}_password"
        if user not in self.variables:
            credential: Credential | None = self.ctx.spec.credentials.get(credentials)
            described = {
                "type": "string",
                "description": f"user name of the spec's credentials '{credentials}'",
            }
            if credential is not None and isinstance(credential.username, str):
                described["default"] = credential.username
            self.variables[user] = _literal(described)
            self.variables[password] = _literal(
                {
                    "type": "string",
                    "sensitive": True,
                    "description": f"password or token of the spec's credentials '{credentials}' "
                    f"(set TF_VAR_{password}; never written here)",
                }
            )
        return f"var.{user}", f"var.{password}"

    def leave_out(self, resource: Resource, why: str) -> None:
        self.left_out.add((resource.kind, resource.id))
        self.notes.append(Note("warning", f"{resource.kind} {resource.id} is not rendered: {why}"))

    def finish(self, spec_name: str) -> TerraformFile:
        spec = spec_name or "the spec"
        header = [
            f"Generated by `mirrorspec render terraform {spec} --target {self.target.name}` "
            f"({self.target.type} target): the native resources `mirrorspec apply` would create.",
            "Re-render when the spec or the upstream versions change; do not edit by hand.",
            "Secrets are sensitive variables (set TF_VAR_<name>), never values.",
        ]
        if not self.resources and self.target.type == "registry":
            header.append("registry targets have no native rules Terraform can manage.")
        elif not self.resources:
            header.append("The spec asks this target for no native rules Terraform can manage.")
        document: dict[str, Any] = {
            "//": _literal([*header, *(f"{n.level}: {n.message}" for n in self.notes)]),
            "terraform": {"required_providers": self.required},
        }
        if self.provider_blocks:
            document["provider"] = self.provider_blocks
        if self.variables:
            document["variable"] = self.variables
        if self.data:
            document["data"] = self.data
        if self.resources:
            document["resource"] = self.resources
        if self.outputs:
            document["output"] = self.outputs
        return TerraformFile(document, tuple(self.notes), dict(self.addresses))


def _identifier(text: str, *, dashes: bool = True) -> str:
    """A valid Terraform name (letters, digits, `_`, `-`; not starting with a digit or `-`)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+" if dashes else r"[^A-Za-z0-9_]+", "_", text).strip("_-") or "x"
    return slug if re.match(r"[A-Za-z_]", slug) else f"_{slug}"


def _label(name: str, taken: Mapping[str, Any]) -> str:
    label = _identifier(name)
    if label in taken:
        label = f"{label}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return label


def _kinds(resources: Iterable[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r.kind == kind]


# --- ecr ---------------------------------------------------------------------------------

_SINGLETON = (
    "{what} is one document per registry: Terraform owns it whole, so `terraform apply` replaces "
    "every {part} not in this file (mirrorspec merges; Terraform cannot). Add the registry's other "
    "{part}s here first ({how}), or leave {what} to mirrorspec"
)


def _ecr(out: _File, resources: Sequence[Resource], target: EcrTarget) -> None:
    account, region = target.registry.split(".")[0], target.registry.split(".")[3]
    config: dict[str, Any] = {"region": region}
    if target.profile:
        config["profile"] = target.profile
    out.require("aws", config)

    credentials = ecr.secret_credentials(target, out.ctx)
    versions: dict[str, str] = {}  # secret name → address of its value
    secrets: dict[str, str] = {}  # secret name → address of the secret
    for secret in _kinds(resources, ecr.SECRET):
        username, password = out.login(credentials[secret.id])
        address = out.resource(
            "aws_secretsmanager_secret",
            secret.id,
            {"name": secret.id, "description": secret.attrs.get("description", "")},
            of=secret,
        )
        secrets[secret.id] = address
        versions[secret.id] = out.resource(
            "aws_secretsmanager_secret_version",
            secret.id,
            {
                "secret_id": _ref(f"{address}.id"),
                # The JSON ECR reads: keys `username` and `accessToken`.
                "secret_string": _ref(f"jsonencode({{username = {username}, accessToken = {password}}})"),
            },
        )
    for rule in _kinds(resources, ecr.RULE):
        body: dict[str, Any] = {
            "//": f"upstream {rule.attrs['upstreamRegistry']}: ECR infers it from the URL "
            "(the Terraform resource has no argument for it)",
            "ecr_repository_prefix": rule.id,
            "upstream_registry_url": rule.attrs["upstreamRegistryUrl"],
        }
        secret_name = rule.attrs.get("credentialSecret")
        if secret_name in secrets:
            body["credential_arn"] = _ref(f"{secrets[secret_name]}.arn")
            body["depends_on"] = [versions[secret_name]]  # ECR reads the value when creating the rule
        elif secret_name:
            found = out.data_source("aws_secretsmanager_secret", secret_name, {"name": secret_name})
            body["credential_arn"] = _ref(f"{found}.arn")
        out.resource("aws_ecr_pull_through_cache_rule", rule.id, body, of=rule)
    for template in _kinds(resources, ecr.TEMPLATE):
        out.resource(
            "aws_ecr_repository_creation_template",
            template.id,
            {
                "prefix": template.id,
                "applied_for": list(template.attrs["appliedFor"]),
                "description": template.attrs["description"],
            },
            of=template,
        )
    for repository in _kinds(resources, ecr.REPOSITORY):
        out.resource(
            "aws_ecr_repository",
            repository.id,
            {"//": "a mirror repository: `mirrorspec sync` copies the tags", "name": repository.id},
            of=repository,
        )
    _ecr_replication(out, _kinds(resources, ecr.REPLICATION), account)
    _ecr_policies(out, _kinds(resources, ecr.STATEMENT), target)


def _ecr_replication(out: _File, rules: Sequence[Resource], account: str) -> None:
    if not rules:
        return
    warning = _SINGLETON.format(
        what="the replication configuration",
        part="rule",
        how="`aws ecr describe-registry`, or `terraform import` of the registry id",
    )
    out.notes.append(Note("warning", warning))
    blocks = [
        {
            "destination": [
                {"region": d["region"], "registry_id": d["registryId"]} for d in rule.attrs["destinations"]
            ],
            "repository_filter": [
                {"filter": f["filter"], "filter_type": f["filterType"]}
                for f in rule.attrs["repositoryFilters"]
            ],
        }
        for rule in rules
    ]
    address = out.resource(
        "aws_ecr_replication_configuration",
        f"account_{account}",
        {"//": warning, "replication_configuration": {"rule": blocks}},
    )
    for rule in rules:
        out.addresses[(rule.kind, rule.id)] = address


def _ecr_policies(out: _File, statements: Sequence[Resource], target: EcrTarget) -> None:
    grouped: dict[tuple[str, str], list[Resource]] = {}
    for statement in statements:
        dest_account, region, _ = statement.id.split("/", 2)
        grouped.setdefault((dest_account, region), []).append(statement)
    for (dest_account, region), found in grouped.items():
        profile = next(
            (d.profile for d in target.replicate_to if d.account == dest_account and d.region == region), None
        )
        alias = _identifier(f"account_{dest_account}_{region}")
        config: dict[str, Any] = {"alias": alias, "region": region}
        if profile:
            config["profile"] = profile
        out.require("aws", config)
        warning = _SINGLETON.format(
            what=f"the registry policy of account {dest_account} in {region}",
            part="statement",
            how="`aws ecr get-registry-policy`",
        )
        out.notes.append(Note("warning", warning))
        policy = {"Version": "2012-10-17", "Statement": [dict(s.attrs) for s in found]}
        address = out.resource(
            "aws_ecr_registry_policy",
            f"account_{dest_account}_{region}",
            {"//": warning, "provider": f"aws.{alias}", "policy": json.dumps(policy, sort_keys=True)},
        )
        for statement in found:
            out.addresses[(statement.kind, statement.id)] = address


# --- acr ---------------------------------------------------------------------------------


def _acr(out: _File, resources: Sequence[Resource], target: AcrTarget) -> None:
    out.require("azurerm", {"features": {}, "subscription_id": target.subscription})
    registry_id = (
        f"/subscriptions/{target.subscription}/resourceGroups/{target.resource_group}"
        f"/providers/Microsoft.ContainerRegistry/registries/{target.registry}"
    )
    sets: dict[str, str] = {}
    for found in _kinds(resources, acr.CREDENTIAL_SET):
        vault = str(found.attrs["passwordSecret"]).split("/secrets/", 1)[0]
        sets[found.id] = out.resource(
            "azurerm_container_registry_credential_set",
            found.id,
            {
                "//": f"its system-assigned identity needs Key Vault secret get on {vault} "
                "(role 'Key Vault Secrets User'): see the output credential_set_principal_ids",
                "name": found.id,
                "container_registry_id": registry_id,
                "login_server": found.attrs["loginServer"],
                "identity": {"type": "SystemAssigned"},
                "authentication_credentials": {
                    "username_secret_id": found.attrs["usernameSecret"],
                    "password_secret_id": found.attrs["passwordSecret"],
                },
            },
            of=found,
        )
    if sets:
        out.outputs["credential_set_principal_ids"] = {
            "description": "grant each identity Key Vault secret get on its vault",
            "value": {name: _ref(f"{address}.identity[0].principal_id") for name, address in sets.items()},
        }
    for rule in _kinds(resources, acr.CACHE_RULE):
        body: dict[str, Any] = {
            "name": rule.id,
            "container_registry_id": registry_id,
            "source_repo": rule.attrs["sourceRepository"],
            "target_repo": rule.attrs["targetRepository"],
        }
        credential_set = str(rule.attrs.get("credentialSet") or "")
        if credential_set in sets:
            body["credential_set_id"] = _ref(f"{sets[credential_set]}.id")
        elif credential_set:  # an existing set the spec names (azure-credential-set)
            body["credential_set_id"] = f"{registry_id}/credentialSets/{credential_set}"
        out.resource("azurerm_container_registry_cache_rule", rule.id, body, of=rule)
    for replication in _kinds(resources, acr.REPLICATION):
        out.leave_out(
            replication,
            "azurerm has no resource for one geo-replication, only the `georeplications` block of "
            "azurerm_container_registry, which owns the whole registry; add it there, or leave "
            "replicate-to to mirrorspec apply",
        )


# --- harbor ------------------------------------------------------------------------------


def _harbor(out: _File, resources: Sequence[Resource], target: HarborTarget) -> None:
    config: dict[str, Any] = {"url": target.url.rstrip("/"), "insecure": target.insecure}
    if target.credentials:
        username, password = out.login(target.credentials)
        config.update(username=_ref(username), password=_ref(password))
    out.require("harbor", config)
    if target.ca_bundle:
        out.notes.append(
            Note(
                "info",
                f"the harbor provider has no CA setting: trust {target.ca_bundle} system-wide (or through "
                "SSL_CERT_FILE) for Terraform to reach Harbor",
            )
        )

    logins = {harbor.adapter_of(s.registry)[1]: s for s in out.ctx.spec.sources}
    endpoints: dict[str, str] = {}
    for endpoint in _kinds(resources, harbor.ENDPOINT):
        attrs = endpoint.attrs
        body: dict[str, Any] = {
            "provider_name": _HARBOR_PROVIDER_NAMES.get(attrs["type"], attrs["type"]),
            "name": endpoint.id,
            "endpoint_url": attrs["url"],
            "description": attrs["description"],
            "insecure": attrs["insecure"],
        }
        source = logins.get(attrs["url"])
        if source is not None and source.credentials and attrs["secret"] != "none":
            username, password = out.login(source.credentials)
            body.update(access_id=_ref(username), access_secret=_ref(password))
        if source is not None and source.ca_bundle:
            path = (out.ctx.spec.base_dir / source.ca_bundle).resolve()
            body["ca_certificate"] = _ref(f"file({json.dumps(_literal(str(path)))})")
            out.notes.append(
                Note("info", f"{endpoint.id}: ca_certificate needs Harbor 2.15 and a provider that has it")
            )
        endpoints[endpoint.id] = out.resource("harbor_registry", endpoint.id, body, of=endpoint)
    for project in _kinds(resources, harbor.PROJECT):
        out.resource(
            "harbor_project",
            project.id,
            {"name": project.id, "vulnerability_scanning": False},  # as apply creates it
            of=project,
        )
    for proxy in _kinds(resources, harbor.PROXY):
        out.resource(
            "harbor_project",
            proxy.id,
            {
                "name": proxy.id,
                "registry_id": _ref(f"{endpoints[proxy.attrs['registry']]}.registry_id"),
                "vulnerability_scanning": False,
            },
            of=proxy,
        )
    for policy in _kinds(resources, harbor.POLICY):
        attrs = policy.attrs
        trigger = attrs["trigger"]
        filters = []
        for item in attrs["filters"]:
            block = {str(item["type"]): item["value"]}
            if item.get("decoration"):
                block["decoration"] = item["decoration"]
            filters.append(block)
        out.resource(
            "harbor_replication",
            policy.id,
            {
                "name": policy.id,
                "action": "pull",
                "registry_id": _ref(f"{endpoints[attrs['src_registry']]}.registry_id"),
                "description": attrs["description"],
                "schedule": trigger["cron"] if trigger["type"] == "scheduled" else "manual",
                "dest_namespace": attrs["dest_namespace"],
                "dest_namespace_replace": attrs["dest_namespace_replace_count"],
                "filters": filters,  # one block per filter: a shared block keeps only one
                "enabled": attrs["enabled"],
                "override": attrs["override"],
                "deletion": attrs["deletion"],
                "speed": attrs["speed"],
                "copy_by_chunk": attrs["copy_by_chunk"],
                "single_active_replication": attrs["single_active_replication"],
                "execute_on_changed": True,  # apply runs an execution of every changed policy too
            },
            of=policy,
        )
