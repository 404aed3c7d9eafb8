"""Saved plans, as Terraform's `plan -out` / `apply PLANFILE`: a plan written to a file by
`mirrorspec plan SPEC --out FILE`, reviewed in a pull request, carried out later by
`mirrorspec apply FILE` — exactly as written, or not at all.

The file is JSON, one object, written in this order so that a reader (and `detect`) sees what
it is in its first line:

```
{"format": "mirrorspec-saved-plan", "version": 1, "mirrorspec": "0.1.0",
 "spec": {"path": "spec.yaml", "sha256": "<hex>"},
 "targets": ["lab"], "prune": false, "shard": null,
 "fingerprint": "sha256:<hex>",
 "plan": { ...the `plan --format json` document... }}
```

Decisions, and why:

- **A saved plan or a spec?** `apply` takes either, and YAML reads JSON, so the file must say
  what it is before anything else: its first key is `"format": "mirrorspec-saved-plan"`
  (`detect` looks for it in the first bytes, so a truncated plan is still recognised as a
  plan and refused as truncated, not read as a broken spec), then `version`. An unknown
  version is refused in one line: a newer mirrorspec wrote it. A spec can never look like
  one: `format` is no spec key, and the spec refuses unknown keys.
- **What it records about the spec:** its path as given (resolved against the working
  directory at apply, as the command line resolved it) and the sha256 of its canonical form
  (`layout_lock.spec_sha256`, the hash `mirrorspec.lock.json` records): comments and
  formatting do not make a plan stale, any change of meaning does. The hash is taken of the
  very `Spec` object that was planned and, at apply, of the one re-planned, so the file cannot
  change between hashing and reading. Credentials, `{file:}` secrets and `ca-bundle`s are
  read at apply, never stored: the spec holds only references (it refuses literal passwords),
  and `write` refuses to write a text in which `redaction` finds any secret the run read, in
  any of the encodings it knows (raw, base64, JSON- or URL-escaped...).
- **What it records about the registries (`fingerprint`):** the plan document itself holds
  every observation the plan rests on: the upstream digest of every selected tag
  (`artifacts`), each copy's pinned source digest, its reason and the destination digest it
  overwrites, the native changes with the attributes observed (`before`), the count of tags
  already up to date, the notes (a tag kept because it moved upstream names both digests).
  `fingerprint` is the sha256 of that document in canonical JSON (sorted keys, no spaces);
  it tells a plan edited or damaged by hand from the one `plan` wrote. It is a checksum, not
  a signature: anyone who can edit the file can recompute it.
- **How apply checks it:** the simplest sound way: plan again, with the same spec, targets,
  `--prune` and `--shard`, and compare the whole new document with the saved one, generically
  (whatever a plan holds now or later is compared, field by field would forget the next one).
  This rests on a plan being the same bytes for the same spec, upstream and registries,
  whichever reader answered first (issue 18 item 2, `stable_order`,
  `tests/test_deterministic_output.py`): a plan in another order would be refused as stale.
  Equal: the new plan, which is the saved one, is carried out (`engine.apply`). Different: the
  plan is stale, nothing is applied, exit 1, and one line names the first difference
  (`first_difference`). So a saved plan can never make apply do anything that `apply SPEC`
  would not do at that moment — not even a plan edited by hand with its fingerprint redone.
- **What is guaranteed, and what is not (TOCTOU):** each copy is pinned to the upstream
  digest in the plan (skopeo copies `repository@digest`), so a tag that moves upstream after
  the check still gets the reviewed content. Between the check and each write (seconds, the
  length of the run) the registries are not locked — no registry API offers that: a push to
  the destination in that window is overwritten by the reviewed digest or, if it comes after
  the copy, wins; a native rule edited in that window is overwritten by the reviewed one.
  That is the window `apply SPEC` has between its plan and its writes; a saved plan does not
  widen it. A plan applied once is stale the next time (what it copied is now there): apply
  refuses it as stale, like Terraform, so a retried CI job never repeats a reviewed plan
  blindly.
- **No confirmation:** the plan was reviewed; as `terraform apply PLANFILE` ("takes the
  actions in the saved plan without prompting you for confirmation",
  https://developer.hashicorp.com/terraform/cli/commands/apply, Saved Plan Mode). For the
  same reason, the options that decide what to plan (`--target`, `--prune`, `--prune-tags`,
  `--shard`, `--rotate-credentials`) are part of the saved plan and refused beside a file.
- **Writing it:** whole or not at all: a temporary file beside it, flushed and fsynced, then
  renamed over the destination; any failure or interruption (`cli_signals.Interrupted` is a
  BaseException) removes the temporary file. Mode: what a plain write gives (0666 less the
  umask, 0644 usually), not 0600: the file holds no secret (checked before writing) and it is
  made to be read by reviewers and CI jobs. `--out` never overwrites the spec, nor a file that
  is not a saved plan (a mistyped `--out spec.yaml`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import files
from ._version import __version__
from .atomic_write import write_text_atomically
from .errors import MirrorspecError, printable
from .plan import Plan, to_json
from .redaction import redact

__all__ = [
    "FORMAT",
    "MAX_SAVED_PLAN_BYTES",
    "VERSION",
    "SavedPlan",
    "StalePlan",
    "check_fresh",
    "check_out",
    "check_spec",
    "detect",
    "first_difference",
    "json_schema",
    "load",
    "refuse_as_spec",
    "write",
]

FORMAT = "mirrorspec-saved-plan"
VERSION = 1
# A plan of 10,000 repositories with a few tags each to copy is tens of MB of JSON; sixteen
# times the spec's own limit leaves room for that and still bounds what is read into memory.
MAX_SAVED_PLAN_BYTES = 256 << 20
# The first key as `write` puts it; a hand-edited file with its keys reordered is still found
# by parsing it whole (`detect`).
_HEAD = re.compile(rb'\A(?:\xef\xbb\xbf)?\s*\{\s*"format"\s*:\s*"mirrorspec-saved-plan')
_HEAD_BYTES = 4096
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_KEYS = ("format", "version", "mirrorspec", "spec", "targets", "prune", "shard", "fingerprint", "plan")


class StalePlan(MirrorspecError):
    """The saved plan no longer matches the spec or the registries: nothing was applied."""


@dataclass(frozen=True)
class SavedPlan:
    """A saved plan as read back, checked for shape and fingerprint (not yet for staleness)."""

    file: str
    """The saved plan's path, for messages."""
    made_by: str
    """The mirrorspec version that wrote it."""
    spec_path: str
    """The spec's path as given to `plan`, relative to the working directory."""
    spec_sha256: str
    """`layout_lock.spec_sha256` of the spec planned."""
    targets: tuple[str, ...]
    """`--target` as given to `plan` (empty: all)."""
    prune: bool
    """`--prune` as given to `plan`."""
    shard: str | None
    """`--shard I/N` as given to `plan`, or None."""
    plan: Mapping[str, Any]
    """The plan document (`plan --format json`) as written."""


