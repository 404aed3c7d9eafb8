"""Strict validation of Azure Resource Manager requests and responses against a Swagger 2.0 spec.

`ArmSpec(path)` loads an official ARM spec (here `shared/azure/containerregistry-2023-07-01.json`)
and the files its `$ref`s name (`common-types/resource-management/v5/types.json`, saved beside it
as `common-types-v5-types.json`). It finds the operation a request is for by method and path
template, and says every way a request or a response breaks the operation's contract.

What is checked:

- path parameters: every template segment, with `type`, `pattern`, `minLength`/`maxLength`,
  `format: uuid`; the literal segments match case-insensitively, as ARM does.
- query: every `in: query` parameter (so a missing or unsupported `api-version` fails: the
  emulator speaks exactly one version), and no parameter the operation does not declare —
  except `$skipToken` on pageable operations, which is the emulator's own `nextLink`.
- body: required when the body parameter is; forbidden when the operation has none.
- schemas (`$ref` across files, `allOf`, `properties`, `required`, `additionalProperties`,
  `type`, `enum`, `pattern`, `minLength`/`maxLength`, `format: uuid|date-time`, `items`):
  a property the schema does not define is an error (Swagger's open objects are read
  strictly: a client that sends what the spec does not define is not speaking the spec);
  a `readOnly` property in a request is an error; an `enum` value in a response may differ in
  case (as real ACR's does, see the recordings); `null` is an error except for an optional
  property of a PATCH body (ARM PATCH is a JSON merge patch, where null removes a value —
  how `az` clears a cache rule's credential set).
- responses: the status must be one the operation lists (or its `default`); a listed schema
  must validate (readOnly allowed); a status without a schema must have no body; headers the
  spec lists for the status must be present. Error statuses (>= 400) of operations without a
  `default` (`Registries_Get`, `Registries_ImportImage`) are checked against the common
  `ErrorResponse`, because every ARM operation may fail with it (ARM RPC).

Not checked: `x-ms-mutability`, `x-ms-secret`, discriminators (none in this spec), numeric
bounds (none on the operations used), header parameters.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

__all__ = ["ArmSpec", "Operation", "Violation"]

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# What the spec's cross-file refs point at, and the file each was saved as.
_SAVED_AS = {"types.json": "common-types-v5-types.json"}
_METHODS = ("get", "put", "post", "patch", "delete", "head")

Json = Any


class Violation(ValueError):
    """A request that breaks the contract; `errors` lists every reason."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class _Node:
    """A schema together with the file its local `#/...` refs are relative to."""

    schema: Mapping[str, Any]
    file: str


@dataclass
class Operation:
    operation_id: str
    method: str
    template: str
    regex: re.Pattern[str]
    path_params: dict[str, Mapping[str, Any]]
    query_params: dict[str, Mapping[str, Any]]
    body: Mapping[str, Any] | None  # the `in: body` parameter
    responses: dict[str, Mapping[str, Any]]
    file: str
    pageable: bool
    long_running: bool
    final_state_via: str | None
    extra: dict[str, Any] = field(default_factory=dict)


