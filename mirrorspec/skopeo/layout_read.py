"""What skopeo reads a copy out of an OCI layout (`oci-layout:` source) from: the planned
digest, named by a one-entry layout of the copy's own, its blobs read from the source layout.

skopeo 1.9.3 writes a Docker schema 2 manifest or manifest list into a layout with its digest
intact, but cannot read one back by reference name: looking a name up in index.json, it skips
every entry whose media type is not an OCI manifest or index (containers/image v5.23
oci/layout/oci_transport.go, getManifestDescriptor), so `oci:DIR:REF` fails with "no descriptor
found for reference" for most of Docker Hub's images. Without a reference, the same function
takes the index's only entry, whatever its media type (containers-transports(5): the reference
is optional when the layout holds one image); oci_src.go then reads that manifest as the entry
types it, and an index's children by digest. So each copy gets a job layout in a private
temporary directory, `oci-layout` and an index.json naming only the planned digest, and skopeo
reads every blob, manifests included, from the source layout's `blobs/` through
`--src-shared-blob-dir`. Checked with skopeo 1.9.3 and docker-registry 2.8.2: an OCI manifest,
a Docker schema 2 manifest and a Docker manifest list each arrive with their digest.

This is the one path for every copy out of a layout, OCI or Docker: skopeo still uploads the
blobs (HEAD first, its retries) and mirrorspec still checks the destination's digest after.
It also pins the copy to the digest that `layout_source.check_before_copy` verified, not to a
name another writer of index.json could move in between; the source layout is only read (it
may be read-only media), and its path may hold ':' (it is never part of an `oci:` reference).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..context import RunContext
from ..errors import MirrorspecError
from ..layout.store import INDEX_MEDIA_TYPE, LAYOUT_VERSION
from ..layout_source import LayoutClient
from .jobs import CopyJob

__all__ = ["skopeo_source"]


@contextmanager
def skopeo_source(ctx: RunContext, job: CopyJob) -> Iterator[list[str]]:
    """skopeo's source arguments for `job`: `[docker://…]` for a registry; for a layout,
    `--src-shared-blob-dir LAYOUT/blobs oci:JOBDIR`, the job layout removed afterwards.
    Call after `check_before_copy` passed: the entry is the ref's as verified."""
    if job.source.layout is None:
        yield [job.source_image]
        return
    client = ctx.client(job.source)
    assert isinstance(client, LayoutClient)  # RunContext.client's answer for a layout host
    ref = client.by_repository().get(job.source_repository, {}).get(job.tag)
    if ref is None or ref.digest != job.digest:  # check_before_copy said so already
        raise MirrorspecError(f"layout {client.layout.path}: no reference to {job.digest} for {job.tag}")
    entry = {"mediaType": ref.media_type, "digest": ref.digest, "size": ref.size}
    index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [entry]}
    try:
        # The prefix lets a later run sweep what a killed one left (workspace._sweep_stale_workspaces).
        directory = Path(tempfile.mkdtemp(prefix=f"mirrorspec-{os.getpid()}-"))
    except OSError as exc:
        raise MirrorspecError(
            f"cannot make a job layout in {tempfile.gettempdir()}: {exc.strerror}"
        ) from None
    try:
        if ":" in str(directory):  # containers/image splits oci:PATH:REF at the first ':'
            raise MirrorspecError(f"the temporary directory {directory} holds ':'; set TMPDIR elsewhere")
        try:
            (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": LAYOUT_VERSION}))
            (directory / "index.json").write_text(json.dumps(index))
        except OSError as exc:
            raise MirrorspecError(f"cannot write a job layout in {directory}: {exc.strerror}") from None
        blobs = Path(job.source.layout) / "blobs"
        yield ["--src-shared-blob-dir", str(blobs.absolute()), f"oci:{directory}"]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
