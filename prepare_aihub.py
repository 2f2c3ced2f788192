"""Flatten AI Hub sentence-type archives (`TL_*`/`VL_*` zips, extracted folders or single `.json` documents) into
one deduplicated sentence-level JSON / JSON Lines file for `kosenttype-train`. Decisions: docs/preparing-data.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import lzma
import os
import sys
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from kosenttype.atomic_output import check_writable_file, refuse_input_as_output, write_text_atomically
from kosenttype.configuration_kosenttype import ATTRIBUTE_KOREAN_NAMES, SENTENCE_TYPES
from kosenttype.errors import EXIT_OK, EXIT_SOME_FAILED, KoSentTypeError, one_line, run_command
from kosenttype.tables import format_table

PROGRAM = "kosenttype-prepare-aihub"
ZIP_UTF8_FLAG = 0x800
# AI Hub's other label axes (in `value`) and metadata, and the record keys they become.
VALUE_FIELDS = {korean: axis for axis, korean in ATTRIBUTE_KOREAN_NAMES.items()}
METADATA_FIELDS = {"ID": "doc_id", "MEDIA_TYPE": "media_type", "CATEGORY": "category"}
MAX_CONFLICTS_SHOWN = 20
DESCRIPTION = (
    "Flatten AI Hub sentence-type archives (TL_*/VL_* zips) or extracted folders into one sentence-level JSON / JSON "
    "Lines file for kosenttype-train. Exit status: 0 written, 1 no sentence left to write, 2 the run could not go on, "
    "128+N stopped by signal N (nothing half-written)."
)
HELP = {
    "inputs": "zip archives, folders (every *.json below them) or single .json documents",
    "output": "output file; JSON Lines if it ends in .jsonl, else a JSON array (missing folders are created)",
    "keep_conflicts": "keep each sentence whose copies disagree once, with its majority label (first seen on a tie), "
    "instead of dropping it",
    "conflicts_output": "also write every conflicting sentence with its labels and sources to this JSON Lines file",
}
# AI Hub's documents are tens of kilobytes and its sentences at most a few hundred characters: far larger ones are
# damage or a zip bomb, skipped before they are read whole into memory.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
MAX_SENTENCE_CHARACTERS = 10_000
# What zipfile raises on a damaged member: CRC, header, deflate, bzip2, lzma, truncation,
# encryption and unsupported features (RuntimeError), offsets outside the file (ValueError).
MEMBER_READ_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, OSError, EOFError, RuntimeError, ValueError)


class RawDocument(NamedTuple):
    """A JSON document's bytes, or why they could not be read; `name` is `input/member`, as reports show it."""

    name: str
    content: bytes | None
    read_error: str | None = None


@dataclass
class SourceStats:
    name: str
    documents: int = 0
    skipped_documents: int = 0
    skipped_annotations: int = 0
    labels: Counter = field(default_factory=Counter)


@dataclass
class Conflict:
    sentence: str
    labels: Counter
    sources: list[str]


@dataclass
class Prepared:
    """The records to write (one per sentence, first-seen order) and the report's figures."""

    records: list[dict[str, Any]] = field(default_factory=list)
    sources: list[SourceStats] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    sentences_read: int = 0
    repeated_sentences: int = 0
    duplicates_dropped: int = 0
    conflict_copies_dropped: int = 0


def decode_member_name(info: zipfile.ZipInfo) -> str:
    """Without the UTF-8 flag zipfile decodes names as cp437, garbling the cp949 (or UTF-8) names of Korean tools."""
    if info.flag_bits & ZIP_UTF8_FLAG:
        return info.filename
    for encoding in ("utf-8", "cp949"):
        with contextlib.suppress(UnicodeDecodeError):
            return info.orig_filename.encode("cp437").decode(encoding)
    return info.filename


