"""OCI image layouts: the directory mirrorspec writes on one side of an air gap and reads on
the other (`store.py`)."""

from __future__ import annotations

from .store import Layout, LayoutError, LayoutRef, parse_ref_name, ref_name

__all__ = ["Layout", "LayoutError", "LayoutRef", "parse_ref_name", "ref_name"]
