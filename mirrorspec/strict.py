"""`plan --strict` / `apply --strict`: a tag selection that matches nothing is an error.

Without `--strict` it is a warning note of the plan (the resolver's `_select`: "<registry>/
<repository>: no tag matches '<selection>' among N tags", with "(dependency of ...)" for a Helm
dependency's range). `validate` cannot tell: it reads no registry, and whether `>=2.0` matches
depends on the tags upstream has today. So the check is made where the tags are known, on the
plan, and `apply --strict` refuses before it changes or copies anything.
"""

from __future__ import annotations

from .errors import MirrorspecError
from .plan import Plan

__all__ = ["empty_selections", "refuse_empty_selections"]

# The words of the resolver's note (resolve.py `_Resolver._select`); tests/test_validate_many.py
# runs a plan that has one, so a change of wording there fails a test, not silently --strict.
NO_MATCH = ": no tag matches '"
_SHOWN = 3


def empty_selections(plan: Plan) -> list[str]:
    """The plan's notes on selections that matched nothing, each once, in the plan's order."""
    found = (
        n.message for t in plan.targets for n in t.notes if n.level == "warning" and NO_MATCH in n.message
    )
    return list(dict.fromkeys(found))


def refuse_empty_selections(plan: Plan) -> None:
    """Raise one line naming them, when there are any."""
    empty = empty_selections(plan)
    if not empty:
        return
    shown = "; ".join(empty[:_SHOWN]) + (f"; and {len(empty) - _SHOWN} more" if len(empty) > _SHOWN else "")
    raise MirrorspecError(f"--strict: {len(empty)} tag selection(s) match nothing: {shown}")
