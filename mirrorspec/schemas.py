"""The published JSON Schemas: the spec, and the `plan` / `audit` JSON documents.

`plan --format json` and `audit --format json` are a stable interface (CI gates, Terraform's
`plan_json`, dashboards), so their schemas are generated from the very dataclasses that
`plan.to_json()` serialises — pydantic's `TypeAdapter(...).json_schema()` reads stdlib
dataclasses — and then corrected to what `to_json()` really emits:

- every field is always written (`dataclasses.asdict`), so every property is *required*,
  including those with a default; `additionalProperties: false` everywhere except the
  free-form `attrs` / `before` / `after` mappings, so a field added to a dataclass without a
  schema change fails the tests that validate real output;
- `to_json()` adds derived booleans that are properties, not fields: `empty` on a plan and
  each of its targets, `in_sync` on an audit and each of its targets (`DERIVED`);
- `version` is the constant the document carries (a new version means a new schema);
- a pair of fields that `to_json()` writes as one `registry/repository` string
  (`plan.JSON_JOINED`: a copy's source and destination) is published as that string, under
  the name and docstring of the property that joins them;
- descriptions come from the dataclasses' own docstrings: the class docstring and the string
  literal under each field (PEP 257 attribute docstrings, read with `ast` because pydantic's
  `use_attribute_docstrings` cannot be set on a stdlib dataclass from outside).

Draft 2020-12, as pydantic generates; `tests/test_schemas.py` validates real CLI output.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import sys
import textwrap
from typing import Any, Literal

from pydantic import TypeAdapter

from .plan import AUDIT_VERSION, JSON_JOINED, PLAN_VERSION, Audit, Plan, TargetAudit, TargetPlan, joined

__all__ = ["DERIVED", "DIALECT", "KINDS", "SchemaKind", "audit_schema", "plan_schema", "schema"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SchemaKind = Literal["spec", "plan", "audit", "saved-plan"]
KINDS: tuple[SchemaKind, ...] = ("spec", "plan", "audit", "saved-plan")

# Properties `plan.to_json()` adds beside the dataclass fields: keep in step with it.
DERIVED: dict[type, tuple[str, ...]] = {
    Plan: ("empty",),
    TargetPlan: ("empty",),
    Audit: ("in_sync",),
    TargetAudit: ("in_sync",),
}


def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of `kind` (one of `KINDS`): the spec file, or a plan / audit document."""
    if kind == "spec":
        from .spec import json_schema

        return json_schema()
    if kind == "plan":
        return plan_schema()
    if kind == "audit":
        return audit_schema()
    if kind == "saved-plan":  # the plan's schema inside the file `plan --out` writes
        from .saved_plan import json_schema as saved_plan_schema

        return saved_plan_schema()
    raise ValueError(f"no schema '{kind}' (one of: {', '.join(KINDS)})")


def plan_schema() -> dict[str, Any]:
    """Schema of `mirrorspec plan --format json` (and of `plan_json` for action=plan)."""
    return _publish(Plan, title="mirrorspec plan", version=PLAN_VERSION)


def audit_schema() -> dict[str, Any]:
    """Schema of `mirrorspec audit --format json` (and of `plan_json` for action=audit)."""
    return _publish(Audit, title="mirrorspec audit", version=AUDIT_VERSION)


def _publish(root: type, *, title: str, version: int) -> dict[str, Any]:
    raw = TypeAdapter(root).json_schema(mode="serialization")
    # `mirrorspec.plan` the attribute is the engine's plan() function; the module is this one.
    classes = _dataclasses_of(sys.modules[Plan.__module__])
    definitions: dict[str, Any] = raw.pop("$defs", {})
    for name, definition in definitions.items():
        _fix_object(definition, classes[name])
    _fix_object(raw, root)
    raw["properties"]["version"] = {
        "const": version,
        "description": raw["properties"]["version"].get("description", ""),
    }
    document: dict[str, Any] = {
        "$schema": DIALECT,
        "$id": f"urn:mirrorspec:schema:{root.__name__.lower()}:v{version}",
        "title": f"{title} (version {version})",
        **{key: raw[key] for key in ("description", "type", "properties", "required")},
        "additionalProperties": False,
        "$defs": definitions,
    }
    return document


def _fix_object(definition: dict[str, Any], cls: type) -> None:
    """Make one generated object schema say exactly what `to_json()` writes for `cls`."""
    fields = _field_docs(cls)
    for name in JSON_JOINED.get(cls, {}):
        if doc := inspect.getdoc(getattr(cls, name)):
            fields[name] = " ".join(doc.split())
    properties: dict[str, Any] = joined(cls, definition["properties"], lambda _, __: {"type": "string"})
    definition["properties"] = properties
    for name, prop in properties.items():
        prop.pop("title", None)
        prop.pop("default", None)
        if name not in fields:
            raise AssertionError(f"{cls.__name__}.{name} has no docstring: document every field")
        prop["description"] = fields[name]
    for name in DERIVED.get(cls, ()):
        doc = inspect.getdoc(getattr(cls, name))
        if not doc:
            raise AssertionError(f"{cls.__name__}.{name} has no docstring: document every derived field")
        properties[name] = {"type": "boolean", "description": f"Derived: {doc}"}
    definition["required"] = list(properties)
    definition["additionalProperties"] = False
    definition["title"] = cls.__name__
    if cls.__doc__:
        definition["description"] = inspect.cleandoc(cls.__doc__)


def _dataclasses_of(module: Any) -> dict[str, type]:
    return {
        name: value
        for name in module.__all__
        if isinstance(value := getattr(module, name), type) and dataclasses.is_dataclass(value)
    }


def _field_docs(cls: type) -> dict[str, str]:
    """`field name -> docstring` from the string literal written under each field."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(inspect.cleandoc(following.value.value).split())
    return docs
