"""Human renderings of plans and audits: tables on a terminal, markdown for pull requests.

JSON lives in `plan.to_json`; this module is only for people. Every string shown passes
through `redact()` on its way out. Tables and lines are laid out by `unbroken_table` for the
terminal's width (no wrapping at all off a terminal) and printed as they are, so that no
reference is ever broken mid-word; rich only writes them (and draws the progress bar).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console

from . import audit_verdict
from .credentials import redact
from .plan import Audit, Change, ContentCheck, Copy, Note, Plan, TargetAudit, TargetPlan
from .unbroken_table import UnbrokenTable, wrap

if TYPE_CHECKING:
    from .skopeo.jobs import CopyResult

__all__ = ["audit_markdown", "console", "copy_progress", "plan_markdown", "print_audit", "print_plan"]


def console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    # Off a terminal, lines stay long and undecorated so logs and grep see whole paths
    # (`_width`: nothing is wrapped there).
    return Console(file=stream, width=None if tty else 200, no_color=not tty, highlight=False)


def _width(out: Console) -> int | None:
    """The width to lay lines out for: the terminal's, or None (no wrapping) off a terminal.
    The stream is asked, not rich's `is_terminal`, which `FORCE_COLOR` (set by some CI
    runners) turns true for a pipe."""
    isatty = getattr(out.file, "isatty", None)
    return out.width if isatty is not None and isatty() else None


def _show(out: Console, table: UnbrokenTable) -> None:
    for line in table.lines(_width(out)):
        _line(out, line)


def _say(out: Console, text: str, *, indent: str = "", hang: str | None = None) -> None:
    """`text` wrapped between words only, each line printed as it is."""
    for line in wrap(text, _width(out), indent=indent, hang=hang):
        _line(out, line)


def _line(out: Console, line: str) -> None:
    # soft_wrap: rich neither wraps nor crops it; the layout above has decided the lines.
    out.print(line, markup=False, highlight=False, soft_wrap=True)


def _tags(copy: Copy) -> str:
    return ", ".join(tag.tag for tag in copy.tags)


def _why(copy: Copy) -> str:
    """Why these tags are copied, each reason once: a user reads it, not a parser."""
    reasons: dict[str, None] = {}
    for tag in copy.tags:
        changed = "overwrites, moved upstream" if tag.overwrites else "content differs"
        reasons[changed if tag.reason == "digest-mismatch" else "missing"] = None
        if tag.refers_to:
            reasons["signature or referrer"] = None
        elif tag.dependency_of:
            what = "image of" if tag.chart_image else "Helm dependency of"
            reasons[f"{what} {tag.dependency_of.rsplit(':', 1)[0]}"] = None
    return "; ".join(reasons)


def _change_row(change: Change) -> tuple[str, str, str, str]:
    return (change.action, change.resource, change.id, change.reason)


def print_plan(plan: Plan, out: Console) -> None:
    for target in plan.targets:
        _print_target_plan(target, out)
    changes = sum(len(t.changes) for t in plan.targets)
    tags = sum(t.tag_count for t in plan.targets)
    fresh = sum(t.up_to_date for t in plan.targets)
    deps = sum(1 for a in plan.artifacts if a.dependency_of and not a.chart_image and not a.refers_to)
    found = [f"{deps} via Helm dependencies"]
    if images := sum(1 for a in plan.artifacts if a.chart_image):
        found.append(f"{images} image(s) charts deploy")
    if referring := sum(1 for a in plan.artifacts if a.refers_to):
        found.append(f"{referring} signature(s) and other referrers")
    _say(
        out,
        f"Plan: {changes} change(s), {tags} tag(s) to copy, {fresh} already up to date "
        f"({len(plan.artifacts)} upstream artifact(s), {', '.join(found)}).",
    )


def _print_target_plan(target: TargetPlan, out: Console) -> None:
    _heading(out, target.target, target.type, target.registry)
    if target.changes:
        table = _table("action", "resource", "id", "reason")
        for change in target.changes:
            table.add_row(*map(redact, _change_row(change)))
        _show(out, table)
    if target.copies:
        table = _table("copy from", "to", "tags", "why")
        for copy in target.copies:
            table.add_row(copy.source, copy.destination, _tags(copy), _why(copy))
        _show(out, table)
    if target.empty:
        _say(out, f"No changes: {target.up_to_date} tag(s) already up to date.", indent="  ")
    _notes(out, target.notes)
    out.print()


def _heading(out: Console, name: str, kind: str, registry: str) -> None:
    out.print(f"[bold]Target {name}[/bold] ({kind} → {registry})", soft_wrap=True)


def _notes(out: Console, notes: Iterable[Note]) -> None:
    for note in notes:
        _say(out, f"{note.level}: {redact(note.message)}", indent="  ", hang="    ")


def print_audit(audit: Audit, out: Console) -> None:
    for target in audit.targets:
        _print_target_audit(target, out)
    _say(out, audit_verdict.headline(audit))


def _print_target_audit(target: TargetAudit, out: Console) -> None:
    _heading(out, target.target, target.type, target.registry)
    if target.resources:
        table = _table("ownership", "resource", "id")
        for resource in target.resources:
            table.add_row("managed" if resource.managed else "foreign", resource.kind, resource.id)
        _show(out, table)
    if target.drift:
        table = _table("drift", "resource", "id", "detail")
        for change in target.drift:
            table.add_row(*map(redact, _drift_row(change)))
        _show(out, table)
    if target.content is not None:
        wrong = [c for c in target.content if c.status != "present"]
        present = len(target.content) - len(wrong)
        if wrong:
            table = _table("status", "destination", "tag", "expected", "found")
            for check in wrong:
                table.add_row(
                    check.status, check.destination, check.tag, check.expected or "-", check.actual or "-"
                )
            _show(out, table)
        wanted = sum(1 for c in target.content if c.status != "unselected")  # `moved_tags`, `unselected_tags`
        _say(out, f"Content: {present} of {wanted} tag(s) present with the upstream digest.", indent="  ")
    if target.unchecked:
        _say(out, audit_verdict.unchecked_line(target), indent="  ", hang="    ")
    _notes(out, target.notes)
    out.print()


def _drift_row(change: Change) -> tuple[str, str, str, str]:
    status = {"create": "missing", "delete": "extra"}.get(change.action, "different")
    return (status, change.resource, change.id, change.reason)


def _table(*columns: str) -> UnbrokenTable:
    return UnbrokenTable(*columns)


def _md_table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(redact(str(c)).replace("|", "\\|") for c in row) + " |")
    return lines


def plan_markdown(plan: Plan) -> str:
    lines = ["## mirrorspec plan", ""]
    for target in plan.targets:
        lines += [f"### {target.target} (`{target.type}` → `{target.registry}`)", ""]
        if target.changes:
            lines += [
                *_md_table(("action", "resource", "id", "reason"), map(_change_row, target.changes)),
                "",
            ]
        if target.copies:
            rows = ((f"`{c.source}`", f"`{c.destination}`", _tags(c), _why(c)) for c in target.copies)
            lines += [*_md_table(("copy from", "to", "tags", "why"), rows), ""]
        if target.empty:
            lines += [f"No changes: {target.up_to_date} tag(s) already up to date.", ""]
        lines += [f"- **{n.level}**: {redact(n.message)}" for n in target.notes]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def audit_markdown(audit: Audit) -> str:
    lines = ["## mirrorspec audit", "", audit_verdict.markdown_headline(audit), ""]
    for target in audit.targets:
        lines += [f"### {target.target} (`{target.type}` → `{target.registry}`)", ""]
        if target.resources:
            rows = (("managed" if r.managed else "foreign", r.kind, r.id) for r in target.resources)
            lines += [*_md_table(("ownership", "resource", "id"), rows), ""]
        if target.drift:
            lines += [*_md_table(("drift", "resource", "id", "detail"), map(_drift_row, target.drift)), ""]
        if target.content is not None:
            wrong: list[ContentCheck] = [c for c in target.content if c.status != "present"]
            if wrong:
                checks = (
                    (c.status, f"`{c.destination}`", c.tag, c.expected or "-", c.actual or "-") for c in wrong
                )
                lines += [*_md_table(("status", "destination", "tag", "expected", "found"), checks), ""]
            wanted = sum(1 for c in target.content if c.status != "unselected")
            lines.append(f"{len(target.content) - len(wrong)} of {wanted} tag(s) present.")
        if target.unchecked:
            lines.append(f"**{audit_verdict.unchecked_line(target)}**")
        lines += [f"- **{n.level}**: {redact(n.message)}" for n in target.notes]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


@contextmanager
def copy_progress(total: int) -> Iterator[Callable[[CopyResult], None]]:
    """A callback for each finished copy: a progress bar on a terminal, one plain line per
    copy otherwise (logs, CI), noting retried attempts."""
    err = console(stderr=True)
    if not total or not err.is_terminal:
        done = 0

        def line(result: CopyResult) -> None:
            nonlocal done
            done += 1
            state = "copied" if result.ok else "FAILED"
            retried = f", {result.attempts} attempts" if result.attempts > 1 else ""
            err.print(
                f"[{done}/{total}] {state} {result.job.destination_ref} ({result.seconds:.1f}s{retried})",
                markup=False,
                soft_wrap=True,  # a long reference is never folded (`unbroken_table`)
            )

        yield line
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("copying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    real_stderr = sys.stderr
    failed = 0
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("copying", total=total, failed=0)
        # Log records (retries, throttling) go through the bar's console, above the bar,
        # instead of tearing it: rich has swapped sys.stderr for a proxy that does that.
        handlers = [
            h
            for h in logging.getLogger().handlers
            if isinstance(h, logging.StreamHandler) and h.stream is real_stderr
        ]
        for handler in handlers:
            handler.setStream(sys.stderr)

        def advance(result: CopyResult) -> None:
            nonlocal failed
            if not result.ok:
                failed += 1
                bar.console.print(f"FAILED {result.job.destination_ref}", markup=False, soft_wrap=True)
            bar.update(task, advance=1, failed=failed)

        try:
            yield advance
        finally:
            for handler in handlers:
                handler.setStream(real_stderr)
