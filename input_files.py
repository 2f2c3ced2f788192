"""The input files of a prediction run: one file, a folder or a glob of many, local or in any filesystem pyarrow
knows (s3://, gs://, hdfs://, file://), in sorted path order (the order of a single output); and their records,
read by `readers.read_records`. Pure Python and pyarrow, for the local engine as well as the Ray engine."""

from __future__ import annotations

import fnmatch
import glob
import io
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from .errors import KoSentTypeError, one_line
from .readers import read_records
from .records import InputRecord

TEXT_SUFFIXES = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
SUFFIXES = {**TEXT_SUFFIXES, ".parquet": "parquet", ".pq": "parquet"}
FILE_FORMATS = ("csv", "jsonl", "txt", "parquet")
GLOB = re.compile(r"[*?[]")


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
    if GLOB.search(spec):
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
    if GLOB.search(path):
        root = GLOB.split(path, maxsplit=1)[0].rpartition("/")[0]  # the folder above the first glob character
        listing = filesystem.get_file_info(fs.FileSelector(root, recursive=True, allow_not_found=True))
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
    """The input as bytes: standard input for `-`, a local file (refused up front when missing or a folder), or an
    object in storage."""
    if path == "-":
        yield sys.stdin.buffer
        return
    uri = is_uri(path)
    if not uri and not os.path.exists(path):
        raise KoSentTypeError(f"input file not found: {path}")
    if not uri and os.path.isdir(path):
        raise KoSentTypeError(f"input is a folder, not a file: {path}")
    try:
        if uri:
            filesystem, inner = uri_filesystem(path)
            stream = io.BufferedReader(filesystem.open_input_file(inner))  # pyarrow's own have no readline(limit)
        else:
            stream = open(path, "rb")  # noqa: SIM115 - closed below, after the generator using it is done
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and not uri else one_line(error)
        raise KoSentTypeError(f"cannot read input {path}: {reason}") from error
    with stream:
        yield stream


def read_input_file(input_file: InputFile, **options: Any) -> Iterator[InputRecord]:
    """The records of one input file (`options` as `readers.read_records` takes them), lazily; the file is closed
    when they are exhausted or the generator closed."""
    with open_input_file(input_file.path) as stream:
        yield from read_records(stream, input_file.format, name=input_file.path, **options)
