"""`mirrorspec render ...`: the spec exported in another tool's format — skopeo sync documents,
Terraform JSON, a chart's Helm values, the far side's spec of an air gap."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from .atomic_write import write_text_atomically
from .cli_common import RENDER_TARGET, SPEC, WORKERS, Lazy, load_for_validate, only_target, run
from .cli_render_kubernetes import render_kubernetes
from .redaction import redact

if TYPE_CHECKING:
    from . import engine
    from .skopeo.process import find_skopeo
else:
    engine = Lazy("engine")
    find_skopeo = Lazy("skopeo.process", "find_skopeo")

__all__ = ["render"]


@click.group()
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

    with run(spec_file, workers) as ctx:
        wanted = engine.wanted(ctx, only_target(ctx, target, spec_file))
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

    with run(spec_file, workers) as ctx:
        rendered = render_tf(
            ctx, ctx.spec.target(only_target(ctx, target, spec_file)), spec_name=str(spec_file)
        )
    for note in rendered.notes:
        click.echo(f"{'warning' if note.level == 'warning' else 'note'}: {redact(note.message)}", err=True)
    if output is None:
        click.echo(rendered.to_json(), nl=False)
        return
    write_text_atomically(output, redact(rendered.to_json()))
    click.echo(f"wrote {output}", err=True)


@render.command("helm-values")
@SPEC
@RENDER_TARGET
@click.option(
    "--chart",
    "-c",
    "chart",
    required=True,
    metavar="HOST/REPO:VERSION",
    help="A chart version the spec mirrors with chart-images: true, as upstream names it.",
)
@WORKERS
def render_helm_values(spec_file: Path, target: str | None, chart: str, workers: int) -> None:
    """A values file (YAML) that points every image of a chart version at the target, for
    `helm install -f`.

    Each image is written in the shape the chart's values.yaml uses (a reference string, or a
    map's registry and repository), tag and digest kept. What no values key names is listed on
    stderr. Reads the upstream registries to resolve the chart; never the target.
    """
    from .render_helm_values import render as render_values

    with run(spec_file, workers) as ctx:
        rendered = render_values(ctx, only_target(ctx, target, spec_file), chart)
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

    spec, _ = load_for_validate(spec_file)
    rendered = render_offline(spec, target, targets_file, layout_path)
    for note in rendered.notes:
        click.echo(f"{'warning' if note.level == 'warning' else 'note'}: {redact(note.message)}", err=True)
    click.echo(rendered.text, nl=False)


render.add_command(render_kubernetes)  # its own module: `cli_render_kubernetes.py`
