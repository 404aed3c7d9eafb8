"""The command line: arguments in, one library call, rendering out, exit code back.

Exit codes: 0 success / in sync; 1 any error (bad input, failed call, failed copy — and
usage errors too, so that a typo is never mistaken for "changes pending"); 2 changes
pending (`plan --detailed-exitcode`) or drift (`audit`); 128 + the signal's number when
interrupted: 130 for SIGINT (Ctrl-C), 143 for SIGTERM, the shell's convention for a process
a signal ended, so that a caller can tell which one stopped the run.

SIGINT and SIGTERM end a run the same orderly way: running skopeo copies are stopped and
waited for, temporary auth files removed, and one line says what was copied and what was
not (the next `plan` lists exactly the rest). A second signal during that shutdown is
ignored, so that a quick double Ctrl-C cannot leave credentials behind.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import cli_loudness
from ._version import __version__
from .errors import MirrorspecError
from .oci.defaults import BODY_TIMEOUTS, DEFAULT_TIMEOUT, HOST_BUDGET_TIMEOUTS
from .oci.read_limit import DEFAULT_READS
from .redaction import RedactingStream, redact


class _Lazy:
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
    from . import engine, output
    from . import spec as specmod
    from .context import RunContext
    from .host_settings import validate_summary
    from .plan import to_json
    from .skopeo.jobs import CopyResult, CopySummary
    from .skopeo.process import find_skopeo
    from .skopeo.schedule import default_workers
else:
    engine, output, specmod = _Lazy("engine"), _Lazy("output"), _Lazy("spec")
    RunContext = _Lazy("context", "RunContext")
    validate_summary = _Lazy("host_settings", "validate_summary")
    to_json = _Lazy("plan", "to_json")
    CopySummary = _Lazy("skopeo.jobs", "CopySummary")
    find_skopeo = _Lazy("skopeo.process", "find_skopeo")
    default_workers = _Lazy("skopeo.schedule", "default_workers")

__all__ = ["configure_logging", "main"]

log = logging.getLogger("mirrorspec")

MAX_QUERY_CHARACTERS = 1 << 20  # terraform-external's stdin

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
@click.option("-q", "--quiet", is_flag=True, help="Log errors only.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=3600),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="Each registry or API request must connect and send its response headers within SECONDS "
    f"(its body gets {BODY_TIMEOUTS}x); a timeout is retried at most twice. A host that answers "
    f"nothing useful for {HOST_BUDGET_TIMEOUTS}x SECONDS is given up for the rest of the run.",
)
@click.option(
    "--reads",
    type=click.IntRange(1, 256),
    default=DEFAULT_READS,
    show_default=True,
    metavar="N",
    help="Registry reads (tag lists, digests, chart configs) in flight per registry to start with; "
    "halved when it throttles (429/503, Retry-After honoured), grown back while it answers well.",
)
def cli(verbose: int, quiet: bool, timeout: float, reads: int) -> None:
    """Mirror upstream images and Helm charts into your registries, as one declarative spec.

    \b
    Typical use:
      mirrorspec validate spec.yaml      offline checks
      mirrorspec plan spec.yaml          what would change, nothing is written
      mirrorspec apply spec.yaml         do it (asks first; --yes to skip)
      mirrorspec audit spec.yaml --content   is everything really there? (exit 2 on drift)

    Exit codes: 0 ok / in sync, 1 error, 2 changes pending (plan --detailed-exitcode) or drift (audit),
    130 / 143 interrupted by SIGINT / SIGTERM.
    """
    if verbose and quiet:
        raise click.UsageError("use -v or --quiet, not both")
    cli_loudness.remember(click.get_current_context(), verbose, quiet)
    configure_logging(verbose, quiet=quiet)


def _timeout() -> float:
    """The group's `--timeout`, for the command running now."""
    value = click.get_current_context().find_root().params.get("timeout", DEFAULT_TIMEOUT)
    return float(value)


def _reads() -> int:
    """The group's `--reads`, for the command running now."""
    return int(click.get_current_context().find_root().params.get("reads", DEFAULT_READS))


