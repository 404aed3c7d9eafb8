"""`mirrorspec import skopeo`: a `skopeo sync --src yaml` file turned into a spec (version 1).

The rule: the import is exact or it fails. The converted spec selects exactly the tags skopeo
would sync from the same file, or the import stops with one line naming the file position
and what to change — it never quietly mirrors less (or more) than skopeo did.

How each key of a registry block (research/sync.md §1.1) becomes spec:
- `images: {repo: [tags]}` → `tags:` (tags are literal; tag characters are never glob
  characters). `repo: []` (or no value: Go reads a nil list the same) → `all-tags: true`.
  A digest (`sha256:…`) is refused: spec v1 selects tags only, it has no digest selector.
  An unquoted `- 1.10` is the tag "1.10", as skopeo reads it (not the YAML number 1.1).
- `images-by-tag-regex: {repo: regex}` → `tag-regex:`. skopeo tests Go's `MatchString`,
  which is *not anchored* (`alpine` matches `3.18-alpine`), while a spec's `tag-regex` must
  match the whole tag. So the pattern is written `.*(?:PATTERN).*`, which matches a tag
  exactly when PATTERN matches somewhere in it; the group keeps a top-level `|` inside.
  Without any `|`, a leading `^` / trailing `$` already anchor that end, so no `.*` is
  added there (`^1\\.13\\.[12]-alpine-perl$` stays as written). What Go's dialect and
  Python's read differently is translated or refused (`go_regex`).
- `images-by-semver: {repo: constraint}` → `versions:` (the same Masterminds dialect).
- `credentials: {username, password}` → a `credentials:` entry of `{env: VAR}` references;
  the values are never copied nor printed: the variables to set are listed instead. The
  username becomes a reference too: the spec is usually committed, the sync file often not.
- `tls-verify: false` → `insecure: true`.
- `cert-dir` → a comment and a message: a spec's `ca-bundle` is one PEM file, not a directory.

A repository named under several keys is the union of what they select, as in skopeo:
tags and regexes combine into one anchored regex; a semver range combines with nothing
else (one selector per repository), so that case is refused. Unknown keys are errors (skopeo
ignores them silently). Several YAML documents (as `render skopeo` prints) are merged.
Destinations follow the spec's layout, not skopeo's `DEST/<last path component>` naming;
skopeo's `--dest` is not in the file, so the target is a placeholder unless given.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .. import paths, versions
from ..errors import SpecError
from ..files import UnreadableFile, read_user_file
from ..redaction import register_secret
from ..spec import Host, RegistryTarget, Repository, parse_spec
from .go_regex import anchored_regex

__all__ = ["Converted", "SkopeoFileError", "convert_skopeo", "import_skopeo"]

REGISTRY_KEYS = ("images", "images-by-tag-regex", "images-by-semver", "credentials", "tls-verify", "cert-dir")
CREDENTIAL_KEYS = ("username", "password")
# Docker/OCI tag grammar: none of these characters is a glob character, so a tag is its own glob.
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")  # OCI digest grammar
_HOSTS: TypeAdapter[str] = TypeAdapter(Host)


class SkopeoFileError(SpecError):
    """The skopeo sync file cannot be converted exactly; `location` is `file:line:col`."""


@dataclass(frozen=True)
class Converted:
    """A converted spec: its YAML text, and what the user must do or know (for stderr)."""

    text: str
    messages: tuple[str, ...]


def import_skopeo(
    path: str | Path,
    *,
    target_name: str = "mirror",
    target_registry: str = "registry.example.invalid",
    prefix: str | None = None,
) -> Converted:
    """Read a skopeo sync file and convert it (see the module docstring for the rules)."""
    path = Path(path)
    try:
        text = read_user_file(path, what="skopeo sync file", max_bytes=MAX_SYNC_FILE_BYTES).decode("utf-8")
    except UnreadableFile as exc:
        raise SkopeoFileError(f"cannot read skopeo sync file: {exc.reason}", location=str(path)) from None
    except UnicodeDecodeError:
        raise SkopeoFileError("skopeo sync file is not UTF-8 text", location=str(path)) from None
    return convert_skopeo(
        text, filename=str(path), target_name=target_name, target_registry=target_registry, prefix=prefix
    )


# ruamel's round-trip loader reads a sync file (~4 s and ~150 MB a MiB), so the limit stays
# where the spec's was before libyaml: 1 MiB is ~10,000 repositories, well under the spec's.
MAX_SYNC_FILE_BYTES = 1 << 20


# --- reading -----------------------------------------------------------------------------


@dataclass
class _Repo:
    tags: list[str] = field(default_factory=list)
    all_tags: bool = False
    regexes: list[str] = field(default_factory=list)  # skopeo's own (unanchored) patterns
    semver: list[str] = field(default_factory=list)
    where: str = ""


@dataclass
class _Registry:
    host: str
    repos: dict[str, _Repo] = field(default_factory=dict)
    insecure: bool | None = None
    cert_dir: str | None = None
    has_credentials: bool = False
    where: str = ""


class _Reader:
    """Walks the YAML documents, checking every key and value at its file position."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.registries: dict[str, _Registry] = {}

    def fail(self, node: Any, key: Any, message: str, *, value: bool = True) -> SkopeoFileError:
        return SkopeoFileError(message, location=self.position(node, key, value=value))

    def position(self, node: Any, key: Any, *, value: bool = True) -> str:
        try:
            if isinstance(node, CommentedMap):
                line, col = node.lc.value(key) if value else node.lc.key(key)
            elif isinstance(node, CommentedSeq):
                line, col = node.lc.item(key)
            else:
                return self.filename
        except (KeyError, TypeError, IndexError):
            return self.filename
        return f"{self.filename}:{line + 1}:{col + 1}"

    def document(self, tree: Any) -> None:
        if tree is None:
            return
        if not isinstance(tree, CommentedMap):
            raise SkopeoFileError(
                "a skopeo sync file is a mapping of registry host → settings", location=f"{self.filename}:1:1"
            )
        for key, block in tree.items():
            self.registry(tree, key, block)

    def registry(self, tree: CommentedMap, key: Any, block: Any) -> None:
        name = str(key).strip().rstrip("/")
        host, _, path = name.partition("/")  # skopeo joins `key/repo`, so a key may carry a path
        host = paths.normalize_registry(host)
        try:
            _HOSTS.validate_python(host)
        except ValidationError:
            raise self.fail(tree, key, f"'{key}' is not a registry host[:port]", value=False) from None
        if not isinstance(block, CommentedMap):
            raise self.fail(tree, key, f"{key}: expected a mapping of settings")
        registry = self.registries.setdefault(
            host, _Registry(host, where=self.position(tree, key, value=False))
        )
        for setting, value in block.items():
            crumb = f"{key} › {setting}"
            if setting not in REGISTRY_KEYS:
                raise self.fail(
                    block,
                    setting,
                    f"{key}: unknown key '{setting}' (expected one of: {', '.join(REGISTRY_KEYS)}); "
                    "skopeo would silently ignore it",
                    value=False,
                )
            if setting == "tls-verify":
                if not isinstance(value, bool):
                    raise self.fail(block, setting, f"{crumb}: expected true or false")
                self.agree(block, setting, registry, "insecure", not value)
            elif setting == "cert-dir":
                if not isinstance(value, str) or not value:
                    raise self.fail(block, setting, f"{crumb}: expected a directory path")
                self.agree(block, setting, registry, "cert_dir", value)
            elif setting == "credentials":
                self.credentials(block, setting, value, crumb)
                registry.has_credentials = True
            else:
                if not isinstance(value, CommentedMap):
                    raise self.fail(block, setting, f"{crumb}: expected a mapping of repository → selection")
                for repo_key, selection in value.items():
                    self.selection(registry, path, setting, value, repo_key, selection, crumb)

    def agree(self, block: CommentedMap, key: str, registry: _Registry, attr: str, value: Any) -> None:
        """The same host in two documents must not disagree on a connection setting."""
        current = getattr(registry, attr)
        if current is not None and current != value:
            raise self.fail(
                block, key, f"{registry.host} › {key}: differs from an earlier block for this host"
            )
        setattr(registry, attr, value)

    def credentials(self, block: CommentedMap, key: str, value: Any, crumb: str) -> None:
        # Never echo a value from here: it is a secret — and scrubbed, should anything else do so.
        if not isinstance(value, CommentedMap):
            raise self.fail(block, key, f"{crumb}: expected a mapping with username and password")
        if isinstance(value.get("password"), str):
            register_secret(value["password"])
        for part in value:
            if part not in CREDENTIAL_KEYS:
                raise self.fail(
                    value,
                    part,
                    f"{crumb}: unsupported key '{part}' (expected: username, password)",
                    value=False,
                )
        missing = [
            part for part in CREDENTIAL_KEYS if not isinstance(value.get(part), str) or not value[part]
        ]
        if missing:
            raise self.fail(block, key, f"{crumb}: expected a non-empty string {' and '.join(missing)}")

    def selection(
        self,
        registry: _Registry,
        path: str,
        setting: str,
        repos: CommentedMap,
        repo_key: Any,
        selection: Any,
        crumb: str,
    ) -> None:
        name = "/".join(part for part in (path, str(repo_key).strip("/")) if part)
        crumb = f"{crumb} › {repo_key}"
        repo = registry.repos.setdefault(name, _Repo(where=self.position(repos, repo_key, value=False)))
        if setting == "images":
            if selection is None or (isinstance(selection, CommentedSeq) and not selection):
                repo.all_tags = True  # skopeo: an empty (or nil) list means every tag
                return
            if not isinstance(selection, CommentedSeq):
                raise self.fail(repos, repo_key, f"{crumb}: expected a list of tags ([] for every tag)")
            for i, tag in enumerate(selection):
                repo.tags.append(self.tag(selection, i, tag, crumb))
            return
        if not isinstance(selection, str) or not selection.strip():
            what = "a regular expression" if setting == "images-by-tag-regex" else "a semver constraint"
            raise self.fail(repos, repo_key, f"{crumb}: expected {what} (one string)")
        try:
            if setting == "images-by-tag-regex":
                anchored_regex(selection)
                repo.regexes.append(selection)
            else:
                versions.VersionConstraint.parse(selection)
                repo.semver.append(selection)
        except ValueError as exc:
            raise self.fail(repos, repo_key, f"{crumb}: {exc}") from None

    def tag(self, seq: CommentedSeq, index: int, tag: Any, crumb: str) -> str:
        if not isinstance(tag, str):
            raise self.fail(seq, index, f"{crumb}: expected a tag string")
        if _DIGEST.match(tag):
            raise self.fail(
                seq,
                index,
                f"{crumb}: '{tag}' is a digest; spec v1 selects tags only (no digest selector): "
                "replace it with the tag it was published under, or remove it",
            )
        if not _TAG.match(tag):
            raise self.fail(seq, index, f"{crumb}: '{tag}' is not a valid tag")
        return tag


