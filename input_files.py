"""The input files of a prediction run: one file, a folder or a glob of many, local or in any filesystem pyarrow
knows (s3://, gs://, hdfs://, file://), in sorted path order (the order of a single output); and their records,
Parquet included (read like CSV rows). Pure Python and pyarrow, for the local engine as well as the Ray engine."""

from __future__ import annotations

import fnmatch
import glob
import io
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from .errors import KoSentTypeError, one_line
from .readers import DEFAULT_MAX_LINE_BYTES, find_text_column, missing_text, open_input, read_records
from .records import InputRecord, sentence_record

SUFFIXES = {
    ".txt": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
FILE_FORMATS = ("csv", "jsonl", "txt", "parquet")
GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class InputFile:
    """One input file: a local path or a URI (s3://…), and the format it is read in."""

    path: str
    format: str


def is_uri(path: str) -> bool:
    return "://" in path


def file_format(path: str, requested: str | None = None) -> str:
    """The requested format, else the one the extension names, else one sentence a line."""
    return requested or SUFFIXES.get(PurePosixPath(path).suffix.lower(), "txt")


def expand_inputs(spec: str, requested_format: str | None = None) -> list[InputFile]:
    """The files `spec` names, sorted: itself, a glob's matches, or a folder's files with a known suffix, skipping
    hidden and `_`-prefixed names (`.DS_Store`, `_SUCCESS`, temporary files) and folders."""
    paths = expand_uri(spec) if is_uri(spec) else expand_local(spec)
    return [InputFile(path, file_format(path, requested_format)) for path in paths]


def expand_local(spec: str) -> list[str]:
    if any(character in spec for character in GLOB_CHARACTERS):
        return matched(spec, [path for path in glob.glob(spec, recursive=True) if os.path.isfile(path)])
    if not os.path.exists(spec):
        raise KoSentTypeError(f"input file not found: {spec}")
    if not os.path.isdir(spec):
        return [spec]
    relative = []
    for parent, subfolders, names in os.walk(spec):
        subfolders[:] = [name for name in subfolders if not name.startswith((".", "_"))]
        relative += [os.path.relpath(os.path.join(parent, name), spec) for name in names]
    return listed_inputs(spec, relative, os.sep, spec)


def matched(spec: str, paths: list[str]) -> list[str]:
    if not paths:
        raise KoSentTypeError(f"no files match {spec}")
    return sorted(paths)


def listed_inputs(spec: str, relative_paths: list[str], separator: str, join_to: str) -> list[str]:
    """The input files among a folder's `relative_paths`, joined to `join_to`, sorted."""
    found = sorted(
        relative
        for relative in relative_paths
        if os.path.splitext(relative)[1].lower() in SUFFIXES
        and not any(part.startswith((".", "_")) for part in relative.split(separator))
    )
    if not found:
        raise KoSentTypeError(f"no input files in folder {spec} (looked for {', '.join(SUFFIXES)})")
    return [join_to.rstrip(separator) + separator + relative for relative in found]


def uri_filesystem(uri: str):
    """(pyarrow filesystem, path inside it) for a URI, refused in one line when pyarrow can't open it."""
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(uri)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError or ValueError for unknown or bad URIs
        raise KoSentTypeError(f"cannot open {uri}: {one_line(error)}") from error


def expand_uri(spec: str) -> list[str]:
    """`expand_local` for object storage: listing and glob matching done through the pyarrow filesystem."""
    from pyarrow import fs

    scheme = spec[: spec.index("://") + 3]
    filesystem, path = uri_filesystem(spec)
    if any(character in path for character in GLOB_CHARACTERS):
        root = path[: min(path.index(character) for character in GLOB_CHARACTERS if character in path)]
        listing = filesystem.get_file_info(
            fs.FileSelector(root.rpartition("/")[0], recursive=True, allow_not_found=True)
        )
        paths = [info.path for info in listing if info.is_file and fnmatch.fnmatchcase(info.path, path)]
        return [scheme + match for match in matched(spec, paths)]
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.NotFound:
        raise KoSentTypeError(f"input file not found: {spec}")
    if info.type == fs.FileType.Directory:
        listing = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
        relative = [entry.path[len(path) :].lstrip("/") for entry in listing if entry.is_file]
        return [scheme + found for found in listed_inputs(spec, relative, "/", path)]
    return [spec]


@contextmanager
def open_input_file(path: str) -> Iterator[BinaryIO]:
    """A local file (through `readers.open_input`, with its checks) or an object in storage, as a binary stream."""
    if not is_uri(path):
        with open_input(path) as stream:
            yield stream
        return
    filesystem, inner = uri_filesystem(path)
    try:
        native = filesystem.open_input_file(inner)
    except (OSError, ValueError) as error:
        raise KoSentTypeError(f"cannot read input {path}: {one_line(error)}") from error
    with native, io.BufferedReader(native) as stream:  # pyarrow's own files have no readline(limit)
        yield stream


def read_input_file(input_file: InputFile, **options: Any) -> Iterator[InputRecord]:
    """The records of one input file (`options` as `read_stream_records` takes them), lazily; the file is closed
    when they are exhausted or the generator closed."""
    with open_input_file(input_file.path) as stream:
        yield from read_stream_records(stream, input_file.format, name=input_file.path, **options)


def read_stream_records(
    stream: BinaryIO,
    input_format: str,
    *,
    name: str,
    text_column: str | None = None,
    id_column: str = "id",
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[InputRecord]:
    """The records of an open input in any of the formats (Parquet, or what `readers.read_records` reads)."""
    if input_format == "parquet":
        return read_parquet_records(stream, name=name, text_column=text_column, id_column=id_column)
    return read_records(
        stream, input_format, name=name, text_column=text_column, id_column=id_column, max_line_bytes=max_line_bytes
    )


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
            texts = batch.column(column).to_pylist()
            ids = batch.column(id_name).to_pylist() if id_name else [None] * len(texts)
            for text, record_id in zip(texts, ids, strict=True):
                number += 1
                yield sentence_record(json_safe_id(record_id) if id_name else number, text, f"row {number}")
    except (pa.ArrowException, OSError) as error:
        raise KoSentTypeError(f"{name}: cannot read the rows after row {number} ({one_line(error)})") from error


def json_safe_id(value: Any) -> Any:
    """An id that JSON can carry as it is (string, integer, finite number, boolean, null), else its text
    (timestamps, decimals, bytes, NaN), so that no id can make an output record invalid JSON."""
    if value is None or isinstance(value, str | bool | int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return str(value)
