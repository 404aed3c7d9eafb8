"""The command line: arguments in, one library call, rendering out, exit code back.

Exit codes: 0 success / in sync; 1 any error (bad input, failed call, failed copy — and
usage errors too, so that a typo is never mistaken for "changes pending"); 2 changes
pending (`plan --detailed-exitcode`) or drift (`audit`); 3 an audit whose rules are in sync
but whose tags were not checked (`audit --rules-only`: never 0, `audit_verdict`); 128 + the
signal's number when
interrupted: 130 for SIGINT (Ctrl-C), 143 for SIGTERM, the shell's convention for a process
a signal ended, so that a caller can tell which one stopped the run.

SIGINT and SIGTERM end a run the same orderly way: running skopeo copies are stopped and
waited for, temporary auth files removed, and one line says what was copied and what was
not (the next `plan` lists exactly the rest). A second signal during that shutdown is
ignored, so that a quick double Ctrl-C cannot leave credentials behind.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import cli_common, cli_loudness, cli_saved_plan
from ._version import __version__
from .atomic_write import write_text_atomically
from .cli_common import (
    SPEC,
    STRICT,
    TARGETS,
    WORKERS,
    Lazy,
    confirm,
    execute,
    format_option,
    group_timeout,
    load_for_validate,
    run,
    show,
    show_plan,
)
from .cli_render import render
from .cli_shard import SHARD
from .cli_signals import Interrupted, signals_interrupt
from .errors import MirrorspecError
from .oci.defaults import BODY_TIMEOUTS, DEFAULT_TIMEOUT, HOST_BUDGET_TIMEOUTS
from .oci.read_limit import DEFAULT_READS
from .redaction import RedactingStream, redact

if TYPE_CHECKING:
    from . import engine, output, prune_tags as tag_pruning
    from .audit_verdict import exit_code as audit_exit_code
    from .host_settings import validate_summary
    from .plan import to_json
    from .shards import Shard
else:
    engine, output = Lazy("engine"), Lazy("output")
    tag_pruning = Lazy("prune_tags")  # imports the engine's layers: not for --help (B5)
    validate_summary = Lazy("host_settings", "validate_summary")
    to_json = Lazy("plan", "to_json")
    audit_exit_code = Lazy("audit_verdict", "exit_code")

__all__ = ["configure_logging", "main"]

log = logging.getLogger("mirrorspec")

MAX_QUERY_CHARACTERS = 1 << 20  # terraform-external's stdin


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
      mirrorspec audit spec.yaml         is everything really there? (exit 2 on drift)

    Exit codes: 0 ok / in sync, 1 error, 2 changes pending (plan --detailed-exitcode) or drift (audit),
    3 rules in sync but tags not checked (audit --rules-only), 130 / 143 interrupted by SIGINT / SIGTERM.
    """
    if verbose and quiet:
        raise click.UsageError("use -v or --quiet, not both")
    cli_loudness.remember(click.get_current_context(), verbose, quiet)
    configure_logging(verbose, quiet=quiet)


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
            spec, name = load_for_validate(spec_file)
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


@cli.command()
@click.option(
    "--output",
    "kind",
    type=click.Choice(["spec", "plan", "audit", "saved-plan"]),
    default="spec",
    show_default=True,
    help="spec: the spec file (for editors, yaml-language-server); plan / audit: their --format json; "
    "saved-plan: the file `plan --out` writes.",
)
def schema(kind: str) -> None:
    """Print a JSON Schema (Draft 2020-12): of the spec, the plan / audit JSON documents, or a saved plan."""
    from .schemas import schema as schema_of

    click.echo(json.dumps(schema_of(kind), indent=2))


