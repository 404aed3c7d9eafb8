"""The spec (version 1): pydantic models, and loading YAML so every error has a position.

Validation happens once, here, at the edge; after `load_spec()` nothing downstream sees a
dict. Every error is a `SpecError` whose location is `file:line:col` and whose message
starts with a breadcrumb that names list items by their own key —
`targets[1] (name='prod-eu') › registry: ...` — and lists the valid values where there
is a fixed set. Positions come from ruamel.yaml's round-trip loader, which keeps the line
and column of every key and value (PyYAML's safe loader throws them away).

Secrets never appear in the spec: credentials are references (`{env: VAR}`,
`{file: path}`, or a kind an installed provider adds: `SECRET_REFERENCES`), or a
provider-native login named by one key (`CREDENTIAL_FORMS`); a literal password is refused
without echoing it.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, cast, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    Tag,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode
from ruamel.yaml.reader import ReaderError

from . import files, paths, versions
from .errors import SpecError

__all__ = [
    "Credential",
    "CredentialForm",
    "EnvRef",
    "FileRef",
    "Mode",
    "Repository",
    "SecretRef",
    "SecretReference",
    "Source",
    "Spec",
    "SpecModel",
    "Target",
    "TargetBase",
    "check_ca_bundle",
    "credential_forms",
    "json_schema",
    "load_spec",
    "parse_spec",
    "secret_reference_models",
    "target_models",
    "target_types",
]

Mode = Literal["mirror", "cache"]

_NAME = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
_ENV_VAR = r"^[A-Za-z_][A-Za-z0-9_]*$"
_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$")
# What a pattern means, for error messages: a regex alone is not an explanation (a provider's
# own patterns are in its models' PATTERN_MEANINGS and its credential forms).
_PATTERN_MEANING = {
    _NAME: "a name of lower-case letters, digits and '-'",
    _ENV_VAR: "an environment variable name",
}


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class SpecModel(BaseModel):
    """Spec blocks: unknown keys refused, immutable, kebab-case keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=_kebab, populate_by_name=True)

    # What a field pattern means, for error messages: a regex alone is not an explanation.
    PATTERN_MEANINGS: ClassVar[dict[str, str]] = {}


def _snake(key: str) -> str:
    return key.replace("-", "_")


# --- credential references -------------------------------------------------------------


class SecretReference(SpecModel):
    """Where one secret lives: a mapping whose one identifying key is its kind (`env`, `file`,
    or a kind a provider adds, whose registry reads the secret itself)."""

    # What the kind's value is, for the error that lists the kinds: `{env: VAR}`.
    PLACEHOLDER: ClassVar[str] = "VALUE"


class EnvRef(SecretReference):
    """The secret is the value of an environment variable."""

    PLACEHOLDER: ClassVar[str] = "VAR"
    env: str = Field(pattern=_ENV_VAR)


class FileRef(SecretReference):
    """The secret is the content of a file (trailing newline stripped), relative to the spec."""

    PLACEHOLDER: ClassVar[str] = "path"
    file: str = Field(min_length=1)


@dataclass(frozen=True)
class CredentialForm:
    """A provider-native `credentials:` entry: one key (the form's kind) whose value names a
    login the provider's registry reads itself (a cloud secret, a stored credential set)."""

    pattern: str
    """What the value must match."""
    meaning: str | None = None
    """What the pattern means, for error messages."""


@cache
def secret_reference_models() -> dict[str, type[SecretReference]]:
    """Reference kind → its model: `env` and `file`, then the kinds installed providers add
    (`SECRET_REFERENCES`), by kind; a kind two providers add is the first's, by type name."""
    from . import providers  # not at import: providers import the spec

    added: dict[str, type[SecretReference]] = {}
    for _, references in providers.declared("SECRET_REFERENCES"):
        for kind, model in references.items():
            added.setdefault(kind, model)
    return {"env": EnvRef, "file": FileRef, **dict(sorted(added.items()))}


@cache
def credential_forms() -> dict[str, CredentialForm]:
    """Provider-native credential form kind → its form, for every installed provider
    (`CREDENTIAL_FORMS`), by kind; a kind two providers add is the first's, by type name."""
    from . import providers

    forms: dict[str, CredentialForm] = {}
    for _, declared in providers.declared("CREDENTIAL_FORMS"):
        for kind, form in declared.items():
            forms.setdefault(kind, form)
    return dict(sorted(forms.items()))


def _ref_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for kind in secret_reference_models():
            if kind in value:
                return kind
    return None


