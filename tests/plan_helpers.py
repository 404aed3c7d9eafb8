"""Reading plans in provider tests, and the plan → apply → plan loop every provider test runs."""

from __future__ import annotations

from typing import Any

from mirrorspec import engine
from mirrorspec.context import RunContext
from mirrorspec.plan import Plan


def plan_changes(plan: Plan) -> list[tuple[str, str, str]]:
    """(action, resource, id) of every change, sorted."""
    return sorted((c.action, c.resource, c.id) for t in plan.targets for c in t.changes)


def plan_notes(plan: Plan) -> str:
    """Every note's message, one per line."""
    return "\n".join(n.message for t in plan.targets for n in t.notes)


def converge(ctx: RunContext, **kwargs: Any) -> tuple[Plan, Plan]:
    """plan → apply (which must succeed) → plan again; returns the first and the second plan."""
    first = engine.plan(ctx, **kwargs)
    result = engine.apply(ctx, first)
    assert result.ok, result.failures
    return first, engine.plan(ctx, **kwargs)
