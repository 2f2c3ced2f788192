"""Labelled sentence files for training: read with `datasets`, checked row by row, split for validation.

A first pass with the standard library finds each row's line (or array item) for the one-line errors, and refuses
what `datasets` would get wrong: an unclosed CSV quote or an extra field (pandas merges or shifts rows), JSON nested
too deeply (pyarrow crashes on it) and lone surrogate escapes. docs/training.md lists every check.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets import ClassLabel, Dataset, Features, Value, load_dataset

from .configuration_kosenttype import ATTRIBUTE_KOREAN_NAMES, ATTRIBUTE_LABELS
from .errors import KoSentTypeError, one_line

logger = logging.getLogger(__name__)

# Column pairs (text, label) looked for when none is named: ours and prepare_aihub.py's, then DACON's.
KNOWN_COLUMNS = (("sentence", "label"), ("문장", "유형"))
# The attribute axes a file may carry, each by its column names: prepare_aihub.py's, then DACON's.
ATTRIBUTE_COLUMNS = {axis: (axis, korean) for axis, korean in ATTRIBUTE_KOREAN_NAMES.items()}
# File suffix → the `datasets` builder that parses it.
BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv"}
# A JSON string escape of a UTF-16 surrogate: text only in a valid high + low pair, never alone.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


@dataclass(frozen=True)
class Example:
    """One labelled sentence: its stripped text, its label's index and each attribute axis's label index."""

    text: str
    label: int
    attributes: tuple[int, ...] = ()


def attribute_axes(requested: Sequence[str]) -> dict[str, list[str]]:
    """The axes `--attribute_columns` names (`polarity` or DACON's `극성`, …), each with its labels in head order."""
    axes: dict[str, list[str]] = {}
    for name in requested:
        axis = next((axis for axis, columns in ATTRIBUTE_COLUMNS.items() if name in columns), None)
        if axis is None:
            known = ", ".join(f"{axis} ({columns[1]})" for axis, columns in ATTRIBUTE_COLUMNS.items())
            raise KoSentTypeError(f"--attribute_columns: unknown attribute {name!r}; known: {known}")
        if axis in axes:
            raise KoSentTypeError(f"--attribute_columns names {axis} twice")
        axes[axis] = list(ATTRIBUTE_LABELS[axis])
    return axes


def read_labelled_file(
    path: str | os.PathLike,
    label_names: Sequence[str],
    text_column: str | None = None,
    label_column: str | None = None,
    attributes: dict[str, Sequence[str]] | None = None,
) -> list[Example]:
    """Read a JSON array, JSON Lines, CSV or TSV file of labelled sentences (labels as names or ids), refusing the
    first bad row. Columns: the named ones, else the first `KNOWN_COLUMNS` pair the file has; `attributes`
    ({axis: labels}) also reads each axis from its `ATTRIBUTE_COLUMNS` column."""
    path = Path(path)
    text = _read_text(path)
    if BUILDERS[path.suffix.lower()] == "csv":
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        header, positions = csv_row_positions(path, text, delimiter)
        # Every column as text: pandas would otherwise read a sentence like `2024` as a number.
        features = Features({name: Value("string") for name in header})
        table = _load_table(path, "csv", sep=delimiter, na_filter=False, features=features)
    else:
        positions = json_row_positions(path, text)
        table = _load_table(path, "json")
    if len(table) != len(positions):  # the two parsers disagree: never train on what only one of them saw
        raise KoSentTypeError(f"{path}: datasets read {len(table)} rows where the file has {len(positions)}")
    text_key, label_key = resolve_columns(path, table.column_names, text_column, label_column)
    attribute_keys = []
    for axis in attributes or {}:  # each axis's column: the first of its known names the file has
        key = next((name for name in ATTRIBUTE_COLUMNS[axis] if name in table.column_names), None)
        if key is None:
            expected = " or ".join(ATTRIBUTE_COLUMNS[axis])
            raise KoSentTypeError(f"{path}: no {axis} column {expected} (columns: {', '.join(table.column_names)})")
        attribute_keys.append(key)
    features = [ClassLabel(names=list(names)) for names in [label_names, *(attributes or {}).values()]]
    columns = [table[key] for key in (text_key, label_key, *attribute_keys)]
    examples = []
    for position, text, *labels in zip(positions, *columns, strict=True):
        label, *attribute_labels = (
            checked_label(path, position, key, value, feature)
            for key, value, feature in zip((label_key, *attribute_keys), labels, features, strict=True)
        )
        examples.append(Example(checked_text(path, position, text_key, text), label, tuple(attribute_labels)))
    return examples


def _read_text(path: Path) -> str:
    """The whole file as text, or one line saying why it can't be: missing, a folder, a format or encoding."""
    if path.is_dir():
        raise KoSentTypeError(f"{path}: is a folder, not a data file")
    if path.suffix.lower() not in BUILDERS:
        raise KoSentTypeError(f"{path}: unsupported format; expected one of {', '.join(BUILDERS)}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KoSentTypeError(f"{path}: no such file") from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise KoSentTypeError(f"{path}: UTF-16 text; save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")  # spreadsheet programs put a byte-order mark in front of the header
    except UnicodeDecodeError as error:
        raise KoSentTypeError(f"{path}: not UTF-8 text (byte {error.start})") from None


def csv_row_positions(path: Path, text: str, delimiter: str) -> tuple[list[str], list[str]]:
    """The header and `line N` of each data row, after checking that every row is one well-quoted line of at most
    the header's fields. A quote left open would otherwise swallow the rows after it into one text."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    positions: list[str] = []
    last_line = 0
    try:
        header = next(reader, None)
        if not header:
            raise KoSentTypeError(f"{path}: no rows")
        if len(set(header)) != len(header) or not all(header):
            raise KoSentTypeError(f"{path}: line 1: the header has an empty or repeated column name: {header}")
        last_line = reader.line_num
        for row in reader:
            first_line, last_line = last_line + 1, reader.line_num
            if not row:
                continue  # a blank line, which pandas skips too
            if last_line > first_line:
                raise KoSentTypeError(
                    f"{path}: line {first_line}: a quoted field runs on to line {last_line}; is a closing quote "
                    "missing? (each sentence must be on one line)"
                )
            if len(row) > len(header):
                raise KoSentTypeError(f"{path}: line {first_line}: {len(row)} fields, but the header has {len(header)}")
            positions.append(f"line {first_line}")
    except csv.Error as error:  # strict: a quote never closed (end of data), or text after a closing quote
        raise KoSentTypeError(
            f"{path}: line {last_line + 1}: a quoted field opened here is not closed properly ({error})"
        ) from None
    return header, positions


def json_row_positions(path: Path, text: str) -> list[str]:
    """`item N` of each object of a JSON array, or `line N` of each of JSON Lines, after checking that each row
    parses, is an object, is nested no deeper than Python's parser goes and holds no lone surrogate."""
    if text.lstrip().startswith("["):
        items = _parse_json(path, text)
        numbered = [(f"item {index}", item) for index, item in enumerate(items, start=1)]
    else:
        numbered = [
            (f"line {number}", _parse_json(path, line, f"line {number}"))
            for number, line in enumerate(text.split("\n"), start=1)  # not splitlines(): JSON text may hold U+2028
            if line.strip()
        ]
    check_surrogates = SURROGATE_ESCAPE.search(text) is not None
    for position, row in numbered:
        if not isinstance(row, dict):
            raise KoSentTypeError(f"{path}: {position}: expected an object with the text and label, got {row!r:.60}")
        try:
            if check_surrogates:
                json.dumps(row, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as error:
            surrogate = error.object[error.start : error.end].encode("unicode_escape").decode("ascii")
            raise KoSentTypeError(
                f"{path}: {position}: a lone surrogate escape ({surrogate}) is not text; fix or drop the row"
            ) from None
    if not numbered:
        raise KoSentTypeError(f"{path}: no rows")
    return [position for position, _ in numbered]


def _parse_json(path: Path, text: str, position: str | None = None) -> Any:
    """One JSON value: a line of JSON Lines (at `position`), or a whole file (its error names the line)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise KoSentTypeError(f"{path}: {position or f'line {error.lineno}'}: invalid JSON ({error.msg})") from None
    except RecursionError:
        where = f"{position}: " if position else ""
        raise KoSentTypeError(f"{path}: {where}JSON nested too deeply to be a table of sentences") from None


def _load_table(path: Path, builder: str, **options: Any) -> Dataset:
    """The table, read with no progress bars or info lines from `datasets`: a bad file must end in one line."""
    bars_were_enabled, verbosity = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        return load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as error:  # datasets wraps the parser's own error (pyarrow's, pandas') in its own
        raise KoSentTypeError(f"{path}: cannot be read as a table: {one_line(error.__cause__ or error)}") from None
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars_were_enabled:
            datasets.enable_progress_bars()


def resolve_columns(
    path: Path, available: Sequence[str], text_column: str | None, label_column: str | None
) -> tuple[str, str]:
    """The (text, label) columns: the named ones, else the first known pair the file has."""
    candidates = [(text_column or text, label_column or label) for text, label in KNOWN_COLUMNS]
    for text, label in candidates:
        if text in available and label in available:
            return text, label
    for text, label in candidates:
        if text in available:
            return text, label
    expected = text_column or " or ".join(text for text, _ in KNOWN_COLUMNS)
    raise KoSentTypeError(f"{path}: no text column {expected} (columns: {', '.join(available)}); set --text_column")


def checked_text(path: Path, position: str, key: str, value: Any) -> str:
    """The stripped sentence, or the row's error: missing, not text, or nothing but spaces and control characters."""
    if value is None:
        raise KoSentTypeError(f"{path}: {position}: missing field '{key}'")
    if not isinstance(value, str):
        raise KoSentTypeError(f"{path}: {position}: '{key}' is not text: {value!r:.60}")
    if all(unicodedata.category(character)[0] in "CZ" for character in value):
        raise KoSentTypeError(f"{path}: {position}: empty text in '{key}'")
    return value.strip()


def checked_label(path: Path, position: str, key: str, value: Any, labels: ClassLabel) -> int:
    """The label's index: `ClassLabel` reads a name or an id (CSV ids as text; -1, "no label", is refused)."""
    if value is None or value == "":
        raise KoSentTypeError(f"{path}: {position}: missing field '{key}'")
    index = -1
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        with suppress(ValueError):
            index = labels.str2int(str(value))
    if index < 0:
        raise KoSentTypeError(
            f"{path}: {position}: unknown label {value!r} in '{key}'; expected one of {', '.join(labels.names)} "
            f"or an id 0-{labels.num_classes - 1}"
        )
    return index


def report_shared_sentences(
    train: Sequence[Example], other: Sequence[Example], train_name: str, other_name: str
) -> int:
    """Warn about sentences of an evaluation set that training also sees: they inflate its scores."""
    training_texts = {example.text for example in train}
    shared = list(dict.fromkeys(example.text for example in other if example.text in training_texts))
    if shared:
        samples = "; ".join(repr(text if len(text) <= 40 else text[:39] + "…") for text in shared[:3])
        logger.warning(
            f"{len(shared)} sentences of {other_name} also appear in {train_name} (its scores are optimistic), "
            f"e.g. {samples}"
        )
    return len(shared)


def hold_out_validation(examples: Sequence[Example], percentage: int, seed: int) -> tuple[list[Example], list[Example]]:
    """Split off a stratified validation part, so a lone training file still gets a best-checkpoint choice."""
    from sklearn.model_selection import train_test_split

    labels = [example.label for example in examples]
    stratify = labels if min(Counter(labels).values()) >= 2 else None
    train, validation = train_test_split(
        list(examples), test_size=percentage / 100, random_state=seed, stratify=stratify
    )
    return train, validation


def cross_validation_folds(
    examples: Sequence[Example], folds: int, seed: int, label_names: Sequence[str], source: str
) -> list[tuple[list[Example], list[Example]]]:
    """(train, held-out) pairs of stratified k-fold cross-validation; every present type must reach every fold."""
    from sklearn.model_selection import StratifiedKFold

    counts = Counter(example.label for example in examples)
    label, fewest = min(counts.items(), key=lambda item: item[1])
    if fewest < folds:
        raise KoSentTypeError(
            f"--cv_folds {folds} needs at least {folds} sentences of each type in {source}, but {label_names[label]} "
            f"has {fewest}; use fewer folds"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    labels = [example.label for example in examples]
    return [
        ([examples[index] for index in train], [examples[index] for index in held_out])
        for train, held_out in splitter.split(labels, labels)
    ]


def label_counts(examples: Sequence[Example], label_names: Sequence[str], axis: int | None = None) -> list[int]:
    """How many examples of each label (of attribute axis `axis` if given), in the labels' order."""
    counts = Counter(example.label if axis is None else example.attributes[axis] for example in examples)
    return [counts[index] for index in range(len(label_names))]


def to_dataset(examples: Sequence[Example], tokenizer: Any, max_length: int, label_names: Sequence[str]) -> Dataset:
    """Tokenized once up front (padding is the collator's), with `attribute_targets` (one id per axis) if any."""
    columns: dict[str, list] = {
        "text": [example.text for example in examples],
        "labels": [example.label for example in examples],
    }
    features = Features({"text": Value("string"), "labels": ClassLabel(names=list(label_names))})
    if examples and examples[0].attributes:
        columns["attribute_targets"] = [list(example.attributes) for example in examples]
        features["attribute_targets"] = datasets.Sequence(Value("int64"))
    dataset = Dataset.from_dict(columns, features=features)
    return dataset.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
    )
