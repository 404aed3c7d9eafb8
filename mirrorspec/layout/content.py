"""What a layout reference reaches, checked: its manifest, and every blob that manifest (or an
index's child manifests) names.

Two depths: `check_reference(..., hash_blobs=False)` is a plan's look (manifests are read and
hashed, as they must be parsed; every other blob must be there with its descriptor's size),
cheap enough for every wanted tag; `hash_blobs=True` is `audit --content` and the check after
each copy: every byte of every reachable blob is hashed, streamed in 1 MiB chunks, so it costs
one sequential read of the artifact and constant memory.

`LayoutTags` answers a plan's destination checks the way a registry client's `digest()` does,
from one read of index.json.
"""

from __future__ import annotations

import json
from typing import Any

from .store import Layout, LayoutError, LayoutRef, ref_name

__all__ = ["MAX_MANIFEST_BYTES", "LayoutTags", "check_reference", "reachable"]

# The same bound the registry client reads manifests with: a manifest is a few KiB, and a
# hostile layout must not make us parse megabytes (distribution's own limit is 4 MiB).
MAX_MANIFEST_BYTES = 4 << 20
# An index of indexes of ... : the image-spec sets no depth, real artifacts use two levels.
_MAX_DEPTH = 8


def reachable(
    layout: Layout,
    digest: str,
    *,
    hash_blobs: bool,
    size: int | None = None,
    checked: set[str] | None = None,
) -> int:
    """Check the manifest `digest` (of `size` bytes, when known) and everything it names; the
    number of blobs checked. `LayoutError` (naming the blob) for one that is missing, damaged
    or of another size. `checked`: blobs found good already (by earlier calls sharing the
    set), not read again, so layers shared by many images are hashed once."""
    seen: set[str] = set()
    _walk(layout, digest, size, hash_blobs, seen, set() if checked is None else checked, 0)
    return len(seen)


def check_reference(
    layout: Layout, ref: LayoutRef, *, hash_blobs: bool, checked: set[str] | None = None
) -> int:
    """`reachable` for one index.json entry; the error names the reference."""
    try:
        return reachable(layout, ref.digest, hash_blobs=hash_blobs, size=ref.size, checked=checked)
    except LayoutError as exc:
        raise LayoutError(f"reference {ref.name}: {exc}") from None


def _walk(
    layout: Layout,
    digest: str,
    size: int | None,
    hash_blobs: bool,
    seen: set[str],
    checked: set[str],
    depth: int,
) -> None:
    if digest in seen:
        return
    if depth > _MAX_DEPTH:
        raise LayoutError(
            f"layout {layout.path}: manifest {digest} nests indexes more than {_MAX_DEPTH} deep"
        )
    seen.add(digest)
    data = layout.read_blob(digest, MAX_MANIFEST_BYTES)  # hashed: a manifest is trusted only then
    if size is not None and len(data) != size:
        raise LayoutError(
            f"layout {layout.path}: manifest {digest} is {len(data)} bytes, its descriptor says {size}"
        )
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise LayoutError(f"layout {layout.path}: manifest {digest} is not JSON") from None
    if not isinstance(manifest, dict):
        raise LayoutError(f"layout {layout.path}: manifest {digest} is not a JSON object")
    # An index (OCI image index, Docker manifest list) names manifests; a manifest names its
    # config and layers (`blobs` in the short-lived OCI artifact manifest). A `subject` is the
    # artifact referred to, stored under its own reference: not part of this one.
    for child in _descriptors(manifest.get("manifests"), layout, digest):
        _walk(layout, child[0], child[1], hash_blobs, seen, checked, depth + 1)
    blobs = [*_descriptors([manifest["config"]] if "config" in manifest else [], layout, digest)]
    blobs += _descriptors(manifest.get("layers"), layout, digest)
    blobs += _descriptors(manifest.get("blobs"), layout, digest)
    for blob, blob_size in blobs:
        if blob in seen:
            continue
        seen.add(blob)
        if blob in checked:  # added by another walk only once the blob was found good
            continue
        if hash_blobs:
            layout.verify_blob(blob, blob_size)
            checked.add(blob)
            continue
        path = layout.blob_path(blob)
        try:
            actual = path.lstat().st_size if path.is_file() and not path.is_symlink() else None
        except OSError:
            actual = None
        if actual is None:
            raise LayoutError(f"layout {layout.path}: blob {blob} is missing")
        if actual != blob_size:
            raise LayoutError(
                f"layout {layout.path}: blob {blob} is {actual} bytes, its descriptor says {blob_size}"
            )


def _descriptors(value: Any, layout: Layout, parent: str) -> list[tuple[str, int]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise LayoutError(f"layout {layout.path}: manifest {parent} has a malformed descriptor list")
    found = []
    for item in value:
        digest = item.get("digest") if isinstance(item, dict) else None
        size = item.get("size") if isinstance(item, dict) else None
        if not isinstance(digest, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise LayoutError(f"layout {layout.path}: manifest {parent} has a malformed descriptor")
        found.append((digest, size))
    return found


class LayoutTags:
    """A layout's references as a registry client's `digest()` sees tags, from one read of
    index.json. `hash_blobs=False` (a plan): a reference whose blobs are not all there counts
    as missing, so the next apply copies it again (a copy cut short, a blob deleted because it
    was damaged). `hash_blobs=True` (`audit --content`): a damaged layout is a `LayoutError`
    naming the reference."""

    def __init__(self, layout: Layout, host: str, *, hash_blobs: bool = False) -> None:
        self.layout = layout
        self.host = host
        self.hash_blobs = hash_blobs
        self.refs = layout.refs()
        # Hashed blobs, shared by every reference's walk (set.add is atomic under the GIL;
        # two threads may both hash a blob before either adds it: time, never a wrong answer).
        self._hashed: set[str] = set()

    def digest(self, repository: str, reference: str) -> str | None:
        ref = self.refs.get(ref_name(repository, reference))
        if ref is None:
            return None
        try:
            checked = self._hashed if self.hash_blobs else None
            check_reference(self.layout, ref, hash_blobs=self.hash_blobs, checked=checked)
        except LayoutError:
            if self.hash_blobs:
                raise
            return None
        return ref.digest

    def ping(self) -> None:
        """A layout is always there once read (the registry client's health probe)."""

    def close(self) -> None:
        """Nothing to release (the registry client's)."""
