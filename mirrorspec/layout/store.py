"""One OCI image layout directory, read and written the careful way.

The format is the image-spec's `image-layout.md`: an `oci-layout` file
(`{"imageLayoutVersion": "1.0.0"}`), `index.json` (an image index whose `manifests` list one
descriptor per reference) and `blobs/<algorithm>/<encoded>` (content-addressed files).
Each descriptor carries `org.opencontainers.image.ref.name` (`annotations.md`); mirrorspec
writes it as `<destination path>:<tag>` (`ref_name`), or `<destination path>@sha256:<hex>` for
an artifact that has no tag (an OCI referrer), so host and repository survive the trip.

A layout may come from anywhere (removable media, another team), so everything read from it
is checked: `index.json` is read with a bound and validated entry by entry, a blob path never
follows a symlink nor leaves the directory, and every blob is hashed before it is trusted.
Each failure is one `LayoutError` naming the path or reference.

Writers: `index.json` is only ever replaced whole (temporary file, fsync, rename, directory
fsync), under an exclusive lock on a file next to it, so concurrent writers merge their
entries instead of losing them, and a full disk leaves the old `index.json` in place.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MirrorspecError, printable

__all__ = [
    "INDEX_MEDIA_TYPE",
    "LOCK_FILE",
    "MAX_INDEX_BYTES",
    "REF_NAME_ANNOTATION",
    "Layout",
    "LayoutError",
    "LayoutRef",
    "parse_ref_name",
    "ref_name",
]

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
LAYOUT_VERSION = "1.0.0"
# A descriptor in index.json takes ~250 bytes: 64 MiB holds a quarter of a million references,
# and bounds what a hostile or damaged index.json can make us read into memory.
MAX_INDEX_BYTES = 64 << 20
# The file writers hold an exclusive flock(2) on while they read, merge and replace index.json.
LOCK_FILE = ".mirrorspec-index.lock"
_CHUNK = 1 << 20

# image-spec annotations.md, org.opencontainers.image.ref.name:
#   ref       ::= component ("/" component)*
#   component ::= alphanum (separator alphanum)*
#   alphanum  ::= [A-Za-z0-9]+
#   separator ::= [-._:@+] | "--"
_ALNUM = r"[A-Za-z0-9]+"
_COMPONENT = rf"{_ALNUM}(?:(?:[-._:@+]|--){_ALNUM})*"
_ANNOTATION_REF = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
# distribution/reference regexp.go: a repository path component and a tag.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# image-spec descriptor.md: the registered algorithms and their encodings.
_DIGEST = re.compile(r"(sha256):([a-f0-9]{64})|(sha512):([a-f0-9]{128})")
# distribution/reference: a name is at most 255 characters (NameTotalLengthMax).
_MAX_PATH = 255


class LayoutError(MirrorspecError):
    """The layout is damaged, hostile or cannot be written; the message names the path or
    reference and what is wrong, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))


@dataclass(frozen=True)
class LayoutRef:
    """One entry of index.json's `manifests`: a reference and the manifest it names."""

    name: str  # org.opencontainers.image.ref.name
    digest: str  # "sha256:<hex>"
    media_type: str
    size: int

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
            "annotations": {REF_NAME_ANNOTATION: self.name},
        }


def ref_name(repository_path: str, tag: str) -> str:
    """The layout reference of `tag` (or a digest, `sha256:<hex>`) in `repository_path`."""
    name = f"{repository_path}@{tag}" if _DIGEST.fullmatch(tag) else f"{repository_path}:{tag}"
    parse_ref_name(name)  # refuse now what no reader could take back
    return name


def parse_ref_name(name: str) -> tuple[str, str]:
    """(repository path, tag or digest) of a reference mirrorspec wrote; `LayoutError` for a
    name outside the annotation grammar or mirrorspec's `<path>:<tag>` / `<path>@<digest>`."""
    shown = printable(name[:200])
    if not _ANNOTATION_REF.fullmatch(name):
        raise LayoutError(
            f"reference '{shown}' is not a valid {REF_NAME_ANNOTATION} (image-spec annotations)"
        )
    if "@" in name:
        path, _, tag = name.partition("@")
        ok = _DIGEST.fullmatch(tag) is not None
    else:
        path, _, tag = name.rpartition(":")
        ok = _TAG.fullmatch(tag) is not None
    if not (ok and _REPOSITORY.fullmatch(path) and len(path) <= _MAX_PATH):
        raise LayoutError(f"reference '{shown}' is not <repository path>:<tag> or <repository path>@<digest>")
    return path, tag


