"""`render skopeo --output-dir DIR`: one `skopeo sync` file per destination directory, the
certificate directories they need, and the commands that run them.

skopeo reads a registry's CA from a *directory* (`*.crt` files: containers/image
pkg/tlsclientconfig `SetupCertificates`), not from a PEM file as a spec's `ca-bundle` is. So
each source's and the target's `ca-bundle` is copied to `DIR/certs/<host>/ca.crt`; a source's
directory is the document's `cert-dir` (skopeo 1.9.3 takes a YAML registry's certificate path
from it, not from `--src-cert-dir`), the target's is `--dest-cert-dir`. Paths are absolute, so
the printed commands work from any directory. Credentials are never written: `SRC_AUTH.json`
and `DEST_AUTH.json` in the commands are auth files the user makes (`skopeo login
--authfile`).

Nothing is half-written: DIR must be new or empty, the files are written in a temporary
directory beside it and moved into place at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .. import files
from ..errors import MirrorspecError
from ..spec import Spec, Target, check_ca_bundle
from .sync_yaml import SyncDocument, dump_config

__all__ = ["write_sync_dir"]


def write_sync_dir(spec: Spec, target: Target, documents: Sequence[SyncDocument], out_dir: Path) -> list[str]:
    """Write the documents and certificate directories into `out_dir`; the commands to run."""
    out_dir = out_dir.absolute()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise MirrorspecError(f"--output-dir {out_dir} exists and is not an empty directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        commands = _write(spec, target, documents, staging, out_dir)
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return commands


def _write(
    spec: Spec, target: Target, documents: Sequence[SyncDocument], staging: Path, final: Path
) -> list[str]:
    certs: dict[str, str] = {}  # host -> the directory (under `final`) holding its ca.crt

    def cert_dir(host: str, ca_bundle: str) -> str:
        if host not in certs:
            name = host.replace(":", "_")
            (staging / "certs" / name).mkdir(parents=True)
            pem = files.read_ca_bundle(Path(ca_bundle))
            (staging / "certs" / name / "ca.crt").write_bytes(pem)
            certs[host] = str(final / "certs" / name)
        return certs[host]

    dest_ca = getattr(target, "ca_bundle", None)
    dest_cert_dir = ""
    commands = []
    for i, document in enumerate(documents, 1):
        if document.dest_ca and dest_ca:
            dest_cert_dir = cert_dir(document.destination.split("/", 1)[0], check_ca_bundle(spec, dest_ca))
        if document.source_ca:
            for block in document.config.values():
                block["cert-dir"] = cert_dir(document.source, document.source_ca)
        filename = f"sync-{i}.yaml"
        command = document.command(str(final / filename), dest_cert_dir=dest_cert_dir)
        header = f"# {document.note}\n# run: {command}\n"
        (staging / filename).write_text(header + dump_config(document.config), encoding="utf-8")
        commands.append(command)
    return commands
