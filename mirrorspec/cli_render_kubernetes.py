"""`mirrorspec render kubernetes`: the command; the manifests are `render_kubernetes.py`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .cli_common import RENDER_TARGET, SPEC, load_for_validate
from .errors import MirrorspecError
from .redaction import redact

__all__ = ["render_kubernetes"]


@click.command("kubernetes")
@SPEC
@RENDER_TARGET
@click.option(
    "--schedule",
    required=True,
    metavar="CRON",
    help="When the CronJob runs, in cron syntax ('0 3 * * *') or @hourly, @daily, ...",
)
@click.option(
    "--shards",
    type=int,
    default=1,
    show_default=True,
    metavar="N",
    help="Pods per run (an Indexed Job: completions = parallelism = N); pod i runs --shard i/N.",
)
@click.option(
    "--image",
    metavar="REF",
    help="mirrorspec's image, built from its Containerfile [default: mirrorspec:VERSION].",
)
@click.option(
    "--name",
    metavar="NAME",
    help="The CronJob's name; its ConfigMap and Secrets start with it [default: mirrorspec-TARGET].",
)
@click.option("--namespace", "-n", metavar="NS", help="Put every object in this namespace.")
@click.option(
    "--service-account",
    metavar="NAME",
    help="Run the pods as this service account (e.g. one bound to the cloud identity a target's "
    "registry API needs); without it no service account token is mounted.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the manifests here (replacing the file whole) instead of stdout.",
)
def render_kubernetes(
    spec_file: Path,
    target: str | None,
    schedule: str,
    shards: int,
    image: str | None,
    name: str | None,
    namespace: str | None,
    service_account: str | None,
    output: Path | None,
) -> None:
    """A CronJob running `mirrorspec apply --shard` as an Indexed Job of N pods, and the spec in
    a ConfigMap. Offline: reads SPEC only; credentials become Secret references, never values.

    The Secrets (and the ConfigMap of ca-bundles) are not rendered: the file's first lines
    say how to create them, by name and key.
    """
    from . import files
    from .atomic_write import write_text_atomically
    from .render_kubernetes import DEFAULT_IMAGE, render
    from .spec.load import MAX_SPEC_BYTES

    spec, spec_name = load_for_validate(spec_file)
    if spec_name == "<stdin>":
        raise MirrorspecError("render kubernetes needs the spec as a file: its text goes into the ConfigMap")
    text = files.read_user_file(spec_file, what="spec", max_bytes=MAX_SPEC_BYTES).decode("utf-8")
    manifests = render(
        spec,
        text,
        target=target or _only_target(spec.targets, spec_file),
        schedule=schedule,
        shards=shards,
        image=image or DEFAULT_IMAGE,
        name=name,
        namespace=namespace,
        service_account=service_account,
        spec_name=spec_file.name,
        spec_dir=str(spec_file.parent),
    )
    if output is None:  # the file's leading comment says what to create first
        click.echo(manifests.text, nl=False)
        return
    write_text_atomically(output, manifests.text)
    click.echo(f"wrote {output}", err=True)
    for command in manifests.needs:
        click.echo(f"note: create first: {redact(command)}", err=True)


def _only_target(targets: list[Any], spec_file: Path) -> str:
    """The spec's one target when `--target` was left out (as `cli_common.only_target` does for a
    run context; this command has none)."""
    if len(targets) == 1:
        return str(targets[0].name)
    names = ", ".join(t.name for t in targets)
    raise MirrorspecError(f"{spec_file} has {len(targets)} targets; choose one with --target ({names})")
