"""Every secret mirrorspec reads, in every form it can travel in, scrubbed from everything it prints.

A secret rarely comes back the way it went out. A registry or proxy that echoes the request
in an error body shows `Authorization: Basic base64(user:password)`; skopeo's auth file holds
the same base64; Go programs print strings `%q`-quoted (`\\"`, `\\x1b`, `\\u00e9`) and Go's JSON
encoder escapes `<`, `>` and `&` as `\\u003c`…; URLs carry it percent-encoded (upper or lower
case hex, `+` for a space, each encoder with its own set of characters left alone); an HTML
error page entity-escapes it. So `register_secret` derives every such form once, and
`redact` replaces each of them:

- textual forms (raw, JSON with and without `ensure_ascii`, JSON nested in JSON, Go's JSON and
  `strconv.Quote`/`QuoteToASCII`, Python's `repr`, HTML, percent-encoding with the safe sets of
  Python's `quote`/`quote_plus` and Go's `QueryEscape`/`PathEscape`/userinfo in both hex cases)
  are replaced by plain string search, longest first;
- base64, standard and URL-safe alphabets: a secret embedded in a longer value
  (`user:password`, a whole docker `config.json`) is encoded differently depending on its
  offset modulo 3, so for each of the three offsets the characters that depend on the secret's
  bytes alone are searched for, and the whole base64 run around a hit is replaced — the
  username and padding of a Basic credential included, so not even its edges remain.

Truncation is where secrets used to slip through: cut first, and the secret's prefix survives
the cut that no longer matches the whole. Everything that cuts text here (`clip`) redacts
first; text that someone else may have cut (a body read up to a limit, a chunk of a stream)
goes through `redact_fragment`, which also removes a secret's prefix at the end of the text
and its suffix at the start (at least `MIN_PARTIAL` characters: shorter pieces are not
recognisable and would mangle ordinary words).

Short secrets: a password or token from the spec shorter than `MIN_SECRET_LENGTH` is refused
when it is read (`credentials.py`), because scrubbing a three-letter value would rewrite every
word that contains it and still leave it guessable. Values mirrorspec does not choose (cloud
credentials in the environment, tokens a server hands out) are redacted whatever their length.

This module imports nothing from the package, so the lowest layers (the registry client) can
use it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import threading
from dataclasses import dataclass
from typing import TextIO

__all__ = [
    "MIN_PARTIAL",
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "RedactingStream",
    "clip",
    "forget_secrets",
    "redact",
    "redact_fragment",
    "register_secret",
]

REDACTED = "***"
MIN_SECRET_LENGTH = 8
MIN_PARTIAL = 4
# Shorter base64 cores than this would match ordinary words: a core of a 4-character secret
# is 4 characters of [A-Za-z0-9+/], and `Test` is one of those.
_MIN_CORE = 6
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_")


@dataclass(frozen=True)
class _Forms:
    texts: tuple[str, ...]  # replaced as they are, longest first
    cores: tuple[str, ...]  # base64 cores: the whole base64 run around a hit is replaced


_lock = threading.Lock()
_secrets: dict[str, None] = {}  # insertion-ordered set of the raw values
_compiled: _Forms | None = None


def register_secret(value: str) -> None:
    """Remember `value` so that `redact()` hides it in every form listed in the module doc."""
    global _compiled
    if not value:
        return
    with _lock:
        if value not in _secrets:
            _secrets[value] = None
            _compiled = None


def forget_secrets() -> None:
    """For tests that run several CLI invocations in one process."""
    global _compiled
    with _lock:
        _secrets.clear()
        _compiled = None


def redact(text: str) -> str:
    """`text` with every form of every registered secret replaced by `***`."""
    forms = _forms()
    if not forms.texts or not text:
        return text
    for form in forms.texts:
        if form in text:
            text = text.replace(form, REDACTED)
    for core in forms.cores:
        if core in text:
            text = _replace_runs(text, core)
    return text


def redact_fragment(text: str, *, head: bool = True, tail: bool = True) -> str:
    """`redact(text)`, and for text that may have been cut by someone else: a secret's prefix
    at its end (`tail`) and a secret's suffix at its start (`head`) are replaced too."""
    text = redact(text)
    forms = _forms()
    if not text or not forms.texts:
        return text
    candidates = forms.texts + forms.cores
    # Where the cut text ends: at its last character, or before a mark of the cut ("…",
    # "...") that whoever cut it added. Dots and spaces may belong to the secret itself, so
    # only a whole mark is set aside.
    body = text
    stripped = text.rstrip()
    for mark in ("…", "..."):
        if stripped.endswith(mark) and not _longest_prefix_at_end(text, candidates):
            body = stripped[: -len(mark)]
            break
    # Both edges are measured on the same text: replacing one first could break the match at
    # the other (the prefix found at the end may be part of the suffix at the start).
    end = len(body) - _longest_prefix_at_end(body, candidates) if tail else len(body)
    start = _longest_suffix_at_start(text, candidates) if head else 0
    if start >= end:  # the two pieces meet: all of it is secret
        return REDACTED + text[len(body) :] if start or end < len(body) else text
    shown = text[start:end]
    return (REDACTED if start else "") + shown + (REDACTED if end < len(body) else "") + text[len(body) :]


