"""Plain-text tables for terminals and logs, aligned for Korean: each Hangul syllable takes two columns."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """First column left-aligned, the others (numbers) right-aligned; floats with the project's four decimals."""
    cells = [list(header)] + [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(display_width(row[column]) for row in cells) for column in range(len(header))]
    lines = []
    for row in cells:
        pads = [" " * (width - display_width(cell)) for width, cell in zip(widths, row, strict=True)]
        lines.append("  ".join([row[0] + pads[0], *map(str.__add__, pads[1:], row[1:])]).rstrip())
    return "\n".join(lines)


def display_width(text: str) -> int:
    """Terminal columns: Hangul is double width, so `str.ljust` alone would misalign a Korean table."""
    return sum(2 if unicodedata.east_asian_width(character) in "WF" else 1 for character in text)
