"""What the commands share: their common options, the run context they build from the group's
`--timeout` and `--reads`, the one target a render picks, how a plan is shown, the confirmation
apply asks for, and the execution of a plan with its progress and totals.

Everything heavy (the engine, the registry client, rich) is imported at first use (`Lazy`):
`--help` and `validate` need none of it (bench/run.py, B5; `tests/test_startup_imports.py`).
Tests hand the CLI a prepared context by replacing `RunContext` here.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .cli_signals import Interrupted
from .errors import MirrorspecError
from .oci.defaults import DEFAULT_TIMEOUT
from .oci.read_limit import DEFAULT_READS
from .redaction import redact


class Lazy:
    """A module of mirrorspec (or a name in one) imported at its first use, not at start-up:
    `--help` and `validate` need neither the engine, nor the registry client, nor rich's
    tables (bench/run.py, B5)."""

    def __init__(self, module: str, name: str | None = None) -> None:
        self._module = module
        self._name = name

    def _target(self) -> Any:
        module = importlib.import_module(f"{__package__}.{self._module}")
        return module if self._name is None else getattr(module, self._name)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._target(), attribute)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target()(*args, **kwargs)


if TYPE_CHECKING:
    from . import engine, output, spec as specmod
    from .context import RunContext
    from .host_settings import validate_summary
    from .plan import to_json
    from .skopeo.jobs import CopyResult, CopySummary
    from .skopeo.process import find_skopeo
    from .skopeo.schedule import default_workers
else:
    engine, output, specmod = Lazy("engine"), Lazy("output"), Lazy("spec")
    RunContext = Lazy("context", "RunContext")
    validate_summary = Lazy("host_settings", "validate_summary")
    to_json = Lazy("plan", "to_json")
    CopySummary = Lazy("skopeo.jobs", "CopySummary")
    find_skopeo = Lazy("skopeo.process", "find_skopeo")
    default_workers = Lazy("skopeo.schedule", "default_workers")

__all__ = [
    "RENDER_TARGET",
    "SPEC",
    "STRICT",
    "TARGETS",
    "WORKERS",
    "Lazy",
    "RunContext",
    "confirm",
    "execute",
    "format_option",
    "group_reads",
    "group_timeout",
    "load_for_validate",
    "only_target",
    "run",
    "show",
    "show_plan",
]

SPEC = click.argument("spec_file", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
TARGETS = click.option(
    "--target",
    "-t",
    "targets",
    multiple=True,
    metavar="NAME",
    help="Only this target (repeatable). Default: all.",
)
RENDER_TARGET = click.option(
    "--target",
    "-t",
    "target",
    metavar="NAME",
    help="The target to render for; may be left out when the spec has one.",
)
STRICT = click.option(
    "--strict",
    is_flag=True,
    help="A tag selection that matches no upstream tag is an error (exit 1), not a warning.",
)
WORKERS = click.option(
    "--workers",
    "-j",
    default=default_workers,  # called when a command that takes it runs; the help says what it is
    show_default=False,
    type=click.IntRange(1, 64),
    help="Copies in flight at once (default: 4 per CPU, 24 to 32); copies at one registry start "
    "at 8 and adapt up to 24, never above this. Registry reads have their own limit (--reads).",
)


def format_option(*choices: str) -> Callable[[Any], Any]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="table for people; json (stable schema) on stdout alone; markdown for pull requests.",
    )


def group_timeout() -> float:
    """The group's `--timeout`, for the command running now."""
    value = click.get_current_context().find_root().params.get("timeout", DEFAULT_TIMEOUT)
    return float(value)


def group_reads() -> int:
    """The group's `--reads`, for the command running now."""
    return int(click.get_current_context().find_root().params.get("reads", DEFAULT_READS))


@contextmanager
def run(spec_file: Path, workers: int, *, rotate_credentials: bool = False) -> Iterator[RunContext]:
    from .saved_plan import refuse_as_spec  # only `apply` takes a saved plan (`cli_saved_plan`)

    refuse_as_spec(spec_file)
    spec = specmod.load_spec(spec_file)
    ctx = RunContext(
        spec,
        workers=workers,
        rotate_credentials=rotate_credentials,
        timeout=group_timeout(),
        reads=group_reads(),
    )
    try:
        yield ctx
    finally:
        ctx.close()


