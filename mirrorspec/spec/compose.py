"""Composing a spec's YAML from libyaml's event stream: plain dicts and lists that remember
the line and column of every key, value and item, built in time and memory linear in the
text, with the bounds that keep hostile input cheap (nesting depth, values with aliases
expanded, core tags only).

Why not ruamel.yaml's round-trip loader, which the spec used before: its scanner is pure
Python and gathers comments for every token, ~0.5 ms and ~10 KB per repository entry, so a
10,000-repository spec took 5-7 s and 50,000 minutes. libyaml (PyYAML's C parser) emits the
same events with the same marks in ~1 µs each; composing them here costs ~2 µs a value.
ruamel stays behind two doors: scalars that are not a plain string, null, boolean or decimal
integer (a float, a date, `0x1f`, an explicit `!!int '1'`) are constructed by ruamel's own
YAML 1.2 resolver and constructor, so every value means what it meant before; and a syntax
error in a spec of the old size (1 MiB) is read again by ruamel's parser, which reads the
YAML 1.2 that libyaml's 1.1 refuses (`[:0]`) and words its errors better (`load._load_yaml`).

Merge keys (`<<: *block`) are applied as ruamel applies them: keys written in the mapping win,
then the merged mappings' keys in order.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable
from itertools import accumulate
from typing import Any

import yaml

from ..errors import SpecError

__all__ = ["CORE_TAGS", "Composer", "Map", "Seq"]

# Explicit tags a spec may use (`!!str 1.10` keeps a version a string); any other tag
# (`!!python/object`, `!!binary`, `!custom`) has no meaning in a spec.
_YAML_TAG = "tag:yaml.org,2002:"
CORE_TAGS = frozenset(
    f"{_YAML_TAG}{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")
) | {"!"}
_STR_TAG = f"{_YAML_TAG}str"
_MERGE_TAG = f"{_YAML_TAG}merge"
# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), the schema
# ruamel's round-trip loader resolves with: the common cases, decided without a regex.
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
# The first characters of ruamel's 1.2 implicit resolvers (ruamel/yaml/resolver.py,
# `implicit_resolvers`; checked in tests/test_spec_compose.py): t/f/T/F and n/N/~ start only
# the words above; digits, signs, `.`, `<<`, `=` and `!&*` need the resolver's regexes.
_RESOLVED_BY_FIRST_CHARACTER = frozenset("tfTFnN~+-.0123456789<=!&*")
_NEEDS_RESOLVER = frozenset("+-.0123456789<=!&*")
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]{0,17})")  # fits in 64 bits; longer goes to ruamel


# libyaml's scanner costs O(open flow collections) a token (see `Composer.compose`).
_LIBYAML_FLOW_DEPTH = 1_000


def _flow_depth_at_most(text: str, limit: int) -> bool:
    """False if `[`/`{` may nest deeper than `limit` in `text`: counted as if no bracket
    were quoted or in a comment, so an over-estimate, exact for hostile nesting."""
    if text.count("[") + text.count("{") <= limit:
        return True
    brackets = text.encode("utf-8", "surrogatepass").translate(_BRACKET_STEPS, _NOT_BRACKETS)
    # `[` and `{` became 2, `]` and `}` 0: a step of +1 or -1 after subtracting 1.
    return max(accumulate(step - 1 for step in brackets)) <= limit


_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[{]}"))


class Map(dict[Any, Any]):
    """A mapping, with its own position and each key's and value's (0-based line, column)."""

    __slots__ = ("_marks", "col", "line")

    def __init__(self, line: int, col: int) -> None:
        super().__init__()
        self.line = line
        self.col = col
        self._marks = array("I")  # key line, key column, value line, value column; in key order

    def key_mark(self, key: Any) -> tuple[int, int]:
        i = 4 * list(self).index(key)  # only on the way to an error message: no index kept
        return self._marks[i], self._marks[i + 1]

    def value_mark(self, key: Any) -> tuple[int, int]:
        i = 4 * list(self).index(key)
        return self._marks[i + 2], self._marks[i + 3]


class Seq(list[Any]):
    """A list, with its own position and each item's (0-based line, column)."""

    __slots__ = ("_marks", "col", "line")

    def __init__(self, line: int, col: int) -> None:
        super().__init__()
        self.line = line
        self.col = col
        self._marks = array("I")  # line, column of each item

    def item_mark(self, index: int) -> tuple[int, int]:
        return self._marks[2 * index], self._marks[2 * index + 1]