def configure_logging(verbose: int, *, quiet: bool = False) -> None:
    """Logs go to stderr, every line redacted. SDK request dumps stay off even at -vv: each
    provider names its SDK's loggers (`QUIET_LOGGERS`), whose DEBUG lines may carry request
    bodies that redaction cannot be relied on to recognise. Without -v, other libraries'
    warnings are not logged (our own error says what failed, once: `cli_loudness`); with
    `quiet`, only errors are."""
    level = logging.ERROR if quiet else logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)  # also over loggers given a level of their own below
    if not verbose:
        handler.addFilter(cli_loudness.OwnWarningsOnly())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # nodesemver narrates each step of parsing a range at DEBUG, drowning our own lines.
    # urllib3 narrates every retry at WARNING; our own error says what failed, once.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if verbose >= 2 else logging.ERROR)
    hushed = ["nodesemver"]
    if verbose:  # below WARNING only: at WARNING these loggers inherit it from the root already
        from . import providers  # importing a provider imports no SDK (but takes ~0.1 s)

        for type_name in sorted(providers.available()):
            hushed += getattr(providers.get(type_name), "QUIET_LOGGERS", ())
    for name in hushed:
        logging.getLogger(name).setLevel(logging.WARNING)


@cli.command()
@click.argument(
    "spec_files",
    metavar="SPEC...",
    nargs=-1,
    required=True,
    type=click.Path(allow_dash=True, path_type=Path),
)
def validate(spec_files: tuple[Path, ...]) -> None:
    """Check each SPEC offline (`-` reads one from stdin): syntax, keys, types, constraints,
    references, destination overlaps. Every file is checked; exit 1 if any is invalid."""
    if sum(1 for f in spec_files if str(f) == "-") > 1:
        raise click.UsageError("'-' (stdin) can be given once")
    invalid = 0
    for spec_file in spec_files:
        try:
            spec, name = _load_for_validate(spec_file)
        except MirrorspecError as exc:
            if len(spec_files) == 1:
                raise
            invalid += 1
            click.echo(f"error: {redact(str(exc))}", err=True)
            continue
        repos = sum(len(s.repositories) for s in spec.sources)
        settings_only = sum(1 for s in spec.sources if s.settings_only)
        sources = f"{len(spec.sources)} source(s)" + (
            f", {settings_only} of them settings only" if settings_only else ""
        )
        counts = f"{sources}, {repos} repository(ies), {len(spec.targets)} target(s)"
        click.echo(f"{name}: valid ({counts})")
        summary = validate_summary(spec)
        if summary is not None:
            click.echo(summary)
    if invalid:
        raise MirrorspecError(f"{invalid} of {len(spec_files)} spec file(s) are invalid")


def _load_for_validate(spec_file: Path) -> tuple[Any, str]:
    """The spec and the name its messages use: the path, or `<stdin>` for `-`. Every error
    names the file (an error of the spec's own says where in it; the rest are prefixed)."""
    stdin = str(spec_file) == "-"
    name = "<stdin>" if stdin else str(spec_file)
    try:
        spec = specmod.load_spec_stream(sys.stdin.buffer) if stdin else specmod.load_spec(spec_file)
        return spec, name
    except MirrorspecError as exc:
        if not str(exc).startswith(name):
            exc.args = (f"{name}: {exc}",) if len(exc.args) == 1 else exc.args
        raise


@cli.command()
@click.option(
    "--output",
    "kind",
    type=click.Choice(["spec", "plan", "audit"]),
    default="spec",
    show_default=True,
    help="spec: the spec file (for editors, yaml-language-server); plan / audit: their --format json.",
)
def schema(kind: str) -> None:
    """Print a JSON Schema (Draft 2020-12): of the spec, or of the plan / audit JSON documents."""
    from .schemas import schema as schema_of

    click.echo(json.dumps(schema_of(kind), indent=2))


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
@STRICT
@WORKERS
def plan(
    spec_file: Path,
    targets: tuple[str, ...],
    fmt: str,
    prune: bool,
    detailed_exitcode: bool,
    strict: bool,
    workers: int,
) -> None:
    """Show what apply would change and copy. Reads registries; writes nothing."""
    with _run(spec_file, workers) as ctx:
        the_plan = engine.plan(ctx, targets=targets, prune=prune, spec_name=str(spec_file))
    _show_plan(the_plan, fmt)
    if strict:
        from .strict import refuse_empty_selections

        refuse_empty_selections(the_plan)
    if detailed_exitcode and not the_plan.empty:
        sys.exit(2)