def shown_name(name: str) -> str:
    """A name as one printable line: non-UTF-8 bytes become `\\xNN`, control characters their escape."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def is_document_name(name: str) -> bool:
    """JSON documents, without the `._*` AppleDouble files macOS adds to its archives."""
    path = PurePosixPath(name)
    return path.suffix.lower() == ".json" and not path.name.startswith("._")


def too_large(size: int) -> str:
    return f"{size} bytes, more than the {MAX_DOCUMENT_BYTES // 2**20} MiB a document may have"


def iter_archive_documents(path: Path) -> Iterator[RawDocument]:
    """Members read in place (no extraction); zipfile reads no more than the header's size, checked beforehand."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError) as error:
        raise KoSentTypeError(f"{path}: not a readable zip archive ({one_line(error)})") from error
    with archive:
        names = [(decode_member_name(info), info) for info in archive.infolist() if not info.is_dir()]
        for name, info in sorted(names, key=lambda pair: pair[0]):
            if not is_document_name(name):
                continue
            shown = f"{shown_name(path.name)}/{shown_name(name)}"
            if info.file_size > MAX_DOCUMENT_BYTES:
                yield RawDocument(shown, None, too_large(info.file_size))
                continue
            try:
                yield RawDocument(shown, archive.read(info))
            except MEMBER_READ_ERRORS as error:
                yield RawDocument(shown, None, f"unreadable archive member ({one_line(error)})")


def read_file_document(path: Path, name: str) -> RawDocument:
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            return RawDocument(name, None, too_large(size))
        return RawDocument(name, path.read_bytes())
    except OSError as error:
        return RawDocument(name, None, f"unreadable file ({error.strerror or error})")


def iter_folder_documents(folder: Path) -> Iterator[RawDocument]:
    label = shown_name(folder.resolve().name)  # `.` has no name of its own
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and is_document_name(name):
            yield read_file_document(path, f"{label}/{shown_name(name)}")


def iter_input_documents(path: Path) -> Iterator[RawDocument]:
    """The documents of one input: an archive, an extracted folder or a single JSON document."""
    if path.is_dir():
        return iter_folder_documents(path)
    if zipfile.is_zipfile(path):
        return iter_archive_documents(path)
    if path.suffix.lower() == ".json":
        return iter([read_file_document(path, shown_name(path.name))])
    raise KoSentTypeError(f"{path}: not a zip archive, a folder or a .json file")


def parse_document(document: RawDocument) -> tuple[dict[str, Any] | None, str | None]:
    """The document's JSON object, or None and why; `json.loads` detects UTF-8 (BOM or not), UTF-16 and UTF-32."""
    if document.read_error:
        return None, document.read_error
    try:
        data = json.loads(document.content)
    except UnicodeDecodeError as error:
        return None, f"not UTF-8 or UTF-16 text (byte {error.start})"
    except json.JSONDecodeError as error:
        return None, f"invalid JSON (line {error.lineno} column {error.colno}: {error.msg})"
    except RecursionError:
        return None, "JSON nested too deeply to read"
    if not isinstance(data, dict):
        return None, f"top level is a JSON {type(data).__name__}, not an object"
    if not isinstance(data.get("annotation"), list):
        return None, "no 'annotation' key" if "annotation" not in data else "'annotation' is not a list"
    return data, None


def optional_text(value: Any) -> str | None:
    """A string or null, so every column keeps one type for pyarrow; a list or object is no label value: null."""
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value).strip() or None


def annotation_problem(annotation: Any) -> str | None:
    """Why an annotation can't become a training record, or None when it can."""
    if not isinstance(annotation, dict):
        return f"is a JSON {type(annotation).__name__}, not an object"
    text, label = annotation.get("text"), annotation.get("label")
    if not isinstance(text, str) or not text.strip():
        return "has no 'text'" if text is None else "has an empty or non-string 'text'"
    if len(text) > MAX_SENTENCE_CHARACTERS:
        return f"has a 'text' of {len(text)} characters, more than the {MAX_SENTENCE_CHARACTERS} of one sentence"
    if not isinstance(label, str) or not label.strip():
        return "has no 'label'" if label is None else "has an empty or non-string 'label'"
    if label.strip() not in SENTENCE_TYPES:
        return f"has unknown label {label!r} (expected one of {', '.join(SENTENCE_TYPES)})"
    return None


