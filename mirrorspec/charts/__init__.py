"""Helm charts as mirrorspec reads them beyond their OCI manifest: the archive, read as
untrusted input (`archive`), and the images a chart deploys, found without rendering its
templates (`images`).
"""

from __future__ import annotations

from .archive import ChartArchiveError, ChartFiles, read_chart
from .images import Image, Unresolved, discover, parse_reference

__all__ = [
    "ChartArchiveError",
    "ChartFiles",
    "Image",
    "Unresolved",
    "discover",
    "parse_reference",
    "read_chart",
]