@cli.command()
@SPEC
@TARGETS
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--rotate-credentials",
    is_flag=True,
    help="Re-send upstream passwords that a registry masks on read, so a changed one takes effect.",
)
@click.option("--prune", is_flag=True, help="Delete managed native rules that are no longer in the spec.")
@STRICT
@WORKERS
def apply(
    spec_file: Path,
    targets: tuple[str, ...],
    yes: bool,
    rotate_credentials: bool,
    prune: bool,
    strict: bool,
    workers: int,
) -> None:
    """Plan, show the plan, ask, then carry out exactly that plan."""
    with _run(spec_file, workers, rotate_credentials=rotate_credentials) as ctx:
        the_plan = engine.plan(ctx, targets=targets, prune=prune, spec_name=str(spec_file))
        _show_plan(the_plan, "table")
        if strict:  # before anything is changed or copied
            from .strict import refuse_empty_selections

            refuse_empty_selections(the_plan)
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
        the_plan = engine.plan(ctx, targets=targets, spec_name=str(spec_file), copies_only=True)
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
@RENDER_TARGET
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per destination directory and the certificate directories of "
    "ca-bundles here (new or empty), and print the skopeo commands that run them.",
)
@WORKERS
def render_skopeo(spec_file: Path, target: str | None, output_dir: Path | None, workers: int) -> None:
    """skopeo sync YAML documents (one per destination directory) with explicit tag lists.

    Versions become `images-by-semver` only when the installed skopeo is 1.15 or newer.
    Credentials are never written; each document says which auth file to pass.
    """
    from .skopeo import sync_dir, sync_yaml

    with _run(spec_file, workers) as ctx:
        wanted = engine.wanted(ctx, _only_target(ctx, target, spec_file))
        documents = sync_yaml.skopeo_documents(
            ctx,
            wanted.target,
            wanted.artifacts,
            endpoint_host=wanted.host,
            semver_capable=find_skopeo().supports_semver,
        )
    if output_dir is None:
        click.echo(sync_yaml.to_yaml(documents), nl=False)
        return
    commands = sync_dir.write_sync_dir(ctx.spec, wanted.target, documents, output_dir)
    click.echo(f"wrote {len(documents)} file(s) to {output_dir}", err=True)
    for command in commands:
        click.echo(command)


@render.command("terraform")
@SPEC
@RENDER_TARGET
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the .tf.json here (replacing it) instead of stdout.",
)
@WORKERS
def render_terraform(spec_file: Path, target: str | None, output: Path | None, workers: int) -> None:
    """Terraform JSON (.tf.json) for the target's native rules, exactly as apply would create them.

    Secrets become sensitive variables, never values. What Terraform cannot express (copies,
    imports, settings the registry's Terraform provider lacks) is listed in the file's
    top-level "//" comment and on stderr.
    Reads the upstream registries to resolve versions; never the target.
    """
    from .render_terraform import render as render_tf

    with _run(spec_file, workers) as ctx:
        rendered = render_tf(
            ctx, ctx.spec.target(_only_target(ctx, target, spec_file)), spec_name=str(spec_file)
        )
    for note in rendered.notes:
        click.echo(f"{'warning' if note.level == 'warning' else 'note'}: {redact(note.message)}", err=True)
    if output is None:
        click.echo(rendered.to_json(), nl=False)
        return
    output.write_text(redact(rendered.to_json()), encoding="utf-8")
    click.echo(f"wrote {output}", err=True)