def write(
    out: Path,
    the_plan: Plan,
    *,
    spec_path: str,
    spec_sha256: str,
    targets: Sequence[str],
    prune: bool,
    shard: str | None,
) -> None:
    """Write `the_plan` to `out` as a saved plan, whole or not at all (module doc)."""
    document = json.loads(to_json(the_plan))
    saved = {
        "format": FORMAT,
        "version": VERSION,
        "mirrorspec": __version__,
        "spec": {"path": spec_path, "sha256": spec_sha256},
        "targets": list(dict.fromkeys(targets)),
        "prune": prune,
        "shard": shard,
        "fingerprint": _fingerprint(document),
        "plan": document,
    }
    text = json.dumps(saved, indent=2) + "\n"
    if redact(text) != text:
        # Nothing in a plan should hold a secret (attributes say "masked", references name
        # variables); if a provider ever put one there, the file is not written at all:
        # redacting it instead would make a plan that can never match a fresh one.
        raise MirrorspecError(f"{out}: not written: the plan holds a credential the run read")
    write_text_atomically(out, text)


def check_out(out: Path, spec_file: Path) -> None:
    """Before any registry is read: `--out` must not name the spec, nor an existing file that
    is not a saved plan (a mistyped `--out spec.yaml` would lose it)."""
    try:
        if out.exists() and spec_file.exists() and out.samefile(spec_file):
            raise MirrorspecError(f"--out {out} is the spec itself; write the plan to another file")
    except OSError as exc:
        raise MirrorspecError(f"--out {out}: {exc.strerror}") from None
    if out.is_dir():
        raise MirrorspecError(f"--out {out} is a directory; name a file")
    if not out.parent.is_dir():
        raise MirrorspecError(f"--out {out}: no directory {out.parent}")
    if out.exists() and out.stat().st_size and detect(out) is None:
        raise MirrorspecError(f"--out {out} exists and is not a saved plan; not overwritten")