class ArmSpec:
    """One ARM spec file and the files it references; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._docs: dict[str, Json] = {}
        self.main = self._doc(self.path.name)
        self.operations: list[Operation] = []
        for template, item in self.main["paths"].items():
            shared = item.get("parameters", [])
            for method in _METHODS:
                if method in item:
                    self.operations.append(self._operation(template, method, item[method], shared))

    # ---------------------------------------------------------------- loading

    def _doc(self, name: str) -> Json:
        if name not in self._docs:
            with (self.path.parent / name).open(encoding="utf-8") as handle:
                self._docs[name] = json.load(handle)
        return self._docs[name]

    def resolve(self, node: _Node) -> _Node:
        """Follow `$ref`s until a schema that is not one."""
        seen = 0
        while "$ref" in node.schema:
            ref = str(node.schema["$ref"])
            target, _, pointer = ref.partition("#")
            file = (
                _SAVED_AS.get(target.rsplit("/", 1)[-1], target.rsplit("/", 1)[-1]) if target else node.file
            )
            value = self._doc(file)
            for part in pointer.strip("/").split("/"):
                value = value[part.replace("~1", "/").replace("~0", "~")]
            node = _Node(value, file)
            seen += 1
            assert seen < 50, f"$ref loop at {ref}"
        return node

    def _operation(self, template: str, method: str, op: Json, shared: list[Json]) -> Operation:
        path_params: dict[str, Mapping[str, Any]] = {}
        query_params: dict[str, Mapping[str, Any]] = {}
        body = None
        for raw in [*shared, *op.get("parameters", [])]:
            param = self.resolve(_Node(raw, self.path.name))
            where = param.schema["in"]
            if where == "path":
                path_params[param.schema["name"]] = param.schema
            elif where == "query":
                query_params[param.schema["name"]] = param.schema
            elif where == "body":
                body = param.schema
        pattern = "".join(
            f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{[^}]+\})", template)
        )
        options = op.get("x-ms-long-running-operation-options") or {}
        return Operation(
            operation_id=op["operationId"],
            method=method.upper(),
            template=template,
            regex=re.compile(f"^{pattern}$", re.IGNORECASE),
            path_params=path_params,
            query_params=query_params,
            body=body,
            responses=op["responses"],
            file=self.path.name,
            pageable="x-ms-pageable" in op,
            long_running=bool(op.get("x-ms-long-running-operation")),
            final_state_via=options.get("final-state-via"),
        )

    # ---------------------------------------------------------------- requests

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation a request is for, with its (URL-decoded) path parameters."""
        for op in self.operations:
            if op.method != method.upper():
                continue
            found = op.regex.match(path)
            if found:
                return op, {k: unquote(v) for k, v in found.groupdict().items()}
        return None

    def request_errors(
        self, op: Operation, path_params: Mapping[str, str], query: Mapping[str, list[str]], body: Json
    ) -> list[str]:
        """Every way a request breaks `op`; `body` is the decoded JSON, or None when empty."""
        errors: list[str] = []
        for name, param in op.path_params.items():
            errors += self._scalar(param, path_params.get(name), f"path parameter {name}")
        for name, param in op.query_params.items():
            values = query.get(name)
            if not values:
                if param.get("required"):
                    errors.append(f"query parameter {name} is required")
                continue
            if len(values) > 1:
                errors.append(f"query parameter {name} is given {len(values)} times")
            errors += self._scalar(param, values[0], f"query parameter {name}")
        allowed = set(op.query_params) | ({"$skipToken"} if op.pageable else set())
        errors += [
            f"query parameter {name} is not defined for {op.operation_id}"
            for name in query
            if name not in allowed
        ]
        if op.body is None:
            if body is not None:
                errors.append(f"{op.operation_id} takes no body")
        elif body is None:
            if op.body.get("required"):
                errors.append(f"{op.operation_id} needs a body ({op.body['name']})")
        else:
            node = _Node(op.body["schema"], op.file)
            errors += self.schema_errors(node, body, "body", request=True, patch=op.method == "PATCH")
        return errors

    def _scalar(self, param: Mapping[str, Any], value: str | None, what: str) -> list[str]:
        if value is None:
            return [f"{what} is required"] if param.get("required") else []
        return self._string(param, value, what)

    # ---------------------------------------------------------------- responses

    def response_errors(
        self, op: Operation, status: int, body: Json, headers: Mapping[str, str]
    ) -> list[str]:
        """Every way a response breaks `op` (see the module docstring for error statuses)."""
        spec = op.responses.get(str(status)) or op.responses.get("default")
        if spec is None:
            if status >= 400:
                node = _Node({"$ref": "types.json#/definitions/ErrorResponse"}, op.file)
                return self.schema_errors(node, body, "error body", request=False, patch=False)
            return [f"{op.operation_id} does not answer {status} (spec: {sorted(op.responses)})"]
        errors = [
            f"{op.operation_id} {status} lacks the {name} header"
            for name in spec.get("headers", {})
            if not any(h.lower() == name.lower() for h in headers)
        ]
        if "schema" in spec:
            if body is None:
                return [*errors, f"{op.operation_id} {status} needs a body"]
            node = _Node(spec["schema"], op.file)
            return errors + self.schema_errors(node, body, "body", request=False, patch=False)
        if body is not None:
            errors.append(f"{op.operation_id} {status} has no body in the spec, but one was sent")
        return errors

    def error_body_errors(self, body: Json) -> list[str]:
        node = _Node({"$ref": "types.json#/definitions/ErrorResponse"}, self.path.name)
        return self.schema_errors(node, body, "error body", request=False, patch=False)

    # ---------------------------------------------------------------- schemas

    def _properties(self, node: _Node) -> tuple[dict[str, _Node], set[str], _Node | None, bool]:
        """Properties (own and through allOf), required names, additionalProperties, readOnly."""
        node = self.resolve(node)
        props: dict[str, _Node] = {}
        required: set[str] = set(node.schema.get("required", []))
        extra: _Node | None = None
        for part in node.schema.get("allOf", []):
            more, more_required, more_extra, _ = self._properties(_Node(part, node.file))
            props.update(more)
            required |= more_required
            extra = extra or more_extra
        for name, schema in node.schema.get("properties", {}).items():
            props[name] = _Node(schema, node.file)
        additional = node.schema.get("additionalProperties")
        if isinstance(additional, dict):
            extra = _Node(additional, node.file)
        return props, required, extra, bool(node.schema.get("readOnly"))

    def schema_errors(self, node: _Node, value: Json, where: str, *, request: bool, patch: bool) -> list[str]:
        """Every way `value` breaks the schema at `node`."""
        node = self.resolve(node)
        schema = node.schema
        kind = schema.get("type") or ("object" if "properties" in schema or "allOf" in schema else None)
        if value is None:
            return [f"{where} is null"]
        if kind == "object":
            if not isinstance(value, dict):
                return [f"{where} must be an object, not {_kind(value)}"]
            props, required, extra, _ = self._properties(node)
            errors = [f"{where}.{name} is required" for name in sorted(required) if name not in value]
            for name, item in value.items():
                here = f"{where}.{name}"
                if name in props:
                    sub = self.resolve(props[name])
                    if request and (sub.schema.get("readOnly") or props[name].schema.get("readOnly")):
                        errors.append(f"{here} is read-only and must not be sent")
                        continue
                    if item is None and patch and name not in required:
                        continue  # JSON merge patch: null removes the value
                    errors += self.schema_errors(props[name], item, here, request=request, patch=patch)
                elif extra is not None:
                    if item is None and patch:
                        continue
                    errors += self.schema_errors(extra, item, here, request=request, patch=patch)
                else:
                    errors.append(f"{here} is not defined by the spec")
            return errors
        if kind == "array":
            if not isinstance(value, list):
                return [f"{where} must be an array, not {_kind(value)}"]
            errors = []
            for index, item in enumerate(value):
                errors += self.schema_errors(
                    _Node(schema["items"], node.file), item, f"{where}[{index}]", request=request, patch=patch
                )
            return errors
        if kind == "string":
            if not isinstance(value, str):
                return [f"{where} must be a string, not {_kind(value)}"]
            return self._string(schema, value, where, request=request)
        if kind == "boolean":
            return [] if isinstance(value, bool) else [f"{where} must be a boolean, not {_kind(value)}"]
        if kind == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
            return [] if ok else [f"{where} must be an integer, not {_kind(value)}"]
        if kind == "number":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return [] if ok else [f"{where} must be a number, not {_kind(value)}"]
        if kind is None:
            return []  # an untyped schema (`info: {type: object}` has one; none are untyped here)
        raise NotImplementedError(f"schema type {kind!r} at {where}")

    def _string(
        self, schema: Mapping[str, Any], value: str, where: str, *, request: bool = True
    ) -> list[str]:
        errors = []
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{where} '{_show(value)}' is shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where} '{_show(value)}' is longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where} '{_show(value)}' does not match {schema['pattern']}")
        if "enum" in schema and value not in schema["enum"]:
            # A response may differ in case: real ACR read an identity back as `systemAssigned`
            # for the enum's `SystemAssigned` (tests/contracts/azure/recordings/test_acr_cache.yaml
            # #2, #4); ARM compares enum values case-insensitively. Requests stay exact.
            folded = not request and value.lower() in {str(e).lower() for e in schema["enum"]}
            if not folded:
                errors.append(f"{where} '{_show(value)}' is not one of {schema['enum']}")
        form = schema.get("format")
        if form == "uuid" and not _UUID.match(value):
            errors.append(f"{where} '{_show(value)}' is not a UUID")
        if form == "date-time":
            try:
                dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                errors.append(f"{where} '{_show(value)}' is not an RFC 3339 date-time")
        return errors


def _kind(value: Json) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _show(value: str) -> str:
    return value if len(value) <= 80 else value[:77] + "..."
