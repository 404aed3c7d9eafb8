"""Where a validation error is and what it says: pydantic's error path mapped back to the keys
the document really has, its `file:line:col`, a breadcrumb that names list items by their
own key (`targets[1] (name='prod-eu') › registry: ...`), the keys a block accepts, and what
a pattern means. Nothing from under `credentials:` is ever echoed.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ValidationError,
)

from ..errors import SpecError
from .compose import Map, Seq
from .model import (
    _PATTERN_MEANING,
    Spec,
    _ByRefKind,
    _ByType,
    _clip_quoted,
    _kebab,
    _ref_kind,
    _short,
    _WithForms,
    credential_forms,
    credential_model,
    secret_reference_models,
    target_models,
    target_types,
)

__all__ = [
    "crumbs",
    "position",
    "spec_error",
]

# --- error reporting -------------------------------------------------------------------


def spec_error(exc: ValidationError, tree: Map, filename: str) -> SpecError:
    # One error is reported: the first, which pydantic gives in document order. A user fixes
    # it and re-runs; a wall of derived errors from one typo helps nobody.
    error = exc.errors(include_url=False)[0]
    loc = _document_path(tuple(error["loc"]), tree)
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        parent, key = loc[:-1], loc[-1]
        return SpecError(
            f"{crumbs(tree, parent)}missing required key '{key}'",
            location=position(tree, parent, filename, key=False),
        )
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], tree)
        hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
        return SpecError(
            f"{crumbs(tree, loc[:-1])}unknown key '{loc[-1]}'{hint}",
            location=position(tree, loc, filename, key=True),
        )
    if kind == "union_tag_invalid":
        return SpecError(
            f"{crumbs(tree, loc)}type '{ctx.get('tag')}' is not one of: {', '.join(target_types())}",
            location=position(tree, (*loc, "type"), filename, key=False),
        )
    if kind == "union_tag_not_found":
        return SpecError(
            f"{crumbs(tree, loc)}missing required key 'type' (one of: {', '.join(target_types())})",
            location=position(tree, loc, filename, key=False),
        )
    message = str(error["msg"]).removeprefix("Value error, ").replace("Input should be ", "expected ")
    if kind == "literal_error":
        message = f"expected {ctx.get('expected')}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = "expected a mapping"
    elif kind == "too_short":
        message = f"expected at least {ctx.get('min_length')} item(s)"
    elif kind == "string_too_short":
        message = f"expected at least {ctx.get('min_length')} character(s)"
    elif kind == "string_too_long":
        message = f"expected at most {ctx.get('max_length')} character(s)"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        meaning = _pattern_meanings().get(pattern)
        expected = f"{meaning} (pattern {pattern})" if meaning else f"a value matching the pattern {pattern}"
        shown = f"'{error['input']}'" if _safe_to_echo(loc, error.get("input")) else "the value"
        message = f"{shown} is not {expected}"
    elif kind not in ("value_error", "secret_ref", "too_short") and _safe_to_echo(loc, error.get("input")):
        message += f", found {_short(repr(error['input']))}"
    elif error.get("input") is None and kind != "value_error":
        message += ", found nothing"
    return SpecError(f"{crumbs(tree, loc)}{_clip_quoted(message)}", location=position(tree, loc, filename))


def _pattern_meanings() -> dict[str, str]:
    """Every pattern's meaning: the spec's own, then the installed providers' (their models'
    PATTERN_MEANINGS and their credential forms')."""
    meanings = dict(_PATTERN_MEANING)
    for model in (*target_models().values(), *secret_reference_models().values()):
        for pattern, meaning in model.PATTERN_MEANINGS.items():
            meanings.setdefault(pattern, meaning)
    for form in credential_forms().values():
        if form.meaning is not None:
            meanings.setdefault(form.pattern, form.meaning)
    return meanings


def _safe_to_echo(loc: tuple[Any, ...], value: Any) -> bool:
    """Never repeat a value from under `credentials:`: it may be a pasted secret."""
    return bool(loc) and loc[0] != "credentials" and isinstance(value, (str, int, float, bool))


def _document_path(loc: tuple[Any, ...], tree: Any) -> tuple[Any, ...]:
    """pydantic's error path reduced to the keys and indices the document really has.

    pydantic inserts union markers (`str`, `tagged-union[...]`) and discriminator tags
    (a target's `type`, `env`) that are not keys — and a tag can also be a real key (a `type: registry`
    target has a `registry:` key; `{env: VAR}` has an `env:` key). A tag is the first
    segment at a mapping that equals its `type` or reference kind and is not the last
    segment; a segment that is neither a key nor last is a marker. The last segment may be
    an absent key (a missing or forbidden one) and is kept.
    """
    path: list[Any] = []
    node = tree
    tag_possible = True
    for i, seg in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            path.append(seg)
            node, tag_possible = node[seg], True
        elif isinstance(node, dict) and tag_possible and not last and seg in _tags_of(node):
            tag_possible = False
        elif isinstance(node, dict) and seg in node:
            path.append(seg)
            node, tag_possible = node[seg], True
        elif last:
            path.append(seg)
    return tuple(path)


