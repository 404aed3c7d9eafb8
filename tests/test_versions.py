"""Tag selection: Masterminds constraint semantics, tag ordering and the three selectors."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings, strategies as st
from nodesemver import Range, make_semver

from mirrorspec.versions import (
    VersionConstraint,
    parse_tag_version,
    select_tags,
    sort_tags,
    validate_glob,
    validate_regex,
)

# (constraint, tag, expected) -- expectations are what Masterminds/semver v3 answers.
CASES = [
    # every comparison operator; no operator means =
    ("1.2.3", "1.2.3", True),
    ("=1.2.3", "1.2.4", False),
    ("!=1.2.3", "1.2.3", False),
    ("!=1.2.3", "1.2.4", True),
    (">1.2.3", "1.2.3", False),
    (">1.2.3", "1.2.4", True),
    ("<1.2.3", "1.2.2", True),
    ("<1.2.3", "1.2.3", False),
    (">=1.2.3", "1.2.3", True),
    (">=1.2.3", "1.2.2", False),
    ("<=1.2.3", "1.2.3", True),
    ("<=1.2.3", "1.2.4", False),
    ("=>1.2", "1.2.0", True),
    # whitespace after an operator, AND by space or comma
    (">= 1.2", "1.2.0", True),
    (">= 1.2", "1.1.9", False),
    (">=1.2.0 <2.0.0", "1.9.9", True),
    (">=1.2.0 <2.0.0", "2.0.0", False),
    (">= 1.2, < 3.0.0", "2.5.0", True),
    (">= 1.2, < 3.0.0", "3.0.0", False),
    (">=1.2,<3", "1.1.0", False),
    # || is OR
    ("<1.0.0 || >=2.0.0", "0.9.0", True),
    ("<1.0.0 || >=2.0.0", "1.5.0", False),
    ("1.2.3 || 2.x", "2.7.1", True),
    # hyphen ranges, also next to commas, != and ||
    ("1.2 - 1.4.5", "1.2.0", True),
    ("1.2 - 1.4.5", "1.4.5", True),
    ("1.2 - 1.4.5", "1.4.6", False),
    ("1.2 - 1.4.5", "1.1.9", False),
    ("1.2.3 - 1.4", "1.4.9", True),
    ("1.0 - 1.2, !=1.1.0", "1.1.0", False),
    ("1.0 - 1.2, !=1.1.0", "1.2.9", True),
    ("1.0 - 1.2 || 3.0.0", "3.0.0", True),
    # tilde
    ("~1.2.3", "1.2.9", True),
    ("~1.2.3", "1.3.0", False),
    ("~1", "1.9.0", True),
    ("~1", "2.0.0", False),
    ("~>1.2", "1.2.7", True),
    # caret, including the 0.x rules
    ("^1.2.3", "1.9.0", True),
    ("^1.2.3", "2.0.0", False),
    ("^1.2.3", "1.2.2", False),
    ("^0.2.3", "0.2.9", True),
    ("^0.2.3", "0.3.0", False),
    ("^0.0.3", "0.0.3", True),
    ("^0.0.3", "0.0.4", False),
    ("^0", "0.9.9", True),
    ("^0", "1.0.0", False),
    # wildcards
    ("1.2.x", "1.2.99", True),
    ("1.2.x", "1.3.0", False),
    ("1.2.X", "1.2.0", True),
    ("1.2.*", "1.2.5", True),
    ("<=2.x", "2.9.9", True),
    ("<=2.x", "3.0.0", False),
    ("*", "0.0.1", True),
    ("*", "99.0.0", True),
    ("x", "1.0.0", True),
    # != with a wildcard excludes the whole range
    ("!=1.2.x", "1.2.7", False),
    ("!=1.2.x", "1.3.0", True),
    (">=1.0.0 !=1.2.x", "1.1.0", True),
    (">=1.0.0, !=1.2.*", "1.2.0", False),
    # partial versions in constraints and tags
    ("1.2", "1.2.9", True),
    ("1.2", "1.3.0", False),
    (">1.2", "1.2.9", False),
    (">1.2", "1.3.0", True),
    ("<1.2", "1.1.99", True),
    ("=1", "1.4.0", True),
    (">=1.2", "1.2", True),
    ("1.2.0", "1.2", True),
    ("<2", "1", True),
    # v prefixes in constraint and tag
    (">=v1.2.0", "1.2.0", True),
    (">=1.2.0", "v1.2.0", True),
    ("^v1.0", "v1.9.3", True),
    ("v1.2 - v1.4", "v1.3.0", True),
    ("v1.2 - v1.4", "v1.5.0", False),
    # Helm's `_` for `+`; build metadata never matters
    ("1.2.3", "1.2.3_build.5", True),
    (">1.2.3", "1.2.3_build.5", False),
    ("^1.2.3", "v1.4.0_abc", True),
    ("1.2.3+build.1", "1.2.3", True),
    ("*", "1.2.3_a_b", False),
    # prereleases are skipped unless the constraint names one
    (">=1.2.0", "1.3.0-beta.1", False),
    ("*", "1.0.0-rc.1", False),
    ("^1.2.3", "1.2.4-alpha", False),
    (">=1.2.3-0", "1.3.0-beta.1", True),
    (">=1.2.3-0", "1.2.3-alpha", True),
    (">=1.2.3-beta", "1.2.3-alpha", False),
    (">=1.2.3-beta.2", "1.2.3-beta.10", True),
    (">=1.2.3-beta.2", "1.2.3-beta", False),
    ("1.2.3-rc.1", "1.2.3-rc.1", True),
    ("1.2.3-rc.1", "1.2.3", False),
    (">=1.2.3-0 !=1.2.3-rc.1", "1.2.3-rc.1", False),
    (">=1.2.3-0 !=1.2.3-rc.1", "1.2.3-rc.2", True),
    # ... and, as in Masterminds, ^ ~ x keep their upper bound's prereleases out
    ("^1.0.0-0", "1.5.0-rc.1", True),
    ("^1.0.0-0", "2.0.0-rc.1", False),
    ("~1.2.3-0", "1.3.0-alpha", False),
    (">=1.0.0-0 <2.0.0", "2.0.0-rc.1", True),
    ("1.0.0-0 - 1.4", "1.5.0-alpha", False),
    (">1.2, <1.4.0-0", "1.3.0-alpha", True),
    # the prerelease opt-in is per || alternative
    ("<1.0.0 || >=2.0.0-0", "0.9.0-beta", False),
    ("<1.0.0 || >=2.0.0-0", "2.1.0-beta", True),
    # tags that are not semver are never selected
    ("*", "latest", False),
    (">=0.0.0-0", "latest", False),
    (">=1", "sha256-0a1b2c.sig", False),
    ("*", "1.2.3.4", False),
    ("*", "V1.2.3", False),
    # `3.18-alpine` reads as the prerelease 3.18.0-alpine, as in Masterminds
    (">=3.18", "3.18-alpine", False),
    (">=3.18.0-0", "3.18-alpine", True),
]


@pytest.mark.parametrize(("constraint", "tag", "expected"), CASES)
def test_constraint_matches(constraint: str, tag: str, expected: bool) -> None:
    assert VersionConstraint.parse(constraint).matches(tag) is expected


def test_case_table_is_large_and_unique() -> None:
    assert len(CASES) >= 45
    assert len({(c, t) for c, t, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(
    "text",
    [
        ">=foo",  # not a version
        ">>1",  # doubled operator
        "",  # empty
        "   ",  # blank
        "1.2.3 -",  # hyphen range without an upper end
        "1.2.3 - ",  # ... which node-semver alone accepts as `1.2.3`
        "||",  # OR of nothing
        ">=1.0.0 ||",  # one side of OR empty
        ">=1.0.0,",  # dangling comma
        ">=1.0.0 <",  # operator without a version
        "((1.2.3",  # unbalanced garbage
        "1.2.3.4",  # four parts
        "1.2.3beta",  # prerelease without its hyphen
        "~1.2-beta",  # prerelease on a partial version
        "1 | 2",  # single pipe
        ">=1.0.0 & <2",  # not an operator
        "==1.2.3",  # not an operator either
    ],
)
def test_invalid_constraint_is_rejected_with_its_text(text: str) -> None:
    with pytest.raises(ValueError, match="invalid version constraint") as info:
        VersionConstraint.parse(text)
    assert f"'{text}'" in str(info.value)


def test_constraint_is_immutable_and_compares_by_text() -> None:
    constraint = VersionConstraint.parse(">= 1.2, < 2")
    assert constraint.text == ">= 1.2, < 2"
    assert constraint == VersionConstraint.parse(">= 1.2, < 2")
    assert constraint != VersionConstraint.parse(">=1.2 <2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        constraint.text = "*"  # type: ignore[misc]


def test_parse_tag_version() -> None:
    assert parse_tag_version("latest") is None
    assert parse_tag_version("1.2.3.4") is None
    assert parse_tag_version("v1.2.3_build.5") == parse_tag_version("1.2.3")
    assert parse_tag_version("1.2") == parse_tag_version("1.2.0") == parse_tag_version("v1.2")
    assert parse_tag_version("3.18-alpine") == parse_tag_version("3.18.0-alpine")
    ordered = ["1.0.0-1", "1.0.0-2", "1.0.0-10", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0", "1.0.1"]
    keys = [parse_tag_version(tag) for tag in ordered]
    assert all(key is not None for key in keys)
    assert sorted(keys) == keys  # type: ignore[type-var]
    assert len(set(keys)) == len(keys)


def test_sort_tags_orders_semver_by_precedence_then_the_rest() -> None:
    tags = [
        "latest",
        "1.10.0",
        "1.2.0",
        "v1.9.0",
        "1.2.0-rc.1",
        "1.2.0-rc.10",
        "1.2.0-rc.2",
        "1.2.0-alpha",
        "2.0.0",
        "edge",
        "1.2.0",
        "3.18-alpine",
        "1.2",
        "1.2.0_build.1",
    ]
    expected = [
        "1.2.0-alpha",
        "1.2.0-rc.1",
        "1.2.0-rc.2",
        "1.2.0-rc.10",
        "1.2",
        "1.2.0",
        "1.2.0_build.1",
        "v1.9.0",
        "1.10.0",
        "2.0.0",
        "3.18-alpine",
        "edge",
        "latest",
    ]
    assert sort_tags(tags) == expected
    shuffled = list(tags)
    random.Random(7).shuffle(shuffled)
    assert sort_tags(iter(shuffled)) == expected
    assert sort_tags([]) == []


UPSTREAM = [
    "latest",
    "v25.0.9",
    "v25.1.0",
    "v25.1.3",
    "v25.1.3-rc.1",
    "v25.1.10",
    "v25.10.0",
    "xv25.1.4",
    "7.2.4",
    "7.2.4-alpine",
    "v25.1.3",
]


def test_select_by_versions() -> None:
    assert select_tags(UPSTREAM, versions="~25.1") == ["v25.1.0", "v25.1.3", "v25.1.10"]
    assert select_tags(UPSTREAM, versions=">=25.1.3-0 <25.2") == [
        "v25.1.3-rc.1",
        "v25.1.3",
        "v25.1.10",
    ]
    assert select_tags(UPSTREAM, versions="7.2.4") == ["7.2.4"]


def test_select_by_globs_is_case_sensitive_full_match() -> None:
    assert select_tags(UPSTREAM, globs=["v25.1.*", "7.2.4"]) == [
        "7.2.4",
        "v25.1.0",
        "v25.1.3-rc.1",
        "v25.1.3",
        "v25.1.10",
    ]
    assert select_tags(UPSTREAM, globs=["V25.1.*"]) == []
    assert select_tags(UPSTREAM, globs=["25.1.*"]) == []
    assert select_tags(UPSTREAM, globs=["lat*"]) == ["latest"]


@pytest.mark.parametrize("pattern", [r"^v25\.1\.\d+$", r"v25\.1\.\d+"])
def test_select_by_regex_is_anchored(pattern: str) -> None:
    assert select_tags(UPSTREAM, regex=pattern) == ["v25.1.0", "v25.1.3", "v25.1.10"]


def test_select_all_tags_deduplicates_and_sorts() -> None:
    selected = select_tags(UPSTREAM, all_tags=True)
    assert selected == sort_tags(UPSTREAM)
    assert selected.count("v25.1.3") == 1
    assert selected[-2:] == ["latest", "xv25.1.4"]


def test_newest_only_keeps_the_highest_semver_match() -> None:
    assert select_tags(UPSTREAM, versions="^25.1", newest_only=True) == ["v25.10.0"]
    assert select_tags(UPSTREAM, globs=["*"], newest_only=True) == ["v25.10.0"]
    assert select_tags(UPSTREAM, regex=r"7\..*", newest_only=True) == ["7.2.4"]
    assert select_tags(UPSTREAM, globs=["latest", "xv*"], newest_only=True) == []
    assert select_tags(UPSTREAM, versions=">=99", newest_only=True) == []


@pytest.mark.parametrize(
    "selectors",
    [{}, {"versions": "*", "regex": ".*"}, {"globs": ["*"], "all_tags": True}],
)
def test_select_needs_exactly_one_selector(selectors: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        select_tags(UPSTREAM, **selectors)  # type: ignore[arg-type]


def test_select_rejects_bad_selectors() -> None:
    with pytest.raises(ValueError, match="invalid version constraint '>>1'"):
        select_tags(UPSTREAM, versions=">>1")
    with pytest.raises(ValueError, match="invalid tag regex"):
        select_tags(UPSTREAM, regex="(")
    with pytest.raises(ValueError, match="'/'"):
        select_tags(UPSTREAM, globs=["v1/*"])
    with pytest.raises(TypeError, match="not a string"):
        select_tags(UPSTREAM, globs="v25.*")


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [("v25.1.1*", ["v25.1.10"]), ("[0-9]*", ["7.2.4-alpine", "7.2.4"]), ("7.2.?", ["7.2.4"])],
)
def test_valid_globs(pattern: str, expected: list[str]) -> None:
    validate_glob(pattern)  # must not raise
    assert select_tags(UPSTREAM, globs=[pattern]) == expected


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [("", "empty"), ("library/nginx:*", "'/'"), ("v1 *", "whitespace"), ("v1\t", "whitespace")],
)
def test_invalid_globs(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_glob(pattern)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [(r"v25\.1\.1\d*", ["v25.1.10"]), (r"\d+\.\d+\.\d+", ["7.2.4"]), ("latest|stable", ["latest"])],
)
def test_valid_regexes(pattern: str, expected: list[str]) -> None:
    validate_regex(pattern)  # must not raise
    assert select_tags(UPSTREAM, regex=pattern) == expected


@pytest.mark.parametrize("pattern", ["(", "[a-", "*x", "a{2,1}"])
def test_invalid_regexes_name_the_pattern(pattern: str) -> None:
    with pytest.raises(ValueError, match="invalid tag regex") as info:
        validate_regex(pattern)
    assert f"'{pattern}'" in str(info.value)


def test_empty_regex_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        validate_regex("")


# Constraints compile to tuple comparisons once; node-semver is the reference for what the
# comparisons mean. For release tags and npm-compatible ranges the two dialects agree.
_NPM_COMPATIBLE = [">=1.2.0 <2.0.0", "^1.2", "~1.2.3", "1.x", "1.2.3 - 2.3.4", "*", "<=1.2", ">1.2", "^0.0.1"]


@given(
    constraint=st.sampled_from(_NPM_COMPATIBLE),
    version=st.tuples(*(st.integers(0, 4),) * 3),
)
@settings(max_examples=300, deadline=None, derandomize=True)
def test_compiled_bounds_agree_with_node_semver(constraint: str, version: tuple[int, int, int]) -> None:
    tag = ".".join(map(str, version))
    expected = Range(constraint, True).test(make_semver(tag, True))
    assert VersionConstraint.parse(constraint).matches(tag) is expected
