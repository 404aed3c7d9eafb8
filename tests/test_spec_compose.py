"""The spec's YAML composer (`mirrorspec.spec.compose`: libyaml's events) against ruamel's
round-trip loader, which the spec used before it: the same values, of the same types, at the
same lines and columns, for every scalar form YAML 1.2 resolves, for the example specs, for
merge keys, and for generated documents.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.resolver import VersionedResolver

from mirrorspec.errors import SpecError
from mirrorspec.spec import compose
from mirrorspec.spec.compose import Map, Seq
from mirrorspec.spec.load import _load_yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def ours(text: str) -> Any:
    """The spec's YAML reading: the composer, its errors as `SpecError`s."""
    return _load_yaml(text, "<spec>")


def ruamel(text: str) -> Any:
    return YAML(typ="rt").load(text)


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, TaggedScalar):
        return str(value.value)
    return value


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same kind of type (ruamel's ScalarFloat is a float, HexInt an int)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    kinds = (bool, int, float, str, type(None), dict, list)
    kind_a = next((k for k in kinds if isinstance(a, k)), type(a))
    kind_b = next((k for k in kinds if isinstance(b, k)), type(b))
    if kind_a is not kind_b:
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def marks(node: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """Every (path → line, column) our tree records: keys, values and items."""
    found: dict[tuple[Any, ...], tuple[int, ...]] = {}
    if isinstance(node, Map):
        found[path] = (node.line, node.col)
        for key, value in node.items():
            found[(*path, key, "key")] = node.key_mark(key)
            # An empty value has no place of its own (libyaml gives the key's line, ruamel
            # the next token's); `locate` points at the key for it.
            if not isinstance(value, (Map, Seq)) and value is not None:
                found[(*path, key, "value")] = node.value_mark(key)
            found.update(marks(value, (*path, key)))
    elif isinstance(node, Seq):
        found[path] = (node.line, node.col)
        for i, value in enumerate(node):
            found[(*path, i, "item")] = node.item_mark(i)
            found.update(marks(value, (*path, i)))
    return found


def ruamel_marks(node: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], tuple[int, ...]]:
    found: dict[tuple[Any, ...], tuple[int, ...]] = {}
    if isinstance(node, CommentedMap):
        found[path] = (node.lc.line, node.lc.col)
        for key, value in node.items():
            found[(*path, key, "key")] = tuple(node.lc.key(key))
            if not isinstance(value, (CommentedMap, CommentedSeq)) and value is not None:
                found[(*path, key, "value")] = tuple(node.lc.value(key))
            found.update(ruamel_marks(value, (*path, key)))
    elif isinstance(node, CommentedSeq):
        found[path] = (node.lc.line, node.lc.col)
        for i, value in enumerate(node):
            found[(*path, i, "item")] = tuple(node.lc.item(i))
            found.update(ruamel_marks(value, (*path, i)))
    return found


def test_the_first_characters_that_need_resolving_are_ruamels() -> None:
    table = VersionedResolver().versioned_resolver
    assert {k for k in table if k} == compose._RESOLVED_BY_FIRST_CHARACTER
    words_only = {k for k in table if k and all(str(tag).endswith(("bool", "null")) for tag, _ in table[k])}
    assert compose._RESOLVED_BY_FIRST_CHARACTER - words_only == compose._NEEDS_RESOLVER


SCALARS = [
    *("1", "-1", "+1", "0", "-0", "007", "0x1f", "0o17", "0b101", "1_000", "123456789012345678901234"),
    *("1.5", "1.10", "-2.5e3", "1e3", ".5", ".inf", "-.Inf", ".nan", "1.", "12:30", "1:20:30"),
    *("true", "True", "TRUE", "false", "False", "FALSE", "yes", "No", "on", "OFF", "y", "n"),
    *("null", "Null", "NULL", "~", "", "nil", "none", "nullable", "trueish", "tls", "fast", "Never"),
    *("2024-01-01", "2024-01-01T10:00:00Z", "2001-12-14 21:59:43.10 -5", "7.2.4", "v1.2", "1.2.3-rc.1"),
    *("=", "-foo", ".hidden", "+x", "<x", "-", "a b", "docker.io/library/redis", ">=1.2 <2"),
]


@pytest.mark.parametrize("text", SCALARS)
@pytest.mark.parametrize("form", ["k: {}", "k: [{}]", "k: '{}'", 'k: "{}"', "k: !!str {}", "? {}\n: v"])
def test_a_scalar_means_what_ruamel_made_of_it(text: str, form: str) -> None:
    document = form.format(text) + "\n"
    try:
        expected: Any = plain(ruamel(document))
    except Exception as exc:  # ruamel refuses it: so must we, with a position
        with pytest.raises(SpecError, match=r"^<spec>:\d+:\d+: invalid YAML: "):
            ours(document)
        del exc
        return
    if any(isinstance(key, (tuple, list, dict)) for key in expected):  # `? -` made a list a key
        with pytest.raises(SpecError, match="a mapping key must be a plain value"):
            ours(document)
        return
    got = plain(ours(document))
    assert same(got, expected), (document, got, expected)


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_examples_have_ruamels_values_and_marks(example: Path) -> None:
    text = example.read_text(encoding="utf-8")
    tree, expected = ours(text), ruamel(text)
    assert same(plain(tree), plain(expected))
    assert marks(tree) == ruamel_marks(expected)


def test_merge_keys_and_anchors_as_ruamel_applies_them() -> None:
    text = """\
base: &base {name: lab, type: registry, registry: a.example.com}
more: &more {prefix: m, registry: b.example.com}
one:
  <<: *base
  registry: c.example.com
two:
  <<: [*more, *base]
  name: two
three: &scalar v1
four: [*scalar, *base]
"""
    assert same(plain(ours(text)), plain(ruamel(text)))


def test_our_errors_name_the_place() -> None:
    for text, message in [
        ("a: 1\na: 2\n", '<spec>:2:1: invalid YAML: found duplicate key "a"'),
        ("a: *nowhere\n", "<spec>:1:4: invalid YAML: found undefined alias 'nowhere'"),
        ("a: &x [1, *x]\n", "<spec>:1:11: invalid YAML: alias *x refers to a node that contains it"),
        ("a: !custom 1\n", "<spec>:1:4: invalid YAML: YAML tag '!custom' is not supported"),
        ("? [a]\n: 1\n", "<spec>:1:3: invalid YAML: a mapping key must be a plain value, not a list"),
        ("a: 1\n---\nb: 2\n", "<spec>:2:1: invalid YAML: found a second document ('---')"),
        ("a: {<<: 1}\n", "<spec>:1:9: invalid YAML: expected a mapping or a list of mappings for merging"),
    ]:
        with pytest.raises(SpecError) as caught:
            ours(text)
        assert str(caught.value).startswith(message), str(caught.value)


def test_deep_flow_nesting_is_refused_without_libyaml() -> None:
    """libyaml is quadratic in open flow collections; past 1,000 the events come from ruamel,
    and the depth limit ends them after a few dozen."""
    for text in ("a: " + "[" * 200_000, "a: " + "{a: " * 50_000):
        assert not compose._flow_depth_at_most(text, compose._LIBYAML_FLOW_DEPTH)
        with pytest.raises(SpecError, match="nesting deeper than 32 levels"):
            ours(text)


# --- generated documents -----------------------------------------------------------------

keys = st.text(alphabet="abcdefghij-_.", min_size=1, max_size=6)
scalars = st.one_of(
    st.sampled_from(SCALARS),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.booleans(),
    st.none(),
    st.text(alphabet="abcxyz019 .:-/", max_size=12),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, min_size=1, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None)
@given(document=st.dictionaries(keys, documents, min_size=1, max_size=4), flow=st.booleans())
def test_generated_documents_have_ruamels_values_and_marks(document: dict[str, Any], flow: bool) -> None:
    writer = YAML(typ="rt")
    writer.default_flow_style = flow
    buffer = io.StringIO()
    writer.dump(document, buffer)
    text = buffer.getvalue()
    try:
        expected = ruamel(text)
    except Exception:  # ruamel's dumper can write what its loader refuses (`{_: : 0}`)
        with pytest.raises(SpecError, match=r"^<spec>:\d+:\d+: invalid YAML: "):
            ours(text)
        return
    tree = ours(text)
    assert same(plain(tree), plain(expected)), text
    assert marks(tree) == ruamel_marks(expected), text