class _Frame:
    """A mapping or list being composed."""

    __slots__ = ("anchor", "key", "key_mark", "merges", "node", "size")

    def __init__(self, node: Map | Seq, anchor: str | None) -> None:
        self.node = node
        self.anchor = anchor
        self.size = 1  # values under it so far, aliases expanded, itself included
        self.key: Any = _NO_KEY  # a mapping's key waiting for its value
        self.key_mark: tuple[int, int] = (0, 0)
        self.merges: list[tuple[Any, tuple[int, int]]] = []  # `<<` values, in order


_NO_KEY = object()


class Composer:
    """One document's events → `Map`/`Seq`/scalars, bounded; `SpecError` on anything else."""

    def __init__(self, filename: str, *, max_depth: int, max_values: int) -> None:
        self.filename = filename
        self.max_depth = max_depth
        self.max_values = max_values
        self.values = 0  # the document's, aliases expanded
        self.anchors: dict[str, Any] = {}
        self.sizes: dict[str, int] = {}  # anchor → expanded size of its node
        self.open: set[int] = set()  # id() of collections still being composed
        self.stack: list[_Frame] = []

    def fail(self, problem: str, mark: Any) -> SpecError:
        return SpecError(
            f"invalid YAML: {problem}", location=f"{self.filename}:{mark.line + 1}:{mark.column + 1}"
        )

    def compose(self, text: str) -> Any:
        if _flow_depth_at_most(text, _LIBYAML_FLOW_DEPTH):
            loader_class = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
            loader = loader_class(text)
            try:
                return self.compose_events(iter(loader.get_event, None))
            finally:
                loader.dispose()
        # libyaml checks every open flow collection's possible key at every token: 100,000
        # nested `[` take it hours (PyYAML's scanner and ruamel's drop a possible key once
        # stale). ruamel's parser is pure Python, but such text is refused at depth 32.
        from ruamel.yaml import YAML

        return self.compose_events(YAML(typ="rt").parse(text))

    def compose_events(self, events: Iterable[Any]) -> Any:
        """Compose from PyYAML's or ruamel's events (the same names and attributes)."""
        root: Any = None
        documents = 0
        for event in events:
            kind = type(event).__name__
            if kind == "ScalarEvent":
                self._count(1, event, "more than {limit} values: far more than a spec holds")
                value = self._scalar_value(event)
                if event.anchor is not None:
                    self.anchors[event.anchor] = value
                    self.sizes[event.anchor] = 1
                if not self.stack:  # the document is one scalar
                    root = value
                else:
                    self._add(value, event, 1)
            elif kind in ("MappingStartEvent", "SequenceStartEvent"):
                self._count(1, event, "more than {limit} values: far more than a spec holds")
                mark = event.start_mark
                node = (
                    Map(mark.line, mark.column)
                    if kind == "MappingStartEvent"
                    else Seq(mark.line, mark.column)
                )
                if event.anchor is not None:
                    self.anchors[event.anchor] = node
                self.open.add(id(node))
                self.stack.append(_Frame(node, event.anchor))
            elif kind in ("MappingEndEvent", "SequenceEndEvent"):
                frame = self.stack.pop()
                self.open.discard(id(frame.node))
                if frame.merges:
                    self._merge(frame)
                if frame.anchor is not None:
                    self.sizes[frame.anchor] = frame.size
                if not self.stack:
                    root = frame.node
                else:
                    self._add(frame.node, frame.node, frame.size)
            elif kind == "AliasEvent":
                self._alias(event)  # never the root: its anchor would have to be in this document
            elif kind == "DocumentStartEvent":
                documents += 1
                if documents > 1:
                    raise self.fail(
                        "found a second document ('---'): a spec is one YAML document", event.start_mark
                    )
            elif kind == "StreamEndEvent":
                break
            # StreamStart, DocumentEnd: nothing to do
        return root

    def _count(self, values: int, event: Any, problem: str) -> None:
        self.values += values
        if self.values > self.max_values:
            raise self.fail(problem.format(limit=f"{self.max_values:,}"), event.start_mark)
        if values == 1 and len(self.stack) >= self.max_depth:
            raise self.fail(f"nesting deeper than {self.max_depth} levels", event.start_mark)
        tag = getattr(event, "tag", None)
        if tag is not None and str(tag) not in CORE_TAGS:
            shown = str(tag).replace(_YAML_TAG, "!!")
            raise self.fail(
                f"YAML tag '{shown}' is not supported (a spec holds only mappings, lists, "
                "strings, numbers and booleans)",
                event.start_mark,
            )

    def _alias(self, event: Any) -> None:
        if event.anchor not in self.anchors:
            raise self.fail(f"found undefined alias '{event.anchor}'", event.start_mark)
        node = self.anchors[event.anchor]
        if id(node) in self.open:
            raise self.fail(
                f"alias *{event.anchor} refers to a node that contains it (a recursive structure)",
                event.start_mark,
            )
        # The anchored node's expanded size was counted once, when it was composed: an alias
        # costs that size without being walked, so aliases of aliases ("billion laughs") are
        # refused in time linear in the text, before anything walks the expanded tree.
        size = self.sizes.get(event.anchor, 1)
        self._count(size, event, "aliases expand the document to more than {limit} values (an alias bomb?)")
        self._add(node, event, size)

    def _add(self, value: Any, at: Any, size: int) -> None:
        """`value` (of `size` values, expanded) into the open collection; `at` has its mark."""
        if isinstance(at, (Map, Seq)):
            line, col = at.line, at.col
        else:
            line, col = at.start_mark.line, at.start_mark.column
        frame = self.stack[-1]
        frame.size += size
        node = frame.node
        if isinstance(node, Seq):
            node.append(value)
            node._marks.extend((line, col))
        elif frame.key is _NO_KEY:
            self._key(frame, value, at, line, col)
        else:
            key, frame.key = frame.key, _NO_KEY
            if key is _MERGE_KEY:
                frame.merges.append((value, (line, col)))
                return
            node[key] = value
            node._marks.extend((*frame.key_mark, line, col))

    def _key(self, frame: _Frame, key: Any, at: Any, line: int, col: int) -> None:
        mark = at.start_mark if not isinstance(at, (Map, Seq)) else _Mark(line, col)
        if isinstance(key, (Map, Seq)):
            what = "mapping" if isinstance(key, Map) else "list"
            raise self.fail(f"a mapping key must be a plain value, not a {what}", mark)
        if key is _MERGE_KEY:
            frame.key = key
            return
        if key in frame.node:
            raise self.fail(f'found duplicate key "{key}"', mark)
        frame.key, frame.key_mark = key, (line, col)

    def _merge(self, frame: _Frame) -> None:
        node = frame.node
        assert isinstance(node, Map)
        for value, (line, col) in frame.merges:
            sources = value if isinstance(value, Seq) else [value]
            for source in sources:
                if not isinstance(source, Map):
                    raise self.fail(
                        "expected a mapping or a list of mappings for merging (`<<:`)", _Mark(line, col)
                    )
                for key in source:
                    if key not in node:
                        node[key] = source[key]
                        node._marks.extend((*source.key_mark(key), *source.value_mark(key)))

    def _scalar_value(self, event: Any) -> Any:
        value: str = event.value
        tag = None if event.tag is None else str(event.tag)
        if tag is None and not event.style:  # plain (libyaml says "", PyYAML None): resolved by its text
            if value and value[0] not in _RESOLVED_BY_FIRST_CHARACTER:
                return value
            if value in _NULLS:
                return None
            if value in _BOOLS:
                return _BOOLS[value]
            if _DECIMAL.fullmatch(value):
                return int(value)
            if value[0] not in _NEEDS_RESOLVER:  # a word that only looks like true or null
                return value
            resolved = _implicit_tag(value)
            if resolved == _STR_TAG:
                return value
            if resolved == _MERGE_TAG:
                return _MERGE_KEY
            return self._construct(resolved, event)
        if tag is None or tag in ("!", _STR_TAG):  # quoted, or `! x`, or `!!str x`
            return value
        return self._construct(tag, event)

    def _construct(self, tag: str, event: Any) -> Any:
        """A scalar ruamel's round-trip constructor makes: the same value or the same error."""
        from ruamel.yaml.comments import TaggedScalar
        from ruamel.yaml.error import MarkedYAMLError, StreamMark
        from ruamel.yaml.nodes import ScalarNode

        from .load import yaml_error

        mark = StreamMark(self.filename, 0, event.start_mark.line, event.start_mark.column)
        node = ScalarNode(tag, event.value, start_mark=mark, end_mark=mark, style=event.style or None)
        constructor = _constructor()
        try:
            value = constructor.construct_object(node, deep=True)
        except MarkedYAMLError as exc:
            raise yaml_error(exc, self.filename) from None
        finally:
            constructor.constructed_objects.pop(node, None)
        # An explicit tag may come back as a TaggedScalar; only core tags get this far.
        return str(value.value) if isinstance(value, TaggedScalar) else value