def unwritable_field(record: dict[str, Any]) -> str | None:
    """JSON's `\\ud800` escape gives a lone surrogate: a string Python holds but no UTF-8 file can."""
    for key, value in record.items():
        try:
            if value is not None:
                value.encode("utf-8")
        except UnicodeEncodeError as error:
            return f"has a lone surrogate {value[error.start]!r} in its {key}, which UTF-8 cannot hold"
    return None


def document_records(data: dict[str, Any], source: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The document's valid annotations as records, and a one-line problem for each one left out."""
    metadata = data.get("metaData") if isinstance(data.get("metaData"), dict) else {}
    records, problems = [], []
    for position, annotation in enumerate(data["annotation"]):
        problem = annotation_problem(annotation)
        if not problem:
            values = annotation.get("value") if isinstance(annotation.get("value"), dict) else {}
            record = {
                "sentence": annotation["text"].strip(),
                "label": annotation["label"].strip(),
                **{key: optional_text(values.get(name)) for name, key in VALUE_FIELDS.items()},
                **{key: optional_text(metadata.get(name)) for name, key in METADATA_FIELDS.items()},
                "source": source,
            }
            problem = unwritable_field(record)
        if problem:
            problems.append(f"skipped {source} annotation {position}: {problem}")
        else:
            records.append(record)
    return records, problems


def prepare(paths: Iterable[Path], keep_conflicts: bool = False) -> Prepared:
    """Read every input, then deduplicate across all of them (the same sentence may sit in two archives)."""
    prepared = Prepared()
    copies: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        stats = SourceStats(shown_name(path.name))
        prepared.sources.append(stats)
        for document in iter_input_documents(path):
            stats.documents += 1
            data, problem = parse_document(document)
            if problem:
                stats.skipped_documents += 1
                prepared.problems.append(f"skipped {document.name}: {problem}")
                continue
            records, problems = document_records(data, document.name)
            stats.skipped_annotations += len(problems)
            stats.labels.update(record["label"] for record in records)
            prepared.problems.extend(problems)
            prepared.sentences_read += len(records)
            for record in records:
                copies.setdefault(record["sentence"], []).append(record)
    for sentence, group in copies.items():
        labels = Counter(record["label"] for record in group)
        prepared.repeated_sentences += 1 if len(group) > 1 else 0
        if len(labels) == 1:
            prepared.records.append(group[0])
            prepared.duplicates_dropped += len(group) - 1
            continue
        prepared.conflicts.append(Conflict(sentence, labels, [record["source"] for record in group]))
        if keep_conflicts:  # the majority label; Counter keeps first-seen order, so a tie goes to the first seen
            winner = max(labels, key=labels.__getitem__)
            prepared.records.append(next(record for record in group if record["label"] == winner))
        prepared.conflict_copies_dropped += len(group) - 1 if keep_conflicts else len(group)
    return prepared


def format_report(prepared: Prepared, keep_conflicts: bool) -> str:
    rows = [
        [s.name, s.documents, s.skipped_documents, s.skipped_annotations, s.labels.total()]
        + [s.labels[label] for label in SENTENCE_TYPES]
        for s in prepared.sources
    ]
    rows.append(["total", *map(sum, zip(*(row[1:] for row in rows), strict=True))])
    header = ["source", "documents", "skipped docs", "skipped annotations", "sentences", *SENTENCE_TYPES]
    counts = Counter(record["label"] for record in prepared.records)
    total = len(prepared.records) or 1
    written = [[label, counts[label], f"{100 * counts[label] / total:.1f}%"] for label in SENTENCE_TYPES]
    conflict_fate = "each kept once with its majority label" if keep_conflicts else "dropped"
    return (
        f"Sentences read, per source:\n{format_table(header, rows)}\n\n"
        f"sentences read: {prepared.sentences_read}; repeated sentences: {prepared.repeated_sentences}; "
        f"exact duplicates dropped: {prepared.duplicates_dropped}; sentences with conflicting labels: "
        f"{len(prepared.conflicts)} ({conflict_fate}; {prepared.conflict_copies_dropped} copies dropped)\n\n"
        "Records written, per label:\n"
        + format_table(["label", "written", "share"], [*written, ["total", len(prepared.records), "100.0%"]])
    )


def report_conflicts(conflicts: list[Conflict]) -> None:
    """The first conflicts on stderr, one line each; the full AI Hub release has too many to list them all there."""
    for conflict in conflicts[:MAX_CONFLICTS_SHOWN]:
        labels = ", ".join(f"{label}×{count}" for label, count in conflict.labels.items())
        where = ", ".join(conflict.sources)
        print(f"{PROGRAM}: conflicting labels ({labels}) for {conflict.sentence!r} in {where}", file=sys.stderr)
    if len(conflicts) > MAX_CONFLICTS_SHOWN:
        more = len(conflicts) - MAX_CONFLICTS_SHOWN
        print(
            f"{PROGRAM}: … and {more} more conflicting sentences (--conflicts_output FILE lists all)", file=sys.stderr
        )


def serialize_records(records: list[dict[str, Any]], json_lines: bool) -> Iterator[str]:
    """JSON Lines, or a JSON array with one record per line (still one `json.load`, yet diffable and greppable)."""
    if not json_lines:
        yield "[\n"
    for position, record in enumerate(records, start=1):
        yield json.dumps(record, ensure_ascii=False) + ("\n" if json_lines or position == len(records) else ",\n")
    if not json_lines:
        yield "]\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=DESCRIPTION)
    parser.add_argument("inputs", nargs="+", type=Path, metavar="ARCHIVE_OR_FOLDER", help=HELP["inputs"])
    parser.add_argument("--output", required=True, type=Path, help=HELP["output"])
    parser.add_argument("--keep-conflicts", "--keep_conflicts", action="store_true", help=HELP["keep_conflicts"])
    parser.add_argument("--conflicts_output", "--conflicts-output", type=Path, help=HELP["conflicts_output"])
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> None:
    """Fail before reading the inputs (minutes, for the whole release): a missing input, an output that would
    replace an input or the other output, is a folder, or whose folder is a file or not writable."""
    missing = [str(path) for path in args.inputs if not path.exists()]
    if missing:
        raise KoSentTypeError(f"input not found: {', '.join(missing)}")
    outputs = {"--output": args.output, "--conflicts_output": args.conflicts_output}
    for option, path in outputs.items():
        if path is None:
            continue
        refuse_input_as_output(path, args.inputs, option)
        existing = next(folder for folder in (path.parent, *path.parent.parents) if folder.exists())
        if not existing.is_dir():
            raise KoSentTypeError(f"cannot write {option} {path}: {existing} is a file, not a folder")
        if existing == path.parent:  # a folder that does not exist yet is created at write time
            check_writable_file(path, option)
    if args.conflicts_output and args.conflicts_output.resolve() == args.output.resolve():
        raise KoSentTypeError(f"--conflicts_output {args.conflicts_output} is the --output file; choose another path")


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    prepared = prepare(args.inputs, keep_conflicts=args.keep_conflicts)
    for problem in prepared.problems:
        print(f"{PROGRAM}: {problem}", file=sys.stderr)
    report_conflicts(prepared.conflicts)
    print(format_report(prepared, args.keep_conflicts))
    if not prepared.records:
        print(
            f"{PROGRAM}: error: no sentences left to write ({prepared.sentences_read} read, "
            f"{len(prepared.problems)} problems); {args.output} not written",
            file=sys.stderr,
        )
        return EXIT_SOME_FAILED
    write_text_atomically(args.output, serialize_records(prepared.records, args.output.suffix.lower() == ".jsonl"))
    if args.conflicts_output:
        conflicts = (
            {"sentence": c.sentence, "labels": dict(c.labels), "sources": c.sources} for c in prepared.conflicts
        )
        write_text_atomically(args.conflicts_output, (json.dumps(c, ensure_ascii=False) + "\n" for c in conflicts))
    print(f"wrote {len(prepared.records)} records to {args.output}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_command(PROGRAM, lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
