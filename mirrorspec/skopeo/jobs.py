"""What the copier is asked to do, and what came of it.

A `CopyJob` copies one tag *by digest* (`repo@sha256:…` → `dest:tag`), so that apply copies
exactly what the plan showed, even if upstream moves the tag in between; host and repository
stay separate fields on both sides. A `CopyResult` is one job's outcome, a `CopySummary` a
batch's.

Bytes are not reported: skopeo 1.9.3 prints blob digests off a terminal but neither their
sizes nor whether a blob was skipped or mounted, so bytes moved are not observable here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..context import Endpoint
from ..layout.store import ref_name

__all__ = ["CopyJob", "CopyResult", "CopySummary"]


@dataclass(frozen=True)
class CopyJob:
    """Copy `source_repository@digest` to `destination_repository:tag`."""

    source: Endpoint
    source_repository: str
    digest: str
    destination: Endpoint
    destination_repository: str
    tag: str

    @property
    def source_ref(self) -> str:
        return f"{self.source.host}/{self.source_repository}@{self.digest}"

    @property
    def source_image(self) -> str:
        """What skopeo reads: `docker://<source_ref>`, or for an `oci-layout:` source
        `oci:DIR:<path>:<tag>` (skopeo 1.9.3 reads a layout only by ref name; the ref is checked
        to name `digest`, and its blobs hashed, before the copy: `layout_source`)."""
        if self.source.layout is not None:
            return f"oci:{self.source.layout}:{ref_name(self.source_repository, self.tag)}"
        return f"docker://{self.source_ref}"

    @property
    def destination_ref(self) -> str:
        # An untagged OCI referrer is copied by digest: its "tag" is the digest (`referrers.py`).
        separator = "@" if ":" in self.tag else ":"
        return f"{self.destination.host}/{self.destination_repository}{separator}{self.tag}"


@dataclass(frozen=True)
class CopyResult:
    job: CopyJob
    error: str | None
    seconds: float  # from the first attempt's start to the end, backoff included
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class CopySummary:
    """What a batch of copies came to. No byte count: see the module docstring."""

    copied: int
    failed: int
    retries: int  # attempts beyond the first, over all copies

    @classmethod
    def of(cls, results: Iterable[CopyResult]) -> CopySummary:
        copied = failed = retries = 0
        for result in results:
            copied += result.ok
            failed += not result.ok
            retries += result.attempts - 1
        return cls(copied, failed, retries)

    def __str__(self) -> str:
        return f"copied {self.copied}, failed {self.failed}"
