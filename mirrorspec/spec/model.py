"""The spec's pydantic models (version 1): sources and their repositories, credentials and the
secret references they hold, the base every provider's target model extends, and `Spec`.

Validation happens once, at the edge (`load`); after `load_spec()` nothing downstream sees a
dict. The parts providers extend are discriminated unions built at first use from the
installed providers, not at import (providers import this module): a target block is
validated with the `Target` model of the provider for its `type` (`_ByType`), a secret
reference with the model of its kind (`_ByRefKind`, `SECRET_REFERENCES`), and a
`credentials:` entry with `Credential` plus one field per provider-native form
(`credential_model()`, `CREDENTIAL_FORMS`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    Tag,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    field_validator,
    model_validator,
)

from .. import paths, versions
from ..errors import SpecError

__all__ = [
    "Credential",
    "CredentialForm",
    "EnvRef",
    "FileRef",
    "Host",
    "Mode",
    "OneErrorPerMapping",
    "Prefix",
    "Repository",
    "SecretRef",
    "SecretReference",
    "Source",
    "Spec",
    "SpecModel",
    "Target",
    "TargetBase",
    "credential_forms",
    "credential_model",
    "secret_reference_models",
    "target_models",
    "target_types",
]


Mode = Literal["mirror", "cache"]


def _first_error_only(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate a mapping entry by entry until one fails, then as a whole.

    pydantic reports every bad entry of a mapping (lists have `fail_fast`; mappings do
    not), and only the first is shown: a hostile `credentials:` of 500,000 bad entries
    cost ~850 MB of errors. A good mapping is validated twice; they are small.
    """
    if isinstance(value, dict) and len(value) > 1:
        for key, item in value.items():
            handler({key: item})
    return handler(value)


OneErrorPerMapping = WrapValidator(_first_error_only)
"""`Annotated[dict[...], OneErrorPerMapping]`: a mapping of entries the spec reads, bounded
in what a hostile one costs to reject."""

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
    min_length: int | None = None
    max_length: int | None = None
    """Length bounds the registry enforces (a pattern cannot say them where it allows `-`)."""


def _declared_by_kind(attribute: str) -> dict[str, Any]:
    """Kind → what the installed providers declare for it in their `attribute` mapping, sorted
    by kind; a kind two providers declare is the first's, by type name."""
    from .. import providers  # not at import: providers import the spec

    found: dict[str, Any] = {}
    for _, declared in providers.declared(attribute):
        for kind, value in declared.items():
            found.setdefault(kind, value)
    return dict(sorted(found.items()))


@cache
def secret_reference_models() -> dict[str, type[SecretReference]]:
    """Reference kind → its model: `env` and `file`, then the kinds installed providers add
    (`SECRET_REFERENCES`)."""
    return {"env": EnvRef, "file": FileRef, **_declared_by_kind("SECRET_REFERENCES")}


