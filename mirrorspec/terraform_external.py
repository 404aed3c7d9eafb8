"""`mirrorspec terraform-external`: Terraform's `external` data-source protocol.

The protocol (hashicorp/terraform-provider-external v2.4.0, research/sync.md §4):
- stdin is one JSON object whose values are all strings: the data source's `query`, with
  null entries dropped, and `{}` when there is no query;
- stdout is one JSON object whose values are all strings — Terraform decodes it into
  `map[string]string`, so a number, a bool or a nested object fails the whole plan; nested
  data therefore travels JSON-encoded in a string (`plan_json`) for HCL's `jsondecode()`;
- on failure: one human-readable line on stderr and a non-zero exit; stdout is ignored.
- Terraform runs the program on every refresh and expects no side effects: this module only
  calls `engine.plan` / `engine.audit`, which read registries and write nothing.

Query keys: `spec` (path, relative to Terraform's working directory), `action` (`plan` or
`audit`), optional `target` (a target name, or several joined by commas; empty = all),
`content` and `rules_only` (`"true"`/`"false"`, audit only, as `audit --content` and
`audit --rules-only`). Unknown keys are refused, so a typo such as `acton` fails loudly
instead of silently planning.

Result keys, all strings, present for both actions (HCL fails on a missing map key):
`in_sync`, `changes`, `copies`, `drift`, `unchecked`, `plan_json`. For `plan`: native changes,
tags to copy, their sum, and `unchecked` "0". For `audit`: drifted native rules, tags
missing or holding other content, their sum, and the tags not checked (`rules_only`; an audit
checks every tag a target must hold otherwise). So `in_sync == "true"` iff `drift == "0"` and
`unchecked == "0"`: a mirror nobody looked at is never "in sync" (`audit_verdict`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .context import RunContext
from .errors import MirrorspecError
from .plan import Audit, Plan, to_json
from .spec import Spec, load_spec

__all__ = [
    "QUERY_KEYS",
    "RESULT_KEYS",
    "Query",
    "TerraformQueryError",
    "external",
    "one_line",
    "parse_query",
    "result",
]

QUERY_KEYS = ("spec", "action", "target", "content", "rules_only")
RESULT_KEYS = ("in_sync", "changes", "copies", "drift", "unchecked", "plan_json")
ACTIONS = ("plan", "audit")

ContextFactory = Callable[[Spec], RunContext]


class TerraformQueryError(MirrorspecError):
    """The data source's `query` is not what this program reads: fix the Terraform config."""


@dataclass(frozen=True)
class Query:
    """The data source's `query`, checked."""

    spec: str
    action: Literal["plan", "audit"]
    targets: tuple[str, ...] = ()
    content: bool = False
    rules_only: bool = False


def parse_query(text: str) -> Query:
    """Read the stdin document; every problem is a one-line `TerraformQueryError`."""
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise TerraformQueryError(
            f"stdin is not JSON ({exc}): expected the data source's query object"
        ) from None
    if not isinstance(data, dict):
        raise TerraformQueryError(f"stdin must be a JSON object (the query), found {type(data).__name__}")
    unknown = sorted(set(data) - set(QUERY_KEYS))
    if unknown:
        raise TerraformQueryError(
            f"unknown query key(s) {', '.join(unknown)} (expected: {', '.join(QUERY_KEYS)})"
        )
    for key, value in data.items():
        if not isinstance(value, str):
            # Terraform itself only sends strings; anything else is another caller's mistake.
            raise TerraformQueryError(f"query value '{key}' must be a string, found {_json_type(value)}")
    if not data.get("spec"):
        raise TerraformQueryError("query has no 'spec': set query = { spec = \"path/to/spec.yaml\", ... }")
    action = data.get("action")
    if action not in ACTIONS:
        found = f"'{action}'" if action is not None else "nothing"
        raise TerraformQueryError(f"query 'action' must be one of: {', '.join(ACTIONS)}; found {found}")
    content = _boolean(data.get("content") or "false", "content")
    if content and action == "plan":
        raise TerraformQueryError("query 'content' is for action 'audit' (a plan always checks every tag)")
    rules_only = _boolean(data.get("rules_only") or "false", "rules_only")
    if rules_only and action == "plan":
        raise TerraformQueryError("query 'rules_only' is for action 'audit'")
    if rules_only and content:
        raise TerraformQueryError("query 'rules_only' and 'content' cannot both be \"true\"")
    targets = tuple(name.strip() for name in (data.get("target") or "").split(",") if name.strip())
    return Query(spec=data["spec"], action=action, targets=targets, content=content, rules_only=rules_only)


def result(document: Plan | Audit) -> dict[str, str]:
    """The data source's `result`: counts and the document, every value a string."""
    if isinstance(document, Plan):
        changes = sum(len(t.changes) for t in document.targets)
        copies = sum(t.tag_count for t in document.targets)
        in_sync, unchecked = document.empty, 0
    else:
        changes = sum(len(t.drift) for t in document.targets)
        copies = sum(1 for t in document.targets for c in t.content or () if c.drift)
        in_sync, unchecked = document.in_sync, document.unchecked
    return {
        "in_sync": "true" if in_sync else "false",
        "changes": str(changes),
        "copies": str(copies),
        "drift": str(changes + copies),
        "unchecked": str(unchecked),
        # Compact: Terraform keeps `result` in its state, and indentation is only for people.
        "plan_json": json.dumps(json.loads(to_json(document)), separators=(",", ":")),
    }


def external(stdin_text: str, *, context: ContextFactory | None = None) -> str:
    """Answer one query: the stdout document. Reads registries, never writes to them.

    `context` builds the run context from the loaded spec (tests point it at emulators).
    """
    from . import engine  # the engine pulls in providers; the query is checked first

    query = parse_query(stdin_text)
    spec = load_spec(query.spec)
    ctx = context(spec) if context is not None else RunContext(spec)
    try:
        document: Plan | Audit
        if query.action == "plan":
            document = engine.plan(ctx, targets=query.targets, spec_name=query.spec)
        else:
            document = engine.audit(
                ctx,
                targets=query.targets,
                content=query.content,
                rules_only=query.rules_only,
                spec_name=query.spec,
            )
    finally:
        ctx.close()
    return json.dumps(result(document), sort_keys=True)


def one_line(message: str) -> str:
    """Terraform shows stderr under "Error Message:"; the protocol asks for a single line."""
    return " ".join(message.split())


def _boolean(value: str, key: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise TerraformQueryError(f"query '{key}' must be \"true\" or \"false\", found '{value}'")
    return lowered == "true"


def _json_type(value: Any) -> str:
    names: Mapping[type, str] = {bool: "a boolean", int: "a number", float: "a number", list: "an array"}
    if value is None:
        return "null"
    return names.get(type(value), "an object")