@cli.command()
@SPEC
@TARGETS
@format_option("table", "json", "markdown")
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
@SHARD
@cli_saved_plan.OUT
def plan(
    spec_file: Path,
    targets: tuple[str, ...],
    fmt: str,
    prune: bool,
    detailed_exitcode: bool,
    strict: bool,
    workers: int,
    shard: Shard | None,
    out: Path | None,
) -> None:
    """Show what apply would change and copy. Reads registries; writes nothing but --out FILE."""
    cli_saved_plan.check_out(out, spec_file)
    with run(spec_file, workers) as ctx:
        the_plan = engine.plan(ctx, targets=targets, prune=prune, spec_name=str(spec_file), shard=shard)
    show_plan(the_plan, fmt)
    if strict:
        from .strict import refuse_empty_selections

        refuse_empty_selections(the_plan)
    # `--out FILE`: a saved plan, for `apply FILE`
    cli_saved_plan.save(out, ctx, the_plan, spec_file=spec_file, targets=targets, prune=prune, shard=shard)
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
@click.option(
    "--prune-tags",
    is_flag=True,
    help="Also delete the tags the spec does not select, in repositories mirrorspec copies into.",
)
@STRICT
@WORKERS
@SHARD
def apply(
    spec_file: Path,
    targets: tuple[str, ...],
    yes: bool,
    rotate_credentials: bool,
    prune: bool,
    prune_tags: bool,
    strict: bool,
    workers: int,
    shard: Shard | None,
) -> None:
    """Plan, show the plan, ask, then carry out exactly that plan.

    SPEC may be a saved plan (`plan --out FILE`): then that plan is carried out without a
    question, or refused when the spec or the registries changed since it was made."""
    saved = cli_saved_plan.saved_plan_in(spec_file)
    if saved is not None:
        given = {"--target": bool(targets), "--rotate-credentials": rotate_credentials, "--prune": prune}
        given |= {"--prune-tags": prune_tags, "--shard": shard is not None}
        cli_saved_plan.apply_saved(spec_file, saved, workers=workers, strict=strict, given=given)
        return
    with run(spec_file, workers, rotate_credentials=rotate_credentials) as ctx:
        the_plan = engine.plan(ctx, targets=targets, prune=prune, spec_name=str(spec_file), shard=shard)
        show_plan(the_plan, "table")
        if strict:  # before anything is changed or copied
            from .strict import refuse_empty_selections

            refuse_empty_selections(the_plan)
        owns = shard.owns if shard is not None else None
        pruned = tag_pruning.plan(ctx, the_plan, owns) if prune_tags else []  # `prune_tags.py`
        for line in tag_pruning.lines(pruned) if prune_tags else []:
            click.echo(redact(line))
        if the_plan.empty and not any(p.delete for p in pruned):
            click.echo("Nothing to do.")
            return
        confirm(yes, "Apply this plan?")
        if not the_plan.empty:
            try:
                execute(ctx, the_plan, copies_only=False)
            except MirrorspecError as exc:
                if any(p.delete for p in pruned):  # deletes run only after a clean apply
                    raise MirrorspecError(f"{exc}; no tag was pruned (--prune-tags)") from None
                raise
        try:
            tag_pruning.carry_out(ctx, pruned, lambda line, err: click.echo(redact(line), err=err))
        except Interrupted as exc:
            exc.detail = (
                "the plan was applied; deleting tags was interrupted (the one in progress is done or "
                "not): `mirrorspec audit --content` lists the unselected tags left"
            )
            raise


@cli.command()
@SPEC
@TARGETS
@click.option("--dry-run", is_flag=True, help="Show the copies that are needed, copy nothing.")
@WORKERS
@SHARD
def sync(spec_file: Path, targets: tuple[str, ...], dry_run: bool, workers: int, shard: Shard | None) -> None:
    """Only the copies: bring every wanted tag to its destination, leave native rules alone."""
    with run(spec_file, workers) as ctx:
        the_plan = engine.plan(ctx, targets=targets, spec_name=str(spec_file), copies_only=True, shard=shard)
        show_plan(the_plan, "table")
        if not dry_run and not the_plan.empty:
            execute(ctx, the_plan, copies_only=True)


@cli.command()
@SPEC
@TARGETS
@click.option(
    "--content",
    is_flag=True,
    help="The deep check: at an OCI layout target also hash every blob each tag reaches "
    "(every wanted tag's digest is checked either way).",
)
@click.option(
    "--rules-only",
    is_flag=True,
    help="Compare native rules only, not the tags: the report says content was not checked, "
    "and exits 3, never 0, when a target must hold tags.",
)
@format_option("table", "json", "markdown")
@WORKERS
@SHARD
def audit(
    spec_file: Path,
    targets: tuple[str, ...],
    content: bool,
    rules_only: bool,
    fmt: str,
    workers: int,
    shard: Shard | None,
) -> None:
    """Compare what each registry really has with the spec: its native rules, and every tag it
    must hold by digest. Exit 0 in sync, 2 on drift, 3 rules in sync but tags not checked
    (--rules-only)."""
    if content and rules_only:
        raise click.UsageError("--rules-only and --content cannot be used together")
    with run(spec_file, workers) as ctx:
        report = engine.audit(
            ctx,
            targets=targets,
            content=content,
            rules_only=rules_only,
            spec_name=str(spec_file),
            shard=shard,
        )
    show(report, fmt, markdown=output.audit_markdown, table=output.print_audit)
    code = audit_exit_code(report)
    if code:
        sys.exit(code)


cli.add_command(render)


@cli.command("terraform-external")
def terraform_external() -> None:
    """Terraform `external` data source: a JSON query on stdin, a JSON object of strings on stdout.

    \b
    query: spec (path), action (plan | audit), target (optional), content, rules_only ("true"/"false", audit)
    result: in_sync, changes, copies, drift, unchecked (counts) and plan_json (the JSON document)
    Reads registries, never writes. On error: one line on stderr, exit 1, nothing on stdout.
    """
    from . import terraform_external as terraform

    seconds = group_timeout()
    try:
        query = sys.stdin.read(MAX_QUERY_CHARACTERS + 1)  # a query is a few hundred bytes
        if len(query) > MAX_QUERY_CHARACTERS:
            raise MirrorspecError(f"the query on stdin is larger than {MAX_QUERY_CHARACTERS:,} characters")
        answer = terraform.external(query, context=lambda spec: cli_common.RunContext(spec, timeout=seconds))
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
    write_text_atomically(output, redact(converted.text))
    click.echo(f"wrote {output}", err=True)


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
        with signals_interrupt():
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
