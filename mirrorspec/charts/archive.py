"""A Helm chart archive, read as the untrusted input it is: only the files image discovery needs,
within bounds, and nothing that could reach outside the archive.

Helm's own loader (helm/helm `pkg/chart/loader/archive/archive.go`) is the reference for what a
chart archive may hold: a gzipped tar whose entries sit below one base directory (the first path
component is the chart's name), no absolute path, no `..`, no drive letter, at most 100 MiB
decompressed in total (`MaxDecompressedChartSize`). We hold archives to the same rules and add
what a reader that trusts nothing needs:

- links (symbolic or hard) and device entries are refused: no chart needs one, and Helm would
  load a symlink entry as an empty file, so nothing can be learnt from it;
- each file we parse (`Chart.yaml`, `values.yaml`, `.relok8s-images.yaml`) is at most 5 MiB, the
  per-file limit Helm applied until v3.17 (`MaxDecompressedFileSize`); a larger one is refused, not
  cut, since a cut YAML file would give wrong images;
- packed subcharts (`charts/*.tgz`) are read recursively, to `MAX_DEPTH` levels, and every byte
  they decompress to counts against the one budget of the outermost archive, so a chart of
  nested gzip bombs costs no more than one;
- at most `MAX_ENTRIES` entries (a tar of a million empty files is small once compressed).

Every refusal is a `ChartArchiveError`, one line naming the archive (and the subchart path).
"""

from __future__ import annotations

import io
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass, field

from ..errors import MirrorspecError

__all__ = [
    "MAX_DECOMPRESSED",
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "MAX_PARSED_FILE",
    "ChartArchiveError",
    "ChartFiles",
    "read_chart",
]

MAX_DECOMPRESSED = 100 << 20  # Helm's MaxDecompressedChartSize
MAX_PARSED_FILE = 5 << 20  # Helm's former MaxDecompressedFileSize
MAX_ENTRIES = 20_000
MAX_DEPTH = 5  # subcharts inside subcharts; real charts nest two or three deep

# The files discovery reads, by their name in a chart's directory.
_WANTED = ("Chart.yaml", "values.yaml", ".relok8s-images.yaml")
_DRIVE = re.compile(r"^[a-zA-Z]:/")
_TAR_BLOCK = 512  # every entry's header costs a block of the budget too


class ChartArchiveError(MirrorspecError):
    """A chart archive that is not safe or not sane to read."""


@dataclass(frozen=True)
class ChartFiles:
    """The files of one chart that image discovery reads, and its subcharts."""

    where: str
    """The archive, and the path of this chart inside it: `app-1.0.0.tgz › charts/redis-17.0.0.tgz`."""
    files: dict[str, bytes] = field(default_factory=dict)
    """`Chart.yaml`, `values.yaml`, `.relok8s-images.yaml`: those present."""
    subcharts: tuple[ChartFiles, ...] = ()
    """Charts under `charts/`, packed (`.tgz`) or unpacked, in archive order."""


class _Budget:
    """Decompressed bytes and entries left for the outermost archive and everything in it."""

    def __init__(self) -> None:
        self.bytes = MAX_DECOMPRESSED
        self.entries = MAX_ENTRIES

    def spend(self, size: int, where: str) -> None:
        self.entries -= 1
        self.bytes -= size + _TAR_BLOCK
        if self.entries < 0:
            raise ChartArchiveError(f"{where}: more than {MAX_ENTRIES:,} entries; not a chart archive")
        if self.bytes < 0:
            raise ChartArchiveError(
                f"{where}: decompresses to more than {MAX_DECOMPRESSED >> 20} MiB (Helm's limit); not read"
            )


def read_chart(data: bytes, *, where: str) -> ChartFiles:
    """The discovery files of the chart archive `data` (a Helm `.tgz`) and of its subcharts."""
    return _read(data, where, _Budget(), depth=0)


def _read(data: bytes, where: str, budget: _Budget, *, depth: int) -> ChartFiles:
    kept: dict[str, bytes] = {}
    try:
        # Stream mode ("r|gz"): entries are decompressed once, in order, never seeked, so the
        # budget sees every byte before it is held.
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|gz") as archive:
            for entry in archive:
                _take(archive, entry, kept, where, budget)
    except ChartArchiveError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ChartArchiveError(f"{where}: not a readable chart archive ({_reason(exc)})") from None
    if not kept:
        raise ChartArchiveError(f"{where}: no Chart.yaml in the archive; not a Helm chart")
    return _tree(kept, "", where, budget, depth)