def detect(path: Path) -> bytes | None:
    """The file's bytes when `path` is a saved plan (or looks like the start of one), else
    None: then it is read as a spec, whose loader reports a missing or unreadable file."""
    try:
        data = files.read_user_file(path, what="saved plan", max_bytes=MAX_SAVED_PLAN_BYTES)
    except files.UnreadableFile:
        return None
    if _HEAD.match(data[:_HEAD_BYTES]):
        return data
    if not data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return None  # YAML: a spec
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if isinstance(parsed, dict) and str(parsed.get("format", "")).startswith(FORMAT):
        return data
    return None


def refuse_as_spec(spec_file: Path) -> None:
    """For every command but `apply`: a saved plan given where a spec is expected."""
    if detect(spec_file) is not None:
        raise MirrorspecError(
            f"{spec_file} is a saved plan (mirrorspec plan --out), not a spec: "
            f"`mirrorspec apply {spec_file}` carries it out"
        )


def load(file: Path, data: bytes) -> SavedPlan:
    """The saved plan in `data` (read from `file`), its shape and fingerprint checked; every
    failure is one line naming the file."""
    name = str(file)
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise MirrorspecError(f"{name}: not a saved plan: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        # `write` ends the file with its closing brace: one that stops before it was cut short
        end = exc.pos >= len(data.rstrip()) or not data.rstrip().endswith(b"}")
        why = "it ends too soon (truncated?)" if end else f"invalid JSON at {where} ({exc.msg})"
        raise MirrorspecError(f"{name}: damaged saved plan: {why}; make a new plan") from None
    except RecursionError:
        raise MirrorspecError(f"{name}: damaged saved plan: nested too deeply") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise MirrorspecError(f'{name}: not a saved plan: its first key must be "format": "{FORMAT}"')
    version = doc.get("version")
    if type(version) is not int:
        raise MirrorspecError(f'{name}: damaged saved plan: "version" must be a number')
    if version != VERSION:
        made = doc.get("mirrorspec")
        by = f" (written by mirrorspec {printable(made)[:40]})" if isinstance(made, str) else ""
        raise MirrorspecError(
            f"{name}: a saved plan of version {version}{by}; this mirrorspec ({__version__}) reads "
            f"version {VERSION}: make the plan again with this mirrorspec, or apply it with that one"
        )
    unknown = sorted(set(doc) - set(_KEYS))
    missing = [key for key in _KEYS if key not in doc]
    if unknown or missing:
        what = f"unknown key {printable(unknown[0])[:60]!r}" if unknown else f"no {missing[0]!r}"
        raise MirrorspecError(f"{name}: damaged saved plan: {what}; make a new plan")
    spec, plan = doc["spec"], doc["plan"]
    checks = (
        (isinstance(doc["mirrorspec"], str), "mirrorspec"),
        (isinstance(spec, dict) and set(spec) == {"path", "sha256"}, "spec"),
        (isinstance(spec, dict) and isinstance(spec.get("path"), str) and spec["path"] != "", "spec.path"),
        (
            isinstance(spec, dict)
            and isinstance(spec.get("sha256"), str)
            and _SHA256_HEX.fullmatch(spec["sha256"]) is not None,
            "spec.sha256",
        ),
        (_strings(doc["targets"]), "targets"),
        (isinstance(doc["prune"], bool), "prune"),
        (doc["shard"] is None or isinstance(doc["shard"], str), "shard"),
        (isinstance(doc["fingerprint"], str), "fingerprint"),
        (isinstance(plan, dict), "plan"),
    )
    for ok, key in checks:
        if not ok:
            raise MirrorspecError(f"{name}: damaged saved plan: {key!r} is not what plan writes there")
    if doc["fingerprint"] != _fingerprint(plan):
        raise MirrorspecError(
            f"{name}: the plan in it was edited or damaged after it was written (its fingerprint "
            "does not match); make a new plan"
        )
    return SavedPlan(
        file=name,
        made_by=doc["mirrorspec"],
        spec_path=spec["path"],
        spec_sha256=spec["sha256"],
        targets=tuple(doc["targets"]),
        prune=doc["prune"],
        shard=doc["shard"],
        plan=plan,
    )


def check_spec(saved: SavedPlan, sha256_now: str) -> None:
    """Raise `StalePlan` when the spec's meaning changed since the plan was made."""
    if sha256_now != saved.spec_sha256:
        raise StalePlan(
            f"{saved.file}: the plan is stale: the spec {saved.spec_path} changed since the plan "
            f"was made (sha256 {saved.spec_sha256[:12]}… then, {sha256_now[:12]}… now); nothing was applied: "
            f"make a new plan: {_plan_again(saved)}"
        )


def check_fresh(saved: SavedPlan, fresh: Plan) -> None:
    """Raise `StalePlan` naming the first difference when `fresh` (the plan made now, with the
    saved plan's spec and options) is not the saved plan."""
    what = first_difference(saved.plan, json.loads(to_json(fresh)))
    if what is None:
        return
    if saved.made_by != __version__:
        what += f" (the plan was made by mirrorspec {printable(saved.made_by)[:40]}, this is {__version__})"
    raise StalePlan(
        f"{saved.file}: the plan is stale: {what}; nothing was applied: make a new plan: {_plan_again(saved)}"
    )


def _plan_again(saved: SavedPlan) -> str:
    """The command that makes the plan again, with the options it was made with."""
    words = ["mirrorspec", "plan", saved.spec_path]
    for name in saved.targets:
        words += ["--target", name]
    words += ["--prune"] if saved.prune else []
    words += ["--shard", saved.shard] if saved.shard else []
    words += ["--out", saved.file]
    return printable(" ".join(shlex.quote(word) for word in words))


def json_schema() -> dict[str, Any]:
    """Schema of a saved plan file (`mirrorspec schema --output saved-plan`): the envelope
    `write` puts around the plan document, whose own schema (`schemas.plan_schema`) is
    inlined under `plan`, its definitions moved up so that its `$ref`s resolve here."""
    from .schemas import DIALECT, plan_schema

    plan = plan_schema()
    definitions = plan.pop("$defs", {})
    for key in ("$schema", "$id"):
        plan.pop(key, None)
    sha256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    properties: dict[str, Any] = {
        "format": {"const": FORMAT, "description": "What this file is; always the first key."},
        "version": {"const": VERSION, "description": "Version of this file's format."},
        "mirrorspec": {"type": "string", "description": "The mirrorspec version that wrote it."},
        "spec": {
            "type": "object",
            "description": "The spec planned: its path as given to `plan` (relative to the working "
            "directory) and the sha256 of its canonical form (comments and layout do not count).",
            "properties": {"path": {"type": "string", "minLength": 1}, "sha256": sha256},
            "required": ["path", "sha256"],
            "additionalProperties": False,
        },
        "targets": {
            "type": "array",
            "items": {"type": "string"},
            "description": "`--target` as given to `plan`; empty for all.",
        },
        "prune": {"type": "boolean", "description": "`--prune` as given to `plan`."},
        "shard": {
            "type": ["string", "null"],
            "pattern": "^[0-9]+/[0-9]+$",
            "description": "`--shard I/N` as given to `plan`; null without.",
        },
        "fingerprint": {
            "type": "string",
            "pattern": "^sha256:[0-9a-f]{64}$",
            "description": "sha256 of `plan` in canonical JSON (sorted keys, no spaces, ASCII).",
        },
        "plan": plan,
    }
    return {
        "$schema": DIALECT,
        "$id": f"urn:mirrorspec:schema:saved-plan:v{VERSION}",
        "title": f"mirrorspec saved plan (version {VERSION})",
        "description": "What `plan SPEC --out FILE` writes and `apply FILE` carries out.",
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        "$defs": definitions,
    }


# --- the first difference between two plan documents ----------------------------------------


def first_difference(saved: Mapping[str, Any], fresh: Mapping[str, Any]) -> str | None:
    """What differs first between two plan documents, for people; None when they are equal.

    Compared generically (`_canonical`): anything a plan holds counts. The message is specific
    for what usually moves — an upstream tag, a destination tag, a native rule — and a JSON
    path with both values otherwise. Upstream is looked at first: a tag that moved there
    changes the copies too, and "moved upstream" says why."""
    if _canonical(saved) == _canonical(fresh):
        return None
    said = _artifacts(saved.get("artifacts"), fresh.get("artifacts"))
    if said is None and not _plan_is_empty(saved) and _plan_is_empty(fresh):
        return "nothing is left to do: it was applied already, or the registries got there another way"
    if said is None:
        for old, new in _paired(saved.get("targets"), fresh.get("targets"), lambda t: t.get("target")):
            if old is not None and new is not None:
                said = _target(old, new)
                if said:
                    break
    return f"{said or _generic(saved, fresh, 'plan')} since the plan was made"


def _artifacts(saved: Any, fresh: Any) -> str | None:
    def key(a: Mapping[str, Any]) -> Any:
        return (a.get("registry"), a.get("repository"), a.get("tag"))

    for old, new in _paired(saved, fresh, key):
        ref = _ref(old or new)
        if old is None:
            return f"{ref} appeared upstream (now selected, {_short(new.get('digest'))})"
        if new is None:
            return f"{ref} ({_short(old.get('digest'))} when planned) is gone upstream or no longer selected"
        if old.get("digest") != new.get("digest"):
            return f"{ref} moved upstream from {_short(old.get('digest'))} to {_short(new.get('digest'))}"
    return None


def _target(saved: Mapping[str, Any], fresh: Mapping[str, Any]) -> str | None:
    name = saved.get("target")

    def change_key(c: Mapping[str, Any]) -> Any:
        return (c.get("resource"), c.get("id"))

    for old, new in _paired(saved.get("changes"), fresh.get("changes"), change_key):
        rule = f"target {name}: {(old or new).get('resource')} {(old or new).get('id')}"
        if old is None:
            return f"{rule} now needs a {new.get('action')} the plan does not have (the registry changed)"
        if new is None:
            return f"{rule} no longer needs the plan's {old.get('action')} (the registry changed)"
        if _canonical(old) != _canonical(new):
            was, now = old.get("action"), new.get("action")
            return f"{rule} changed in the registry (the plan's {was} is now {now})"
    copies_said = _copies(saved.get("copies"), fresh.get("copies"))
    if copies_said:
        return f"target {name}: {copies_said}"
    if saved.get("up_to_date") != fresh.get("up_to_date"):
        return (
            f"target {name}: {saved.get('up_to_date')} tag(s) were up to date at the destination "
            f"when planned, {fresh.get('up_to_date')} are now"
        )
    return None


def _copies(saved: Any, fresh: Any) -> str | None:
    """Copies compared tag by tag, keyed by where each goes (`destination:tag`)."""

    def flat(copies: Any) -> list[dict[str, Any]]:
        out = []
        for copy in copies if isinstance(copies, list) else []:
            if not isinstance(copy, dict):
                continue
            tags = copy.get("tags")
            for tag in tags if isinstance(tags, list) else []:
                if isinstance(tag, dict):
                    rest = {k: v for k, v in copy.items() if k != "tags"}
                    out.append({**rest, **tag})
        return out

    def key(t: Mapping[str, Any]) -> Any:
        return (t.get("destination"), t.get("tag"))

    for old, new in _paired(flat(saved), flat(fresh), key):
        where = f"{(old or new).get('destination')}:{(old or new).get('tag')}"
        if old is None:
            held = _short(new.get("overwrites")) if new.get("overwrites") else "nothing"
            if new.get("reason") == "missing":
                return f"{where} was deleted at the destination (it now needs a copy)"
            return f"{where} changed at the destination (it holds {held}, it now needs a copy)"
        if new is None:
            planned = _short(old.get("digest"))
            return f"{where} changed at the destination: the plan copies {planned} there, a new plan not"
        if _canonical(old) != _canonical(new):
            if (old.get("reason"), old.get("overwrites")) != (new.get("reason"), new.get("overwrites")):
                before = _short(old.get("overwrites")) if old.get("overwrites") else "nothing"
                after = _short(new.get("overwrites")) if new.get("overwrites") else "nothing"
                return f"{where} changed at the destination from {before} to {after}"
            return _generic(old, new, where)
    return None


def _generic(saved: Any, fresh: Any, path: str) -> str:
    """The first differing leaf, by JSON path (lists of objects by position)."""
    if isinstance(saved, dict) and isinstance(fresh, dict):
        for key in [*saved, *(k for k in fresh if k not in saved)]:
            if key not in fresh:
                return f"{path}.{key} is gone"
            if key not in saved:
                return f"{path}.{key} is new"
            if _canonical(saved[key]) != _canonical(fresh[key]):
                return _generic(saved[key], fresh[key], f"{path}.{key}")
    if isinstance(saved, list) and isinstance(fresh, list):
        for index, (old, new) in enumerate(zip(saved, fresh, strict=False)):
            if _canonical(old) != _canonical(new):
                if isinstance(old, dict) and isinstance(new, dict) and "message" in old:
                    was, now = _clip(old["message"]), _clip(new.get("message"))
                    return f"{path}[{index}] was {was!r}, is now {now!r}"
                return _generic(old, new, f"{path}[{index}]")
        return f"{path} had {len(saved)} entries, has {len(fresh)} now"
    return f"{path} was {_clip(saved)!r}, is now {_clip(fresh)!r}"


def _paired(saved: Any, fresh: Any, key: Any) -> Iterable[tuple[Any, Any]]:
    """(saved, fresh) entries of two lists of objects with the same `key`, in the saved order
    then the fresh one's; None on the side that lacks it."""
    # Keyed by the key's canonical JSON: a hand-made file may put a list where a string belongs,
    # which as a dict key would raise TypeError (an internal error, not one line).
    old = {_canonical(key(e)): e for e in saved if isinstance(e, dict)} if isinstance(saved, list) else {}
    new = {_canonical(key(e)): e for e in fresh if isinstance(e, dict)} if isinstance(fresh, list) else {}
    for k in [*old, *(k for k in new if k not in old)]:
        yield old.get(k), new.get(k)


def _plan_is_empty(document: Mapping[str, Any]) -> bool:
    targets = document.get("targets")
    return isinstance(targets, list) and all(
        isinstance(t, dict) and not t.get("changes") and not t.get("copies") for t in targets
    )


def _ref(artifact: Mapping[str, Any]) -> str:
    tag = str(artifact.get("tag"))
    separator = "@" if tag.startswith("sha256:") else ":"
    return printable(f"{artifact.get('registry')}/{artifact.get('repository')}{separator}{tag}")


def _short(digest: Any) -> str:
    text = printable(str(digest))
    return f"{text[:19]}…" if text.startswith("sha256:") and len(text) > 19 else text[:80]


def _clip(value: Any) -> str:
    text = printable(value if isinstance(value, str) else json.dumps(value, sort_keys=True))
    return text if len(text) <= 120 else f"{text[:119]}…"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _fingerprint(document: Mapping[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(_canonical(document).encode()).hexdigest()


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
