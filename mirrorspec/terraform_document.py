"""The Terraform JSON document a provider's `render_terraform` hook fills: blocks by type with
unique labels, `sensitive` login variables, notes, and where each planned resource went.

`render_terraform.render` builds one per target and hands it to the provider, which names its
own Terraform resource types; nothing here knows a registry. Every literal string is escaped
(`${` → `$${`, `%{` → `%%{`), since `.tf.json` strings are templates; only references written
with `ref()` are expressions.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .context import RunContext
from .plan import Note, Resource
from .spec import Credential, Target
from .stable_order import notes_in_order

__all__ = ["Expr", "TerraformDocument", "TerraformFile", "identifier", "kinds", "literal", "ref"]


class Expr(str):
    """A Terraform expression this module wrote (`${...}`): not escaped like literal text."""


def ref(expression: str) -> Expr:
    return Expr("${" + expression + "}")


def literal(value: Any) -> Any:
    """`value` with every literal string escaped for a `.tf.json` template."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, str):
        return value.replace("${", "$${").replace("%{", "%%{")
    if isinstance(value, Mapping):
        return {key: literal(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [literal(item) for item in value]
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


class TerraformDocument:
    """The document being built: blocks by type, unique labels, notes, addresses.

    `terraform_providers` maps each Terraform provider the target's provider may `require` to
    its (source, version constraint)."""

    def __init__(
        self, ctx: RunContext, target: Target, terraform_providers: Mapping[str, tuple[str, str]]
    ) -> None:
        self.ctx = ctx
        self.target = target
        self.terraform_providers = dict(terraform_providers)
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
        source, version = self.terraform_providers[name]
        self.required[name] = {"source": source, "version": version}
        self.provider_blocks.setdefault(name, []).append(literal(dict(config)))

    def resource(self, rtype: str, name: str, body: Mapping[str, Any], *, of: Resource | None = None) -> str:
        """Add a resource block; returns its address (`type.label`)."""
        blocks = self.resources.setdefault(rtype, {})
        label = _label(name, blocks)
        blocks[label] = literal(dict(body))
        address = f"{rtype}.{label}"
        if of is not None:
            self.addresses[(of.kind, of.id)] = address
        return address

    def data_source(self, dtype: str, name: str, body: Mapping[str, Any]) -> str:
        blocks = self.data.setdefault(dtype, {})
        for label, existing in blocks.items():
            if existing == literal(dict(body)):
                return f"data.{dtype}.{label}"
        label = _label(name, blocks)
        blocks[label] = literal(dict(body))
        return f"data.{dtype}.{label}"

    def login(self, credentials: str) -> tuple[str, str]:
        """References (`var.<name>`) to the `<credentials>_username` and sensitive `<credentials>_password`
        variables; a literal username in the spec is the default, nothing is resolved."""
        base = identifier(credentials, dashes=False)  # TF_VAR_<name> must be an environment name
        user, password = f"{base}_username", f"{base}_password"
        if user not in self.variables:
            credential: Credential | None = self.ctx.spec.credentials.get(credentials)
            described = {
                "type": "string",
                "description": f"user name of the spec's credentials '{credentials}'",
            }
            if credential is not None and isinstance(credential.username, str):
                described["default"] = credential.username
            self.variables[user] = literal(described)
            self.variables[password] = literal(
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

    def finish(self, spec_name: str, *, native_rules: bool = True) -> TerraformFile:
        """The document; `native_rules` is False for a target type that has none Terraform can
        manage (no `render_terraform` hook)."""
        spec = spec_name or "the spec"
        header = [
            f"Generated by `mirrorspec render terraform {spec} --target {self.target.name}` "
            f"({self.target.type} target): the native resources `mirrorspec apply` would create.",
            "Re-render when the spec or the upstream versions change; do not edit by hand.",
            "Secrets are sensitive variables (set TF_VAR_<name>), never values.",
        ]
        if not self.resources and not native_rules:
            header.append(f"{self.target.type} targets have no native rules Terraform can manage.")
        elif not self.resources:
            header.append("The spec asks this target for no native rules Terraform can manage.")
        notes = notes_in_order(self.notes)  # the same bytes for the same spec (`stable_order`)
        document: dict[str, Any] = {
            "//": literal([*header, *(f"{n.level}: {n.message}" for n in notes)]),
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
        return TerraformFile(document, notes, dict(self.addresses))


def identifier(text: str, *, dashes: bool = True) -> str:
    """A valid Terraform name (letters, digits, `_`, `-`; not starting with a digit or `-`)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+" if dashes else r"[^A-Za-z0-9_]+", "_", text).strip("_-") or "x"
    return slug if re.match(r"[A-Za-z_]", slug) else f"_{slug}"


def _label(name: str, taken: Mapping[str, Any]) -> str:
    label = identifier(name)
    if label in taken:
        label = f"{label}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return label


def kinds(resources: Iterable[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r.kind == kind]
