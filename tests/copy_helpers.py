"""What the copier's tests share: a run context whose spec only has to be valid, since those
tests hand the copier its jobs directly (the source and destination of each come from the
test's registries, not from the spec)."""

from __future__ import annotations

from mirrorspec.context import RunContext
from mirrorspec.spec import parse_spec

__all__ = ["MINIMAL_SPEC", "minimal_context"]

MINIMAL_SPEC = """\
version: 1
sources:
  - registry: upstream.example.com
    repositories:
      - name: app
        tags: ["1.0"]
targets:
  - name: lab
    type: registry
    registry: internal.example.com
"""


def minimal_context(workers: int) -> RunContext:
    """A run context for copies only, with `workers` copies in flight."""
    return RunContext(parse_spec(MINIMAL_SPEC), workers=workers)
