"""Tag selection: which upstream tags a spec entry mirrors.

Owns the three ways a spec names tags -- semver constraints, globs and anchored regexes --
plus the one ordering of tags that every other module uses.

Constraints follow Masterminds/semver v3, the dialect of skopeo's `images-by-semver` and of
Helm, so a range copied from either behaves the same here. skopeo 1.9.3 silently ignores
`images-by-semver`, so we never hand it a range: we expand constraints into explicit tags.
The range grammar (^ ~ x-ranges, hyphen ranges) and version comparison come from node-semver;
this module adds what npm's syntax lacks or reads differently from Masterminds: commas as AND,
`!=`, whitespace after an operator, strict rejection of garbage (node-semver's loose mode
silently drops what it cannot read), and the Masterminds prerelease rule -- an OR-group that
names no prerelease never matches a prerelease tag; one that does compares by precedence.

Helm pushes chart version `1.2.3+build.5` as OCI tag `1.2.3_build.5` because tags cannot
hold `+`; tags are read with `_` as `+`, and build metadata never affects matching.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from nodesemver import Range

if TYPE_CHECKING:
    import regex as timed_re

__all__ = [
    "SortKey",
    "VersionConstraint",
    "parse_tag_version",
    "select_tags",
    "sort_tags",
    "validate_glob",
    "validate_regex",
]

SortKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]
"""Semver precedence of a tag: `(major, minor, patch, is_release, prerelease)`.

