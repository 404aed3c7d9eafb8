"""Loading a spec: bounded YAML with positions, then the models, then the checks across the
document; `load_spec` and `parse_spec` are the only ways in, and every failure is one
`SpecError` at `file:line:col`.

Positions come from ruamel.yaml's round-trip loader, which keeps the line and column of every
key and value (PyYAML's safe loader throws them away). Hostile input (a log file passed by
mistake, /dev/zero, an alias bomb, 100,000 nested brackets) ends in one line, quickly, in
bounded memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, TaggedScalar
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode
from ruamel.yaml.reader import ReaderError

from .. import files
from ..errors import SpecError
from .checks import cross_checks
from .locate import position, spec_error
from .model import Source, Spec, Target, _short

__all__ = [
    "MAX_SPEC_BYTES",
    "check_ca_bundle",
    "json_schema",
    "load_spec",
    "parse_spec",
]


# --- loading ---------------------------------------------------------------------------

# Hostile or accidental input (a log file passed by mistake, /dev/zero, a YAML alias bomb)
# must end in one line, quickly, in bounded memory. The limits sit far above any real spec:
# a spec of 1,000 repositories is about 120 KB and 7,000 values (YAML nodes), and loads in
# ~0.35 s on a 2-core runner. ruamel.yaml's round-trip nodes cost 40-100 µs and ~2 KB
# each, so a 10 MB spec would take minutes and GBs. 1 MiB and 50,000 values (~7,000 such
# repositories) bound the worst input (all tokens, `{k1: 1, k2: 1, ...}`) to a few
# seconds and ~100 MB.
MAX_SPEC_BYTES = 1 << 20
_MAX_NODES = 50_000
# The deepest real spec path is 7 levels (targets › [i] › credential-sets › host › key ...).
# Without a limit, 100,000 nested '[' exhaust Python's recursion in ruamel's composer.
_MAX_DEPTH = 32
# Explicit tags a spec may use (`!!str 1.10` keeps a version a string); any other tag
# (`!!python/object`, `!!binary`, `!custom`) has no meaning in a spec.
_CORE_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")
) | {"!"}


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
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            f"spec is not UTF-8 text (byte 0x{data[exc.start]:02x})", location=f"{path}:{line}:{col}"
        ) from None
    spec = parse_spec(text, filename=str(path))
    spec._base_dir = path.resolve().parent
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
    if not isinstance(tree, CommentedMap):
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
    yaml = YAML(typ="rt")
    yaml.Composer = _BoundedComposer
    yaml.Constructor = _Constructor
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        what = " ".join((exc.problem or exc.context or "invalid YAML").split())
        if "duplicate key" in what:
            what = what.split(" with value")[0]
        elif "<block" in what:
            what += " (is the indentation consistent?)"
        elif "'\\t'" in what:
            what += " (indent with spaces: YAML does not allow tabs)"
        elif "another document" in what:
            what = "found a second document ('---'): a spec is one YAML document"
        raise SpecError(f"invalid YAML: {what}", location=where) from None
    except ReaderError as exc:
        # A control character (NUL, say): ruamel reports a character offset, not a line.
        position = exc.position if isinstance(exc.position, int) else 0
        line = text.count("\n", 0, position) + 1
        col = position - (text.rfind("\n", 0, position) + 1) + 1
        char = exc.character if isinstance(exc.character, int) else 0
        raise SpecError(
            f"invalid YAML: control character U+{char:04X} is not allowed in YAML",
            location=f"{filename}:{line}:{col}",
        ) from None
    except YAMLError as exc:
        raise SpecError(f"invalid YAML: {_first_line(str(exc))}", location=filename) from None


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    return "string" if isinstance(value, str) else f"{type(value).__name__} value"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unreadable"


class _BoundedComposer(Composer):
    """ruamel's composer with the limits above: nesting depth, node count (aliases
    expanded), core tags only.

    Each anchored node's expanded size (itself plus everything under it, aliases included)
    is counted once, while it is composed: an alias then costs its anchor's size without
    being walked, so "billion laughs" (aliases of aliases) is refused in time linear in
    its text, before anything walks the expanded tree.
    """

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        # YAML allows an anchor to be redefined; ruamel would warn on stderr.
        self.warn_double_anchors = False
        self._sizes: dict[int, int] = {}  # id(anchored node) -> expanded size
        self._counts: list[int] = [0]  # expanded size of what each open level holds so far
        self._nodes = 0  # the whole document's, aliases expanded

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor)
            # A collection gets its end mark when it is complete: an alias to one still open
            # sits inside it (`&a [*a]`).
            if isinstance(target, (MappingNode, SequenceNode)) and target.end_mark is None:
                raise ComposerError(
                    None,
                    None,
                    f"alias *{event.anchor} refers to a node that contains it (a recursive structure)",
                    event.start_mark,
                )
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node), 1)
            self._count(
                size, event, "aliases expand the document to more than {limit} values (an alias bomb?)"
            )
            self._counts[-1] += size
            return node
        if len(self._counts) > _MAX_DEPTH:
            raise ComposerError(None, None, f"nesting deeper than {_MAX_DEPTH} levels", event.start_mark)
        tag = getattr(event, "tag", None)
        if tag is not None and str(tag) not in _CORE_TAGS:
            shown = str(tag).replace("tag:yaml.org,2002:", "!!")
            raise ComposerError(
                None,
                None,
                f"YAML tag '{shown}' is not supported (a spec holds only mappings, lists, "
                "strings, numbers and booleans)",
                event.start_mark,
            )
        self._count(1, event, "more than {limit} values: far more than a spec holds")
        self._counts.append(0)
        try:
            node = super().compose_node(parent, index)
        finally:
            children = self._counts.pop()
        self._counts[-1] += 1 + children
        if event.anchor is not None:
            self._sizes[id(node)] = 1 + children
        return node

    def _count(self, nodes: int, event: Any, problem: str) -> None:
        self._nodes += nodes
        if self._nodes > _MAX_NODES:
            raise ComposerError(None, None, problem.format(limit=f"{_MAX_NODES:,}"), event.start_mark)


class _Constructor(RoundTripConstructor):
    """Values Python cannot hold (`0000-01-01`, an integer of 5,000 digits, `!!bool 1`)
    become a YAML error at the value's position instead of a bare ValueError or KeyError."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            why = str(exc).split(": ")[0]
        except (KeyError, TypeError):
            why = f"not a valid {str(node.tag).replace('tag:yaml.org,2002:', '!!')}"
        raise ConstructorError(
            None, None, f"cannot read value '{_short(str(node.value))}': {why}", node.start_mark
        )


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, TaggedScalar):
        # The round-trip loader keeps an explicit `!!str 1.10` as a TaggedScalar; only core
        # tags get this far, and `!!str` is the one it keeps.
        return str(node.value)
    return node
