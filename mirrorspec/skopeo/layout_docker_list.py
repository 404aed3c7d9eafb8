"""A Docker manifest list copied into an OCI layout, digest preserved: its images by skopeo, the
list itself written by mirrorspec as the source serves it.

skopeo 1.9.3 writes a Docker schema 2 manifest into a layout as it is, but not a Docker manifest
list: with `--preserve-digests` it stops with 'Manifest list must be converted to type
"application/vnd.oci.image.index.v1+json" to be written to destination, but we cannot modify
it' (the oci/layout destination supports only the OCI index type for lists; checked here with
a list pushed to docker-registry 2.8.2). The image-spec's layout holds any manifest as a blob,
so when a copy into a layout fails and the source serves a Docker manifest list for the planned
digest: each image the list names is copied with skopeo, by digest, into the same job layout
(blobs into the shared `blobs/`); the list's bytes, read by digest and so verified by the
registry client, are stored as a blob; and the job layout's entry for the reference names the
list. `layout_copy` then checks and records it as it does any copy (every blob it reaches
hashed, one writer of index.json). The children get no reference of their own in index.json:
they are reached through the list, as on a registry.
"""

from __future__ import annotations

from pathlib import Path

from ..context import RunContext
from ..errors import MirrorspecError
from ..layout.store import Layout, LayoutRef, ref_name
from ..oci.client import DOCKER_MANIFEST_LIST, Manifest
from .jobs import CopyJob
from .process import Children, Skopeo
from .workspace import Workspace

__all__ = ["copy_docker_list", "docker_list"]

# A list names one manifest per platform: a few dozen at most in practice (Docker Hub's widest
# official images carry about 10). Far more is not a list anyone pushed.
_MAX_CHILDREN = 1000


def docker_list(ctx: RunContext, job: CopyJob) -> Manifest | None:
    """The manifest `job` copies when the source serves a Docker manifest list for it; None
    for any other type, or when it cannot be read (the copy's own error then stands)."""
    try:
        manifest = ctx.client(job.source).manifest(job.source_repository, job.digest)
    except MirrorspecError:
        return None
    return manifest if manifest.media_type == DOCKER_MANIFEST_LIST else None


def copy_docker_list(
    manifest: Manifest,
    skopeo: Skopeo,
    workspace: Workspace,
    children: Children,
    layout: Layout,
    job: CopyJob,
    directory: Path,
    name: str,
    timeout: float,
) -> tuple[str | None, bool]:
    """Copy the images of `manifest` (a Docker manifest list) into the job layout `directory`,
    store the list as a blob of `layout`, and name it `name` in the job layout; (error or None,
    whether the error is worth another attempt)."""
    try:
        listed = manifest.json().get("manifests")
    except ValueError:
        listed = None
    if not isinstance(listed, list) or len(listed) > _MAX_CHILDREN:
        return (
            f"{job.source_ref}: a Docker manifest list without a list of at most {_MAX_CHILDREN} manifests",
            False,
        )
    src_flags, src_fds = workspace.flags("src", job.source)
    for descriptor in listed:
        child = descriptor.get("digest") if isinstance(descriptor, dict) else None
        if not isinstance(child, str):
            return f"{job.source_ref}: a Docker manifest list entry without a digest", False
        child_name = ref_name(job.destination_repository, child)  # the job layout's only
        argv = [
            skopeo.path,
            "copy",
            "--preserve-digests",
            *src_flags,
            "--dest-shared-blob-dir",
            str(layout.path / "blobs"),
            f"docker://{job.source.host}/{job.source_repository}@{child}",
            f"oci:{directory}:{child_name}",
        ]
        error, transient = children.copy(argv, pass_fds=src_fds, timeout=timeout)
        if error is not None:
            return f"{job.source_ref}: its image {child}: {error}", transient
    try:
        layout.write_blob(manifest.digest, manifest.body)  # refuses bytes of another digest
        ref = LayoutRef(name, manifest.digest, manifest.media_type, len(manifest.body))
        Layout(directory).add_refs([ref])
    except MirrorspecError as exc:
        return str(exc), False
    return None, False
