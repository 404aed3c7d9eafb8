"""Helm charts as mirrorspec reads them beyond their OCI manifest: the archive, read as
untrusted input (`archive`), and the images a chart deploys, found without rendering its
templates (`images`), and the values override that points them at the mirror (`relocate`).
"""

from __future__ import annotations

from .archive import ChartArchiveError, ChartFiles, read_chart
from .images import Image, Unresolved, discover, occurrences, parse_reference
from .relocate import relocate

__all__ = [
    "ChartArchiveError",
    "ChartFiles",
    "Image",
    "Unresolved",
    "discover",
    "occurrences",
    "parse_reference",
    "read_chart",
    "relocate",
]
