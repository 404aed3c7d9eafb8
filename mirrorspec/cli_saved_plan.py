"""`plan --out FILE` and `apply FILE`: the command line's side of saved plans (`saved_plan.py`
holds the file format, the checks and why they are what they are).

Imported by `cli.py` at start-up, so everything heavy (the engine, the plan renderer) is
imported at first use (`tests/test_startup_imports.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .errors import MirrorspecError

if TYPE_CHECKING:
    from .context import RunContext
    from .plan import Plan
    from .shards import Shard

__all__ = ["OUT", "apply_saved", "check_out", "save", "saved_plan_in"]

OUT = click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Also save the plan to FILE (JSON), for `mirrorspec apply FILE` to carry out exactly "
    "that plan later, or refuse it if the spec or the registries changed since.",
)


def check_out(out: Path | None, spec_file: Path) -> None:
    """`--out`'s checks, before any registry is read."""
    if out is not None:
        from .saved_plan import check_out as check

        check(out, spec_file)


def save(
    out: Path | None,
    ctx: RunContext,
    the_plan: Plan,
    *,
    spec_file: Path,
    targets: Sequence[str],
    prune: bool,
    shard: Shard | None,
) -> None:
    """Write the saved plan when `--out` was given, and say so on stderr (stdout may be JSON)."""
    if out is None:
        return
    from .layout_lock import spec_sha256
    from .saved_plan import write

    write(
        out,
        the_plan,
        spec_path=str(spec_file),
        spec_sha256=spec_sha256(ctx),
        targets=targets,
        prune=prune,
        shard=None if shard is None else str(shard),
    )
    click.echo(f"Saved the plan to {out}; `mirrorspec apply {out}` carries it out.", err=True)


def saved_plan_in(path: Path) -> bytes | None:
    """The bytes of `path` when it is a saved plan, None when it is (to be read as) a spec."""
    from .saved_plan import detect

    return detect(path)


def apply_saved(file: Path, data: bytes, *, workers: int, strict: bool, given: Mapping[str, bool]) -> None:
    """`apply FILE`: plan again as the saved plan was made, refuse it if anything differs
    (`saved_plan.check_fresh`), else carry out that plan, without asking: it was reviewed."""
    from . import engine, saved_plan
    from .cli_common import execute, run, show_plan
    from .layout_lock import spec_sha256
    from .shards import parse

    conflicting = [name for name, on in given.items() if on]
    if conflicting:
        raise click.UsageError(
            f"{conflicting[0]} cannot be given with a saved plan: what to plan was decided by "
            "`mirrorspec plan --out`; make a new plan with it"
        )
    saved = saved_plan.load(file, data)
    try:
        shard = None if saved.shard is None else parse(saved.shard)
    except MirrorspecError as exc:
        raise MirrorspecError(f"{file}: damaged saved plan: {exc}") from None
    spec_file = Path(saved.spec_path)
    if not spec_file.is_file():
        raise MirrorspecError(
            f"{file}: its spec {saved.spec_path} is not a file here (the path is as given to "
            "`plan`, relative to the working directory)"
        )
    with run(spec_file, workers) as ctx:
        saved_plan.check_spec(saved, spec_sha256(ctx))  # before any registry is read
        fresh = engine.plan(
            ctx, targets=saved.targets, prune=saved.prune, spec_name=saved.spec_path, shard=shard
        )
        saved_plan.check_fresh(saved, fresh)
        click.echo(f"{file}: the saved plan is current: the spec and the registries are as planned.")
        show_plan(fresh, "table")
        if strict:  # before anything is changed or copied
            from .strict import refuse_empty_selections

            refuse_empty_selections(fresh)
        if fresh.empty:
            click.echo("Nothing to do.")
            return
        execute(ctx, fresh, copies_only=False)
