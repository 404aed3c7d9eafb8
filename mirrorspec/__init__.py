"""mirrorspec: mirror upstream images and Helm charts into your registries, natively where possible."""

from __future__ import annotations

__version__ = "0.1.0"
