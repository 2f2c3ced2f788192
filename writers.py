"""Writers of predictions: JSON Lines or CSV, to standard output or to a file that appears only when complete."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .atomic_output import atomic_text_output
from .records import Prediction, utf8_safe

OUTPUT_FORMATS = ("jsonl", "csv")


def infer_output_format(path: str, requested: str | None = None) -> str:
    """The requested format, else csv for a .csv path, else JSON Lines."""
    return requested or ("csv" if Path(path).suffix.lower() == ".csv" else "jsonl")


def json_line(record: dict) -> str:
    """One strict JSON line (NaN and Infinity are not JSON and break other parsers). Korean stays readable, but a
    line holding a lone surrogate (an input's `\\ud800`, undecodable bytes in an id) can't be UTF-8: it is escaped."""
    line = json.dumps(record, ensure_ascii=False, allow_nan=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(record, ensure_ascii=True, allow_nan=False)
    return line + "\n"


@dataclass
class JsonLinesWriter:
    stream: TextIO
    with_top_k: bool

    def write(self, prediction: Prediction) -> None:
        self.stream.write(json_line(prediction.to_record(self.with_top_k)))


def output_columns(with_top_k: bool, with_attributes: bool) -> list[str]:
    """The columns of a flat output (CSV, Parquet shards): id,label,score[,top_k][,attributes],error."""
    optional = [name for name, wanted in (("top_k", with_top_k), ("attributes", with_attributes)) if wanted]
    return ["id", "label", "score", *optional, "error"]


def flat_record(prediction: Prediction, with_top_k: bool) -> dict:
    """A prediction as one row of flat columns: nested values as JSON text, to keep the columns fixed, and every
    string UTF-8-safe."""
    record = prediction.to_record(with_top_k)
    for key in ("top_k", "attributes"):
        if key in record:
            record[key] = json.dumps(record[key], ensure_ascii=False, allow_nan=False)
    return {key: utf8_safe(value) if isinstance(value, str) else value for key, value in record.items()}


class CsvWriter:
    def __init__(self, stream: TextIO, with_top_k: bool, with_attributes: bool = False) -> None:
        self.with_top_k = with_top_k
        columns = output_columns(with_top_k, with_attributes)
        self.writer = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
        self.writer.writeheader()

    def write(self, prediction: Prediction) -> None:
        self.writer.writerow(flat_record(prediction, self.with_top_k))


def make_writer(output_format: str, stream: TextIO, with_top_k: bool, with_attributes: bool):
    if output_format == "csv":
        return CsvWriter(stream, with_top_k, with_attributes)
    return JsonLinesWriter(stream, with_top_k)


@contextmanager
def open_output(path: str) -> Iterator[TextIO]:
    """Standard output for `-`; otherwise a temporary file beside `path`, renamed onto it only on success,
    so an interrupted or failed run never leaves a half-written output behind."""
    if path == "-":
        stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="", line_buffering=False)
        try:
            yield stdout
        finally:
            stdout.flush()
            stdout.detach()
        return
    with atomic_text_output(path) as stream:  # callers checked the folder before the run: check_writable_file
        yield stream
