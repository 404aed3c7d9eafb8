"""A layout as one tar file (`archive:` of an `oci-layout` target), for removable media.

Streamed: every file is read once, in chunks, and written straight into the tar (tarfile's
stream mode, `w|`), so writing it takes the tar's own size on disk and nothing more — no
staging directory, no second copy of the layout. The tar is written beside its final name
and renamed into place once complete and fsync'd: a full disk or a kill leaves no tar that
looks whole. Members come in an order that fails safe: `oci-layout`, then every blob, then
`index.json` and the lock document last, so a tar cut short in transit lacks its index
rather than naming blobs it does not hold. mirrorspec's own working files (the writer lock,
job layouts) are left out; owners and modes are normalised (root, 0644/0755), so the tar
says nothing about the machine that wrote it.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

from .store import Layout, LayoutError

__all__ = ["write_archive"]

_FIRST = ("oci-layout",)
_LAST = ("index.json", "mirrorspec.lock.json")


def write_archive(layout: Layout, archive: Path) -> int:
    """Write `layout` as the tar `archive` (replaced atomically); the number of members."""
    temporary = archive.with_name(f".{archive.name}.{os.getpid()}.tmp")
    members = 0
    try:
        # Under the writer lock: a reference is added only once its blobs are in place, so the
        # index.json read last names only blobs already listed (another run's copies wait).
        with layout.locked(), open(temporary, "wb") as out:
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name in _members(layout):
                    _add(tar, layout.path, name)
                    members += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, archive)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise LayoutError(f"archive {archive}: cannot write: {exc.strerror}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return members


def _members(layout: Layout) -> Iterator[str]:
    yield from (name for name in _FIRST if (layout.path / name).exists())
    yield "blobs"
    blobs = layout.path / "blobs"
    for algorithm in sorted(p.name for p in blobs.iterdir()):
        yield f"blobs/{algorithm}"
        for blob in sorted(p.name for p in (blobs / algorithm).iterdir()):
            layout.blob_path(f"{algorithm}:{blob}")  # a name that is not a digest, or a symlink: refused
            yield f"blobs/{algorithm}/{blob}"
    yield from (name for name in _LAST if (layout.path / name).exists())


def _add(tar: tarfile.TarFile, root: Path, name: str) -> None:
    path = root / name
    info = os.lstat(path)
    member = tarfile.TarInfo(name)
    member.mtime = int(info.st_mtime)
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    if stat.S_ISDIR(info.st_mode):
        member.type, member.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(member)
        return
    if not stat.S_ISREG(info.st_mode):
        raise LayoutError(f"layout {path}: not a regular file; refused")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as source:
        member.size, member.mode = os.fstat(source.fileno()).st_size, 0o644
        tar.addfile(member, source)