class _MergeKey:
    """`<<` in key position."""


_MERGE_KEY = _MergeKey()


class _Mark:
    __slots__ = ("column", "line")

    def __init__(self, line: int, column: int) -> None:
        self.line = line
        self.column = column


_cache: dict[str, Any] = {}


def _implicit_tags() -> dict[Any, list[tuple[str, Any]]]:
    """ruamel's YAML 1.2 implicit resolvers (the round-trip loader's), by first character:
    `[(tag, regex), ...]`; a plain scalar no regex matches is a string."""
    if "table" not in _cache:
        from ruamel.yaml.resolver import VersionedResolver

        # The same table `VersionedResolver.resolve` reads, fetched once: its property
        # works the version out again on every call (~7 µs each).
        _cache["table"] = VersionedResolver().versioned_resolver
    table: dict[Any, list[tuple[str, Any]]] = _cache["table"]
    return table


def _implicit_tag(value: str) -> str:
    table = _implicit_tags()
    for tag, regexp in (*table.get(value[:1], ()), *table.get(None, ())):
        if regexp.match(value):
            return str(tag)
    return _STR_TAG


def _constructor() -> Any:
    """ruamel's round-trip constructor, for the scalars `Composer._construct` hands it, with
    values Python cannot hold (`0000-01-01`, an integer of 5,000 digits, `!!bool 1`) turned
    into a YAML error at the value's position instead of a bare ValueError or KeyError."""
    if "constructor" in _cache:
        return _cache["constructor"]
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
    from ruamel.yaml.nodes import Node

    from .model import _short

    class Constructor(RoundTripConstructor):
        def construct_object(self, node: Node, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep=deep)
            except (ValueError, OverflowError) as exc:
                why = str(exc).split(": ")[0]
            except (KeyError, TypeError):
                why = f"not a valid {str(node.tag).replace(_YAML_TAG, '!!')}"
            raise ConstructorError(
                None, None, f"cannot read value '{_short(str(node.value))}': {why}", node.start_mark
            )

    loader = YAML(typ="rt")
    loader.Constructor = Constructor
    _cache["constructor"] = loader.constructor
    return _cache["constructor"]
