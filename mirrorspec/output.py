"""Human renderings of plans and audits: rich tables on a terminal, markdown for pull requests.

JSON lives in `plan.to_json`; this module is only for people. Every string shown passes
through `redact()` on its way out.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table

from . import audit_verdict
from .credentials import redact
from .plan import Audit, Change, ContentCheck, Copy, Plan, TargetAudit, TargetPlan

if TYPE_CHECKING:
    from .skopeo.jobs import CopyResult

__all__ = ["audit_markdown", "console", "copy_progress", "plan_markdown", "print_audit", "print_plan"]


def console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    # Off a terminal, keep lines long and undecorated so logs and grep see whole paths.
    return Console(file=stream, width=None if tty else 200, no_color=not tty, highlight=False)


def _tags(copy: Copy) -> str:
    return ", ".join(tag.tag for tag in copy.tags)


def _why(copy: Copy) -> str:
    """Why these tags are copied, each reason once: a user reads it, not a parser."""
    reasons: dict[str, None] = {}
    for tag in copy.tags:
        reasons["content differs" if tag.reason == "digest-mismatch" else "missing"] = None
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
    out.print(
        f"Plan: {changes} change(s), {tags} tag(s) to copy, {fresh} already up to date "
        f"({len(plan.artifacts)} upstream artifact(s), {', '.join(found)})."
    )


def _print_target_plan(target: TargetPlan, out: Console) -> None:
    out.print(f"[bold]Target {target.target}[/bold] ({target.type} → {target.registry})")
    if target.changes:
        table = _table("action", "resource", "id", "reason")
        for change in target.changes:
            table.add_row(*map(redact, _change_row(change)))
        out.print(table)
    if target.copies:
        table = _table("copy from", "to", "tags", "why")
        for copy in target.copies:
            table.add_row(copy.source, copy.destination, _tags(copy), _why(copy))
        out.print(table)
    if target.empty:
        out.print(f"  No changes: {target.up_to_date} tag(s) already up to date.")
    for note in target.notes:
        out.print(f"  {note.level}: {redact(note.message)}", markup=False)
    out.print()


def print_audit(audit: Audit, out: Console) -> None:
    for target in audit.targets:
        _print_target_audit(target, out)
    out.print(audit_verdict.headline(audit), markup=False)


def _print_target_audit(target: TargetAudit, out: Console) -> None:
    out.print(f"[bold]Target {target.target}[/bold] ({target.type} → {target.registry})")
    if target.resources:
        table = _table("ownership", "resource", "id")
        for resource in target.resources:
            table.add_row("managed" if resource.managed else "foreign", resource.kind, resource.id)
        out.print(table)
    if target.drift:
        table = _table("drift", "resource", "id", "detail")
        for change in target.drift:
            table.add_row(*map(redact, _drift_row(change)))
        out.print(table)
    if target.content is not None:
        wrong = [c for c in target.content if c.status != "present"]
        present = len(target.content) - len(wrong)
        if wrong:
            table = _table("status", "destination", "tag", "expected", "found")
            for check in wrong:
                table.add_row(check.status, check.destination, check.tag, check.expected, check.actual or "-")
            out.print(table)
        out.print(f"  Content: {present} of {len(target.content)} tag(s) present with the upstream digest.")
    if target.unchecked:
        out.print(f"  {audit_verdict.unchecked_line(target)}", markup=False)
    for note in target.notes:
        out.print(f"  {note.level}: {redact(note.message)}", markup=False)
    out.print()


def _drift_row(change: Change) -> tuple[str, str, str, str]:
    status = {"create": "missing", "delete": "extra"}.get(change.action, "different")
    return (status, change.resource, change.id, change.reason)


def _table(*columns: str) -> Table:
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


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
                checks = ((c.status, f"`{c.destination}`", c.tag, c.expected, c.actual or "-") for c in wrong)
                lines += [*_md_table(("status", "destination", "tag", "expected", "found"), checks), ""]
            lines.append(f"{len(target.content) - len(wrong)} of {len(target.content)} tag(s) present.")
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
                bar.console.print(f"FAILED {result.job.destination_ref}", markup=False)
            bar.update(task, advance=1, failed=failed)

        try:
            yield advance
        finally:
            for handler in handlers:
                handler.setStream(real_stderr)
