"""Readers of prediction inputs (one sentence a line, JSON Lines, CSV with a header, Parquet): lazy generators of
`InputRecord`, so memory never depends on the input's size. A bad line becomes an error record; only what makes the
rest unreadable (no header, a quote never closed, UTF-16) stops the run, with a `KoSentTypeError`."""

from __future__ import annotations

import codecs
import csv
import json
import math
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import count
from typing import Any, BinaryIO

from .errors import KoSentTypeError, one_line
from .records import InputRecord, LineError, sentence_record, text_error, utf8_safe

DEFAULT_TEXT_COLUMNS = ("sentence", "text", "문장")
# 64 KiB: about 21,000 Hangul syllables, a hundred times the longest sentence the model reads (256 tokens).
DEFAULT_MAX_LINE_BYTES = 64 * 1024


@dataclass
class BoundedLines:
    """(number from 1, text) of each line, decoded line by line so that one bad line doesn't stop the run
    (undecodable bytes survive as lone surrogates). Of a line longer than `max_line_bytes` only that much is
    kept, the rest skipped in blocks, never held, and its number goes into `last_too_long`."""

    stream: BinaryIO
    name: str
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    last_too_long: int = 0

    def __iter__(self) -> Iterator[tuple[int, str]]:
        for number, raw in enumerate(iter(lambda: self.stream.readline(self.max_line_bytes + 1), b""), 1):
            if number == 1 and raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise KoSentTypeError(
                    f"{self.name} is UTF-16 (it starts with a UTF-16 byte-order mark); convert it to UTF-8 first, "
                    f"e.g. iconv -f UTF-16 -t UTF-8 {self.name} > converted.txt"
                )
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            if len(raw) > self.max_line_bytes and not raw.endswith(b"\n"):
                self.last_too_long = number
                rest = raw
                while rest and not rest.endswith(b"\n"):
                    rest = self.stream.readline(1 << 20)
                raw = raw[: self.max_line_bytes]
            yield number, raw.rstrip(b"\r\n").decode("utf-8", errors="surrogateescape")

    def too_long_error(self, where: str) -> LineError:
        return LineError(
            "too_long", f"{where}: longer than {self.max_line_bytes} bytes (raise --max_line_bytes to read it)"
        )


def read_lines(lines: BoundedLines, record: Callable[[int, str, str], InputRecord]) -> Iterator[InputRecord]:
    """One record a line, made by `record(number, text, where)` unless the line was too long."""
    for number, line in lines:
        where = f"line {number}"
        too_long = lines.last_too_long == number
        yield InputRecord(number, error=lines.too_long_error(where)) if too_long else record(number, line, where)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def json_line_record(number: int, line: str, where: str, text_column: str | None, id_column: str) -> InputRecord:
    """A JSON object's record; the id is its `id_column` if present, else the line number. Strict JSON: NaN and
    Infinity, which Python's parser accepts, are refused, so that no id echoed into the output can break it."""
    error = text_error(line, where)
    if error is not None:
        kept = error if error.kind == "invalid_utf8" else LineError("empty", f"{where}: empty line")
        return InputRecord(number, error=kept)
    try:
        obj = json.loads(line, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error) or "nested too deeply"
        return InputRecord(number, error=LineError("invalid_json", f"{where}: not valid JSON ({reason})"))
    if not isinstance(obj, dict):
        message = f"{where}: expected a JSON object, got {type(obj).__name__}"
        return InputRecord(number, error=LineError("invalid_json", message))
    column = find_text_column(obj.keys(), text_column)
    if column is None:
        message = f"{where}: {missing_text(obj, text_column, 'field')}"
        return InputRecord(obj.get(id_column, number), error=LineError("missing_text", message))
    return sentence_record(obj.get(id_column, number), obj[column], where)


def find_text_column(keys: Collection[str], text_column: str | None) -> str | None:
    """The requested column, or else the first of the usual names, that `keys` has."""
    candidates = (text_column,) if text_column else DEFAULT_TEXT_COLUMNS
    return next((name for name in candidates if name in keys), None)


def missing_text(names: Iterable[str], text_column: str | None, noun: str) -> str:
    """'no 'sentence' / 'text' / '문장' field (fields: title)': what was looked for, and what there was."""
    wanted = repr(text_column) if text_column else " / ".join(repr(name) for name in DEFAULT_TEXT_COLUMNS)
    shown = ", ".join(utf8_safe(str(name)) for name in names)
    return f"no {wanted} {noun} ({noun}s: {shown or 'none'})"


