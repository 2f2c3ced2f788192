"""Plain-text tables for terminals and logs, aligned for Korean: each Hangul syllable takes two columns."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any


def display_width(text: str) -> int:
    """Terminal columns: Hangul is double width, so `str.ljust` alone would misalign a Korean table."""
    return sum(2 if unicodedata.east_asian_width(character) in "WF" else 1 for character in text)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, first column left-aligned and the others (numbers) right-aligned.

    Floats are written with four decimals, the precision every metric in this project is reported to.
    """
    cells = [list(header)] + [[_cell(value) for value in row] for row in rows]
    widths = [max(display_width(row[column]) for row in cells) for column in range(len(header))]

    def line(row: list[str]) -> str:
        padded = [
            cell + " " * (widths[column] - display_width(cell))
            if column == 0
            else " " * (widths[column] - display_width(cell)) + cell
            for column, cell in enumerate(row)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join(line(row) for row in cells)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
