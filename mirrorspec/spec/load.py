"""Loading a spec: bounded YAML with positions, then the models, then the checks across the
document; `load_spec` and `parse_spec` are the only ways in, and every failure is one
`SpecError` at `file:line:col`.

Positions come from ruamel.yaml's round-trip loader, which keeps the line and column of every
key and value (PyYAML's safe loader throws them away). Hostile input (a log file passed by
mistake, /dev/zero, an alias bomb, 100,000 nested brackets) ends in one line, quickly, in
bounded memory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from pydantic import (
    ValidationError,
)

from .. import files
from ..errors import SpecError
from .checks import cross_checks
from .compose import Composer, Map
from .locate import position, spec_error
from .model import Source, Spec, Target, _short

__all__ = [
    "MAX_SPEC_BYTES",
    "check_ca_bundle",
    "json_schema",
    "load_spec",
    "load_spec_stream",
    "parse_spec",
    "yaml_error",
]

# --- loading ---------------------------------------------------------------------------

# Hostile or accidental input (a log file passed by mistake, /dev/zero, a YAML alias bomb)
# must end in one line, quickly, in bounded memory, while a real spec of 50,000 repositories
# loads. Measured on the 2-core runner (`compose` reads the YAML): a repository entry of
# name, `versions` and `helm-dependencies` is ~136 bytes and 7 values (YAML nodes); a spec of
# 10,000 loads in ~0.6 s and ~70 MB, of 50,000 in ~2.6 s and ~150 MB (composition ~5 µs a
# value, the models ~15 µs a repository). So 16 MiB holds ~120,000 such repositories and
# 1,000,000 values ~140,000. What the limits cost at their worst: 1,000,001 values of `1, `
# (3 MB) are refused in ~4 s and ~100 MB; 990,000 keys `{k1: 1, ...}` (12 MB) in ~4 s and
# ~150 MB; 16 MiB of comments in well under a second. Values are counted with aliases
# expanded (an alias costs its anchor's size): the bound is on what the document means,
# so a small text cannot expand past it, and a large honest one is bounded by its bytes.
MAX_SPEC_BYTES = 16 << 20
_MAX_VALUES = 1_000_000
# The deepest real spec path is 7 levels (targets › [i] › credential-sets › host › key ...).
# A limit keeps 100,000 nested '[' from building a tower that every walk recurses through.
_MAX_DEPTH = 32
# Up to the old size limit, what libyaml cannot read is read again by ruamel (`_load_yaml`).
_REREAD_ERRORS_CHARS = 1 << 20
# What YAML forbids in a stream (YAML 1.2 §5.1, the set ruamel's Reader checks).
_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def load_spec(path: str | Path) -> Spec:
    """Read, parse and validate a spec file; every failure is a one-line `SpecError`."""
    path = Path(path)
    try:
        # A regular file only (a FIFO would block, /dev/zero never end), at most the limit.
        data = files.read_user_file(path, what="spec", max_bytes=MAX_SPEC_BYTES)
    except files.FileTooLarge as exc:
        raise _too_big(exc.size, str(path)) from None
    except files.UnreadableFile as exc:
        raise SpecError(f"cannot read spec: {exc.reason}", location=str(path)) from None
    return _from_bytes(data, str(path), path.resolve().parent)


def load_spec_stream(stream: BinaryIO, *, name: str = "<stdin>") -> Spec:
    """`load_spec` of a stream (`validate -`): read to its end, at most the size limit;
    errors name it `name`, and relative paths in it start at the working directory."""
    data = stream.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:
        raise _too_big(None, name)
    return _from_bytes(data, name, Path.cwd())


def _from_bytes(data: bytes, name: str, base_dir: Path) -> Spec:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            f"spec is not UTF-8 text (byte 0x{data[exc.start]:02x})", location=f"{name}:{line}:{col}"
        ) from None
    spec = parse_spec(text, filename=name)
    spec._base_dir = base_dir
    # Offline, but local: a missing or broken CA bundle is a spec error here, not a crash
    # (or "certificate verify failed") at the first request of a plan.
    for _, _, value in _ca_bundles(spec):
        check_ca_bundle(spec, value)
    return spec


def _ca_bundles(spec: Spec) -> list[tuple[str, int, str]]:
    """`(section, index, ca-bundle)` of every source and target that sets a `ca-bundle`."""
    items: list[tuple[str, int, Source | Target]] = [("sources", i, s) for i, s in enumerate(spec.sources)]
    items += [("targets", i, t) for i, t in enumerate(spec.targets)]
    bundles = [(section, i, getattr(item, "ca_bundle", None)) for section, i, item in items]
    return [(section, i, value) for section, i, value in bundles if value]


def check_ca_bundle(spec: Spec, ca_bundle: str) -> str:
    """The absolute path of `ca-bundle: <ca_bundle>` (relative to the spec's directory),
    once the file is read and found to be a PEM CA bundle (`files.read_ca_bundle`).

    Otherwise a `SpecError` at the first entry that names it: which file and what is wrong.
    `load_spec` checks every bundle; `RunContext` checks again before a client uses one.
    """
    path = spec.base_dir / ca_bundle  # not resolved yet: a symlink's target is named in errors
    try:
        files.read_ca_bundle(path)
    except files.UnreadableFile as exc:
        for section, i, value in _ca_bundles(spec):
            if value == ca_bundle:
                item: Source | Target = spec.sources[i] if section == "sources" else spec.targets[i]
                label = f"registry='{item.registry}'" if isinstance(item, Source) else f"name='{item.name}'"
                raise SpecError(
                    f"{section}[{i}] ({label}) › ca-bundle: cannot use {ca_bundle}: {exc.reason}",
                    location=spec.location_of((section, i, "ca-bundle")),
                ) from None
        raise SpecError(f"ca-bundle: cannot use {ca_bundle}: {exc.reason}") from None
    return str(path.resolve())


def _too_big(size: int | None, filename: str) -> SpecError:
    limit = f"the limit of {MAX_SPEC_BYTES >> 20} MiB"
    what = f"{size / (1 << 20):.1f} MiB, more than {limit}" if size is not None else f"larger than {limit}"
    return SpecError(
        f"spec is {what} (a spec of 1,000 repositories is about 120 KB): is this the right file?",
        location=filename,
    )


def parse_spec(text: str, *, filename: str = "<spec>") -> Spec:
    """Validate spec text; `filename` only labels error locations."""
    if len(text) > MAX_SPEC_BYTES // 4 and len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        raise _too_big(len(text.encode("utf-8", "surrogatepass")), filename)
    tree = _load_yaml(text, filename)
    if not isinstance(tree, Map):
        found = "nothing (the file is empty)" if tree is None else f"a {_kind_of(_plain(tree))}"
        raise SpecError(f"the spec must be a YAML mapping, found {found}", location=f"{filename}:1:1")
    # The version decides every other rule, so it is checked first (a v2 spec should say
    # "unsupported version", not list v1's unknown keys).
    version = _plain(tree.get("version"))
    if not isinstance(version, int) or isinstance(version, bool) or version != 1:  # True == 1
        where = position(tree, ("version",), filename, key=False) if "version" in tree else None
        found = _short(repr(version)) if "version" in tree else "nothing"
        raise SpecError(f"version: expected 1, found {found}", location=where or f"{filename}:1:1")
    try:
        # Keys are the kebab-case aliases only (`populate_by_name` is for Python callers):
        # `replicate_to` in a file is an unknown key, as the JSON Schema says.
        spec = Spec.model_validate(_plain(tree), by_name=False)
    except ValidationError as exc:
        raise spec_error(exc, tree, filename) from None
    cross_checks(spec, tree, filename)
    # Credentials are read late (at plan time); keep where each reference was written so
    # that "variable not set" can point at the line.
    for name, credential in tree.get("credentials", {}).items():
        for part in credential or ():
            loc: tuple[Any, ...] = ("credentials", name, part)
            spec._positions[loc] = position(tree, loc, filename)
    for i in range(len(tree.get("targets", []))):
        spec._positions[("targets", i)] = position(tree, ("targets", i), filename)
    # A CA bundle is read at load (`check_ca_bundle`), after parsing: its errors point here.
    for section in ("sources", "targets"):
        for i, item in enumerate(tree.get(section, [])):
            if "ca-bundle" in item:
                spec._positions[(section, i, "ca-bundle")] = position(
                    tree, (section, i, "ca-bundle"), filename
                )
    # Resolving finds problems that belong to a repository entry (a Helm dependency cycle).
    for s, source in enumerate(tree.get("sources", [])):
        for r in range(len(source.get("repositories", []))):
            entry: tuple[Any, ...] = ("sources", s, "repositories", r)
            spec._positions[entry] = position(tree, entry, filename)
    return spec


def json_schema() -> dict[str, Any]:
    """JSON Schema of the spec, for editors (yaml-language-server) — generated, not used to validate."""
    schema = Spec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mirrorspec spec v1"
    return schema


def _load_yaml(text: str, filename: str) -> Any:
    try:
        return Composer(filename, max_depth=_MAX_DEPTH, max_values=_MAX_VALUES).compose(text)
    except SpecError:
        raise
    except Exception as exc:  # ruamel is imported only when it is needed: here, to tell
        from ruamel.yaml.error import YAMLError
        from ruamel.yaml.reader import ReaderError

        if isinstance(exc, (yaml.reader.ReaderError, ReaderError)):
            # A control character (NUL, say): libyaml reports a byte offset; find the character.
            bad = _NON_PRINTABLE.search(text)
            position = bad.start() if bad else 0
            line = text.count("\n", 0, position) + 1
            col = position - (text.rfind("\n", 0, position) + 1) + 1
            char = ord(bad.group()) if bad else 0
            raise SpecError(
                f"invalid YAML: control character U+{char:04X} is not allowed in YAML",
                location=f"{filename}:{line}:{col}",
            ) from None
        if isinstance(exc, yaml.YAMLError) and len(text) <= _REREAD_ERRORS_CHARS:
            # Read again with ruamel's parser (at most ~4 s): libyaml parses YAML 1.1, which
            # refuses a few plain scalars 1.2 allows (`[:0]`), and ruamel's messages say more
            # ("found character '\t' that cannot start any token", "expected <block end>").
            from ruamel.yaml import YAML

            try:
                return Composer(filename, max_depth=_MAX_DEPTH, max_values=_MAX_VALUES).compose_events(
                    YAML(typ="rt").parse(text)
                )
            except YAMLError as ruamel_exc:
                raise yaml_error(ruamel_exc, filename) from None
        if isinstance(exc, (yaml.YAMLError, YAMLError)):  # ruamel's: deeply nested brackets
            raise yaml_error(exc, filename, text) from None
        raise


def yaml_error(exc: Any, filename: str, text: str | None = None) -> SpecError:
    """A YAML error of ruamel's or libyaml's (PyYAML's) as one line at `file:line:col`."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is None:
        return SpecError(f"invalid YAML: {_first_line(str(exc))}", location=filename)
    where = f"{filename}:{mark.line + 1}:{mark.column + 1}"
    what = " ".join((exc.problem or exc.context or "invalid YAML").split())
    at_tab = text is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t"
    if "duplicate key" in what:
        what = what.split(" with value")[0]
    elif "<block" in what or "did not find expected key" in what:
        what += " (is the indentation consistent?)"
    elif "'\\t'" in what or at_tab:
        what += " (indent with spaces: YAML does not allow tabs)"
    elif "another document" in what:
        what = "found a second document ('---'): a spec is one YAML document"
    return SpecError(f"invalid YAML: {what}", location=where)


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    return "string" if isinstance(value, str) else f"{type(value).__name__} value"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unreadable"


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node
