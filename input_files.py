"""The input files of a prediction run: one file, a folder or a glob of many, local or in object storage.

    expand_inputs("corpus/")                     # every .txt/.jsonl/.ndjson/.csv/.parquet under corpus/, sorted
    expand_inputs("news/2024-*.jsonl")           # a glob (** crosses folders)
    expand_inputs("s3://bucket/corpus/")         # any filesystem pyarrow knows: s3://, gs://, hdfs://, file://
    for record in read_input_file(files[0]): ...

Files come out in sorted path order, which is the order of a single output. Parquet tables are read as records
like CSV rows: the text column (--text_column, else sentence/text/문장), the id column if present, else the row
number. Pure Python and pyarrow: the local engine can use this as well as the Ray engine.
"""

from __future__ import annotations

import fnmatch
import glob
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from .errors import KoSentTypeError, one_line
from .readers import (
    DEFAULT_MAX_LINE_BYTES,
    INPUT_FORMATS,
    find_text_column,
    infer_input_format,
    missing_text,
    open_input,
    read_records,
)
from .records import InputRecord, sentence_record

PARQUET_SUFFIXES = (".parquet", ".pq")
FILE_FORMATS = (*sorted(set(INPUT_FORMATS.values())), "parquet")
KNOWN_SUFFIXES = (*INPUT_FORMATS, *PARQUET_SUFFIXES)
GLOB_CHARACTERS = "*?["
PARQUET_BATCH_ROWS = 1024


@dataclass(frozen=True)
class InputFile:
    """One input file: a local path or a URI (s3://…), and the format it is read in."""

    path: str
    format: str


def is_uri(path: str) -> bool:
    return "://" in path


def file_format(path: str, requested: str | None = None) -> str:
    """The requested format, else parquet for .parquet/.pq, else what `readers.infer_input_format` says."""
    if requested:
        return requested
    return "parquet" if PurePosixPath(path).suffix.lower() in PARQUET_SUFFIXES else infer_input_format(path)


def expand_inputs(spec: str, requested_format: str | None = None) -> list[InputFile]:
    """The files `spec` names, in sorted order: itself, the input files under a folder, or a glob's matches.

    A folder contributes only files with a known input suffix (.txt .jsonl .ndjson .csv .parquet .pq), skipping
    hidden and `_`-prefixed names (`.DS_Store`, `_SUCCESS`, temporary files); a glob takes every file it matches.
    """
    paths = expand_uri(spec) if is_uri(spec) else expand_local(spec)
    return [InputFile(path, file_format(path, requested_format)) for path in paths]


def has_glob(spec: str) -> bool:
    return any(character in spec for character in GLOB_CHARACTERS)


def is_listed_input(name: str) -> bool:
    """Whether a file found in a folder is an input: a known suffix, and not hidden or a job's marker file."""
    return not name.startswith((".", "_")) and PurePosixPath(name).suffix.lower() in KNOWN_SUFFIXES


def expand_local(spec: str) -> list[str]:
    if has_glob(spec):
        matches = sorted(path for path in glob.glob(spec, recursive=True) if os.path.isfile(path))
        if not matches:
            raise KoSentTypeError(f"no files match {spec}")
        return matches
    if os.path.isdir(spec):
        return listed_inputs(spec, [os.path.relpath(path, spec) for path in walk_files(spec)], os.sep, spec)
    if not os.path.exists(spec):
        raise KoSentTypeError(f"input file not found: {spec}")
    return [spec]


def walk_files(folder: str) -> Iterator[str]:
    """Every file under `folder`, not descending into hidden or `_`-prefixed folders."""
    for parent, subfolders, names in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not name.startswith((".", "_"))]
        yield from (os.path.join(parent, name) for name in names)


def listed_inputs(spec: str, relative_paths: list[str], separator: str, join_to: str) -> list[str]:
    """The input files among a folder's `relative_paths` (see `is_listed_input`), joined to `join_to`, sorted."""
    found = sorted(
        relative
        for relative in relative_paths
        if is_listed_input(relative.rsplit(separator, 1)[-1])
        and not any(part.startswith((".", "_")) for part in relative.split(separator))
    )
    if not found:
        raise KoSentTypeError(f"no input files in folder {spec} (looked for {', '.join(KNOWN_SUFFIXES)})")
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
    if has_glob(path):
        root = path[: min(path.index(character) for character in GLOB_CHARACTERS if character in path)]
        root = root.rsplit("/", 1)[0] if "/" in root else ""
        listing = filesystem.get_file_info(fs.FileSelector(root, recursive=True, allow_not_found=True))
        matches = sorted(info.path for info in listing if info.is_file and fnmatch.fnmatchcase(info.path, path))
        if not matches:
            raise KoSentTypeError(f"no files match {spec}")
        return [scheme + match for match in matches]
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
    import io

    filesystem, inner = uri_filesystem(path)
    try:
        native = filesystem.open_input_file(inner)
    except (OSError, ValueError) as error:
        raise KoSentTypeError(f"cannot read input {path}: {one_line(error)}") from error
    with native, io.BufferedReader(native) as stream:  # pyarrow's own files have no readline(limit)
        yield stream


def read_input_file(
    input_file: InputFile,
    *,
    text_column: str | None = None,
    id_column: str = "id",
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[InputRecord]:
    """The records of one input file, lazily; the file is closed when they are exhausted or the generator closed."""
    with open_input_file(input_file.path) as stream:
        yield from read_stream_records(
            stream,
            input_file.format,
            name=input_file.path,
            text_column=text_column,
            id_column=id_column,
            max_line_bytes=max_line_bytes,
        )


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
    """One record per row, read a batch of rows at a time; the id is the `id_column` value, else the row number.

    A missing text column stops the run, as a CSV header without one does; a row whose text is null or not a
    string becomes an error record, as in every other format.
    """
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
    columns = [column] if id_name in (None, column) else [column, id_name]
    number = 0
    try:
        for batch in parquet.iter_batches(PARQUET_BATCH_ROWS, columns=columns):
            texts = batch.column(column).to_pylist()
            ids = batch.column(id_name).to_pylist() if id_name else None
            for offset, text in enumerate(texts):
                number += 1
                record_id = json_safe_id(ids[offset]) if ids is not None else number
                yield sentence_record(record_id, text, f"row {number}")
    except (pa.ArrowException, OSError) as error:
        raise KoSentTypeError(f"{name}: cannot read the rows after row {number} ({one_line(error)})") from error


def json_safe_id(value: Any) -> Any:
    """An id that JSON can carry as it is (string, integer, finite number, boolean, null), else its text
    (timestamps, decimals, bytes, NaN), so that no id can make an output record invalid JSON."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return str(value)
