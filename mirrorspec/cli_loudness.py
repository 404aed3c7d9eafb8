"""How much the CLI says on stderr: `-v`/`-vv`/`--quiet`, before the command or after it.

The group's own options are read before the command is known (`mirrorspec -v plan ...`); a
user who types them after it (`mirrorspec plan spec.yaml -v`, as most CLIs allow) gets the same.
`add_everywhere` gives every command the same options; each one found after the command adds
to the group's, and logging is configured again before the command's body runs (click parses a
command's arguments, running their callbacks, after the group's callback: `MultiCommand.invoke`).

By default only mirrorspec's own warnings and everyone's errors are logged: a library's warning
that comes before our own error (a cloud SDK's credential chain may narrate each credential it
tried in 13 lines, then our one-line error says what failed) is noise; `-v` shows them.
`--quiet` logs errors only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import click

__all__ = ["OwnWarningsOnly", "add_everywhere", "remember"]

_KEY = "mirrorspec.loudness"  # (verbose, quiet) in the root context's meta


class OwnWarningsOnly(logging.Filter):
    """Passes mirrorspec's records and other loggers' errors; drops other loggers' warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == "mirrorspec" or record.name.startswith("mirrorspec.")
        return own or record.levelno >= logging.ERROR


def remember(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """The group's `-v`/`--quiet`, for options given after the command to add to."""
    ctx.find_root().meta[_KEY] = (verbose, quiet)


def add_everywhere(group: click.Group, configure: Callable[[int, bool], None]) -> None:
    """`-v`/`--verbose` and `-q`/`--quiet` on every command under `group`, `configure(verbose,
    quiet)` called again when one is given there."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            add_everywhere(command, configure)
            continue
        names = {opt for param in command.params for opt in getattr(param, "opts", ())}
        if names & {"-v", "--verbose", "-q", "--quiet"}:
            continue  # a command with its own meaning for them keeps it
        command.params += _options(configure)


def _options(configure: Callable[[int, bool], None]) -> list[click.Parameter]:
    def given(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if not value:
            return
        verbose, quiet = ctx.find_root().meta.get(_KEY, (0, False))
        if param.name == "verbose":
            verbose += int(value)
        else:
            quiet = True
        if verbose and quiet:
            raise click.UsageError("use -v or --quiet, not both")
        remember(ctx, verbose, quiet)
        configure(verbose, quiet)

    # Each is a click.Option that feeds `given` and no parameter of the command.
    hidden: dict[str, Any] = {"expose_value": False, "callback": given}
    return [
        click.Option(
            ["-v", "--verbose"],
            count=True,
            help="More logging on stderr (-vv for debug); also before the command.",
            **hidden,
        ),
        click.Option(
            ["-q", "--quiet"], is_flag=True, help="Log errors only; also before the command.", **hidden
        ),
    ]
