"""Human tables and lines that never break a word: a reference (`host/repository`,
`host/repository:tag`, a digest) is always whole on one line (issue 18, item 1).

rich's tables fold a cell that does not fit mid-word (`127.0.0.1:16101/private/n` /
`f-tower-enterprise/backen` / `d`), which is unreadable and defeats copy-paste and grep. Here
text is wrapped only at spaces (a tag list is "a, b, c", so only between tags), with
`textwrap`'s `break_long_words` and `break_on_hyphens` off, and a table is laid out one of two
ways for the width it is given:

- as columns, when every column fits at least its longest word (and a usable width): long
  cells wrap between words inside their column;
- otherwise as one record per row, `label  value` lines, a blank line between records; a value
  whose longest word does not fit beside its label goes under it, indented less.

A word longer than the whole width (a long destination at 80 columns) is written whole and
overflows: the terminal may show it on two rows, but the bytes keep it on one line.
`width=None` (not a terminal): nothing wraps, each row is one line, for logs and grep.

Generic on purpose: any columns, any statuses, so new rows flow through unchanged.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

__all__ = ["GAP", "UnbrokenTable", "wrap"]

GAP = "  "  # between columns
RULE = "─"
# A column squeezed narrower than this (or than its longest word) makes a table taller than
# records are; below it, records are laid out instead.
MIN_COLUMN = 16


def wrap(text: str, width: int | None, *, indent: str = "", hang: str | None = None) -> list[str]:
    """`text` as lines of at most `width` characters where its words allow, broken only at
    spaces; `indent` before the first line, `hang` (default: as many spaces) before the rest."""
    hang = " " * len(indent) if hang is None else hang
    if width is None or not text:
        return [indent + text]
    lines = textwrap.wrap(
        text,
        width=max(width, len(indent) + 1, len(hang) + 1),
        initial_indent=indent,
        subsequent_indent=hang,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return lines or [indent.rstrip()]


def _longest_word(text: str) -> int:
    return max((len(word) for word in text.split()), default=0)


class UnbrokenTable:
    """Rows under headers; `lines(width)` lays them out (see the module docstring)."""

    def __init__(self, *headers: str) -> None:
        self.headers = tuple(headers)
        self.rows: list[tuple[str, ...]] = []

    def add_row(self, *cells: str) -> None:
        if len(cells) != len(self.headers):
            raise ValueError(f"{len(cells)} cell(s) for {len(self.headers)} column(s)")
        self.rows.append(tuple(cells))

    def lines(self, width: int | None) -> list[str]:
        widths = self._column_widths(width)
        return self._columns(widths) if widths is not None else self._records(width)

    def _column_widths(self, width: int | None) -> list[int] | None:
        """Each column's width in a column layout, or None when it would have to break words."""
        columns = list(zip(self.headers, *self.rows, strict=True))
        natural = [max(len(cell) for cell in column) for column in columns]
        if width is None:
            return natural
        gaps = len(GAP) * (len(columns) - 1)
        if sum(natural) + gaps <= width:
            return natural
        least = [max(_longest_word(cell) for cell in column) for column in columns]
        wanted = [min(n, max(w, MIN_COLUMN)) for n, w in zip(natural, least, strict=True)]
        spare = width - gaps - sum(wanted)
        if spare < 0:
            return None
        # What is left goes to the columns that would still wrap, in proportion to their need.
        need = [n - w for n, w in zip(natural, wanted, strict=True)]
        total = sum(need)
        grown = [w + spare * n // total if total else w for w, n in zip(wanted, need, strict=True)]
        return grown

    def _columns(self, widths: Sequence[int]) -> list[str]:
        out = [self._joined([[h] for h in self.headers], widths)[0]]
        out.append(RULE * (sum(widths) + len(GAP) * (len(widths) - 1)))
        for row in self.rows:
            out += self._joined([wrap(cell, w) for cell, w in zip(row, widths, strict=True)], widths)
        return out

    @staticmethod
    def _joined(cells: Sequence[list[str]], widths: Sequence[int]) -> list[str]:
        height = max(len(c) for c in cells)
        return [
            GAP.join(
                (c[i] if i < len(c) else "").ljust(w) for c, w in zip(cells, widths, strict=True)
            ).rstrip()
            for i in range(height)
        ]

    def _records(self, width: int | None) -> list[str]:
        label = max(len(h) for h in self.headers)
        beside = "  " + " " * label + "  "
        out: list[str] = []
        for index, row in enumerate(self.rows):
            if index:
                out.append("")
            for header, cell in zip(self.headers, row, strict=True):
                if not cell:
                    continue
                first = f"  {header.ljust(label)}  "
                if width is None or len(beside) + _longest_word(cell) <= width:
                    out += wrap(cell, width, indent=first, hang=beside)
                else:  # under its label, with more room
                    out.append(f"  {header}")
                    out += wrap(cell, width, indent="    ")
        # the last record stands apart from what follows (notes, the next table) as the others do
        return [*out, ""] if out else out
