"""`--shard I/N` on `plan`, `apply`, `sync` and `audit`: the option, parsed into a `shards.Shard`.

The parsing is `shards.parse`, imported when the option is given, so that `mirrorspec --help`
does not import the engine's layers (`tests/test_startup_imports.py`). A callback rather than a
`click.ParamType`, which is generic only from click 8.2 on (the package accepts 8.1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .errors import MirrorspecError

if TYPE_CHECKING:
    from .shards import Shard

__all__ = ["SHARD"]


def _parse(ctx: click.Context, param: click.Parameter, value: str | None) -> Shard | None:
    if value is None:
        return None
    from .shards import parse

    try:
        return parse(value)
    except MirrorspecError as exc:  # click's one line: "Invalid value for '--shard': ..."
        raise click.BadParameter(str(exc), ctx, param) from None


SHARD = click.option(
    "--shard",
    callback=_parse,
    default=None,
    metavar="I/N",
    help="Only shard I of N (0 <= I < N): the destination repositories whose path's sha256 is I "
    "mod N, so N runs together do every copy once. Native rules, and the repositories a target "
    "copies natively, are shard 0's.",
)
