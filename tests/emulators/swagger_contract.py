"""Strict validation of HTTP requests and responses against a Swagger 2.0 document.

Harbor's API contract is a hand-written Swagger 2.0 file (``shared/harbor/swagger.yaml``, v2.15.2)
from which go-swagger generates the server's parameter binding. openapi-core validates only
OpenAPI 3, so this module does for Swagger 2.0 what :mod:`botocore_contract` does for botocore
models: it finds the operation for a method and path, and lists every way a request or a response
breaks it.

What is checked:

- the operation exists (method + path template under ``basePath``);
- path, query and header parameters: required ones present; ``integer`` / ``boolean`` / ``number``
  values parse; ``format`` ranges (``int8``, ``int32``, ``int64``, ``uint64``); ``minimum`` /
  ``maximum``; ``minLength`` / ``maxLength``; ``enum``; ``pattern``; query parameters given once;
- the body: present when required, absent when the operation takes none, ``application/json``,
  valid against its schema (definitions followed through ``$ref``) with jsonschema (draft 4,
  the dialect Swagger 2.0 schemas are a subset of);
- responses: the status is declared for the operation (or ``default``); a declared schema
  validates the body, no schema means an empty body; the ``Content-Type`` is one the operation
  ``produces``; declared integer headers parse.

Deliberately **stricter than Harbor**, because what Harbor silently ignores is a bug in a client:

- unknown body properties and unknown query parameters are errors (go-swagger drops them: a
  typo such as ``replicate_deletions`` would silently do nothing);
- ``null`` is accepted only where the document says ``x-nullable`` / ``x-isnullable`` (Go
  decodes ``null`` into a zero value, which is never what a client meant).

Schemas are translated once per document: ``x-*`` extensions, ``readOnly``, ``example`` and
``discriminator`` are dropped; ``x-nullable`` / ``x-isnullable`` become ``anyOf [..., null]``.
Formats are checked by this module's own format checker (``date-time`` as RFC 3339, integer
widths), so the result does not depend on which optional format packages jsonschema finds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from ruamel.yaml import YAML

__all__ = ["Operation", "SwaggerContract", "load_contract"]

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_DROPPED_KEYS = {"readOnly", "example", "discriminator", "xml", "externalDocs"}
# go-swagger's strconv.ParseBool
_BOOLEANS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("date-time")
    def _date_time(value: object) -> bool:
        return not isinstance(value, str) or bool(_DATE_TIME.match(value))

    for name, (low, high) in _INT_RANGES.items():

        def _in_range(value: object, low: int = low, high: int = high) -> bool:
            if not isinstance(value, int) or isinstance(value, bool):
                return True
            return low <= value <= high

        checker.checks(name)(_in_range)
    return checker


_CHECKER = _format_checker()


def _translate(node: Any, *, strict: bool) -> Any:
    """A Swagger 2.0 schema as a JSON Schema draft 4 schema (see the module docstring)."""
    if isinstance(node, list):
        return [_translate(item, strict=strict) for item in node]
    if not isinstance(node, dict):
        return node
    nullable = bool(node.get("x-nullable") or node.get("x-isnullable"))
    if "$ref" in node:
        out: dict[str, Any] = {"$ref": node["$ref"]}
    else:
        out = {}
        for key, value in node.items():
            if key.startswith("x-") or key in _DROPPED_KEYS:
                continue
            if key == "properties":
                out[key] = {name: _translate(schema, strict=strict) for name, schema in value.items()}
            elif key in ("items", "additionalProperties", "allOf", "anyOf", "oneOf", "not"):
                out[key] = _translate(value, strict=strict)
            else:
                out[key] = value
        if strict and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
    if nullable:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@dataclass(frozen=True)
class Operation:
    """One operation of the document, with its parameters resolved."""

    method: str
    template: str  # the path template as written in the document, without basePath
    operation_id: str
    parameters: tuple[Mapping[str, Any], ...]
    responses: Mapping[str, Mapping[str, Any]]
    produces: tuple[str, ...]
    consumes: tuple[str, ...]
    pattern: re.Pattern[str]

    def path_params(self, path: str) -> dict[str, str] | None:
        match = self.pattern.fullmatch(path)
        return None if match is None else match.groupdict()


class SwaggerContract:
    """A Swagger 2.0 document, ready to validate requests and responses against."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        if document.get("swagger") != "2.0":
            raise ValueError("not a Swagger 2.0 document")
        self.document = document
        self.base_path = str(document.get("basePath", "")).rstrip("/")
        definitions = document.get("definitions", {})
        self._strict_root = {"definitions": {k: _translate(v, strict=True) for k, v in definitions.items()}}
        self._lenient_root = {"definitions": {k: _translate(v, strict=False) for k, v in definitions.items()}}
        self.operations: list[Operation] = []
        for template, item in document.get("paths", {}).items():
            shared = [self._param(p) for p in item.get("parameters", [])]
            for method, op in item.items():
                if method == "parameters":
                    continue
                params = {(p["in"], p["name"]): p for p in shared}
                params.update({(p["in"], p["name"]): p for p in map(self._param, op.get("parameters", []))})
                responses = {
                    str(code): self._response(resp) for code, resp in op.get("responses", {}).items()
                }
                self.operations.append(
                    Operation(
                        method=method.upper(),
                        template=template,
                        operation_id=op.get("operationId", f"{method} {template}"),
                        parameters=tuple(params.values()),
                        responses=responses,
                        produces=tuple(op.get("produces", document.get("produces", []))),
                        consumes=tuple(op.get("consumes", document.get("consumes", []))),
                        pattern=_template_pattern(template),
                    )
                )
        # Literal segments win over parameters (`/registries/ping` before `/registries/{id}`).
        self.operations.sort(key=lambda o: (o.template.count("{"), -len(o.template)))

    def _param(self, param: Mapping[str, Any]) -> Mapping[str, Any]:
        if "$ref" in param:
            return self.document["parameters"][param["$ref"].rsplit("/", 1)[-1]]  # type: ignore[no-any-return]
        return param

    def _response(self, response: Mapping[str, Any]) -> Mapping[str, Any]:
        if "$ref" in response:
            return self.document["responses"][response["$ref"].rsplit("/", 1)[-1]]  # type: ignore[no-any-return]
        return response

    # -- lookup ---------------------------------------------------------------------------

    def operation(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation serving `method path` (path with basePath, without query)."""
        if not path.startswith(self.base_path + "/"):
            return None
        relative = path[len(self.base_path) :]
        for op in self.operations:
            if op.method != method.upper():
                continue
            params = op.path_params(relative)
            if params is not None:
                return op, params
        return None

    def by_id(self, operation_id: str) -> Operation:
        return next(op for op in self.operations if op.operation_id == operation_id)

    # -- requests -------------------------------------------------------------------------

    def validate_request(
        self,
        op: Operation,
        *,
        path_params: Mapping[str, str],
        query: Mapping[str, Sequence[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> list[str]:
        """Every way the request breaks `op`; `[]` when it conforms. Messages follow
        go-openapi's wording (`page_size in query should be less than or equal to 100`)."""
        errors: list[str] = []
        lower_headers = {k.lower(): v for k, v in headers.items()}
        declared_query = {p["name"] for p in op.parameters if p["in"] == "query"}
        for name in query:
            if name not in declared_query:
                errors.append(f"{name} in query is not a parameter of {op.operation_id}")
        body_param = None
        for param in op.parameters:
            where, name = param["in"], param["name"]
            if where == "body":
                body_param = param
                continue
            values: Sequence[str]
            if where == "path":
                values = [path_params[name]] if name in path_params else []
            elif where == "query":
                values = list(query.get(name, []))
            elif where == "header":
                values = [lower_headers[name.lower()]] if name.lower() in lower_headers else []
            else:  # formData: Harbor's JSON operations do not use it
                continue
            if not values:
                if param.get("required"):
                    errors.append(f"{name} in {where} is required")
                continue
            if param.get("type") == "array":
                items = [v for value in values for v in value.split(",")]
                for item in items:
                    errors += _check_simple(param.get("items", {}), item, name, where)
                continue
            if len(values) > 1:
                errors.append(f"{name} in {where} is given {len(values)} times")
            errors += _check_simple(param, values[0], name, where)
        if body_param is None:
            if body.strip():
                errors.append(f"{op.operation_id} takes no request body")
            return errors
        if not body.strip():
            if body_param.get("required"):
                errors.append(f"{body_param['name']} in body is required")
            return errors
        content_type = lower_headers.get("content-type", "").split(";")[0].strip()
        if op.consumes and content_type not in op.consumes:
            errors.append(f"Content-Type {content_type or '(none)'} is not one of {', '.join(op.consumes)}")
        try:
            value = json.loads(body)
        except ValueError as exc:
            return [*errors, f"{body_param['name']} in body is not JSON: {exc}"]
        errors += self._schema_errors(body_param["schema"], value, body_param["name"], strict=True)
        return errors

    # -- responses ------------------------------------------------------------------------

    def validate_response(
        self,
        op: Operation,
        *,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        undeclared_ok: frozenset[int] = frozenset(),
    ) -> list[str]:
        """Every way the response breaks `op`. `undeclared_ok` lists statuses the server is known
        to send although the document does not declare them for this operation; their body must
        then be the document's `Errors` shape."""
        lower_headers = {k.lower(): v for k, v in headers.items()}
        response = op.responses.get(str(status)) or op.responses.get("default")
        if response is None:
            if status not in undeclared_ok:
                return [f"status {status} is not declared for {op.operation_id}"]
            response = {"schema": {"$ref": "#/definitions/Errors"}}
        errors: list[str] = []
        for name, header in response.get("headers", {}).items():
            value = lower_headers.get(name.lower())
            if value is not None and header.get("type") == "integer" and not re.fullmatch(r"-?\d+", value):
                errors.append(f"response header {name} is not an integer: {value!r}")
        schema = response.get("schema")
        if schema is None:
            if body:
                errors.append(f"status {status} of {op.operation_id} declares no body, got {len(body)} bytes")
            return errors
        content_type = lower_headers.get("content-type", "").split(";")[0].strip()
        if op.produces and content_type not in op.produces:
            errors.append(f"Content-Type {content_type or '(none)'} is not one of {', '.join(op.produces)}")
        if content_type == "application/json":
            try:
                value = json.loads(body)
            except ValueError as exc:
                return [*errors, f"response body is not JSON: {exc}"]
        else:
            value = body.decode("utf-8", errors="replace")
        errors += self._schema_errors(schema, value, "response", strict=True)
        return errors

    # -- schemas --------------------------------------------------------------------------

    def _schema_errors(self, schema: Mapping[str, Any], value: Any, name: str, *, strict: bool) -> list[str]:
        root = self._strict_root if strict else self._lenient_root
        full = {"definitions": root["definitions"], "allOf": [_translate(schema, strict=strict)]}
        validator = jsonschema.Draft4Validator(full, format_checker=_CHECKER)
        errors = []
        for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            errors.append(f"{name}{where}: {_message(error)}")
        return errors


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return f"{error.message} (the server would silently ignore it)"
    if error.validator == "anyOf" and error.context:
        # A nullable field: the interesting failure is the non-null branch's.
        return min(error.context, key=lambda e: len(e.message)).message
    return error.message


def _check_simple(param: Mapping[str, Any], raw: str, name: str, where: str) -> list[str]:
    kind = param.get("type", "string")
    value: Any = raw
    if kind == "integer":
        if not re.fullmatch(r"-?\d+", raw):
            return [f"{name} in {where} must be of type integer: {raw!r}"]
        value = int(raw)
        low, high = _INT_RANGES.get(param.get("format", ""), (None, None))
        if low is not None and high is not None and not low <= value <= high:
            return [f"{name} in {where} is out of range for {param['format']}: {raw}"]
    elif kind == "number":
        try:
            value = float(raw)
        except ValueError:
            return [f"{name} in {where} must be of type number: {raw!r}"]
    elif kind == "boolean":
        if raw not in _BOOLEANS:
            return [f"{name} in {where} must be of type boolean: {raw!r}"]
        return []
    errors = []
    if "maximum" in param and value > param["maximum"]:
        errors.append(f"{name} in {where} should be less than or equal to {param['maximum']}")
    if "minimum" in param and value < param["minimum"]:
        errors.append(f"{name} in {where} should be greater than or equal to {param['minimum']}")
    if kind == "string":
        if "minLength" in param and len(raw) < param["minLength"]:
            errors.append(f"{name} in {where} should be at least {param['minLength']} chars long")
        if "maxLength" in param and len(raw) > param["maxLength"]:
            errors.append(f"{name} in {where} should be at most {param['maxLength']} chars long")
        if "pattern" in param and not re.search(param["pattern"], raw):
            errors.append(f"{name} in {where} should match '{param['pattern']}'")
    if "enum" in param and value not in param["enum"]:
        errors.append(f"{name} in {where} should be one of {param['enum']}")
    return errors


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    regex = "".join(f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part) for part in parts)
    return re.compile(regex)


@cache
def load_contract(path: str | Path) -> SwaggerContract:
    """The contract in a Swagger 2.0 YAML file, parsed once per process."""
    with open(path, encoding="utf-8") as handle:
        document = YAML(typ="safe").load(handle)
    return SwaggerContract(document)