@render.command("helm-values")
@SPEC
@click.option("--target", "-t", "target", required=True, metavar="NAME", help="The target to render for.")
@click.option(
    "--chart",
    "-c",
    "chart",
    required=True,
    metavar="HOST/REPO:VERSION",
    help="A chart version the spec mirrors with chart-images: true, as upstream names it.",
)
@WORKERS
def render_helm_values(spec_file: Path, target: str, chart: str, workers: int) -> None:
    """A values file (YAML) that points every image of a chart version at the target, for
    `helm install -f`.

    Each image is written in the shape the chart's values.yaml uses (a reference string, or a
    map's registry and repository), tag and digest kept. What no values key names is listed on
    stderr. Reads the upstream registries to resolve the chart; never the target.
    """
    from .render_helm_values import render as render_values

    with _run(spec_file, workers) as ctx:
        rendered = render_values(ctx, target, chart)
    for note in rendered.notes:
        click.echo(f"{'warning' if note.level == 'warning' else 'note'}: {redact(note.message)}", err=True)
    click.echo(rendered.text, nl=False)


@render.command("offline-spec")
@SPEC
@click.option("--target", "-t", "target", required=True, metavar="NAME", help="The spec's oci-layout target.")
@click.option(
    "--to",
    "targets_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="TARGETS_FILE",
    help="YAML with the far side's targets: (and credentials:, if they need any).",
)
@click.option(
    "--layout-path",
    metavar="DIR",
    help="Where the layout will be on the far side, relative to the far spec (default: the target's path).",
)
def render_offline_spec(spec_file: Path, target: str, targets_file: Path, layout_path: str | None) -> None:
    """The spec to run on the far side of an air gap: the same selections, read from the
    layout the oci-layout target writes, copied to the far side's targets.

    Offline: reads SPEC and TARGETS_FILE only. The output validates as a spec; paths in
    TARGETS_FILE (credential files, ca-bundles) are kept as written.
    """
    from .render_offline_spec import render as render_offline

    spec, _ = _load_for_validate(spec_file)
    rendered = render_offline(spec, target, targets_file, layout_path)
    for note in rendered.notes:
        click.echo(f"{'warning' if note.level == 'warning' else 'note'}: {redact(note.message)}", err=True)
    click.echo(rendered.text, nl=False)


@cli.command("terraform-external")
def terraform_external() -> None:
    """Terraform `external` data source: a JSON query on stdin, a JSON object of strings on stdout.

    \b
    query: spec (path), action (plan | audit), target (optional), content ("true"/"false", audit)
    result: in_sync, changes, copies, drift (counts) and plan_json (the JSON document)
    Reads registries, never writes. On error: one line on stderr, exit 1, nothing on stdout.
    """
    from . import terraform_external as terraform

    timeout = _timeout()
    try:
        query = sys.stdin.read(MAX_QUERY_CHARACTERS + 1)  # a query is a few hundred bytes
        if len(query) > MAX_QUERY_CHARACTERS:
            raise MirrorspecError(f"the query on stdin is larger than {MAX_QUERY_CHARACTERS:,} characters")
        answer = terraform.external(query, context=lambda spec: RunContext(spec, timeout=timeout))
    except MirrorspecError as exc:
        raise MirrorspecError(terraform.one_line(str(exc))) from None
    click.echo(answer)


@cli.group("import")
def import_() -> None:
    """Convert another tool's configuration into a spec."""


@import_.command("skopeo")
@click.argument("sync_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write the spec here.")
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
@click.option("--target-name", default="mirror", show_default=True, help="Name of the placeholder target.")
@click.option(
    "--target-registry",
    metavar="HOST",
    default="registry.example.invalid",
    show_default=True,
    help="Host of the placeholder target (skopeo's --dest).",
)
@click.option("--prefix", metavar="P", help="Repository path prefix in the target.")
def import_skopeo(
    sync_file: Path,
    output: Path | None,
    force: bool,
    target_name: str,
    target_registry: str,
    prefix: str | None,
) -> None:
    """Convert a `skopeo sync --src yaml` FILE into a spec (stdout, or --output).

    Passwords are never copied: credentials become {env: VAR} references, and the variables
    to set are listed on stderr.
    """
    from .skopeo.import_sync import import_skopeo as convert

    if output is not None and output.exists() and not force:
        raise MirrorspecError(f"{output} exists; pass --force to overwrite it")
    converted = convert(sync_file, target_name=target_name, target_registry=target_registry, prefix=prefix)
    for line in converted.messages:
        click.echo(line, err=True)
    if output is None:
        click.echo(converted.text, nl=False)
        return
    output.write_text(redact(converted.text), encoding="utf-8")
    click.echo(f"wrote {output}", err=True)


