"""The command line: arguments in, one library call, rendering out, exit code back.

Exit codes: 0 success / in sync; 1 any error (bad input, failed call, failed copy — and
usage errors too, so that a typo is never mistaken for "changes pending"); 2 changes
pending (`plan --detailed-exitcode`) or drift (`audit`); 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from . import __version__, engine, output
from . import spec as specmod
from .context import RunContext
from .copy import CopyResult, find_skopeo
from .credentials import redact
from .errors import MirrorspecError
from .plan import to_json

__all__ = ["main"]

log = logging.getLogger("mirrorspec")

SPEC = click.argument("spec_file", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
TARGETS = click.option(
    "--target",
    "-t",
    "targets",
    multiple=True,
    metavar="NAME",
    help="Only this target (repeatable). Default: all.",
)
WORKERS = click.option(
    "--workers",
    "-j",
    default=8,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Registry requests and copies in flight at once.",
)


def _format(*choices: str) -> Callable[[Any], Any]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="table for people; json (stable schema) on stdout alone; markdown for pull requests.",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mirrorspec")
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-vv for debug).")
def cli(verbose: int) -> None:
    """Mirror upstream images and Helm charts into your registries, as one declarative spec.

    \b
    Typical use:
      mirrorspec validate spec.yaml      offline checks
      mirrorspec plan spec.yaml          what would change, nothing is written
      mirrorspec apply spec.yaml         do it (asks first; --yes to skip)
      mirrorspec audit spec.yaml --content   is everything really there? (exit 2 on drift)

    Exit codes: 0 ok / in sync, 1 error, 2 changes pending (plan --detailed-exitcode) or drift (audit).
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # urllib3 narrates every retry at WARNING; our own error says what failed, once.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if verbose >= 2 else logging.ERROR)


@cli.command()
@SPEC
def validate(spec_file: Path) -> None:
    """Check SPEC offline: syntax, keys, types, constraints, references, destination overlaps."""
    spec = specmod.load_spec(spec_file)
    repos = sum(len(s.repositories) for s in spec.sources)
    counts = f"{len(spec.sources)} source(s), {repos} repository(ies), {len(spec.targets)} target(s)"
    click.echo(f"{spec_file}: valid ({counts})")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the spec (for editors and yaml-language-server)."""
    click.echo(json.dumps(specmod.json_schema(), indent=2))


@cli.command()
@SPEC
@TARGETS
@_format("table", "json", "markdown")
@click.option(
    "--prune",
    is_flag=True,
    help="Also plan deleting managed native rules that are no longer in the spec.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 2 when there are changes or copies pending, 0 when none.",
)
@WORKERS
def plan(
    spec_file: Path,
    targets: tuple[str, ...],
    fmt: str,
    prune: bool,
    detailed_exitcode: bool,
    workers: int,
) -> None:
    """Show what apply would change and copy. Reads registries; writes nothing."""
    with _run(spec_file, workers) as ctx:
        the_plan = engine.plan(ctx, targets=targets, prune=prune, spec_name=str(spec_file))
    _show_plan(the_plan, fmt)
    if detailed_exitcode and not the_plan.empty:
        sys.exit(2)


@cli.command()
@SPEC
@TARGETS
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--prune", is_flag=True, help="Delete managed native rules that are no longer in the spec.")
@WORKERS
def apply(spec_file: Path, targets: tuple[str, ...], yes: bool, prune: bool, workers: int) -> None:
    """Plan, show the plan, ask, then carry out exactly that plan."""
    with _run(spec_file, workers) as ctx:
        the_plan = engine.plan(ctx, targets=targets, prune=prune, spec_name=str(spec_file))
        _show_plan(the_plan, "table")
        if the_plan.empty:
            click.echo("Nothing to do.")
            return
        _confirm(yes, "Apply this plan?")
        _execute(ctx, the_plan, copies_only=False)


@cli.command()
@SPEC
@TARGETS
@click.option("--dry-run", is_flag=True, help="Show the copies that are needed, copy nothing.")
@WORKERS
def sync(spec_file: Path, targets: tuple[str, ...], dry_run: bool, workers: int) -> None:
    """Only the copies: bring every wanted tag to its destination, leave native rules alone."""
    with _run(spec_file, workers) as ctx:
        the_plan = engine.plan(ctx, targets=targets, spec_name=str(spec_file))
        the_plan = _without_changes(the_plan)
        _show_plan(the_plan, "table")
        if not dry_run and not the_plan.empty:
            _execute(ctx, the_plan, copies_only=True)


@cli.command()
@SPEC
@TARGETS
@click.option(
    "--content",
    is_flag=True,
    help="Also check every wanted tag at the destination against the upstream digest.",
)
@_format("table", "json", "markdown")
@WORKERS
def audit(spec_file: Path, targets: tuple[str, ...], content: bool, fmt: str, workers: int) -> None:
    """Compare what each registry really has with the spec. Exit 0 in sync, 2 on drift."""
    with _run(spec_file, workers) as ctx:
        report = engine.audit(ctx, targets=targets, content=content, spec_name=str(spec_file))
    if fmt == "json":
        click.echo(to_json(report))
    elif fmt == "markdown":
        click.echo(output.audit_markdown(report), nl=False)
    else:
        output.print_audit(report, output.console())
    if not report.in_sync:
        sys.exit(2)


@cli.group()
def render() -> None:
    """Export the spec in another tool's format."""