def _tags_of(node: dict[Any, Any]) -> tuple[Any, ...]:
    return (node.get("type"), _ref_kind(node))


def _walk(tree: Any, loc: Sequence[Any]) -> list[tuple[Any, Any]]:
    """(container, key) pairs along `loc`, skipping pydantic's union tags that are not keys."""
    steps: list[tuple[Any, Any]] = []
    node = tree
    for seg in loc:
        if (isinstance(node, dict) and seg in node) or (
            isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node)
        ):
            steps.append((node, seg))
            node = node[seg]
        # else: a discriminator tag (a target's type) or a field that is absent; stay put
    return steps


def position(tree: Any, loc: Sequence[Any], filename: str, *, key: bool = False) -> str:
    steps = _walk(tree, loc)
    if not steps:
        line, col = 0, 0
    else:
        container, seg = steps[-1]
        if isinstance(container, Seq):
            line, col = container.item_mark(seg)
        elif isinstance(container, Map):
            value = container[seg]
            # An empty value (`key:` or `key: []`) has no position of its own: YAML puts it
            # at the next token, often on a later line.
            if key or value is None or (isinstance(value, (dict, list)) and not value):
                line, col = container.key_mark(seg)
            elif isinstance(value, (Map, Seq)):
                line, col = value.line, value.col
            else:
                line, col = container.value_mark(seg)
        else:
            line, col = 0, 0
    return f"{filename}:{line + 1}:{col + 1}"


def crumbs(tree: Any, loc: Sequence[Any]) -> str:
    parts: list[str] = []
    for container, seg in _walk(tree, loc):
        if isinstance(seg, int):
            item = container[seg]
            label = f"{parts.pop() if parts else ''}[{seg}]"
            if isinstance(item, dict):
                for key in ("name", "registry"):
                    # a value with "@" may hold a user and password: never a label
                    if isinstance(item.get(key), str) and "@" not in item[key]:
                        label += f" ({key}='{_short(item[key])}')"
                        break
            parts.append(label)
        else:
            parts.append(str(seg))
    return " › ".join(parts) + ": " if parts else ""


def _allowed_keys(loc: Sequence[Any], tree: Any) -> list[str]:
    """The keys the model at `loc` accepts, found by following the field annotations.

    Each list item and mapping value is resolved on its own: `targets[1]` may be another
    type than `targets[0]`.
    """
    annotation: Any = Spec
    node: Any = tree
    for seg in loc:
        if isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            annotation, node = _item_annotation(annotation), node[seg]
            continue
        if not (isinstance(node, dict) and seg in node):
            return []
        model = _model_of(annotation, node)
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = next((f for n, f in model.model_fields.items() if _kebab(n) == seg), None)
            if field is None:
                return []
            annotation = field.annotation
        else:  # a mapping of named items (`credentials:`)
            annotation = _item_annotation(annotation)
        node = node[seg]
    model = _model_of(annotation, node)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted(_kebab(n) for n in model.model_fields)
    return []


def _item_annotation(annotation: Any) -> Any:
    """The item annotation of a list or dict annotation (through Annotated and Optional)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _item_annotation(get_args(annotation)[0])
    if origin in (list, dict):
        return get_args(annotation)[-1]
    if origin is Union or origin is types.UnionType:
        items = [_item_annotation(a) for a in get_args(annotation)]
        return next((item for item in items if item is not None), None)
    return None


def _model_of(annotation: Any, value: Any) -> Any:
    """The BaseModel class an annotation holds for the mapping `value` (through unions)."""
    origin = get_origin(annotation)
    metadata = get_args(annotation)[1:] if origin is Annotated else ()
    if any(isinstance(meta, _ByType) for meta in metadata):
        # A target block: the model of the provider installed for its `type`, if any.
        return target_models().get(str(value.get("type"))) if isinstance(value, dict) else None
    if any(isinstance(meta, _ByRefKind) for meta in metadata):
        return secret_reference_models().get(_ref_kind(value) or "")
    if any(isinstance(meta, _WithForms) for meta in metadata):
        return credential_model()
    if origin is Annotated:
        return _model_of(get_args(annotation)[0], value)
    if origin in (list, dict):
        return None
    if origin is Union or origin is types.UnionType:
        candidates = [_model_of(a, value) for a in get_args(annotation)]
        models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if isinstance(value, dict):
            for candidate in models:
                type_field = candidate.model_fields.get("type")
                if type_field is not None and value.get("type") in get_args(type_field.annotation):
                    return candidate
                if (
                    any(_kebab(n) in value for n in candidate.model_fields)
                    and "type" not in candidate.model_fields
                ):
                    return candidate
        return models[0] if len(models) == 1 else None
    return annotation