def _take(
    archive: tarfile.TarFile, entry: tarfile.TarInfo, kept: dict[str, bytes], where: str, budget: _Budget
) -> None:
    budget.spend(max(entry.size, 0), where)
    if entry.isdir() or entry.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
        return
    if entry.issym() or entry.islnk():
        raise ChartArchiveError(f"{where}: entry '{_shown(entry.name)}' is a link; a chart holds only files")
    if not entry.isfile():
        raise ChartArchiveError(f"{where}: entry '{_shown(entry.name)}' is not a regular file")
    path = _inside(entry.name, where)
    if not _wanted(path):
        return  # skipped: stream mode decompresses it on the next step, within the budget
    if entry.size > MAX_PARSED_FILE and not path.endswith(".tgz"):
        raise ChartArchiveError(
            f"{where}: {path} is {entry.size:,} bytes; mirrorspec reads at most {MAX_PARSED_FILE >> 20} MiB"
        )
    reader = archive.extractfile(entry)
    if reader is None:  # pragma: no cover - isfile() entries always have data
        return
    kept[path] = reader.read()


def _inside(name: str, where: str) -> str:
    """The entry's path below the chart's base directory, or a refusal (Helm's rules)."""
    name = name.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        raise ChartArchiveError(f"{where}: entry '{_shown(name)}' has an absolute path")
    parts = name.split("/")
    below = posixpath.normpath("/".join(parts[1:])) if len(parts) > 1 else "."
    if below == "." or below.startswith("..") or ".." in parts:
        raise ChartArchiveError(f"{where}: entry '{_shown(name)}' reaches outside the chart's directory")
    if _DRIVE.match(below) or below.startswith("/"):
        raise ChartArchiveError(f"{where}: entry '{_shown(name)}' has an illegal name")
    return below


def _wanted(path: str) -> bool:
    """A discovery file of the chart or of an unpacked subchart, or a packed subchart."""
    parts = path.split("/")
    # (charts/<name>/)* then a wanted file, or (charts/<name>/)* charts/<x>.tgz
    depth_parts = parts[:-1]
    if len(depth_parts) % 2 == 1:
        return depth_parts[-1] == "charts" and parts[-1].endswith(".tgz") and _charts_path(depth_parts[:-1])
    return parts[-1] in _WANTED and _charts_path(depth_parts)


def _charts_path(parts: list[str]) -> bool:
    return all(parts[i] == "charts" for i in range(0, len(parts), 2))


def _tree(kept: dict[str, bytes], prefix: str, where: str, budget: _Budget, depth: int) -> ChartFiles:
    here = {name: kept[prefix + name] for name in _WANTED if prefix + name in kept}
    subcharts: list[ChartFiles] = []
    seen: set[str] = set()
    for path in kept:  # archive order
        if not path.startswith(prefix + "charts/"):
            continue
        rest = path[len(prefix) + len("charts/") :]
        head, slash, _ = rest.partition("/")
        if head in seen:
            continue
        if not slash and head.endswith(".tgz"):
            seen.add(head)
            if depth + 1 > MAX_DEPTH:
                raise ChartArchiveError(f"{where}: subcharts nest more than {MAX_DEPTH} deep")
            subcharts.append(_read(kept[path], f"{where} › charts/{head}", budget, depth=depth + 1))
        elif slash:
            seen.add(head)
            if depth + 1 > MAX_DEPTH:
                raise ChartArchiveError(f"{where}: subcharts nest more than {MAX_DEPTH} deep")
            subcharts.append(
                _tree(kept, f"{prefix}charts/{head}/", f"{where} › charts/{head}", budget, depth + 1)
            )
    if "Chart.yaml" not in here:
        raise ChartArchiveError(f"{where}: no Chart.yaml in the chart's directory; not a Helm chart")
    return ChartFiles(where, here, tuple(subcharts))


def _shown(name: str) -> str:
    """An entry name as an error may show it: printable, short."""
    text = "".join(c if c.isprintable() else "?" for c in name)
    return text if len(text) <= 80 else text[:79] + "…"


def _reason(exc: BaseException) -> str:
    return _shown(str(exc) or type(exc).__name__)