def _check_digest(digest: str, where: str) -> tuple[str, str]:
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise LayoutError(f"{where}: '{printable(str(digest)[:80])}' is not a sha256 or sha512 digest")
    return (match[1], match[2]) if match[1] else (match[3], match[4])


class Layout:
    """The OCI image layout at `path` (nothing is read until asked)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # Tests inject a failing write here (a full disk) where no small filesystem can be
        # mounted: called with each chunk of index.json before it is written.
        self.write_hook: Callable[[bytes], None] | None = None

    def __repr__(self) -> str:
        return f"Layout({str(self.path)!r})"

    # -- reading ---------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the directory holds `oci-layout` and `index.json` (not yet validated)."""
        return (self.path / "oci-layout").is_file() and (self.path / "index.json").is_file()

    def refs(self) -> dict[str, LayoutRef]:
        """Every named reference of index.json, validated; `{}` for a layout not yet written."""
        if not (self.path / "index.json").exists() and not (self.path / "index.json").is_symlink():
            self._check_marker(missing_ok=True)
            return {}
        self._check_marker(missing_ok=False)
        return _named(self._read_index(), f"layout {self.path / 'index.json'}")

    def blob_path(self, digest: str) -> Path:
        """`blobs/<alg>/<hex>`; `LayoutError` for a malformed digest, or a symlink on the way
        (one could point anywhere: a layout from elsewhere must not read our files)."""
        algorithm, encoded = _check_digest(digest, f"layout {self.path}")
        path = self.path / "blobs" / algorithm / encoded
        for part in (self.path / "blobs", self.path / "blobs" / algorithm, path):
            if part.is_symlink():
                raise LayoutError(f"layout {self.path}: {part.relative_to(self.path)} is a symlink; refused")
        return path

    def read_blob(self, digest: str, max_bytes: int) -> bytes:
        """The blob's content, at most `max_bytes`, after checking it hashes to `digest`."""
        with self._open_blob(digest) as (fd, size):
            if size > max_bytes:
                raise LayoutError(
                    f"layout {self.path}: blob {digest} is {size} bytes, more than the {max_bytes} allowed"
                )
            chunks = []
            remaining = max_bytes + 1
            while remaining > 0:
                chunk = os.read(fd, min(remaining, _CHUNK))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise LayoutError(f"layout {self.path}: blob {digest} grew past {max_bytes} bytes while read")
        algorithm, encoded = _check_digest(digest, f"layout {self.path}")
        if hashlib.new(algorithm, data).hexdigest() != encoded:
            raise LayoutError(f"layout {self.path}: blob {digest} does not match its digest")
        return data

    def verify_blob(self, digest: str, size: int | None = None) -> None:
        """Hash the blob in 1 MiB chunks (constant memory); `LayoutError` when it is missing,
        has another size than its descriptor says, or another digest."""
        algorithm, encoded = _check_digest(digest, f"layout {self.path}")
        hasher = hashlib.new(algorithm)
        with self._open_blob(digest) as (fd, actual):
            if size is not None and actual != size:
                raise LayoutError(
                    f"layout {self.path}: blob {digest} is {actual} bytes, its descriptor says {size}"
                )
            while chunk := os.read(fd, _CHUNK):
                hasher.update(chunk)
        if hasher.hexdigest() != encoded:
            raise LayoutError(f"layout {self.path}: blob {digest} does not match its digest")

    def has_blob(self, digest: str) -> bool:
        """Whether the blob file is there (not verified)."""
        return self.blob_path(digest).is_file()

    @contextmanager
    def _open_blob(self, digest: str) -> Iterator[tuple[int, int]]:
        path = self.blob_path(digest)
        try:
            # O_NOFOLLOW: the symlink check above and this open are two steps; a symlink put in
            # between fails here (ELOOP). O_NONBLOCK: a FIFO planted as a blob does not hang us.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise LayoutError(f"layout {self.path}: blob {digest} is missing") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LayoutError(f"layout {self.path}: blob {digest} is a symlink; refused") from None
            raise LayoutError(f"layout {self.path}: cannot read blob {digest}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise LayoutError(f"layout {self.path}: blob {digest} is not a regular file")
            yield fd, info.st_size
        except OSError as exc:
            raise LayoutError(f"layout {self.path}: cannot read blob {digest}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def _check_marker(self, *, missing_ok: bool) -> None:
        marker = self.path / "oci-layout"
        if not marker.exists() and not marker.is_symlink():
            if missing_ok:
                return
            raise LayoutError(f"layout {self.path}: oci-layout is missing; not an OCI image layout")
        data = self._read_small(marker, 4096)
        try:
            version = json.loads(data).get("imageLayoutVersion")
        except (ValueError, AttributeError):
            version = None
        if version != LAYOUT_VERSION:
            raise LayoutError(
                f"layout {marker}: not an OCI image layout version {LAYOUT_VERSION} "
                '(expected {"imageLayoutVersion": "1.0.0"})'
            )

    def _read_small(self, path: Path, max_bytes: int) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            why = "it is a symlink; refused" if exc.errno == errno.ELOOP else exc.strerror
            raise LayoutError(f"layout {path}: cannot read: {why}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise LayoutError(f"layout {path}: not a regular file")
            if info.st_size > max_bytes:
                raise LayoutError(f"layout {path}: {info.st_size} bytes, more than the {max_bytes} allowed")
            data = b""
            while len(data) <= max_bytes and (chunk := os.read(fd, _CHUNK)):
                data += chunk
        finally:
            os.close(fd)
        if len(data) > max_bytes:
            raise LayoutError(f"layout {path}: grew past the {max_bytes} bytes allowed while read")
        return data

    def _read_index(self) -> dict[str, Any]:
        path = self.path / "index.json"
        data = self._read_small(path, MAX_INDEX_BYTES)
        try:
            index = json.loads(data)
        except json.JSONDecodeError as exc:
            raise LayoutError(
                f"layout {path}: not valid JSON ({exc.msg} at byte {exc.pos}; truncated?)"
            ) from None
        except UnicodeDecodeError:
            raise LayoutError(f"layout {path}: not valid JSON (not UTF-8 text)") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise LayoutError(f"layout {path}: not an image index (no 'manifests' list)")
        if index.get("schemaVersion") != 2:
            raise LayoutError(f"layout {path}: schemaVersion is not 2")
        for number, entry in enumerate(index["manifests"]):
            _check_descriptor(entry, f"layout {path}: manifests[{number}]")
        return index

    # -- writing ---------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the directory, `oci-layout` and `blobs/` when missing (idempotent; an
        existing `oci-layout` is checked, never rewritten)."""
        for part in (self.path / "blobs", self.path / "index.json"):
            if part.is_symlink():
                raise LayoutError(f"layout {self.path}: {part.name} is a symlink; refused")
        try:
            (self.path / "blobs").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LayoutError(f"layout {self.path}: cannot create: {exc.strerror}") from None
        marker = self.path / "oci-layout"
        if marker.exists() or marker.is_symlink():
            self._check_marker(missing_ok=False)
            return
        self._replace(marker, json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the layout's writer lock (blocking until other writers are done)."""
        self.ensure()
        lock = self.path / LOCK_FILE
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LayoutError(f"layout {lock}: cannot open the lock file: {exc.strerror}") from None
        try:
            # flock(2) is released when the process dies, so a killed writer never leaves the
            # layout locked; it is per open file, so threads of one process exclude each other too.
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def add_refs(self, refs: Iterable[LayoutRef]) -> None:
        """Record `refs` in index.json under the lock: an entry with the same name is replaced,
        every other entry (other writers', unnamed ones) is kept. Blobs must already be there."""
        wanted = list(refs)
        for ref in wanted:
            parse_ref_name(ref.name)
            _check_digest(ref.digest, f"reference {ref.name}")
        with self.locked():
            index = self._read_index() if (self.path / "index.json").exists() else _empty_index()
            names = {ref.name for ref in wanted}
            kept = [
                entry
                for entry in index["manifests"]
                if (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION) not in names
            ]
            index["manifests"] = kept + [ref.descriptor() for ref in wanted]
            self._replace(self.path / "index.json", json.dumps(index, indent=1).encode() + b"\n")

    def remove_refs(self, names: Iterable[str]) -> int:
        """Remove the references `names` from index.json under the lock (`apply --prune-tags`),
        every other entry kept; blobs stay (a reference is a layout's tag). How many went."""
        doomed = set(names)
        with self.locked():
            if not (self.path / "index.json").exists():
                return 0
            index = self._read_index()
            kept = [
                entry
                for entry in index["manifests"]
                if (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION) not in doomed
            ]
            removed = len(index["manifests"]) - len(kept)
            if removed:
                index["manifests"] = kept
                self._replace(self.path / "index.json", json.dumps(index, indent=1).encode() + b"\n")
            return removed

    def write_blob(self, digest: str, data: bytes) -> None:
        """Store `data` as the blob `digest` (checked to hash to it), atomically; a blob
        already there is left as it is (content-addressed: the same bytes)."""
        algorithm, encoded = _check_digest(digest, f"layout {self.path}")
        if hashlib.new(algorithm, data).hexdigest() != encoded:
            raise LayoutError(f"layout {self.path}: refusing to store bytes that do not hash to {digest}")
        path = self.blob_path(digest)
        if path.is_file():
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LayoutError(f"layout {path.parent}: cannot create: {exc.strerror}") from None
        self._replace(path, data)

    def write_file(self, name: str, data: bytes) -> None:
        """Replace the file `name` at the layout's top atomically (the lock document)."""
        self.ensure()
        self._replace(self.path / name, data)

    def _replace(self, path: Path, data: bytes) -> None:
        """Write `data` to a temporary file beside `path`, fsync it, rename it over `path`,
        fsync the directory: a reader or a crash sees the old file or the new, never half of
        one. On any failure (ENOSPC) the temporary file is removed and `path` is untouched."""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(
                temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
            )
            try:
                view = memoryview(data)
                while view:
                    chunk = view[:_CHUNK]
                    if self.write_hook is not None:
                        self.write_hook(bytes(chunk))
                    written = os.write(fd, chunk)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, path)
            directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise LayoutError(
                f"layout {path}: cannot write: {exc.strerror}; the previous file is kept"
            ) from None


def _empty_index() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}


def _check_descriptor(entry: Any, where: str) -> None:
    if not isinstance(entry, dict):
        raise LayoutError(f"{where}: not a descriptor")
    _check_digest(entry.get("digest"), where)  # type: ignore[arg-type]
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise LayoutError(f"{where}: size is not a non-negative integer")
    if not isinstance(entry.get("mediaType"), str):
        raise LayoutError(f"{where}: mediaType is missing")
    annotations = entry.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise LayoutError(f"{where}: annotations is not an object")


def _named(index: dict[str, Any], where: str) -> dict[str, LayoutRef]:
    refs: dict[str, LayoutRef] = {}
    for entry in index["manifests"]:
        name = (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION)
        if name is None:
            continue  # an unnamed manifest (someone else's); reachable by digest only
        if not isinstance(name, str):
            raise LayoutError(f"{where}: a {REF_NAME_ANNOTATION} is not a string")
        try:
            parse_ref_name(name)
        except LayoutError as exc:
            raise LayoutError(f"{where}: {exc}") from None
        if name in refs and refs[name].digest != entry["digest"]:
            raise LayoutError(f"{where}: reference '{name}' names two different manifests")
        refs[name] = LayoutRef(name, entry["digest"], entry["mediaType"], entry["size"])
    return refs