def _yaml_loader() -> YAML:
    """Round-trip YAML (for positions) that keeps numbers and dates as the text written.

    skopeo decodes `- 1.10` into the string "1.10" (Go yaml sets a string field to the
    scalar's text); a YAML number would be 1.1 — another tag.
    """

    class _KeepText(RoundTripConstructor):
        pass

    def as_text(constructor: Any, node: Any) -> Any:
        return constructor.construct_scalar(node)

    for tag in ("int", "float", "timestamp"):
        _KeepText.add_constructor(f"tag:yaml.org,2002:{tag}", as_text)
    yaml = YAML(typ="rt")
    yaml.Constructor = _KeepText
    return yaml


def _documents(text: str, filename: str) -> Iterator[Any]:
    try:
        yield from _yaml_loader().load_all(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise SkopeoFileError(
            f"invalid YAML: {(exc.problem or exc.context or '').strip()}", location=where
        ) from None
    except YAMLError as exc:
        raise SkopeoFileError(f"invalid YAML: {str(exc).splitlines()[0]}", location=filename) from None


# --- writing -----------------------------------------------------------------------------


def convert_skopeo(
    text: str,
    *,
    filename: str = "<skopeo>",
    target_name: str = "mirror",
    target_registry: str = "registry.example.invalid",
    prefix: str | None = None,
) -> Converted:
    """Convert skopeo sync YAML text; the result has been validated as a spec."""
    reader = _Reader(filename)
    for tree in _documents(text, filename):
        reader.document(tree)
    if not reader.registries:
        raise SkopeoFileError("no registries: nothing to import", location=filename)
    messages: list[str] = []
    target = _target(target_name, target_registry, prefix)
    document = CommentedMap()
    document["version"] = 1
    credentials = CommentedMap()
    sources = CommentedSeq()
    for registry in reader.registries.values():
        if not registry.repos:
            messages.append(f"{registry.where}: {registry.host} lists no images (skopeo syncs none): skipped")
            continue
        source = CommentedMap()
        source["registry"] = registry.host
        if registry.has_credentials:
            name, user_var, password_var = _credential_names(registry.host)
            credentials[name] = CommentedMap(
                username=_flow({"env": user_var}), password=_flow({"env": password_var})
            )
            source["credentials"] = name
            messages.append(
                f"{registry.host}: set {user_var} and {password_var} to the credentials in {filename} "
                "(they were not copied into the spec)"
            )
        if registry.insecure:
            source["insecure"] = True
        repositories = CommentedSeq()
        for name, repo in registry.repos.items():
            entry, note = _repository(registry.host, name, repo)
            repositories.append(entry)
            if note:
                repositories.yaml_set_comment_before_after_key(len(repositories) - 1, before=note, indent=6)
                messages.append(f"{registry.host}/{name}: {note}")
        source["repositories"] = repositories
        sources.append(source)
        if registry.cert_dir:
            note = (
                f"skopeo cert-dir {registry.cert_dir} was not converted: set ca-bundle: to the CA file\n"
                "(PEM) in it; client certificates (*.cert, *.key) are not supported"
            )
            sources.yaml_set_comment_before_after_key(len(sources) - 1, before=note, indent=2)
            messages.append(f"{registry.host}: {' '.join(note.split())}")
    if not sources:
        raise SkopeoFileError("no images to sync in any registry: nothing to import", location=filename)
    if credentials:
        document["credentials"] = credentials
    document["sources"] = sources
    document["targets"] = CommentedSeq([target])
    document.yaml_set_start_comment(
        f"Converted from {Path(filename).name} by `mirrorspec import skopeo`.\n"
        "Destinations follow the spec's layout (<prefix>/<source host>/<repository>),\n"
        "not skopeo's DEST/<last path component>."
    )
    if target_registry == "registry.example.invalid":
        document["targets"].yaml_set_comment_before_after_key(
            0, before="placeholder: set the registry you mirror into (skopeo's --dest)", indent=2
        )
        messages.append(f"target '{target_name}' is a placeholder: set its registry (skopeo's --dest)")
    out = io.StringIO()
    writer = YAML(typ="rt")
    writer.indent(mapping=2, sequence=4, offset=2)
    writer.dump(document, out)
    converted = out.getvalue()
    try:
        parse_spec(converted, filename="<converted spec>")
    except SpecError as exc:  # every part was checked on the way in: this is a bug
        raise AssertionError(f"import produced an invalid spec: {exc}\n{converted}") from None
    return Converted(converted, tuple(messages))


def _repository(host: str, name: str, repo: _Repo) -> tuple[CommentedMap, str | None]:
    entry = CommentedMap(name=name)
    note = None
    if repo.all_tags:
        entry["all-tags"] = True
        if repo.tags or repo.regexes or repo.semver:
            note = "images: [] takes every tag; the other selections of this repository add nothing"
    elif repo.semver:
        if repo.tags or repo.regexes:
            raise SkopeoFileError(
                f"{host}/{name}: selected by images-by-semver and by images or images-by-tag-regex; "
                "a spec repository takes one selector: merge them into one range, or into tags / one regex",
                location=repo.where,
            )
        entry["versions"] = " || ".join(dict.fromkeys(repo.semver))
    elif repo.regexes:
        alternatives = [re.escape(tag) for tag in dict.fromkeys(repo.tags)]
        alternatives += [anchored_regex(pattern) for pattern in dict.fromkeys(repo.regexes)]
        regex = alternatives[0] if len(alternatives) == 1 else "|".join(f"(?:{a})" for a in alternatives)
        entry["tag-regex"] = regex
        if repo.tags or regex != repo.regexes[0]:
            shown = " and ".join(f"'{p}'" for p in dict.fromkeys(repo.regexes))
            note = f"skopeo regex {shown} matches anywhere in a tag: written anchored, same tags"
            if repo.tags:
                note += ", with the listed tags"
    else:
        entry["tags"] = _flow(list(dict.fromkeys(repo.tags)))
    try:
        Repository.model_validate(dict(entry), by_name=False)
    except ValidationError as exc:
        message = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        raise SkopeoFileError(f"{host}/{name}: {message}", location=repo.where) from None
    return entry, note


def _target(name: str, registry: str, prefix: str | None) -> CommentedMap:
    target = CommentedMap(name=name, type="registry", registry=registry)
    if prefix:
        target["prefix"] = prefix
    try:
        RegistryTarget.model_validate(dict(target), by_name=False)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        option = {"name": "--target-name", "registry": "--target-registry", "prefix": "--prefix"}
        which = option.get(str(error["loc"][0]) if error["loc"] else "", "target")
        shown = f" '{error['input']}'" if isinstance(error.get("input"), str) else ""
        raise SpecError(f"{which}{shown}: {error['msg'].removeprefix('Value error, ')}") from None
    return target


def _credential_names(host: str) -> tuple[str, str, str]:
    """(credentials entry name, username variable, password variable) for one host."""
    slug = re.sub(r"[^a-z0-9]+", "-", host.lower()).strip("-")
    var = slug.upper().replace("-", "_")
    if var[0].isdigit():
        var = f"REGISTRY_{var}"
    return slug, f"{var}_USERNAME", f"{var}_PASSWORD"


def _flow(value: Any) -> Any:
    node: CommentedMap | CommentedSeq = (
        CommentedMap(value) if isinstance(value, dict) else CommentedSeq(value)
    )
    node.fa.set_flow_style()
    return node