@render.command("skopeo")
@SPEC
@click.option("--target", "-t", "target", required=True, metavar="NAME", help="The target to render for.")
@WORKERS
def render_skopeo(spec_file: Path, target: str, workers: int) -> None:
    """skopeo sync YAML documents (one per destination directory) with explicit tag lists.

    Versions become `images-by-semver` only when the installed skopeo is 1.15 or newer.
    Credentials are never written; each document says which auth file to pass.
    """
    from . import providers
    from . import render as rendermod
    from .resolve import resolve

    with _run(spec_file, workers) as ctx:
        chosen = ctx.spec.target(target)
        endpoint = providers.get(chosen.type).endpoint(chosen, ctx)
        resolution = resolve(ctx)
        documents = rendermod.skopeo_documents(
            ctx,
            chosen,
            resolution.artifacts,
            endpoint_host=endpoint.host,
            semver_capable=find_skopeo().supports_semver,
        )
    click.echo(rendermod.to_yaml(documents), nl=False)


# --- helpers ---------------------------------------------------------------------------


@contextmanager
def _run(spec_file: Path, workers: int) -> Iterator[RunContext]:
    ctx = RunContext(specmod.load_spec(spec_file), workers=workers)
    try:
        yield ctx
    finally:
        ctx.close()


def _show_plan(the_plan: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(to_json(the_plan))
    elif fmt == "markdown":
        click.echo(output.plan_markdown(the_plan), nl=False)
    else:
        output.print_plan(the_plan, output.console())


def _without_changes(the_plan: Any) -> Any:
    from dataclasses import replace

    return replace(the_plan, targets=tuple(replace(t, changes=()) for t in the_plan.targets))


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise MirrorspecError("refusing to apply without confirmation: not a terminal; pass --yes")
    if not click.confirm(question, default=False):
        raise MirrorspecError("aborted: nothing was changed")


def _execute(ctx: RunContext, the_plan: Any, *, copies_only: bool) -> None:
    total = sum(len(c.tags) for t in the_plan.targets for c in t.copies if c.engine == "skopeo")
    err = output.console(stderr=True)
    done = 0

    def progress(result: CopyResult) -> None:
        nonlocal done
        done += 1
        state = "copied" if result.ok else "FAILED"
        err.print(
            f"[{done}/{total}] {state} {result.job.destination_ref} ({result.seconds:.1f}s)",
            markup=False,
        )

    result = engine.apply(ctx, the_plan, copies_only=copies_only, on_copy=progress)
    copied = sum(1 for c in result.copied if c.ok)
    click.echo(f"Applied: {result.changed} change(s), {copied} of {total} tag(s) copied and verified.")
    if result.failures:
        for failure in result.failures:
            click.echo(f"error: {redact(failure)}", err=True)
        raise MirrorspecError(f"{len(result.failures)} operation(s) failed; the rest was applied")


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: the one place that turns errors into messages and exit codes."""
    try:
        cli.main(args=argv, prog_name="mirrorspec", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {redact(exc.format_message())}", err=True)
        sys.exit(1)
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        sys.exit(130)
    except MirrorspecError as exc:
        click.echo(f"error: {redact(str(exc))}", err=True)
        sys.exit(1)
    except Exception as exc:  # a bug: say so, keep it one line unless asked for more
        if os.environ.get("MIRRORSPEC_DEBUG"):
            raise
        click.echo(
            f"internal error (this is a bug in mirrorspec): {type(exc).__name__}: {redact(str(exc))}; "
            "set MIRRORSPEC_DEBUG=1 for the traceback",
            err=True,
        )
        sys.exit(1)
    sys.exit(0)