# --- helpers ---------------------------------------------------------------------------


@contextmanager
def _run(spec_file: Path, workers: int, *, rotate_credentials: bool = False) -> Iterator[RunContext]:
    spec = specmod.load_spec(spec_file)
    ctx = RunContext(
        spec, workers=workers, rotate_credentials=rotate_credentials, timeout=_timeout(), reads=_reads()
    )
    try:
        yield ctx
    finally:
        ctx.close()


def _only_target(ctx: RunContext, name: str | None, spec_file: Path) -> str:
    """`--target`, or the spec's one target when it was left out (offline, before any read)."""
    if name is not None:
        return name
    names = [t.name for t in ctx.spec.targets]
    if len(names) == 1:
        return names[0]
    raise MirrorspecError(
        f"{spec_file} has {len(names)} targets; choose one with --target ({', '.join(names)})"
    )


def _show_plan(the_plan: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(to_json(the_plan))
    elif fmt == "markdown":
        click.echo(output.plan_markdown(the_plan), nl=False)
    else:
        output.print_plan(the_plan, output.console())


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise MirrorspecError("refusing to apply without confirmation: not a terminal; pass --yes")
    if not click.confirm(question, default=False):
        raise MirrorspecError("aborted: nothing was changed")


def _execute(ctx: RunContext, the_plan: Any, *, copies_only: bool) -> None:
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


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException like KeyboardInterrupt, so that no
    `except Exception` swallows it, but not one, so that click does not turn it into Abort."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.detail = ""


def _on_signal(signum: int, frame: object) -> None:
    # From here on the run is shutting down: a second signal must not cut the cleanup short.
    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` while the command runs (main thread only:
    elsewhere Python cannot install handlers); the previous handlers come back after, unless
    the run was interrupted: then the process is on its way out and further signals stay
    ignored (`_on_signal`). Handed back, Python's own SIGINT handler would raise
    KeyboardInterrupt in the exit handlers if an impatient second Ctrl-C came late, and print
    a traceback after the summary line (seen once in CI)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, _on_signal)
    interrupted = False
    try:
        yield
    except Interrupted:
        interrupted = True
        raise
    finally:
        if not interrupted:
            for signum, handler in previous.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: the one place that turns errors into messages and exit codes.

    stdout and stderr are wrapped for the whole run (`RedactingStream`): every byte printed —
    tables, JSON, rendered files, logs, an internal error's traceback — is redacted on its way
    out, whichever code printed it."""
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(streams[0]), RedactingStream(streams[1])
    try:
        _main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = streams


def _main(argv: list[str] | None) -> None:
    try:
        with _signals_interrupt():
            cli.main(args=argv, prog_name="mirrorspec", standalone_mode=False)
    except Interrupted as exc:
        if sys.stderr.isatty():
            click.echo(err=True)  # after the terminal's ^C echo
        name = signal.Signals(exc.signum).name
        click.echo(f"interrupted by {name}: {exc.detail or 'nothing was changed'}", err=True)
        sys.exit(128 + exc.signum)
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
            traceback.print_exc()  # through the redacting stderr, unlike Python's own hook
            sys.exit(1)
        click.echo(
            f"internal error (this is a bug in mirrorspec): {type(exc).__name__}: {redact(str(exc))}; "
            "set MIRRORSPEC_DEBUG=1 for the traceback",
            err=True,
        )
        sys.exit(1)
    sys.exit(0)


# Last, once every command is defined: -v/-vv/--quiet are accepted after the command too.
cli_loudness.add_everywhere(cli, lambda verbose, quiet: configure_logging(verbose, quiet=quiet))
