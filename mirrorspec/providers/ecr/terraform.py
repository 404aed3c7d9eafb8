"""ECR as Terraform (`render terraform`): `aws_secretsmanager_secret` + `_version`,
`aws_ecr_pull_through_cache_rule`, `aws_ecr_repository_creation_template`, `aws_ecr_repository`
(mirror repositories), `aws_ecr_replication_configuration`, `aws_ecr_registry_policy`.

ECR's replication configuration and registry policy are one document per registry, which
mirrorspec merges but Terraform owns whole: the file carries only our rule / statements, with a
warning that `terraform apply` would drop every other one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...errors import MirrorspecError
from ...plan import Note, Resource
from ...terraform_document import TerraformDocument, identifier, kinds, ref
from .native import MAX_DESTINATIONS, REPLICATION, REPOSITORY, RULE, SECRET, STATEMENT, TEMPLATE
from .observed import secret_credentials
from .target import EcrTarget

__all__ = ["TERRAFORM_PROVIDERS", "render_terraform"]

# The oldest release with every resource and argument written here (5.61.0 added
# aws_ecr_repository_creation_template).
TERRAFORM_PROVIDERS = {"aws": ("hashicorp/aws", ">= 5.61.0")}


_SINGLETON = (
    "{what} is one document per registry: Terraform owns it whole, so `terraform apply` replaces "
    "every {part} not in this file (mirrorspec merges; Terraform cannot). Add the registry's other "
    "{part}s here first ({how}), or leave {what} to mirrorspec"
)


def render_terraform(out: TerraformDocument, resources: Sequence[Resource], target: Any) -> None:
    """ECR's native resources as `aws` provider resources (`render_terraform.render` calls it)."""
    account, region = target.registry.split(".")[0], target.registry.split(".")[3]
    config: dict[str, Any] = {"region": region}
    if target.profile:
        config["profile"] = target.profile
    out.require("aws", config)

    credentials = secret_credentials(target, out.ctx)
    versions: dict[str, str] = {}  # secret name → address of its value
    secrets: dict[str, str] = {}  # secret name → address of the secret
    for secret in kinds(resources, SECRET):
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
                "secret_id": ref(f"{address}.id"),
                # The JSON ECR reads: keys `username` and `accessToken`.
                "secret_string": ref(f"jsonencode({{username = {username}, accessToken = {password}}})"),
            },
        )
    for rule in kinds(resources, RULE):
        body: dict[str, Any] = {
            "//": f"upstream {rule.attrs['upstreamRegistry']}: ECR infers it from the URL "
            "(the Terraform resource has no argument for it)",
            "ecr_repository_prefix": rule.id,
            "upstream_registry_url": rule.attrs["upstreamRegistryUrl"],
        }
        secret_name = rule.attrs.get("credentialSecret")
        if secret_name in secrets:
            body["credential_arn"] = ref(f"{secrets[secret_name]}.arn")
            body["depends_on"] = [versions[secret_name]]  # ECR reads the value when creating the rule
        elif secret_name:
            found = out.data_source("aws_secretsmanager_secret", secret_name, {"name": secret_name})
            body["credential_arn"] = ref(f"{found}.arn")
        out.resource("aws_ecr_pull_through_cache_rule", rule.id, body, of=rule)
    for template in kinds(resources, TEMPLATE):
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
    for repository in kinds(resources, REPOSITORY):
        out.resource(
            "aws_ecr_repository",
            repository.id,
            {"//": "a mirror repository: `mirrorspec sync` copies the tags", "name": repository.id},
            of=repository,
        )
    _ecr_replication(out, kinds(resources, REPLICATION), account, target)
    _ecr_policies(out, kinds(resources, STATEMENT), target)


# hashicorp/aws's `aws_ecr_replication_configuration` schema (5.100.0, `terraform providers
# schema -json`): `rule` max_items 10, `destination` max_items 25 per rule. The ECR API takes
# more (botocore's model: 25 rules, 100 destinations per rule), so a rule mirrorspec writes
# itself may not fit in the file; `terraform validate` would reject it.
TERRAFORM_MAX_DESTINATIONS = 25


def _ecr_replication(
    out: TerraformDocument, rules: Sequence[Resource], account: str, target: EcrTarget
) -> None:
    if not rules:
        return
    for rule in rules:
        if len(rule.attrs["destinations"]) > TERRAFORM_MAX_DESTINATIONS:
            raise MirrorspecError(
                f"target '{target.name}': {len(rule.attrs['destinations'])} replication destinations; "
                f"the Terraform AWS provider takes at most {TERRAFORM_MAX_DESTINATIONS} per rule "
                "(aws_ecr_replication_configuration), so leave replication to `mirrorspec apply` "
                f"(ECR takes up to {MAX_DESTINATIONS}) or give fewer"
            )
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


def _ecr_policies(out: TerraformDocument, statements: Sequence[Resource], target: EcrTarget) -> None:
    grouped: dict[tuple[str, str], list[Resource]] = {}
    for statement in statements:
        dest_account, region, _ = statement.id.split("/", 2)
        grouped.setdefault((dest_account, region), []).append(statement)
    for (dest_account, region), found in grouped.items():
        profile = next(
            (d.profile for d in target.replicate_to if d.account == dest_account and d.region == region), None
        )
        alias = identifier(f"account_{dest_account}_{region}")
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