def only_target(ctx: RunContext, name: str | None, spec_file: Path) -> str:
    """`--target`, or the spec's one target when it was left out (offline, before any read)."""
    if name is not None:
        return name
    names = [t.name for t in ctx.spec.targets]
    if len(names) == 1:
        return names[0]
    raise MirrorspecError(
        f"{spec_file} has {len(names)} targets; choose one with --target ({', '.join(names)})"
    )


def load_for_validate(spec_file: Path) -> tuple[Any, str]:
    """The spec and the name its messages use: the path, or `<stdin>` for `-`. Every error
    names the file (an error of the spec's own says where in it; the rest are prefixed)."""
    stdin = str(spec_file) == "-"
    name = "<stdin>" if stdin else str(spec_file)
    try:
        spec = specmod.load_spec_stream(sys.stdin.buffer) if stdin else specmod.load_spec(spec_file)
        return spec, name
    except MirrorspecError as exc:
        if not stdin:  # a saved plan's JSON is valid YAML: say what the file is instead
            from .saved_plan import refuse_as_spec  # only on this error path (start-up time, B5)

            refuse_as_spec(spec_file)
        if not str(exc).startswith(name):
            exc.args = (f"{name}: {exc}",) if len(exc.args) == 1 else exc.args
        raise


def show_plan(the_plan: Any, fmt: str) -> None:
    show(the_plan, fmt, markdown=output.plan_markdown, table=output.print_plan)


def show(document: Any, fmt: str, *, markdown: Callable[[Any], str], table: Callable[..., None]) -> None:
    """A plan or an audit on stdout: its JSON, its markdown, or its table on the console."""
    if fmt == "json":
        click.echo(to_json(document))
    elif fmt == "markdown":
        click.echo(markdown(document), nl=False)
    else:
        table(document, output.console())


def confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise MirrorspecError("refusing to apply without confirmation: not a terminal; pass --yes")
    if not click.confirm(question, default=False):
        raise MirrorspecError("aborted: nothing was changed")


def execute(ctx: RunContext, the_plan: Any, *, copies_only: bool) -> None:
    """Apply the plan, showing copies as they finish; end with the totals; exit 1 on failure."""
    total = sum(len(c.tags) for t in the_plan.targets for c in t.copies if c.engine == "skopeo")
    skipped = sum(t.up_to_date for t in the_plan.targets)
    copied = 0
    with output.copy_progress(total) as progress:

        def on_copy(result: CopyResult) -> None:
            nonlocal copied
            copied += result.ok
            progress(result)

        try:
            result = engine.apply(ctx, the_plan, copies_only=copies_only, on_copy=on_copy)
        except Interrupted as exc:
            done = f"{copied} of {total} tag(s) copied and verified, {total - copied} not copied"
            if not copies_only and any(t.changes for t in the_plan.targets):
                done += " (native changes may be partly applied)"
            exc.detail = f"{done}; temporary credentials removed; `mirrorspec plan` shows what remains"
            raise
    summary = CopySummary.of(result.copied)
    applied = f"{result.changed} change(s), {summary.copied} of {total} tag(s) copied and verified"
    # Tags carried by the registry itself (import, replication) or put by mirrorspec (a
    # referrers tag index): verified too, each failure listed below; counted apart from skopeo's.
    others: dict[str, int] = {}
    for target_plan in the_plan.targets:
        for copy in target_plan.copies:
            if copy.engine != "skopeo":
                others[copy.engine] = others.get(copy.engine, 0) + len(copy.tags)
    if others:
        carried = ", ".join(f"{n} by {engine}" for engine, n in sorted(others.items()))
        applied += f"; {sum(others.values())} more tag(s) planned for other engines ({carried})"
    click.echo(f"Applied: {applied}.")
    if total:
        retried = f", {summary.retries} attempt(s) retried" if summary.retries else ""
        click.echo(f"Copies: {summary}, skipped {skipped} (already up to date){retried}.")
    if result.failures:
        for failure in result.failures:
            click.echo(f"error: {redact(failure)}", err=True)
        raise MirrorspecError(f"{len(result.failures)} operation(s) failed; the rest was applied")
