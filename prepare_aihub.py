"""Flatten AI Hub sentence-type labeling data into one sentence-level training file for `train_hf.py`.

AI Hub ships the data as zip archives (`TL_<media>_<category>.zip` for training, `VL_…` for validation), one JSON
document per source text:

    {"annotation": [{"text": …, "label": "추론형", "value": {"극성": …, "시제": …, "확실성": …, …}, …}, …],
     "metaData": {"ID": …, "MEDIA_TYPE": …, "CATEGORY": …, …}}

Usage (reference: docs/preparing-data.md):

    kosenttype-prepare-aihub TL_뉴스_금융.zip TL_뉴스_경제.zip extracted_folder/ --output outputs/aihub/train.jsonl

Archives are read in place (nothing is extracted to disk); a folder contributes every `*.json` below it, a single
`.json` file itself. Each annotation becomes one record with `sentence`, `label`, `polarity`, `tense`, `certainty`,
`doc_id`, `media_type`, `category` and `source` (archive or folder name / member name). The output is a JSON array,
or JSON Lines when its name ends in `.jsonl`, written atomically.

Decisions:
- A document that can't be read as a whole (unreadable or oversized member, neither UTF-8 nor UTF-16, invalid or
  too deeply nested JSON, no `annotation` list) is reported and skipped. An annotation that is malformed (not an
  object, no text, a text too long to be one sentence, no label, a label that is not one of the four types, a lone
  surrogate such as the JSON escape `"\\ud800"`, which no UTF-8 file can hold) is reported and skipped on its own;
  the document's other sentences are kept. Only what stops the whole run (a missing input, an input that is no
  archive, an output that can't be written or is one of the inputs) is a `KoSentTypeError`: one line, exit 2.
- A sentence (compared after trimming outer whitespace) that appears more than once with one label is written once.
  A sentence whose copies carry different labels is reported and dropped entirely, since no one label can be trusted;
  with `--keep-conflicts` it is kept once, with its majority label (on a tie, the label seen first).
- Records keep first-seen order (inputs as given, documents sorted by name); a missing `value` or `metaData` field
  becomes null, and every field is a string or null (a number becomes its text; a JSON list or object, null), so
  `datasets` reads the file without type clashes.
- Zip member names stored without the UTF-8 flag (Windows tools write Korean names in cp949, which Python reads as
  cp437) are decoded back, so reports show the real file names; a file name that is not valid UTF-8 is shown with
  `\\x..` escapes instead of breaking the report.
"""

from __future__ import annotations

import argparse
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
from typing import Any

from kosenttype.atomic_output import check_writable_file, refuse_input_as_output, write_text_atomically
from kosenttype.configuration_kosenttype import SENTENCE_TYPES
from kosenttype.errors import EXIT_OK, EXIT_SOME_FAILED, KoSentTypeError, one_line, run_command
from kosenttype.tables import format_table

PROGRAM = "kosenttype-prepare-aihub"
ZIP_UTF8_FLAG = 0x800
# The label axes other than the type, as AI Hub names them in `value`, and the record keys they become.
VALUE_FIELDS = {"극성": "polarity", "시제": "tense", "확실성": "certainty"}
METADATA_FIELDS = {"ID": "doc_id", "MEDIA_TYPE": "media_type", "CATEGORY": "category"}
MAX_CONFLICTS_SHOWN = 20
# AI Hub's documents are tens of kilobytes and its sentences a few hundred characters (TL_뉴스_금융: 16.8 KB and 236
# at most). Far larger ones are damage or a zip bomb: skipped before they are read whole into memory.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
MAX_SENTENCE_CHARACTERS = 10_000
# What zipfile raises on a damaged member, by compression method: CRC, header, deflate, bzip2 (OSError), lzma,
# truncation, encryption (RuntimeError), unsupported features, offsets pointing outside the file (ValueError).
MEMBER_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    OSError,
    EOFError,
    RuntimeError,
    NotImplementedError,
    ValueError,
)


@dataclass
class RawDocument:
    """One JSON document as found in an archive or folder, or why its bytes could not be read.

    `name` is the input's name then the member's path inside it (`TL_뉴스_금융.zip/뉴스_금융_1.json`): what reports
    and the records' `source` show.
    """

    name: str
    content: bytes | None
    read_error: str | None = None


@dataclass
class SourceStats:
    """What one input (archive, folder or file) contributed, for the per-source table."""

    name: str
    documents: int = 0
    skipped_documents: int = 0
    skipped_annotations: int = 0
    labels: Counter = field(default_factory=Counter)


