"""One order for what has no meaningful order, so that the same inputs give the same bytes.

Notes come from many producers (the resolution, the engine, each provider's translate, observe
and check), some of them on reader threads, and a set of strings iterates in a different order
in every process (`PYTHONHASHSEED` is random by default). A plan or audit document, and a
`.tf.json`, must not depend on either: they are diffed in pull requests and hashed in CI.
So the notes of every `TargetPlan`, `TargetAudit` and rendered Terraform file pass through
`notes_in_order` where the record is built, whoever made them: the same note said twice is said
once, warnings come first, then the rest, each sorted by its text.

What has a meaning keeps its order: a target's changes (the order apply runs them), the tags of
a copy (tag order), the targets (spec order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

__all__ = ["in_order", "notes_in_order"]


class _Said(Protocol):
    @property
    def level(self) -> str: ...

    @property
    def message(self) -> str: ...


N = TypeVar("N", bound=_Said)
T = TypeVar("T")

# Warnings first: they are what a reader must not miss at the end of a long plan.
_LEVELS = {"warning": 0, "info": 1}


def notes_in_order(notes: Iterable[N]) -> tuple[N, ...]:
    """`notes` without repeats (same level and message), warnings first, each level by message."""
    unique = {(note.level, note.message): note for note in notes}
    return tuple(
        unique[key] for key in sorted(unique, key=lambda key: (_LEVELS.get(key[0], len(_LEVELS)), *key))
    )


def in_order(items: Iterable[T], key: Callable[[T], tuple[str, ...]]) -> tuple[T, ...]:
    """`items` sorted by `key` (a stable sort: equal keys keep the order they came in)."""
    return tuple(sorted(items, key=key))
