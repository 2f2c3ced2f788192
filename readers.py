"""Readers of prediction inputs: lazy generators of `InputRecord`, so memory never depends on the input's size.

One sentence per line (.txt), JSON Lines, or CSV with a header. A bad line becomes an error record instead of
stopping the run; only what makes the rest of the input unreadable (no header, a quote never closed, UTF-16)
stops it, with a `KoSentTypeError` naming the file and row. Lines are read with a length limit, so one huge line
costs no more memory than the limit, whatever its size.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from .errors import KoSentTypeError
from .records import InputRecord, LineError, sentence_record, text_error

DEFAULT_TEXT_COLUMNS = ("sentence", "text", "문장")
INPUT_FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
# 64 KiB: about 21,000 Hangul syllables, a hundred times the longest sentence the model reads (256 tokens).
DEFAULT_MAX_LINE_BYTES = 64 * 1024
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
SKIP_BLOCK = 1 << 20


def infer_input_format(path: str, requested: str | None = None) -> str:
    """The requested format, else the one the extension names (.jsonl, .ndjson, .csv), else one sentence a line."""
    if requested:
        return requested
    return INPUT_FORMATS.get(Path(path).suffix.lower(), "txt") if path != "-" else "txt"


@contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    """The input as bytes (standard input for `-`), refused up front when missing or a folder."""
    if path == "-":
        yield sys.stdin.buffer
        return
    if not os.path.exists(path):
        raise KoSentTypeError(f"input file not found: {path}")
    if os.path.isdir(path):
        raise KoSentTypeError(f"input is a folder, not a file: {path}")
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below, after the generator using it is done
    except OSError as error:
        raise KoSentTypeError(f"cannot read input {path}: {error.strerror}") from error
    with stream:
        yield stream


class BoundedLines:
    """Numbered raw lines, each held to at most `max_line_bytes` bytes: of a longer line only that much is kept
    (the rest is skipped in blocks, never held) and its number goes into `too_long`."""

    def __init__(self, stream: BinaryIO, name: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.stream = stream
        self.name = name
        self.max_line_bytes = max_line_bytes
        self.too_long: set[int] = set()

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        number = 0
        while raw := self.stream.readline(self.max_line_bytes + 1):
            number += 1
            if number == 1:
                raw = self._without_bom(raw)
            if len(raw) > self.max_line_bytes and not raw.endswith(b"\n"):
                self.too_long.add(number)
                self._skip_rest_of_line(raw)
                raw = raw[: self.max_line_bytes]
            yield number, raw

    def cut(self, first: int, last: int | None = None) -> bool:
        """Whether any of lines `first`..`last` was too long (forgotten once asked, so the set stays small)."""
        numbers = range(first, (first if last is None else last) + 1)
        found = not self.too_long.isdisjoint(numbers)
        if found:
            self.too_long.difference_update(numbers)
        return found

    def _skip_rest_of_line(self, raw: bytes) -> None:
        while raw and not raw.endswith(b"\n"):
            raw = self.stream.readline(SKIP_BLOCK)

    def _without_bom(self, raw: bytes) -> bytes:
        if raw.startswith(UTF16_BOMS):
            raise KoSentTypeError(
                f"{self.name} is UTF-16 (it starts with a UTF-16 byte-order mark); convert it to UTF-8 first, "
                f"e.g. iconv -f UTF-16 -t UTF-8 {self.name} > converted.txt"
            )
        return raw.removeprefix(codecs.BOM_UTF8)

    def decoded(self) -> Iterator[tuple[int, str]]:
        """(line number from 1, text without its line end); undecodable bytes survive as lone surrogates.

        Decoding line by line, instead of letting a text stream fail, is what lets one bad line not stop the run.
        """
        for number, raw in self:
            yield number, raw.rstrip(b"\r\n").decode("utf-8", errors="surrogateescape")


def too_long_error(where: str, max_line_bytes: int) -> LineError:
    return LineError("too_long", f"{where}: longer than {max_line_bytes} bytes (raise --max_line_bytes to read it)")


def read_txt(lines: BoundedLines) -> Iterator[InputRecord]:
    """One sentence per line; the id is the line number."""
    for number, line in lines.decoded():
        where = f"line {number}"
        if lines.cut(number):
            yield InputRecord(number, error=too_long_error(where, lines.max_line_bytes))
        else:
            yield sentence_record(number, line, where)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_jsonl(lines: BoundedLines, text_column: str | None, id_column: str) -> Iterator[InputRecord]:
    """One JSON object per line; the id is the object's `id_column` if present, else the line number.

    Strict JSON: `NaN` and `Infinity`, which Python's parser accepts, are refused, so that no id echoed into the
    output can make it invalid JSON.
    """
    for number, line in lines.decoded():
        where = f"line {number}"
        if lines.cut(number):
            yield InputRecord(number, error=too_long_error(where, lines.max_line_bytes))
        else:
            yield _json_line_record(number, line, where, text_column, id_column)


def _json_line_record(number: int, line: str, where: str, text_column: str | None, id_column: str) -> InputRecord:
    undecodable = text_error(line, where)
    if undecodable is not None and undecodable.kind == "invalid_utf8":
        return InputRecord(number, error=undecodable)
    if undecodable is not None:
        return InputRecord(number, error=LineError("empty", f"{where}: empty line"))
    try:
        obj = json.loads(line, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error) or "nested too deeply"
        return InputRecord(number, error=LineError("invalid_json", f"{where}: not valid JSON ({reason})"))
    if not isinstance(obj, dict):
        message = f"{where}: expected a JSON object, got {type(obj).__name__}"
        return InputRecord(number, error=LineError("invalid_json", message))
    record_id = obj.get(id_column, number)
    column = find_text_column(obj.keys(), text_column)
    if column is None:
        return InputRecord(
            record_id, error=LineError("missing_text", f"{where}: {missing_text(obj, text_column, 'field')}")
        )
    return sentence_record(record_id, obj[column], where)


def find_text_column(keys: Iterable[str], text_column: str | None) -> str | None:
    """The requested column, or else the first of the usual names, that `keys` has."""
    candidates = (text_column,) if text_column else DEFAULT_TEXT_COLUMNS
    present = set(keys)
    return next((name for name in candidates if name in present), None)


def missing_text(names: Iterable[str], text_column: str | None, noun: str) -> str:
    """'no 'sentence' / 'text' / '문장' field (fields: title)': what was looked for, and what there was."""
    wanted = repr(text_column) if text_column else " / ".join(repr(name) for name in DEFAULT_TEXT_COLUMNS)
    shown = ", ".join(str(name).encode("utf-8", "backslashreplace").decode("utf-8") for name in names)
    return f"no {wanted} {noun} ({noun}s: {shown or 'none'})"


def read_csv(lines: BoundedLines, text_column: str | None, id_column: str) -> Iterator[InputRecord]:
    """A CSV with a header row; the id is the `id_column` value if the header has one, else the row number.

    `csv.reader` rather than `DictReader`, which silently drops blank rows: every row must come out. Strict
    quoting: an unclosed quote would otherwise swallow every following row into one text and pass silently.
    """
    text_lines = (text + "\n" for _, text in lines.decoded())  # a too-long line's kept beginning, for its quotes
    rows = csv.reader(text_lines, strict=True)  # rows.line_num: physical lines read so far
    header = _next_row(rows, f"{lines.name} header")
    if header is None:
        raise KoSentTypeError(f"{lines.name}: empty CSV file (expected a header row)")
    column = find_text_column(header, text_column)
    if column is None:
        raise KoSentTypeError(f"{lines.name}: the CSV header has {missing_text(header, text_column, 'column')}")
    text_index = header.index(column)
    id_index = header.index(id_column) if id_column in header else None
    number = 0
    while True:
        first_line = rows.line_num + 1
        row = _next_row(rows, f"{lines.name} row {number + 1} (line {first_line})")
        if row is None:
            return
        number += 1
        record = _csv_record(number, row, text_index, id_index, column)
        if lines.cut(first_line, rows.line_num):
            record = InputRecord(record.id, error=too_long_error(f"row {number}", lines.max_line_bytes))
        yield record


def _next_row(rows: Iterator[list[str]], where: str) -> list[str] | None:
    try:
        return next(rows, None)
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            reason = "malformed CSV: a quoted field opened here is never closed, so the rows after it can't be read"
        else:
            reason = f"malformed CSV ({error}; an unclosed or stray quote?)"
        raise KoSentTypeError(f"{where}: {reason}") from error


def _csv_record(number: int, row: list[str], text_index: int, id_index: int | None, column: str) -> InputRecord:
    where = f"row {number}"
    record_id = row[id_index] if id_index is not None and id_index < len(row) else number
    if text_index >= len(row):
        message = f"{where}: empty row" if not row else f"{where}: no value in column {column!r}"
        return InputRecord(record_id, error=LineError("empty" if not row else "missing_text", message))
    return sentence_record(record_id, row[text_index], where)


def read_records(
    stream: BinaryIO,
    input_format: str,
    *,
    name: str,
    text_column: str | None = None,
    id_column: str = "id",
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[InputRecord]:
    """The records of one input stream in `input_format` (txt, jsonl or csv)."""
    lines = BoundedLines(stream, name, max_line_bytes)
    if input_format == "txt":
        return read_txt(lines)
    if input_format == "jsonl":
        return read_jsonl(lines, text_column, id_column)
    return read_csv(lines, text_column, id_column)