@dataclass
class Conflict:
    """A sentence whose copies carry different labels: the labels in first-seen order and where each copy is."""

    sentence: str
    labels: Counter
    sources: list[str]


@dataclass
class Deduplicated:
    """One record per sentence, and what deduplication found on the way."""

    records: list[dict[str, Any]]
    repeated_sentences: int
    duplicates_dropped: int
    conflicts: list[Conflict]
    conflict_copies_dropped: int


@dataclass
class Prepared(Deduplicated):
    """Everything a run produces: the records to write and the figures of the report."""

    sources: list[SourceStats]
    sentences_read: int
    problems: list[str]


def decode_member_name(info: zipfile.ZipInfo) -> str:
    """The member's real name: without the UTF-8 flag zipfile decodes the raw bytes as cp437, which turns the
    cp949 (or unflagged UTF-8) Korean names Windows and some Linux tools write into mojibake."""
    if info.flag_bits & ZIP_UTF8_FLAG:
        return info.filename
    raw = info.orig_filename.encode("cp437")
    for encoding in ("utf-8", "cp949"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename


def shown_name(name: str) -> str:
    """A file or member name as one printable, writable line: bytes that are not UTF-8 (which Python keeps as lone
    surrogates) become `\\xNN`, control characters (a newline in a member name) their escape, so one odd name can
    break neither a report line nor the output file."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def is_document_name(name: str) -> bool:
    """JSON documents only, leaving out the `._*` AppleDouble files macOS adds (under `__MACOSX/`) to its archives."""
    path = PurePosixPath(name)
    return path.suffix.lower() == ".json" and not path.name.startswith("._")


def too_large(size: int) -> str:
    return f"{size} bytes, more than the {MAX_DOCUMENT_BYTES // 2**20} MiB a document may have"


def open_archive(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError) as error:
        raise KoSentTypeError(f"{path}: not a readable zip archive ({one_line(error)})") from error


def iter_archive_documents(path: Path) -> Iterator[RawDocument]:
    """Read each JSON member straight from the archive, so a many-gigabyte download needs no extraction.

    A member is read only up to the size its header declares (zipfile stops there and checks the CRC), so the
    size check before reading also bounds the memory a member whose header lies can take.
    """
    with open_archive(path) as archive:
        members = sorted(
            ((decode_member_name(info), info) for info in archive.infolist() if not info.is_dir()),
            key=lambda pair: pair[0],
        )
        for name, info in members:
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
    """The documents of one command-line input: an archive, an extracted folder or a single JSON document."""
    if path.is_dir():
        return iter_folder_documents(path)
    if zipfile.is_zipfile(path):
        return iter_archive_documents(path)
    if path.suffix.lower() == ".json":
        return iter([read_file_document(path, shown_name(path.name))])
    raise KoSentTypeError(f"{path}: not a zip archive, a folder or a .json file")


def parse_document(document: RawDocument) -> tuple[dict[str, Any] | None, str | None]:
    """The document's JSON object, or None and a one-line reason why there is none to use.

    `json.loads` is given the bytes: it detects UTF-8 (with or without the byte-order mark AI Hub's Windows-made
    files sometimes start with), UTF-16 and UTF-32 by itself.
    """
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
    """Metadata as a string or null, so every column keeps one type (pyarrow, under `datasets`, refuses a mix).

    A list or object is not a label value: it becomes null rather than its Python spelling.
    """
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


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
    """Why a record can't be written as UTF-8, or None: JSON's `\\ud800` escape gives a lone surrogate, a string
    Python holds but no UTF-8 file can, and `ensure_ascii=False` output would fail on it at write time."""
    for key, value in record.items():
        try:
            if value is not None:
                value.encode("utf-8")
        except UnicodeEncodeError as error:
            return f"has a lone surrogate {value[error.start]!r} in its {key}, which UTF-8 cannot hold"
    return None


def annotation_record(annotation: dict[str, Any], metadata: dict[str, Any], source: str) -> dict[str, Any]:
    values = annotation.get("value") if isinstance(annotation.get("value"), dict) else {}
    return {
        "sentence": annotation["text"].strip(),
        "label": annotation["label"].strip(),
        **{key: optional_text(values.get(name)) for name, key in VALUE_FIELDS.items()},
        **{key: optional_text(metadata.get(name)) for name, key in METADATA_FIELDS.items()},
        "source": source,
    }


def document_records(data: dict[str, Any], source: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The document's valid annotations as records, and a one-line problem for each one left out."""
    metadata = data.get("metaData") if isinstance(data.get("metaData"), dict) else {}
    records, problems = [], []
    for position, annotation in enumerate(data["annotation"]):
        problem = annotation_problem(annotation)
        record = None if problem else annotation_record(annotation, metadata, source)
        problem = problem or unwritable_field(record)
        if problem:
            problems.append(f"skipped {source} annotation {position}: {problem}")
        else:
            records.append(record)
    return records, problems


def read_input(path: Path) -> tuple[list[dict[str, Any]], SourceStats, list[str]]:
    """All records of one input, its figures, and the problems met (each already one line naming archive and file)."""
    stats = SourceStats(shown_name(path.name))
    records, problems = [], []
    for document in iter_input_documents(path):
        stats.documents += 1
        data, problem = parse_document(document)
        if problem:
            stats.skipped_documents += 1
            problems.append(f"skipped {document.name}: {problem}")
            continue
        document_rows, annotation_problems = document_records(data, document.name)
        stats.skipped_annotations += len(annotation_problems)
        stats.labels.update(record["label"] for record in document_rows)
        records.extend(document_rows)
        problems.extend(annotation_problems)
    return records, stats, problems


def majority_label(labels: Counter) -> str:
    """The most frequent label; `Counter` keeps first-seen order and `max` returns the first maximum, so a tie goes
    to the label seen first."""
    return max(labels, key=labels.__getitem__)


def deduplicate(records: Iterable[dict[str, Any]], keep_conflicts: bool) -> Deduplicated:
    """One record per sentence, in first-seen order; sentences whose copies disagree are dropped (or resolved)."""
    copies: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        copies.setdefault(record["sentence"], []).append(record)
    kept, conflicts = [], []
    duplicates_dropped = conflict_copies_dropped = 0
    for sentence, group in copies.items():
        labels = Counter(record["label"] for record in group)
        if len(labels) == 1:
            kept.append(group[0])
            duplicates_dropped += len(group) - 1
            continue
        conflicts.append(Conflict(sentence, labels, [record["source"] for record in group]))
        if keep_conflicts:
            winner = majority_label(labels)
            kept.append(next(record for record in group if record["label"] == winner))
            conflict_copies_dropped += len(group) - 1
        else:
            conflict_copies_dropped += len(group)
    repeated = sum(1 for group in copies.values() if len(group) > 1)
    return Deduplicated(kept, repeated, duplicates_dropped, conflicts, conflict_copies_dropped)


def prepare(paths: Iterable[Path], keep_conflicts: bool = False) -> Prepared:
    """Read every input, then deduplicate across all of them (the same sentence may sit in two archives)."""
    records, sources, problems = [], [], []
    for path in paths:
        input_records, stats, input_problems = read_input(path)
        records.extend(input_records)
        sources.append(stats)
        problems.extend(input_problems)
    deduplicated = deduplicate(records, keep_conflicts)
    return Prepared(**vars(deduplicated), sources=sources, sentences_read=len(records), problems=problems)


def source_table(sources: list[SourceStats]) -> str:
    header = ["source", "documents", "skipped docs", "skipped annotations", "sentences", *SENTENCE_TYPES]
    totals = SourceStats("total")
    rows = []
    for stats in [*sources, totals]:
        if stats is not totals:
            totals.documents += stats.documents
            totals.skipped_documents += stats.skipped_documents
            totals.skipped_annotations += stats.skipped_annotations
            totals.labels.update(stats.labels)
        rows.append(
            [
                stats.name,
                stats.documents,
                stats.skipped_documents,
                stats.skipped_annotations,
                sum(stats.labels.values()),
                *(stats.labels[label] for label in SENTENCE_TYPES),
            ]
        )
    return format_table(header, rows)


def written_table(records: list[dict[str, Any]]) -> str:
    counts = Counter(record["label"] for record in records)
    total = len(records) or 1
    rows = [[label, counts[label], f"{100 * counts[label] / total:.1f}%"] for label in SENTENCE_TYPES]
    return format_table(["label", "written", "share"], [*rows, ["total", len(records), "100.0%"]])


def format_report(prepared: Prepared, keep_conflicts: bool) -> str:
    conflict_fate = "each kept once with its majority label" if keep_conflicts else "dropped"
    return "\n".join(
        [
            "Sentences read, per source:",
            source_table(prepared.sources),
            "",
            f"sentences read: {prepared.sentences_read}; repeated sentences: {prepared.repeated_sentences}; "
            f"exact duplicates dropped: {prepared.duplicates_dropped}; sentences with conflicting labels: "
            f"{len(prepared.conflicts)} ({conflict_fate}; {prepared.conflict_copies_dropped} copies dropped)",
            "",
            "Records written, per label:",
            written_table(prepared.records),
        ]
    )


def conflict_line(conflict: Conflict) -> str:
    labels = ", ".join(f"{label}×{count}" for label, count in conflict.labels.items())
    return f"conflicting labels ({labels}) for {conflict.sentence!r} in {', '.join(conflict.sources)}"


def report_conflicts(conflicts: list[Conflict]) -> None:
    """The first conflicts on stderr, one line each; the full AI Hub release has too many to list them all there."""
    for conflict in conflicts[:MAX_CONFLICTS_SHOWN]:
        print(f"{PROGRAM}: {conflict_line(conflict)}", file=sys.stderr)
    if len(conflicts) > MAX_CONFLICTS_SHOWN:
        more = len(conflicts) - MAX_CONFLICTS_SHOWN
        print(
            f"{PROGRAM}: … and {more} more conflicting sentences (--conflicts_output FILE lists all)", file=sys.stderr
        )


def serialize_conflicts(conflicts: list[Conflict]) -> Iterator[str]:
    for conflict in conflicts:
        row = {"sentence": conflict.sentence, "labels": dict(conflict.labels), "sources": conflict.sources}
        yield json.dumps(row, ensure_ascii=False) + "\n"


def serialize_records(records: list[dict[str, Any]], json_lines: bool) -> Iterator[str]:
    """JSON Lines, or a JSON array with one record per line (still one `json.load`, yet diffable and greppable)."""
    if json_lines:
        for record in records:
            yield json.dumps(record, ensure_ascii=False) + "\n"
        return
    yield "[\n"
    for position, record in enumerate(records, start=1):
        yield json.dumps(record, ensure_ascii=False) + ("\n" if position == len(records) else ",\n")
    yield "]\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Flatten AI Hub sentence-type archives (TL_*/VL_* zips) or extracted folders into one "
        "sentence-level JSON / JSON Lines file for kosenttype-train. Exit status: 0 written, 1 no sentence left to "
        "write, 2 the run could not go on, 128+N stopped by signal N (nothing half-written).",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="ARCHIVE_OR_FOLDER",
        help="zip archives, folders (every *.json below them) or single .json documents",
    )
    parser.add_argument(
        "--output",
        required=True,
        type=Path,
        help="output file; JSON Lines if it ends in .jsonl, else a JSON array (missing folders are created)",
    )
    parser.add_argument(
        "--keep-conflicts",
        "--keep_conflicts",
        dest="keep_conflicts",
        action="store_true",
        help="keep each sentence whose copies disagree once, with its majority label (first seen on "
        "a tie), instead of dropping it",
    )
    parser.add_argument(
        "--conflicts_output",
        "--conflicts-output",
        dest="conflicts_output",
        type=Path,
        help="also write every conflicting sentence with its labels and sources to this JSON Lines file",
    )
    return parser.parse_args(argv)