@cache
def credential_forms() -> dict[str, CredentialForm]:
    """Provider-native credential form kind → its form, for every installed provider
    (`CREDENTIAL_FORMS`)."""
    return _declared_by_kind("CREDENTIAL_FORMS")


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
        _snake(kind): (
            str | None,
            Field(default=None, pattern=form.pattern, min_length=form.min_length, max_length=form.max_length),
        )
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
    tags: list[str] | None = Field(default=None, min_length=1, fail_fast=True)
    tag_regex: str | None = None
    all_tags: bool = False
    on_moved: Literal["keep", "overwrite"] | None = Field(
        default=None,
        description=(
            "When a tag already at the destination has moved upstream to another digest: `keep` "
            "the destination's (the plan warns and copies nothing) or `overwrite` it. Default: "
            "keep for `versions:` (released versions are immutable), overwrite for `tags:`, "
            "`tag-regex:` and `all-tags:`. Applies to the Helm dependencies and chart images this "
            "entry pulls in; signatures always follow their digest (`mirrorspec/moved_tags.py`)."
        ),
    )
    helm_dependencies: bool | Literal["all", "newest"] = False
    signatures: bool = Field(
        default=True,
        description=(
            "Also copy what refers to every copied digest: cosign signatures, attestations and SBOMs "
            "(tags sha256-<hex>.sig/.att/.sbom) and OCI 1.1 referrers (the referrers API, else the "
            "referrers tag schema), with their digests; false copies none. Applies to the Helm "
            "dependencies this entry pulls in."
        ),
    )
    chart_images: bool = Field(
        default=False,
        description=(
            "On a Helm chart repository: also mirror the container images each selected chart "
            "version deploys (and the charts its Helm dependencies bring in), found in the chart's "
            "artifacthub.io/images annotation, .relok8s-images.yaml hints and values.yaml; "
            "`mirrorspec render helm-values` prints the values that point them at the mirror."
        ),
    )

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
    """An upstream registry and the repositories to take from it; without `repositories`, only
    how to reach that host (credentials, TLS) wherever the spec leads to it. Or, with
    `oci-layout:` instead of `registry:`, an OCI image layout directory (one an `oci-layout`
    target wrote) read offline, on the far side of an air gap."""

    # Exactly one of `registry` and `oci-layout` (`_one_origin`). For a layout, `registry`
    # becomes its stand-in host (`paths.layout_host`), so that everything keyed by a source
    # host (resolution, copies, the plan) reads the layout through its own client.
    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["registry"]}, {"required": ["oci-layout"]}]}
    )

    registry: Host = Field(default="", description="The upstream registry host (host or host:port).")
    oci_layout: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Instead of `registry`: an OCI image layout directory (relative to the spec file) that an "
            "`oci-layout` target wrote, read offline. Repository names are the paths inside the "
            "layout (`public.cr.seqera.io/charts/platform` when written with the scoped layout), "
            "selected with the same keys; every blob is verified before it is copied out. A layout "
            "source adds no host segment at the destination: its paths already carry it."
        ),
    )
    credentials: str | None = None
    insecure: bool = False
    ca_bundle: str | None = None
    repositories: list[Repository] = Field(
        default_factory=list,
        fail_fast=True,
        description=(
            "The repositories to take from this registry. Without it, the entry selects nothing and "
            "only gives the host's settings (credentials, ca-bundle, insecure), used wherever the "
            "spec leads to that host: Helm dependencies, chart images, referrers."
        ),
        # Editors flag `repositories: []` as loading does (`_not_empty`).
        json_schema_extra={"minItems": 1},
    )

    @field_validator("repositories", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        # An empty list is more likely a selection left unfinished than a settings-only entry,
        # which says so by leaving the key out.
        if isinstance(value, list) and not value:
            raise ValueError(
                "an empty list selects nothing: list repositories, or leave the key out for an "
                "entry that only gives this host's settings"
            )
        return value

    @model_validator(mode="after")
    def _one_origin(self) -> Source:
        if self.oci_layout is None:
            if not self.registry:
                raise ValueError("give registry: HOST, or oci-layout: DIR to read an OCI image layout")
            return self
        if self.registry:
            raise ValueError("give registry or oci-layout, not both")
        given = [
            key
            for key, present in (
                ("credentials", self.credentials is not None),
                ("ca-bundle", self.ca_bundle is not None),
                ("insecure", self.insecure),
            )
            if present
        ]
        if given:
            raise ValueError(
                f"{' and '.join(given)} cannot apply to an oci-layout source: it is a directory, "
                "read offline with no login or TLS"
            )
        if not self.repositories:
            raise ValueError("an oci-layout source lists the repositories to take from the layout")
        # The model is frozen; its stand-in host is derived, never written by the user.
        object.__setattr__(self, "registry", paths.layout_host(self.oci_layout))
        return self

    @property
    def settings_only(self) -> bool:
        """True when the entry selects nothing and only says how to reach its host."""
        return not self.repositories


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
    from .. import providers  # not at import: providers import the spec

    return {name: providers.get(name).Target for name in sorted(providers.available())}


def target_types() -> tuple[str, ...]:
    """The `type:` values installed providers accept, sorted."""
    from .. import providers

    return tuple(sorted(providers.available()))


Target = Annotated[TargetBase, _ByType()]


class Spec(SpecModel):
    """A whole spec file (version 1)."""

    # Built at first use, not at import: the target union comes from the installed providers,
    # which import this module (`_ByType`).
    model_config = ConfigDict(defer_build=True)

    version: Literal[1]
    mode: Mode = "mirror"
    layout: paths.Layout = "scoped"
    credentials: Annotated[dict[str, Annotated[Credential, _WithForms()]], OneErrorPerMapping] = Field(
        default_factory=dict
    )
    sources: list[Source] = Field(min_length=1, fail_fast=True)
    targets: list[Target] = Field(min_length=1, fail_fast=True)

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


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip_quoted(message: str) -> str:
    """Shorten every quoted value in a message: an error line echoes what the user wrote,
    and what they wrote may be a megabyte on one line. A value opens at a quote with no
    letter before it and closes at the next with none after it, so the text between two
    values (the hint) is never taken for one, nor an apostrophe (Helm's) for a quote."""
    return re.sub(r"(?<!\w)'(.*?)'(?!\w)", lambda m: f"'{_short(m[1])}'", message)
