"""An audit's verdict in one word, one line and one exit code, the same on every surface.

Three outcomes, never two: a mirror whose tags were not looked at is neither "in sync" nor
"drift". `audit --rules-only` compares native rules only, and no rule proves a stored tag is
there (a `registry` target has no rules at all), so such an audit exits 3, never 0 (issue 18,
item 4). Drift wins over unchecked: what was found wrong is wrong whatever was not looked at.

Exit codes of `mirrorspec audit`: 0 in sync (every rule compared, every tag a target must hold
checked and present), 2 drift, 3 rules in sync but content not checked (`--rules-only`);
1 is any error, as for every command.
"""

from __future__ import annotations

from typing import Literal

from .plan import Audit, TargetAudit

__all__ = [
    "DRIFT",
    "IN_SYNC",
    "UNCHECKED",
    "Verdict",
    "exit_code",
    "headline",
    "markdown_headline",
    "unchecked_line",
    "verdict",
]

Verdict = Literal["in-sync", "drift", "unchecked"]

IN_SYNC, DRIFT, UNCHECKED = 0, 2, 3


def verdict(audit: Audit) -> Verdict:
    if audit.drifted:
        return "drift"
    return "unchecked" if audit.unchecked else "in-sync"


def exit_code(audit: Audit) -> int:
    return {"in-sync": IN_SYNC, "drift": DRIFT, "unchecked": UNCHECKED}[verdict(audit)]


def headline(audit: Audit) -> str:
    """The table's last line: the verdict, and what it rests on."""
    targets = f"{len(audit.targets)} target(s)"
    checked = sum(len(t.content or ()) for t in audit.targets)
    unchecked = f"; {audit.unchecked} tag(s) NOT CHECKED (--rules-only)" if audit.unchecked else ""
    state = verdict(audit)
    if state == "drift":
        return f"Audit: DRIFT ({targets}{unchecked})."
    if state == "unchecked":
        return (
            f"Audit: rules in sync; CONTENT NOT CHECKED ({audit.unchecked} tag(s) at {targets}): "
            "no native rule proves they are there; audit without --rules-only checks them."
        )
    return f"Audit: in sync ({targets}; {checked} tag(s) checked)."


def markdown_headline(audit: Audit) -> str:
    state = verdict(audit)
    if state == "unchecked":
        return f"**Rules in sync; content not checked ({audit.unchecked} tag(s))**"
    return "**Drift**" if state == "drift" else "**In sync**"


def unchecked_line(target: TargetAudit) -> str:
    """Said under a target whose tags `--rules-only` left alone."""
    return (
        f"Content: NOT CHECKED (--rules-only): {target.unchecked} wanted tag(s) this target must "
        "hold; no native rule proves they are there."
    )