def check_inputs(inputs: list[Path]) -> None:
    missing = [str(path) for path in inputs if not path.exists()]
    if missing:
        raise KoSentTypeError(f"input not found: {', '.join(missing)}")


def check_output_path(path: Path, option: str) -> None:
    """Fail before reading the inputs (minutes, for the whole release) rather than after: an output that is a
    folder, or whose folder is a file or not writable. A folder that does not exist yet is created at write time."""
    existing = next(folder for folder in (path.parent, *path.parent.parents) if folder.exists())
    if not existing.is_dir():
        raise KoSentTypeError(f"cannot write {option} {path}: {existing} is a file, not a folder")
    if existing == path.parent:
        check_writable_file(path, option)


def check_outputs(args: argparse.Namespace) -> None:
    """Everything about the outputs that can be known before the run: no output may replace an input (a `.json`
    document given as both would be overwritten by the records read from it), nor the other output."""
    outputs = {"--output": args.output}
    if args.conflicts_output:
        outputs["--conflicts_output"] = args.conflicts_output
    for option, path in outputs.items():
        refuse_input_as_output(path, args.inputs, option)
        check_output_path(path, option)
    if args.conflicts_output and args.conflicts_output.resolve() == args.output.resolve():
        raise KoSentTypeError(f"--conflicts_output {args.conflicts_output} is the --output file; choose another path")


def run(args: argparse.Namespace) -> int:
    check_inputs(args.inputs)
    check_outputs(args)
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
        write_text_atomically(args.conflicts_output, serialize_conflicts(prepared.conflicts))
    print(f"wrote {len(prepared.records)} records to {args.output}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 written, 1 no sentence left to write, 2 the run could not go on, 128+N stopped by signal N."""
    return run_command(PROGRAM, lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
