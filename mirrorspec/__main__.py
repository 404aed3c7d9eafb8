"""`python -m mirrorspec` — the same as the `mirrorspec` console script."""

from .cli import main

main()
