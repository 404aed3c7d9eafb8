"""Go regexp (RE2 syntax) patterns as Python `re` patterns that select the same tags.

skopeo's `images-by-tag-regex` is a Go regexp tested with `MatchString`, which is not
anchored, while a spec's `tag-regex` must match the whole tag: `anchored_regex` writes the
one as the other (`import_sync`'s docstring gives the rule). Go RE2 and Python `re` agree on
everything tags can contain (ASCII letters, digits, `_ . -`); syntax one of them reads
differently is translated (`\\z` → `\\Z`, `[[:digit:]]` → `[0-9]`, leading `(?i)`) or
refused (`\\p{…}`, `\\Q…\\E`, flags in mid-pattern; lookarounds and backreferences, which
skopeo rejects anyway). Go's syntax: https://pkg.go.dev/regexp/syntax.
"""

from __future__ import annotations

import re

__all__ = ["anchored_regex"]

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}


def anchored_regex(pattern: str) -> str:
    """skopeo's unanchored Go regexp as a spec `tag-regex` (matched against the whole tag)
    that selects exactly the same tags. Raise ValueError for syntax that cannot carry over."""
    flags, body, alternation = _go_to_python(pattern)
    if alternation:
        anchored = f".*(?:{body}).*"
    else:
        start = "" if body.startswith(("^", "\\A")) else ".*"
        end = "" if _ends_with_anchor(body) else ".*"
        anchored = f"{start}{body}{end}"
    # Scoped flags, so that the result can itself be one alternative of a larger regex.
    anchored = f"(?{flags}:{anchored})" if flags else anchored
    try:
        re.compile(anchored)
    except re.error as exc:
        raise ValueError(f"regex '{pattern}' cannot be converted: {exc}") from None
    return anchored


def _ends_with_anchor(body: str) -> bool:
    """True when `body` ends with an unescaped `$` or with `\\Z`."""
    for anchor in ("$", "\\Z"):
        if body.endswith(anchor):
            before = body[: -len(anchor)]
            if (len(before) - len(before.rstrip("\\"))) % 2 == 0:
                return True
    return False


def _go_to_python(pattern: str) -> tuple[str, str, bool]:
    """(leading flags, body, whether it has a `|` outside classes) in Python syntax; refuse
    what the two dialects read differently."""
    flags = ""
    lead = re.match(r"\(\?([a-zA-Z]+)\)", pattern)
    if lead:
        if set(lead[1]) - set("imsU"):
            raise ValueError(f"regex '{pattern}': flags ({lead[0]}) are not Go regexp flags")
        # (?U) swaps greedy and lazy: it never changes *whether* a tag matches.
        flags, pattern = "".join(f for f in lead[1] if f != "U"), pattern[lead.end() :]
    out: list[str] = []
    i, in_class = 0, False

    def refuse(what: str) -> ValueError:
        return ValueError(f"regex '{pattern}': {what} cannot be converted; rewrite it without")

    while i < len(pattern):
        char, rest = pattern[i], pattern[i:]
        if char == "\\":
            escaped = pattern[i + 1 : i + 2]
            if escaped == "z" and not in_class:
                out.append("\\Z")  # Go's end of text; Python spells it \Z
            elif escaped in ("p", "P", "Q", "E", "C"):
                raise refuse(f"Go's \\{escaped}")
            elif escaped in "123456789" and escaped:
                raise refuse(f"\\{escaped} (octal in Go, a backreference in Python)")
            elif escaped == "Z":
                raise ValueError(f"regex '{pattern}': \\Z is not valid in Go (skopeo rejects it)")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            posix = re.match(r"\[:(\^?)([a-z]+):\]", rest)
            if posix:
                if posix[1] or posix[2] not in _POSIX_CLASSES:
                    raise refuse(f"the class {posix[0]}")
                out.append(_POSIX_CLASSES[posix[2]])
                i += posix.end()
                continue
            if char == "]":
                in_class = False
            # A literal in both; escaped so Python does not read a future set operation into it.
            out.append(f"\\{char}" if char in "[&~|" else char)
            i += 1
            continue
        if char == "[":
            in_class = True
            opening = "[^" if rest.startswith("[^") else "["
            out.append(opening)
            i += len(opening)
            if pattern[i : i + 1] == "]":  # a leading ']' is a literal in both dialects
                out.append("]")
                i += 1
            continue
        group = re.match(r"\(\?(?:[=!#>(]|<[=!]|P=)", rest)
        if group:
            raise ValueError(f"regex '{pattern}': '{group[0]}' is not valid in Go (skopeo rejects it)")
        if re.match(r"\(\?[a-zA-Z-]+\)", rest):
            # Go scopes these to the rest of the enclosing group; Python 3.11 refuses them and
            # 3.10 applies them to the whole pattern.
            raise refuse(f"the flags {rest[: rest.index(')') + 1]} in the middle of a regex")
        if char in "*+?}" and pattern[i + 1 : i + 2] == "+":
            raise ValueError(
                f"regex '{pattern}': a possessive quantifier is not valid in Go (skopeo rejects it)"
            )
        if rest.startswith("{,"):
            raise refuse("'{,' (a literal in Go, a repetition in Python)")
        out.append(char)
        i += 1
    return flags, "".join(out), "|" in out