`is_release` is 0 for a prerelease so that `1.0.0-rc.1 < 1.0.0`; each prerelease identifier is
`(0, n, "")` if numeric and `(1, 0, text)` otherwise, so numbers sort numerically and before
words, and a longer identifier list sorts after its own prefix, as semver 2.0.0 requires.
"""

_IDENTS = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
# Masterminds' non-strict NewVersion: one to three numbers, so `1.2` is 1.2.0 and
# `3.18-alpine` is the prerelease 3.18.0-alpine.
_TAG_RE = re.compile(rf"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-({_IDENTS}))?(?:\+{_IDENTS})?")
_PART = r"(?:\d+|[xX*])"
# A prerelease only on a full version: node-semver cannot read `~1.2-beta` and would drop it,
# and Masterminds gives partial prereleases a different meaning per operator.
_VERSION = rf"v?(?:\d+\.\d+\.\d+(?:-{_IDENTS})?(?:\+{_IDENTS})?|{_PART}(?:\.{_PART}){{0,2}})"
_ITEM_RE = re.compile(
    rf"(?P<lo>{_VERSION})\s+-\s+(?P<hi>{_VERSION})"
    rf"|(?P<op>!=|>=|<=|=>|=<|~>|[=<>~^])?\s*(?P<ver>{_VERSION})"
)
_SEP_RE = re.compile(r"\s*,\s*|\s+")
_OP_ALIASES = {"=>": ">=", "=<": "<=", "~>": "~"}

# A spec's tag-regex runs against every upstream tag, and overlapping repetitions such as
# `^(a|a)+$` backtrack exponentially (seconds at 30 characters, doubling with each one more).
# Matching gets this much time per repository in all; a regex that needs more is an error,
# not a hang.
REGEX_BUDGET_SECONDS = 2.0


class _Invalid(Exception):
    """Why a constraint is rejected; `VersionConstraint.parse` adds the constraint text."""


_Bound = tuple[Callable[[SortKey, SortKey], bool], SortKey]
"""One comparison of a node-semver range, reduced to our precedence key: `(operator.ge, key)`."""

_COMPARE: dict[str, Callable[[SortKey, SortKey], bool]] = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _bounds(npm_range: Any) -> tuple[_Bound, ...]:
    """node-semver reads the range grammar once; each tag is then compared as a plain tuple.

    Building a node-semver object per tag cost ~5 us, the whole budget of selecting from
    10,000 tags (bench B4). A range with no `||` is one conjunction of comparators, and a
    comparator with no version (`*`) admits everything, so it adds no bound.
    """
    (comparators,) = npm_range.set
    bounds = []
    for comp in comparators:
        if comp.operator is None:
            continue
        version = comp.semver
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in version.prerelease)
        key: SortKey = (version.major, version.minor, version.patch, 0 if pre else 1, pre)
        bounds.append((_COMPARE[comp.operator or "="], key))
    return tuple(bounds)


def _within(key: SortKey, bounds: tuple[_Bound, ...]) -> bool:
    return all(compare(key, bound) for compare, bound in bounds)


@dataclass(frozen=True)
class _Group:
    """One `||` alternative: every `required` range holds and no `excluded` range does."""

    required: tuple[_Bound, ...]
    excluded: tuple[tuple[_Bound, ...], ...]
    prerelease_ok: bool

    def admits(self, key: SortKey) -> bool:
        if not key[3] and not self.prerelease_ok:
            return False
        return _within(key, self.required) and not any(_within(key, ex) for ex in self.excluded)


def _has_prerelease(version: str) -> bool:
    return "-" in version.partition("+")[0]


def _npm_range(text: str, op: str) -> Any:
    """Desugar one comparison with node-semver, then align its bounds with Masterminds.

    npm's `^1.0.0-0` ends at `<2.0.0`, admitting 2.0.0-rc.1; Masterminds checks ^, ~, x-ranges,
    `<=` partials and hyphen ends by their numbers, so a desugared exclusive upper bound (and the
    lower bound of `>1.2`) must also shut out the bound's own prereleases.
    """
    try:
        (comparators,) = Range(text, True).set  # one item, so never an OR
    except ValueError:
        raise _Invalid(f"cannot interpret {text!r}") from None
    bounds = []
    for comp in comparators:
        lift = (comp.operator == "<" and op != "<") or (comp.operator == ">=" and op == ">")
        bounds.append(comp.value + ("-0" if lift and not comp.semver.prerelease else ""))
    return Range(" ".join(bounds), True)


def _parse_group(group: str) -> _Group:
    group = group.strip()
    if not group:
        raise _Invalid("nothing on one side of '||'")
    required: list[Any] = []
    excluded: list[Any] = []
    prerelease_ok = False
    pos = 0
    while True:
        item = _ITEM_RE.match(group, pos)
        if item is None:
            raise _Invalid(f"expected a version or comparison at {group[pos:]!r}")
        if item["lo"] is not None:
            lo, hi = item["lo"].removeprefix("v"), item["hi"].removeprefix("v")
            required.append(_npm_range(f"{lo} - {hi}", ""))
            prerelease_ok |= _has_prerelease(lo) or _has_prerelease(hi)
        else:
            op = _OP_ALIASES.get(item["op"], item["op"] or "")
            version = item["ver"].removeprefix("v")
            if op == "!=":
                # npm has no `!=`; excluding the matching range also covers `!=1.2.x`.
                excluded.append(_npm_range(version, op))
            else:
                required.append(_npm_range(op + version, op))
            prerelease_ok |= _has_prerelease(version)
        pos = item.end()
        if pos == len(group):
            return _Group(
                tuple(bound for npm_range in required for bound in _bounds(npm_range)),
                tuple(_bounds(npm_range) for npm_range in excluded),
                prerelease_ok,
            )
        sep = _SEP_RE.match(group, pos)
        if sep is None:
            raise _Invalid(f"unexpected {group[pos:]!r} after {item[0]!r}")
        pos = sep.end()
        if pos == len(group):
            raise _Invalid("dangling ','")


@dataclass(frozen=True)
class VersionConstraint:
    """A Masterminds-style semver constraint, parsed once; compare and hash by its text."""

    text: str
    _groups: tuple[_Group, ...] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> VersionConstraint:
        """Parse `text`; raise ValueError naming the text and the reason if it is invalid.

        Each distinct text is parsed once (the constraint is immutable): node-semver takes
        ~0.4 ms a range, and a spec of 10,000 repositories names a handful of ranges, each
        validated at load and used again for every repository's tags and Helm dependencies.
        """
        return _parse_constraint(text)

    def matches(self, tag: str) -> bool:
        """True if `tag` reads as (loose) semver and satisfies the constraint."""
        key = parse_tag_version(tag)
        return key is not None and any(group.admits(key) for group in self._groups)


@lru_cache(maxsize=4096)  # bounded: a hostile spec of distinct ranges costs only time
def _parse_constraint(text: str) -> VersionConstraint:
    try:
        if not text.strip():
            raise _Invalid("empty constraint")
        groups = tuple(_parse_group(group) for group in text.split("||"))
    except _Invalid as exc:
        raise ValueError(f"invalid version constraint '{text}': {exc}") from None
    return VersionConstraint(text, groups)


def parse_tag_version(tag: str) -> SortKey | None:
    """The precedence of `tag` (`v` prefix, partial versions, `_` for `+`), or None."""
    # Called for every upstream tag (tens of thousands per plan): one regex, one groups().
    m = _TAG_RE.fullmatch(tag.replace("_", "+") if "_" in tag else tag)
    if m is None:
        return None
    major, minor, patch, pre = m.groups()
    key = int(major), int(minor or 0), int(patch or 0)
    if not pre:
        return (*key, 1, ())
    return (*key, 0, tuple([(0, int(i), "") if i.isdigit() else (1, 0, i) for i in pre.split(".")]))


def sort_tags(tags: Iterable[str]) -> list[str]:
    """Distinct tags: semver ones by precedence (ties by text), then the rest by text."""
    keyed = [(parse_tag_version(tag), tag) for tag in set(tags)]
    versioned = sorted((key, tag) for key, tag in keyed if key is not None)
    return [tag for _, tag in versioned] + sorted(tag for key, tag in keyed if key is None)


def select_tags(
    tags: Iterable[str],
    *,
    versions: str | None = None,
    globs: Sequence[str] | None = None,
    regex: str | None = None,
    all_tags: bool = False,
    newest_only: bool = False,
) -> list[str]:
    """The tags chosen by exactly one selector, in `sort_tags` order.

    `newest_only` keeps the highest semver match (Helm's "newest"), or none if none is semver.
    """
    if [versions is not None, globs is not None, regex is not None, all_tags].count(True) != 1:
        raise ValueError("select_tags needs exactly one of versions, globs, regex, all_tags")
    if versions is not None:
        constraint = VersionConstraint.parse(versions)
        matched = [tag for tag in tags if constraint.matches(tag)]
    elif globs is not None:
        if isinstance(globs, str):  # a bare string would be matched character by character
            raise TypeError("globs must be a sequence of patterns, not a string")
        for glob in globs:
            validate_glob(glob)
        matched = [tag for tag in tags if any(fnmatchcase(tag, glob) for glob in globs)]
    elif regex is not None:
        import regex as timed_re  # `re` syntax, but a match can be given a timeout

        validate_regex(regex)
        matched = _regex_matches(timed_re.compile(regex), tags, regex)
    else:
        matched = list(tags)
    selected = sort_tags(matched)
    if newest_only:
        return [tag for tag in selected if parse_tag_version(tag) is not None][-1:]
    return selected


def _regex_matches(pattern: timed_re.Pattern[str], tags: Iterable[str], text: str) -> list[str]:
    deadline = time.monotonic() + REGEX_BUDGET_SECONDS
    matched = []
    for tag in tags:
        try:
            hit = pattern.fullmatch(tag, timeout=max(deadline - time.monotonic(), 0.001))
        except TimeoutError:
            raise ValueError(
                f"tag regex '{text}' needs more than {REGEX_BUDGET_SECONDS:g} s to match this repository's"
                f" tags (stuck on '{tag[:80]}'): overlapping repetitions such as (a|a)+ backtrack"
                " exponentially"
            ) from None
        if hit:
            matched.append(tag)
    return matched


def validate_regex(pattern: str) -> None:
    """Raise ValueError if `pattern` is empty or is not a valid Python regex."""
    if not pattern:
        raise ValueError("tag regex must not be empty")
    # Imported by the first tag-regex (≈ 6 ms of every start-up otherwise; bench/run.py, B5).
    import regex as timed_re

    try:
        timed_re.compile(pattern)
    except timed_re.error as exc:
        raise ValueError(f"invalid tag regex '{pattern}': {exc}") from None


# distribution-spec (spec.md, "Pulling manifests"): a tag matches
# [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}, so it is at most 128 characters long.
MAX_TAG_LENGTH = 128


def validate_glob(pattern: str) -> None:
    """Raise ValueError if `pattern` cannot be a tag glob (empty, '/', whitespace, or only
    able to match tags longer than an OCI tag can be)."""
    if not pattern:
        raise ValueError("tag glob must not be empty")
    if "/" in pattern:
        raise ValueError(f"invalid tag glob '{pattern}': '/' cannot occur in a tag")
    if any(ch.isspace() for ch in pattern):
        raise ValueError(f"invalid tag glob '{pattern}': whitespace cannot occur in a tag")
    shortest = _shortest_match(pattern)
    if shortest > MAX_TAG_LENGTH:
        limit = f"an OCI tag is at most {MAX_TAG_LENGTH} characters (distribution-spec)"
        if not any(ch in pattern for ch in "*?["):
            raise ValueError(f"tag '{pattern[:40]}…' is {len(pattern)} characters: {limit}")
        raise ValueError(
            f"tag glob '{pattern[:40]}…' only matches tags of {shortest} characters or more: {limit}"
        )


def _shortest_match(pattern: str) -> int:
    """The length of the shortest text `fnmatchcase(text, pattern)` accepts: `*` matches
    nothing, `?` and a closed `[...]` one character, anything else itself (the rules of
    fnmatch.translate, including a `[` without its `]` being a literal)."""
    length, i, n = 0, 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            continue
        if ch == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j < n:  # a closed set: one character; otherwise '[' is a literal
                i = j + 1
        length += 1
    return length