def read_csv(lines: BoundedLines, text_column: str | None, id_column: str) -> Iterator[InputRecord]:
    """A CSV with a header row; the id is the `id_column` value if the header has one, else the row number.

    `csv.reader` rather than `DictReader`, which silently drops blank rows: every row must come out. Strict
    quoting: an unclosed quote would otherwise swallow every following row into one text and pass silently.
    """
    rows = csv.reader((text + "\n" for _, text in lines), strict=True)  # rows.line_num: physical lines read so far
    header = _next_row(rows, f"{lines.name} header")
    if header is None:
        raise KoSentTypeError(f"{lines.name}: empty CSV file (expected a header row)")
    column = find_text_column(header, text_column)
    if column is None:
        raise KoSentTypeError(f"{lines.name}: the CSV header has {missing_text(header, text_column, 'column')}")
    text_index = header.index(column)
    id_index = header.index(id_column) if id_column in header else None
    for number in count(1):
        first_line = rows.line_num + 1
        row = _next_row(rows, f"{lines.name} row {number} (line {first_line})")
        if row is None:
            return
        where = f"row {number}"
        record_id = row[id_index] if id_index is not None and id_index < len(row) else number
        if lines.last_too_long >= first_line:  # csv.reader reads no line past the row's last
            yield InputRecord(record_id, error=lines.too_long_error(where))
        elif not row:
            yield InputRecord(record_id, error=LineError("empty", f"{where}: empty row"))
        elif text_index >= len(row):
            yield InputRecord(record_id, error=LineError("missing_text", f"{where}: no value in column {column!r}"))
        else:
            yield sentence_record(record_id, row[text_index], where)


def _next_row(rows: Iterator[list[str]], where: str) -> list[str] | None:
    try:
        return next(rows, None)
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            reason = "malformed CSV: a quoted field opened here is never closed, so the rows after it can't be read"
        else:
            reason = f"malformed CSV ({error}; an unclosed or stray quote?)"
        raise KoSentTypeError(f"{where}: {reason}") from error


def read_records(
    stream: BinaryIO,
    input_format: str,
    *,
    name: str,
    text_column: str | None = None,
    id_column: str = "id",
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[InputRecord]:
    """The records of one input stream in `input_format` (txt, jsonl, csv or parquet)."""
    if input_format == "parquet":
        return read_parquet_records(stream, name=name, text_column=text_column, id_column=id_column)
    lines = BoundedLines(stream, name, max_line_bytes)
    if input_format == "txt":
        return read_lines(lines, sentence_record)
    if input_format == "jsonl":
        return read_lines(lines, partial(json_line_record, text_column=text_column, id_column=id_column))
    return read_csv(lines, text_column, id_column)


def read_parquet_records(
    stream: BinaryIO, *, name: str, text_column: str | None = None, id_column: str = "id"
) -> Iterator[InputRecord]:
    """One record per row, a batch of rows at a time; the id is the `id_column` value, else the row number. A
    missing text column stops the run, as in a CSV header; a null or non-string text becomes an error record."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError) as error:
        raise KoSentTypeError(f"{name}: not a readable Parquet file ({one_line(error)})") from error
    names = parquet.schema_arrow.names
    column = find_text_column(names, text_column)
    if column is None:
        raise KoSentTypeError(f"{name}: the Parquet schema has {missing_text(names, text_column, 'column')}")
    id_name = id_column if id_column in names else None
    number = 0
    try:
        for batch in parquet.iter_batches(1024, columns=[column] if id_name in (None, column) else [column, id_name]):
            for row in batch.to_pylist():
                number += 1
                yield sentence_record(json_safe_id(row[id_name]) if id_name else number, row[column], f"row {number}")
    except (pa.ArrowException, OSError) as error:
        raise KoSentTypeError(f"{name}: cannot read the rows after row {number} ({one_line(error)})") from error


def json_safe_id(value: Any) -> Any:
    """An id that JSON can carry as it is (string, integer, finite number, boolean, null), else its text
    (timestamps, decimals, bytes, NaN), so that no id can make an output record invalid JSON."""
    if value is None or isinstance(value, str | bool | int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return str(value)