def clip(text: str, limit: int = 300) -> str:
    """One line of at most `limit` characters: redacted first, then whitespace collapsed, then
    cut — so a cut can never leave part of a secret behind."""
    text = " ".join(redact(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RedactingStream(io.TextIOBase):
    """A text stream that redacts whatever is written through it: the CLI puts one in front
    of stdout and stderr, so that nothing printed — messages, logs, JSON, rendered files on
    stdout, a traceback — can bypass redaction.

    Whole lines are redacted at once; a line still open when the stream is flushed (a prompt)
    is written as a fragment, with a secret's prefix at its end removed, and the rest of that
    line is then checked for the matching suffix.
    """

    def __init__(self, inner: TextIO) -> None:
        super().__init__()
        self._inner = inner
        self._pending = ""
        self._mid_line = False  # the last flush ended inside a line
        self._lock = threading.RLock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._inner.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self._inner.errors

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            # click probes a stream with b"" to tell text from binary streams
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._pending += text
            cut = self._pending.rfind("\n")
            if cut >= 0:
                lines, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
                self._emit(lines, tail=False)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                text, self._pending = self._pending, ""
                self._emit(text, tail=True)
            self._inner.flush()

    def close(self) -> None:
        """Flushes; never closes the stream it wraps (that belongs to the process)."""
        self.flush()

    def _emit(self, text: str, *, tail: bool) -> None:
        if tail or self._mid_line:
            text = redact_fragment(text, head=self._mid_line, tail=tail)
        else:
            text = redact(text)
        self._mid_line = tail
        self._inner.write(text)


# -- forms --------------------------------------------------------------------------------


def _forms() -> _Forms:
    global _compiled
    with _lock:
        if _compiled is None:
            texts: set[str] = set()
            cores: set[str] = set()
            for secret in _secrets:
                texts.update(_text_forms(secret))
                cores.update(_base64_cores(secret))
            cores -= texts
            _compiled = _Forms(
                tuple(sorted(texts, key=len, reverse=True)),
                tuple(sorted(cores, key=len, reverse=True)),
            )
        return _compiled


# Characters Go's percent-encoders leave alone besides the unreserved ones (net/url's
# shouldEscape): path segments keep `$&+,;=:@`, userinfo keeps `$&+,;=` (and Python's
# `quote` keeps `/` by default). RFC 3986's sub-delims `!'()*` are kept by some encoders.
_URL_SAFE_SETS = ("", "/", "$&+,;=:@", "$&+,;=", "!'()*", "$&+,;=:@!'()*")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _percent(secret: str, safe: str, *, plus: bool, upper: bool) -> str:
    keep = _UNRESERVED | frozenset(safe)
    out = []
    for ch in secret:
        if ch in keep:
            out.append(ch)
        elif ch == " " and plus:
            out.append("+")
        else:
            out.extend(f"%{b:02X}" if upper else f"%{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


# Go's strconv.Quote short escapes (strconv/quote.go appendEscapedRune).
_GO_SHORT = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _go_quote(secret: str, *, ascii_only: bool) -> str:
    """Go's `strconv.Quote` (`%q`) or `QuoteToASCII` without the quotes."""
    out = []
    for ch in secret:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _GO_SHORT:
            out.append(_GO_SHORT[ch])
        elif ch.isprintable() and (code < 0x80 or not ascii_only):
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def _go_json(secret: str) -> str:
    """Go's `encoding/json` string body: HTML-safe by default (encode.go `appendString`)."""
    out = []
    for ch in secret:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif code < 0x20 or ch in "<>&\u2028\u2029":
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _text_forms(secret: str) -> set[str]:
    json_ascii = json.dumps(secret)[1:-1]
    json_utf8 = json.dumps(secret, ensure_ascii=False)[1:-1]
    forms = {
        secret,
        json_ascii,
        json_utf8,
        json.dumps(json_ascii)[1:-1],  # JSON in a JSON string (an error body quoted again)
        json.dumps(json_utf8, ensure_ascii=False)[1:-1],
        _go_json(secret),
        _go_quote(secret, ascii_only=False),
        _go_quote(secret, ascii_only=True),
        repr(secret)[1:-1],
        html.escape(secret, quote=True),
        html.escape(secret, quote=False),
    }
    for safe in _URL_SAFE_SETS:
        for plus in (False, True):
            for upper in (True, False):
                forms.add(_percent(secret, safe, plus=plus, upper=upper))
    # One encoding inside another: a server's HTML or URL-encoded echo, printed by a Go
    # program (`%q`) or put into a JSON string.
    forms |= {_go_quote(form, ascii_only=False) for form in list(forms)}
    forms |= {json.dumps(form, ensure_ascii=False)[1:-1] for form in list(forms)}
    # Upper- and lower-case \u escapes: Python and Go write lower case, others upper.
    forms |= {_upper_unicode_escapes(form) for form in forms if "\\u" in form}
    forms.discard("")
    return forms


def _upper_unicode_escapes(form: str) -> str:
    out = []
    i = 0
    while i < len(form):
        if form.startswith("\\u", i) and i + 6 <= len(form):
            out.append("\\u" + form[i + 2 : i + 6].upper())
            i += 6
        else:
            out.append(form[i])
            i += 1
    return "".join(out)


def _base64_cores(secret: str) -> set[str]:
    """For each offset of the secret in a longer encoded value, the base64 characters that
    depend only on the secret's bytes (standard and URL-safe alphabets)."""
    raw = secret.encode("utf-8", "surrogatepass")
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        # Character i holds bits [6i, 6i+6); the secret's bits are [8·offset, 8·(offset+n)).
        start = -(-8 * offset // 6)
        end = (8 * (offset + len(raw))) // 6
        core = encoded[start:end]
        if len(core) >= _MIN_CORE:
            cores.add(core)
            cores.add(core.replace("+", "-").replace("/", "_"))
    return cores


def _replace_runs(text: str, core: str) -> str:
    """Replace every base64 run (with its `=` padding) that contains `core`."""
    out = []
    position = 0
    while (hit := text.find(core, position)) >= 0:
        start = hit
        while start > position and text[start - 1] in _B64_CHARS:
            start -= 1
        end = hit + len(core)
        while end < len(text) and text[end] in _B64_CHARS:
            end += 1
        while end < len(text) and text[end] == "=":
            end += 1
        out.append(text[position:start])
        out.append(REDACTED)
        position = end
    out.append(text[position:])
    return "".join(out)


def _longest_prefix_at_end(text: str, forms: tuple[str, ...]) -> int:
    """Length of the longest proper prefix (≥ MIN_PARTIAL) of any form that `text` ends with."""
    if len(text) < MIN_PARTIAL:
        return 0
    last = text[-1]
    best = 0
    for form in forms:
        index = form.find(last, MIN_PARTIAL - 1)
        while 0 <= index < len(form) - 1:
            length = index + 1
            if length > best and text.endswith(form[:length]):
                best = length
            index = form.find(last, index + 1)
    return best


def _longest_suffix_at_start(text: str, forms: tuple[str, ...]) -> int:
    """Length of the longest proper suffix (≥ MIN_PARTIAL) of any form that `text` starts with."""
    if len(text) < MIN_PARTIAL:
        return 0
    first = text[0]
    best = 0
    for form in forms:
        index = form.rfind(first, 1, len(form) - MIN_PARTIAL + 1)
        while index > 0:
            length = len(form) - index
            if length > best and text.startswith(form[index:]):
                best = length
            index = form.rfind(first, 1, index)
    return best