class _ByRefKind:
    """Validates a secret reference with the model of its kind: a discriminated union of the
    core kinds and those installed providers add, built when the spec model is first used."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        models = secret_reference_models()
        shown = [f"{{{kind}: {model.PLACEHOLDER}}}" for kind, model in models.items()]
        listed = f"{', '.join(shown[:-1])} or {shown[-1]}" if len(shown) > 1 else shown[0]
        tagged = tuple(Annotated[model, Tag(kind)] for kind, model in models.items())
        union: Any = Union[tagged]  # noqa: UP007 (a runtime tuple)
        discriminator = Discriminator(
            _ref_kind, custom_error_type="secret_ref", custom_error_message=f"expected a reference: {listed}"
        )
        return handler.generate_schema(Annotated[union, discriminator])


SecretRef = Annotated[SecretReference, _ByRefKind()]


class Credential(SpecModel):
    """Named credentials: a username/password pair, or a provider-native login named by one key.

    `username` may be a literal (it is not secret); `password` must be a reference.
    """

    # The spec validates entries with `credential_model()`: this model plus one optional field
    # per form an installed provider adds (`CREDENTIAL_FORMS`). (The docstring above is what
    # `mirrorspec schema` shows.)

    # Built at first use, not at import: the reference kinds come from the installed
    # providers, which import this module (`_ByRefKind`).
    model_config = ConfigDict(defer_build=True)

    username: SecretRef | str | None = None
    password: SecretRef | None = None

    # Form kind → field name, in the model built with the installed providers' forms.
    FORMS: ClassVar[dict[str, str]] = {}

    def form(self, kind: str) -> str | None:
        """The value given for the provider-native form `kind`, if this entry is that form."""
        field = self.FORMS.get(kind)
        return None if field is None else cast("str | None", getattr(self, field))

    @property
    def native_form(self) -> str | None:
        """The kind of provider-native form this entry is, or None for username + password."""
        return next((kind for kind in self.FORMS if self.form(kind) is not None), None)

    @field_validator("password", mode="before")
    @classmethod
    def _no_literal_password(cls, value: Any) -> Any:
        if isinstance(value, (str, int, float)):
            # Deliberately does not echo the value: it is probably a real secret.
            raise ValueError(
                "a literal password is refused: secrets never go in the spec; "
                "write {env: VAR} or {file: path}"
            )
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Credential:
        forms = [
            self.username is not None or self.password is not None,
            *(self.form(kind) is not None for kind in self.FORMS),
        ]
        if sum(forms) != 1:
            raise ValueError(f"give exactly one of: {', '.join(['username + password', *self.FORMS])}")
        if forms[0] and (self.username is None or self.password is None):
            raise ValueError("username and password go together")
        return self


@cache
def credential_model() -> type[Credential]:
    """`Credential` with one optional field per provider-native form installed providers add."""
    fields: dict[str, Any] = {
        _snake(kind): (str | None, Field(default=None, pattern=form.pattern))
        for kind, form in credential_forms().items()
    }
    model = create_model(
        "Credential", __base__=Credential, __module__=__name__, __doc__=Credential.__doc__, **fields
    )
    model.FORMS = {kind: _snake(kind) for kind in credential_forms()}
    return model


class _WithForms:
    """Validates a `credentials:` entry with `credential_model()`, built at first use."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return handler.generate_schema(credential_model())


# --- sources ---------------------------------------------------------------------------


