"""The package version, in a module of its own that imports nothing.

The registry client puts it in its User-Agent: importing it from the package root instead
would run `mirrorspec/__init__.py`, which imports the engine, which imports the client, a
cycle that held only because of the order of the lines in `__init__.py`.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"  # the one place: pyproject.toml reads it ([tool.hatch.version])
