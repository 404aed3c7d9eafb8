"""Strict validation of JSON-protocol values against botocore shapes.

botocore validates parameters client-side only loosely: it checks required members, Python
types and ``min`` (see research/ecr.md §2.2: a Stubber accepted 30 replication rules and
``filterType="BOGUS"``, but rejected a 1-character ``ecrRepositoryPrefix``). The real service
also enforces ``max``, ``pattern`` and ``enum``. This module checks all of them, so that an
emulator can reject what AWS would reject and can check its own responses.

What is checked, per shape type (values as they appear on the wire in the JSON protocol):

- structure: a JSON object; required members present and not null; no unknown members;
  ``union`` structures have exactly one member set; ``document`` structures accept any JSON.
- string: a JSON string; ``min``/``max`` length; ``enum``; ``pattern``.
- integer/long: a JSON integer (not a boolean); ``min``/``max`` value.
- float/double: a JSON number.
- boolean: a JSON boolean.
- timestamp: a JSON number, epoch seconds (the JSON protocol's default timestamp format).
- blob: a base64 string; ``min``/``max`` on the decoded length.
- list: a JSON array; ``min``/``max`` length; every element.
- map: a JSON object; ``min``/``max`` size; every key and value.

Patterns. botocore patterns come from Smithy models whose services are mostly Java, so they are
Java-flavoured regexes. They are applied here with :func:`re.fullmatch` (Java's
``Matcher.matches()`` semantics) and :data:`re.ASCII` (Java's ``\\w``, ``\\d`` and ``\\s`` are
ASCII by default). A pattern Python cannot compile (``\\p{L}``, ``\\z``, ``[\\w-_]``…), or that
makes Python warn (a possible nested set), is **not** treated as a pass: it is reported as a skip
through the ``skipped`` argument and :func:`uncompilable_patterns`. All 17 patterns in botocore's
ECR model compile; see the module's test for the list in other models.

Not checked: ``sensitive``, ``idempotencyToken`` (botocore fills it), ``hostLabel`` and other
serialization locations (JSON-protocol services put every member in the body), event streams.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import warnings
from collections.abc import Iterable
from typing import Any

from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

__all__ = [
    "compile_pattern",
    "format_errors",
    "uncompilable_patterns",
    "validate",
    "validate_request",
    "validate_response",
]

_compile_lock = threading.Lock()
_compiled: dict[str, re.Pattern[str] | str] = {}


def compile_pattern(pattern: str) -> re.Pattern[str] | str:
    """The compiled pattern, or a string saying why Python cannot use it (a skip)."""
    with _compile_lock:
        cached = _compiled.get(pattern)
        if cached is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    cached = re.compile(pattern, re.ASCII)
            except re.error as exc:
                cached = f"does not compile in Python: {exc}"
            except (FutureWarning, DeprecationWarning) as exc:
                cached = f"Python warns, semantics may differ from Java: {exc}"
            _compiled[pattern] = cached
        return cached


def uncompilable_patterns(service_model: ServiceModel) -> dict[str, str]:
    """Every pattern of a service model that :func:`validate` has to skip, with the reason."""
    out: dict[str, str] = {}
    for name in service_model.shape_names:
        pattern = service_model.shape_for(name).metadata.get("pattern")
        if pattern is None:
            continue
        compiled = compile_pattern(pattern)
        if isinstance(compiled, str):
            out[pattern] = compiled
    return out


def _show(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _constraint(value: Any, path: str, what: str) -> str:
    return f"Value '{_show(value)}' at '{path}' failed to satisfy constraint: Member must {what}"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_size(value: Any, size: int, shape: Shape, path: str, unit: str) -> list[str]:
    errors: list[str] = []
    lo = shape.metadata.get("min")
    hi = shape.metadata.get("max")
    if lo is not None and size < lo:
        errors.append(_constraint(value, path, f"have {unit} greater than or equal to {lo}"))
    if hi is not None and size > hi:
        errors.append(_constraint(value, path, f"have {unit} less than or equal to {hi}"))
    return errors


def _join(path: str, member: str) -> str:
    return f"{path}.{member}" if path else member


def validate(shape: Shape, value: Any, path: str = "", *, skipped: list[str] | None = None) -> list[str]:
    """Every way ``value`` violates ``shape``; ``[]`` when it conforms.

    ``path`` names the value in messages (``rules[3].destinations[0].region``). Patterns Python
    cannot apply are appended to ``skipped`` (when given) instead of being counted as passes.
    """
    type_name = shape.type_name
    if value is None:
        return [_constraint(value, path or "<root>", "not be null")]

    if type_name == "structure":
        assert isinstance(shape, StructureShape)
        if shape.metadata.get("document"):
            return []
        if not isinstance(value, dict):
            return [_constraint(value, path, f"be an object, not {_type_name(value)}")]
        errors: list[str] = []
        for name in shape.required_members:
            if value.get(name) is None:
                errors.append(_constraint(None, _join(path, name), "not be null"))
        members = shape.members
        for name in value:
            if name not in members:
                errors.append(f"Member '{_join(path, name)}' is not defined in shape {shape.name}")
        set_members = [name for name in value if name in members and value[name] is not None]
        if shape.metadata.get("union") and len(set_members) != 1:
            errors.append(_constraint(set_members, path or "<root>", "set exactly one member of a union"))
        for name in set_members:
            errors.extend(validate(members[name], value[name], _join(path, name), skipped=skipped))
        return errors

    if type_name == "list":
        assert isinstance(shape, ListShape)
        if not isinstance(value, list):
            return [_constraint(value, path, f"be an array, not {_type_name(value)}")]
        errors = _check_size(value, len(value), shape, path, "length")
        for index, item in enumerate(value):
            errors.extend(validate(shape.member, item, f"{path}[{index}]", skipped=skipped))
        return errors

    if type_name == "map":
        assert isinstance(shape, MapShape)
        if not isinstance(value, dict):
            return [_constraint(value, path, f"be an object, not {_type_name(value)}")]
        errors = _check_size(value, len(value), shape, path, "size")
        for key, item in value.items():
            errors.extend(validate(shape.key, key, f"{path}.<key {key!r}>", skipped=skipped))
            errors.extend(validate(shape.value, item, f"{path}[{key!r}]", skipped=skipped))
        return errors

    if type_name == "string":
        if not isinstance(value, str):
            return [_constraint(value, path, f"be a string, not {_type_name(value)}")]
        errors = _check_size(value, len(value), shape, path, "length")
        enum: list[str] = shape.metadata.get("enum") or []
        if enum and value not in enum:
            errors.append(_constraint(value, path, f"satisfy enum value set: [{', '.join(enum)}]"))
        pattern = shape.metadata.get("pattern")
        if pattern is not None:
            compiled = compile_pattern(pattern)
            if isinstance(compiled, str):
                if skipped is not None:
                    skipped.append(f"{path}: pattern {pattern!r} not checked ({compiled})")
            elif compiled.fullmatch(value) is None:
                errors.append(_constraint(value, path, f"satisfy regular expression pattern: {pattern}"))
        return errors

    if type_name in ("integer", "long"):
        if not _is_int(value):
            return [_constraint(value, path, f"be an integer, not {_type_name(value)}")]
        return _check_size(value, value, shape, path, "value")

    if type_name in ("float", "double"):
        if not _is_number(value):
            return [_constraint(value, path, f"be a number, not {_type_name(value)}")]
        return _check_size(value, value, shape, path, "value")

    if type_name == "boolean":
        if not isinstance(value, bool):
            return [_constraint(value, path, f"be a boolean, not {_type_name(value)}")]
        return []

    if type_name == "timestamp":
        if not _is_number(value):
            return [_constraint(value, path, f"be epoch seconds (a number), not {_type_name(value)}")]
        return []

    if type_name == "blob":
        if not isinstance(value, str):
            return [_constraint(value, path, f"be a base64 string, not {_type_name(value)}")]
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return [_constraint(value, path, "be valid base64")]
        return _check_size(value, len(decoded), shape, path, "length")

    raise NotImplementedError(f"shape type {type_name!r} at {path!r} ({shape.name})")


def _validate_top(shape: StructureShape | None, body: Any, skipped: list[str] | None) -> list[str]:
    if shape is None:
        if body in ({}, None):
            return []
        return [f"Operation takes no members, got {_show(body)}"]
    return validate(shape, body, "", skipped=skipped)


def _operation(service_model: ServiceModel, operation_name: str) -> OperationModel:
    return service_model.operation_model(operation_name)


def validate_request(
    service_model: ServiceModel,
    operation_name: str,
    body: Any,
    *,
    skipped: list[str] | None = None,
) -> list[str]:
    """Violations of the operation's input shape by a decoded JSON request body."""
    return _validate_top(_operation(service_model, operation_name).input_shape, body, skipped)


def validate_response(
    service_model: ServiceModel,
    operation_name: str,
    body: Any,
    *,
    skipped: list[str] | None = None,
) -> list[str]:
    """Violations of the operation's output shape by a decoded JSON response body."""
    return _validate_top(_operation(service_model, operation_name).output_shape, body, skipped)


def format_errors(errors: Iterable[str]) -> str:
    """AWS's wording: ``2 validation errors detected: A; B``."""
    items = list(errors)
    noun = "error" if len(items) == 1 else "errors"
    return f"{len(items)} validation {noun} detected: " + "; ".join(items)