class Repository(SpecModel):
    """One upstream repository and the tags to take from it (exactly one selector)."""

    name: str
    versions: str | None = None
    tags: list[str] | None = Field(default=None, min_length=1)
    tag_regex: str | None = None
    all_tags: bool = False
    helm_dependencies: bool | Literal["all", "newest"] = False

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        # distribution-spec: clients limit host + '/' + name to 255 characters.
        if len(value) > 255:
            raise ValueError(f"'{_short(value)}' is longer than 255 characters: not a repository name")
        if not paths.valid_repository(value):
            raise ValueError(
                f"'{value}' is not a valid repository name "
                "(lower-case path components of [a-z0-9._-], joined by '/')"
            )
        return value

    @field_validator("versions")
    @classmethod
    def _valid_versions(cls, value: str | None) -> str | None:
        if value is not None:
            versions.VersionConstraint.parse(value)
        return value

    @field_validator("tags")
    @classmethod
    def _valid_globs(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or ():
            versions.validate_glob(pattern)
        return value

    @field_validator("tag_regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            versions.validate_regex(value)
        return value

    @model_validator(mode="after")
    def _one_selector(self) -> Repository:
        chosen = [
            key
            for key, present in (
                ("versions", self.versions is not None),
                ("tags", self.tags is not None),
                ("tag-regex", self.tag_regex is not None),
                ("all-tags", self.all_tags),
            )
            if present
        ]
        if not chosen:
            raise ValueError(
                "select tags with one of: versions, tags, tag-regex (or all-tags: true to take every tag)"
            )
        if len(chosen) > 1:
            raise ValueError(f"use only one tag selector, not {' and '.join(chosen)}")
        return self

    @property
    def follow_dependencies(self) -> Literal["none", "all", "newest"]:
        if self.helm_dependencies is True or self.helm_dependencies == "all":
            return "all"
        return "newest" if self.helm_dependencies == "newest" else "none"


def _valid_host(value: str) -> str:
    if "@" in value:
        # Not echoed: the part before '@' is probably a user name and password.
        raise ValueError("a registry host must not hold credentials (user@host): use `credentials:`")
    if not _HOST.match(value):
        raise ValueError(f"'{value}' is not a registry host (host or host:port, no scheme or path)")
    name, _, port = value.partition(":")
    if len(name) > 253 or any(not label or len(label) > 63 for label in name.split(".")):
        raise ValueError(f"'{value}' is not a registry host (DNS labels are 1-63 characters, no '..')")
    if port and not 0 < int(port) < 65536:
        raise ValueError(f"'{value}': port {port} is outside 1-65535")
    return value


Host = Annotated[str, AfterValidator(_valid_host)]


def _valid_prefix(value: str) -> str:
    # Every destination starts with the prefix (paths.destination strips its slashes), so
    # a prefix that is not a repository path would make every destination invalid.
    if value.strip("/") and not paths.valid_repository(value.strip("/")):
        raise ValueError(
            f"'{value}' is not a repository path prefix "
            "(lower-case path components of [a-z0-9._-], joined by '/')"
        )
    return value


Prefix = Annotated[str, AfterValidator(_valid_prefix)]


class Source(SpecModel):
    """An upstream registry and the repositories to take from it."""

    registry: Host
    credentials: str | None = None
    insecure: bool = False
    ca_bundle: str | None = None
    repositories: list[Repository] = Field(min_length=1)


# --- targets ---------------------------------------------------------------------------


class TargetBase(SpecModel):
    """What every target block has, whatever its `type:`. A provider's `Target` model extends it
    with a `type: Literal["<name>"]` field and its own keys; the spec validates each block with
    the model of the provider installed for its `type` (`_ByType`)."""

    name: str = Field(pattern=_NAME, max_length=63)
    mode: Mode | None = None
    layout: paths.Layout | None = None
    if TYPE_CHECKING:
        # Each provider's model declares `type: Literal["<name>"]`, the union's discriminator;
        # here only for the type checker, so that the base adds no field of its own.
        type: str

    def problems(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """What only the whole block shows once its keys are valid, as (message, key path below
        the target); reported at that path like any other spec error. None by default."""
        return iter(())

    def destination(self, spec: Spec, source_registry: str, repository: str) -> str:
        """Where `source_registry/repository` lands in this target, without its host: the one
        path mapping (`paths.destination`) with this target's prefix and layout (its own
        `layout:`, else the spec's). A provider's model names its prefix `prefix`, as a key or
        as a property (a target whose prefix is its project); a model without one puts
        repositories at the root."""
        prefix: str | None = getattr(self, "prefix", None)
        return paths.destination(prefix, spec.layout_of(self), source_registry, repository)


class _ByType:
    """Validates a target block with the `Target` model of the provider installed for its
    `type` (entry points, `providers.available()`): a discriminated union, built when the spec
    model is first used (`Spec` defers its build), so an installed provider adds a type."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        models = tuple(target_models().values())
        union = models[0] if len(models) == 1 else Union[models]  # noqa: UP007 (a runtime tuple)
        return handler.generate_schema(Annotated[union, Field(discriminator="type")])


def target_models() -> dict[str, type[TargetBase]]:
    """Target type → its provider's `Target` model, for every installed provider, by type name."""
    from . import providers  # not at import: providers import the spec

    return {name: providers.get(name).Target for name in sorted(providers.available())}


def target_types() -> tuple[str, ...]:
    """The `type:` values installed providers accept, sorted."""
    from . import providers

    return tuple(sorted(providers.available()))


# A name that lived here before the target models moved into their providers: `importers`
# still imports `RegistryTarget` from here. Resolved on first use: the providers import this module.
_MOVED = {"RegistryTarget": "registry"}


def __getattr__(name: str) -> Any:
    if name == "TARGET_TYPES":
        return target_types()
    if name in _MOVED:
        return target_models()[_MOVED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Target = Annotated[TargetBase, _ByType()]


class Spec(SpecModel):
    """A whole spec file (version 1)."""

    # Built at first use, not at import: the target union comes from the installed providers,
    # which import this module (`_ByType`).
    model_config = ConfigDict(defer_build=True)

    version: Literal[1]
    mode: Mode = "mirror"
    layout: paths.Layout = "scoped"
    credentials: dict[str, Annotated[Credential, _WithForms()]] = Field(default_factory=dict)
    sources: list[Source] = Field(min_length=1)
    targets: list[Target] = Field(min_length=1)

    _base_dir: Path = PrivateAttr(default=Path("."))
    _positions: dict[tuple[Any, ...], str] = PrivateAttr(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """The spec file's directory: relative `file:` and `ca-bundle` paths start here."""
        return self._base_dir

    def location_of(self, loc: tuple[Any, ...]) -> str | None:
        """`file:line:col` of a key path in the spec file, for errors found after loading."""
        return self._positions.get(loc)

    def target(self, name: str) -> Target:
        for target in self.targets:
            if target.name == name:
                return target
        raise SpecError(f"no target named '{name}' (targets: {', '.join(t.name for t in self.targets)})")

    def mode_of(self, target: Target) -> Mode:
        return target.mode or self.mode

    def layout_of(self, target: Target) -> paths.Layout:
        return target.layout or self.layout


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
        where = _position(tree, ("version",), filename, key=False) if "version" in tree else None
        found = _short(repr(version)) if "version" in tree else "nothing"
        raise SpecError(f"version: expected 1, found {found}", location=where or f"{filename}:1:1")
    try:
        # Keys are the kebab-case aliases only (`populate_by_name` is for Python callers):
        # `replicate_to` in a file is an unknown key, as the JSON Schema says.
        spec = Spec.model_validate(_plain(tree), by_name=False)
    except ValidationError as exc:
        raise _spec_error(exc, tree, filename) from None
    _cross_checks(spec, tree, filename)
    # Credentials are read late (at plan time); keep where each reference was written so
    # that "variable not set" can point at the line.
    for name, credential in tree.get("credentials", {}).items():
        for part in credential or ():
            loc: tuple[Any, ...] = ("credentials", name, part)
            spec._positions[loc] = _position(tree, loc, filename)
    for i in range(len(tree.get("targets", []))):
        spec._positions[("targets", i)] = _position(tree, ("targets", i), filename)
    # A CA bundle is read at load (`check_ca_bundle`), after parsing: its errors point here.
    for section in ("sources", "targets"):
        for i, item in enumerate(tree.get(section, [])):
            if "ca-bundle" in item:
                spec._positions[(section, i, "ca-bundle")] = _position(
                    tree, (section, i, "ca-bundle"), filename
                )
    # Resolving finds problems that belong to a repository entry (a Helm dependency cycle).
    for s, source in enumerate(tree.get("sources", [])):
        for r in range(len(source.get("repositories", []))):
            entry: tuple[Any, ...] = ("sources", s, "repositories", r)
            spec._positions[entry] = _position(tree, entry, filename)
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


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip_quoted(message: str) -> str:
    """Shorten every quoted value in a message: an error line echoes what the user wrote,
    and what they wrote may be a megabyte on one line."""
    return re.sub(r"'([^']{60,})'", lambda m: f"'{_short(m[1])}'", message)


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


# --- error reporting -------------------------------------------------------------------


def _spec_error(exc: ValidationError, tree: CommentedMap, filename: str) -> SpecError:
    # One error is reported: the first, which pydantic gives in document order. A user fixes
    # it and re-runs; a wall of derived errors from one typo helps nobody.
    error = exc.errors(include_url=False)[0]
    loc = _document_path(tuple(error["loc"]), tree)
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        parent, key = loc[:-1], loc[-1]
        return SpecError(
            f"{_crumbs(tree, parent)}missing required key '{key}'",
            location=_position(tree, parent, filename, key=False),
        )
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], tree)
        hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
        return SpecError(
            f"{_crumbs(tree, loc[:-1])}unknown key '{loc[-1]}'{hint}",
            location=_position(tree, loc, filename, key=True),
        )
    if kind == "union_tag_invalid":
        return SpecError(
            f"{_crumbs(tree, loc)}type '{ctx.get('tag')}' is not one of: {', '.join(target_types())}",
            location=_position(tree, (*loc, "type"), filename, key=False),
        )
    if kind == "union_tag_not_found":
        return SpecError(
            f"{_crumbs(tree, loc)}missing required key 'type' (one of: {', '.join(target_types())})",
            location=_position(tree, loc, filename, key=False),
        )
    message = str(error["msg"]).removeprefix("Value error, ").replace("Input should be ", "expected ")
    if kind == "literal_error":
        message = f"expected {ctx.get('expected')}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = "expected a mapping"
    elif kind == "too_short":
        message = f"expected at least {ctx.get('min_length')} item(s)"
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
    return SpecError(f"{_crumbs(tree, loc)}{_clip_quoted(message)}", location=_position(tree, loc, filename))


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


def _position(tree: Any, loc: Sequence[Any], filename: str, *, key: bool = False) -> str:
    steps = _walk(tree, loc)
    if not steps:
        line, col = 0, 0
    else:
        container, seg = steps[-1]
        if isinstance(container, CommentedSeq):
            line, col = container.lc.item(seg)
        elif isinstance(container, CommentedMap):
            value = container[seg]
            # An empty value (`key:` or `key: []`) has no position of its own: ruamel puts it
            # at the next token, often on a later line.
            if key or value is None or (isinstance(value, (dict, list)) and not value):
                line, col = container.lc.key(seg)
            elif isinstance(value, CommentedMap | CommentedSeq) and not key:
                line, col = value.lc.line, value.lc.col
            else:
                line, col = container.lc.value(seg)
        else:
            line, col = 0, 0
    return f"{filename}:{line + 1}:{col + 1}"


def _crumbs(tree: Any, loc: Sequence[Any]) -> str:
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


# --- checks across the document --------------------------------------------------------


def _cross_checks(spec: Spec, tree: CommentedMap, filename: str) -> None:
    def fail(message: str, loc: tuple[Any, ...]) -> None:
        raise SpecError(
            f"{_crumbs(tree, loc)}{_clip_quoted(message)}", location=_position(tree, loc, filename)
        )

    known = sorted(spec.credentials)
    names = ", ".join(known) if known else "none are defined"
    for i, source in enumerate(spec.sources):
        if source.credentials is not None and source.credentials not in spec.credentials:
            fail(
                f"unknown credentials '{source.credentials}' ({names})",
                ("sources", i, "credentials"),
            )
    # An upstream is read with one set of settings (RunContext.source_endpoint takes the
    # first entry's): two entries for one host that disagree would silently read the
    # second's repositories with the first's credentials.
    first_source: dict[str, int] = {}
    for i, source in enumerate(spec.sources):
        host = paths.normalize_registry(source.registry)
        j = first_source.setdefault(host, i)
        other = spec.sources[j]
        settings = ("credentials", "insecure", "ca_bundle")
        differ = [_kebab(k) for k in settings if getattr(source, k) != getattr(other, k)]
        if differ:
            fail(
                f"registry '{host}' is also sources[{j}], with another {' and '.join(differ)}: "
                "an upstream is read one way; merge the entries or make them agree",
                ("sources", i, "registry"),
            )
    seen_targets: dict[str, int] = {}
    for i, target in enumerate(spec.targets):
        if target.name in seen_targets:
            fail(
                f"duplicate target name '{target.name}' (also targets[{seen_targets[target.name]}])",
                ("targets", i, "name"),
            )
        seen_targets[target.name] = i
        for message, below in target.problems():
            fail(message, ("targets", i, *below))
        credentials = getattr(target, "credentials", None)
        if credentials is not None and credentials not in spec.credentials:
            fail(f"unknown credentials '{credentials}' ({names})", ("targets", i, "credentials"))
        # Two sources landing on one destination would overwrite each other's tags.
        claimed: dict[str, str] = {}
        for s, source in enumerate(spec.sources):
            for r, repo in enumerate(source.repositories):
                dest = target.destination(spec, source.registry, repo.name)
                host = paths.normalize_registry(source.registry)
                origin = f"{host}/{paths.normalize_repository(source.registry, repo.name)}"
                if dest in claimed:
                    what = (
                        f"repository '{origin}' is listed twice"
                        if claimed[dest] == origin
                        else f"'{origin}' and '{claimed[dest]}' both map to '{dest}' in target "
                        f"'{target.name}' (use layout: scoped or another prefix)"
                    )
                    fail(what, ("sources", s, "repositories", r, "name"))
                claimed[dest] = origin
