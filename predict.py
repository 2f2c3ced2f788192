"""Classify large inputs quickly and in constant memory: files or streams of sentences in, one record per line out.

    python predict.py --model DIR_OR_HUB_ID --input corpus.txt --output labels.jsonl

Inside each chunk of the input, sentences are sorted by token length so that a batch pads to almost nothing, run
under `torch.inference_mode` (optionally in bf16 or int8), and put back in input order before they are written.
Lines that can't be classified (empty, not UTF-8, bad JSON, no text field) get an output record with an `error`
instead of stopping the run. Exit status: 0 if every line was classified, 1 if some lines failed, 2 if the run
could not start (bad arguments, missing input, model not found).

The same engine is a Python call: `load_classifier` then `classify(sentences, model, tokenizer)`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, Literal, TextIO

import torch
from torch import nn
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    HfArgumentParser,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils.logging import disable_progress_bar

from kosenttype.atomic_output import atomic_text_output

PROGRAM = "kosenttype-predict"
DEFAULT_TEXT_COLUMNS = ("sentence", "text", "문장")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}
# What `--precision auto` picks on a CPU with native bf16 (AVX-512 BF16 or AMX). Against fp32 on trained
# classifiers over 2,000 dacon sentences (benchmarks/bench_predict.py; bar: same label >= 99.5%, max probability
# difference <= 0.02), bf16 gave the same label on 99.80-99.95% with max difference 0.005-0.007: it is the
# default. int8 (per-channel) passed too (99.55-99.95%, 0.017-0.019) but with little margin, and only on small
# models (2-4 layers), where the 12-layer backbone accumulates more error: it stays opt-in. GPUs stay on fp32 by
# default: no GPU agreement run has been made.
AUTO_CPU_PRECISION_WITH_BF16 = "bf16"
INPUT_FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
SCORE_DECIMALS = 6
DEFAULT_BATCH_SIZE = 64
# On a CPU, batches of about a thousand tokens ran fastest (benchmarks/bench_predict.py, 12-layer model, fp32, bf16
# and int8 alike: up to 20% faster than 4,096-token batches, whose activations no longer fit the caches). GPUs
# want the largest batch that fits, so they get no token limit by default.
CPU_BATCH_TOKENS = 1024


class FatalError(Exception):
    """A problem that stops the whole run (as opposed to one bad line, which becomes an error record)."""


# ---------------------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineError:
    """Why one input record can't be classified: `kind` is the summary's key, `message` goes into the output."""

    kind: str
    message: str


@dataclass(frozen=True)
class InputRecord:
    """One input line/row: its id (the input's own id, or its line/row number) and its text or its error."""

    id: Any
    text: str | None = None
    error: LineError | None = None


@dataclass
class Prediction:
    """The result for one input record, in input order.

    `top_k` holds (label, probability) pairs, most probable first; `label`/`score` are its first pair. A record
    that couldn't be classified has `error` set and no label.
    """

    id: Any
    label: str | None = None
    score: float | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    error: LineError | None = None

    def to_record(self, with_top_k: bool) -> dict[str, Any]:
        """The output record: scores rounded, since six decimals are more than any decision needs."""
        record: dict[str, Any] = {"id": self.id, "label": self.label, "score": _rounded(self.score)}
        if with_top_k and self.error is None:
            record["top_k"] = [{"label": label, "score": _rounded(score)} for label, score in self.top_k]
        if self.error is not None:
            record["error"] = self.error.message
        return record


def _rounded(score: float | None) -> float | None:
    return None if score is None else round(score, SCORE_DECIMALS)


def _text_error(text: Any, where: str) -> LineError | None:
    """The error of a would-be sentence, if any: not a string, blank, or carrying bytes that weren't UTF-8."""
    if not isinstance(text, str):
        return LineError("not_text", f"{where}: the text is {type(text).__name__}, not a string")
    if not text.strip():
        return LineError("empty", f"{where}: empty sentence")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:  # lone surrogates: how `surrogateescape` carries undecodable bytes
        byte = ord(text[error.start]) - 0xDC00 if 0xDC80 <= ord(text[error.start]) <= 0xDCFF else None
        detail = f"byte 0x{byte:02x}" if byte is not None else "a lone surrogate"
        return LineError("invalid_utf8", f"{where}: not valid UTF-8 ({detail} at character {error.start})")
    return None


def sentence_record(record_id: Any, text: Any, where: str) -> InputRecord:
    """An input record for `text`, or an error record saying why it can't be classified."""
    error = _text_error(text, where)
    return InputRecord(record_id, error=error) if error else InputRecord(record_id, text=text)


# ---------------------------------------------------------------------------------------------------------------
# Readers: lazy generators of InputRecord, so memory never depends on the input's length
# ---------------------------------------------------------------------------------------------------------------


def _decoded_lines(stream: BinaryIO) -> Iterator[tuple[int, str]]:
    """(line number from 1, text) for each line; undecodable bytes survive as lone surrogates.

    Decoding line by line, instead of letting a text stream fail, is what lets one bad line not stop the run.
    """
    for number, raw in enumerate(stream, start=1):
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        yield number, raw.rstrip(b"\r\n").decode("utf-8", errors="surrogateescape")


def read_txt(stream: BinaryIO) -> Iterator[InputRecord]:
    """One sentence per line; the id is the line number."""
    for number, line in _decoded_lines(stream):
        yield sentence_record(number, line, f"line {number}")


def read_jsonl(stream: BinaryIO, text_column: str | None, id_column: str) -> Iterator[InputRecord]:
    """One JSON object per line; the id is the object's `id_column` if present, else the line number."""
    for number, line in _decoded_lines(stream):
        where = f"line {number}"
        undecodable = _text_error(line, where)
        if undecodable is not None and undecodable.kind == "invalid_utf8":
            yield InputRecord(number, error=undecodable)
            continue
        if not line.strip():
            yield InputRecord(number, error=LineError("empty", f"{where}: empty line"))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            yield InputRecord(number, error=LineError("invalid_json", f"{where}: not valid JSON ({error.msg})"))
            continue
        if not isinstance(obj, dict):
            message = f"{where}: expected a JSON object, got {type(obj).__name__}"
            yield InputRecord(number, error=LineError("invalid_json", message))
            continue
        record_id = obj.get(id_column, number)
        column = _find_text_column(obj.keys(), text_column)
        if column is None:
            yield InputRecord(
                record_id, error=LineError("missing_text", f"{where}: {_missing_text(obj, text_column, 'field')}")
            )
            continue
        yield sentence_record(record_id, obj[column], where)


def _find_text_column(keys: Iterable[str], text_column: str | None) -> str | None:
    """The requested column, or else the first of the usual names, that `keys` has."""
    candidates = (text_column,) if text_column else DEFAULT_TEXT_COLUMNS
    present = set(keys)
    return next((name for name in candidates if name in present), None)


def _missing_text(names: Iterable[str], text_column: str | None, noun: str) -> str:
    """'no 'sentence' / 'text' / '문장' field (fields: title)': what was looked for, and what there was."""
    wanted = repr(text_column) if text_column else " / ".join(repr(name) for name in DEFAULT_TEXT_COLUMNS)
    return f"no {wanted} {noun} ({noun}s: {', '.join(map(str, names)) or 'none'})"


def read_csv(stream: BinaryIO, text_column: str | None, id_column: str, name: str) -> Iterator[InputRecord]:
    """A CSV with a header row; the id is the `id_column` value if the header has one, else the row number.

    `csv.reader` rather than `DictReader`: DictReader silently drops blank rows, and every row must come out.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    rows = csv.reader(text)
    header = next(rows, None)
    if header is None:
        raise FatalError(f"{name}: empty CSV file (expected a header row)")
    column = _find_text_column(header, text_column)
    if column is None:
        raise FatalError(f"{name}: the CSV header has {_missing_text(header, text_column, 'column')}")
    text_index = header.index(column)
    id_index = header.index(id_column) if id_column in header else None
    number = 0
    try:
        for number, row in enumerate(rows, start=1):
            yield _csv_record(number, row, text_index, id_index, column)
    except csv.Error as error:  # e.g. an unclosed quote: the rest of the file can't be split into rows
        raise FatalError(f"{name} row {number + 1}: malformed CSV ({error})") from error


def _csv_record(number: int, row: list[str], text_index: int, id_index: int | None, column: str) -> InputRecord:
    where = f"row {number}"
    record_id = row[id_index] if id_index is not None and id_index < len(row) else number
    if text_index >= len(row):
        message = f"{where}: empty row" if not row else f"{where}: no value in column {column!r}"
        return InputRecord(record_id, error=LineError("empty" if not row else "missing_text", message))
    return sentence_record(record_id, row[text_index], where)


def read_records(
    stream: BinaryIO, input_format: str, text_column: str | None, id_column: str, name: str
) -> Iterator[InputRecord]:
    if input_format == "txt":
        return read_txt(stream)
    if input_format == "jsonl":
        return read_jsonl(stream, text_column, id_column)
    return read_csv(stream, text_column, id_column, name)


# ---------------------------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------------------------


class JsonLinesWriter:
    def __init__(self, stream: TextIO, with_top_k: bool) -> None:
        self.stream = stream
        self.with_top_k = with_top_k

    def write(self, prediction: Prediction) -> None:
        self.stream.write(json.dumps(prediction.to_record(self.with_top_k), ensure_ascii=False) + "\n")


class CsvWriter:
    """id,label,score[,top_k],error — top_k as a JSON list in one cell, to keep the columns fixed."""

    def __init__(self, stream: TextIO, with_top_k: bool) -> None:
        self.with_top_k = with_top_k
        self.columns = ["id", "label", "score", *(["top_k"] if with_top_k else []), "error"]
        self.writer = csv.DictWriter(stream, fieldnames=self.columns, lineterminator="\n")
        self.writer.writeheader()

    def write(self, prediction: Prediction) -> None:
        record = prediction.to_record(self.with_top_k)
        if "top_k" in record:
            record["top_k"] = json.dumps(record["top_k"], ensure_ascii=False)
        self.writer.writerow(record)


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
    target = Path(path)
    if not target.parent.is_dir():
        raise FatalError(f"cannot write {path}: folder {target.parent} does not exist")
    if target.is_dir():
        raise FatalError(f"cannot write {path}: it is a folder")
    if not os.access(target.parent, os.W_OK):
        raise FatalError(f"cannot write {path}: folder {target.parent} is not writable")
    with atomic_text_output(target) as stream:
        yield stream


# ---------------------------------------------------------------------------------------------------------------
# Model loading and precision
# ---------------------------------------------------------------------------------------------------------------


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: without them oneDNN emulates bf16 matmuls, which then run slower than fp32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise FatalError(f"unknown device {device!r} (expected cpu, cuda, cuda:N or auto)") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise FatalError(f"--device {device}: no CUDA device is available here (use --device cpu or auto)")
    return resolved


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision to run in, refusing combinations the hardware would run badly or not at all."""
    if precision not in PRECISIONS:
        raise FatalError(f"unknown precision {precision!r} (expected one of: {', '.join(PRECISIONS)})")
    on_cpu = device.type == "cpu"
    if precision == "auto":
        return AUTO_CPU_PRECISION_WITH_BF16 if on_cpu and cpu_has_native_bf16() else "fp32"
    if precision == "int8" and not on_cpu:
        raise FatalError("--precision int8 (dynamic quantization) runs on CPU only; use bf16 or fp16 on a GPU")
    if precision == "fp16" and on_cpu:
        raise FatalError("--precision fp16 needs a GPU; on a CPU use bf16 (where supported), int8 or fp32")
    if precision == "bf16" and on_cpu and not cpu_has_native_bf16():
        raise FatalError("--precision bf16: this CPU has no AVX-512 BF16 or AMX, so bf16 would be slower than fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise FatalError("--precision bf16: this GPU does not support bf16; use fp16")
    return precision


def quantize_linear_layers(module: nn.Module) -> None:
    """int8 dynamic quantization, in place, of every nn.Linear inside `module`: int8 weights with one scale per
    output channel (per-tensor scales moved probabilities about 1.5× further from fp32), activations quantized
    on the fly per batch."""
    with warnings.catch_warnings():  # torch marks eager quantization deprecated in favour of torchao
        warnings.simplefilter("ignore")
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        torch.ao.quantization.quantize_dynamic(module, {nn.Linear: qconfig}, inplace=True)


def prepare_model(model: PreTrainedModel, device: torch.device, precision: str) -> PreTrainedModel:
    """Put a model on `device` in `precision` (one of fp32/bf16/fp16/int8), in eval mode.

    int8 quantizes the encoder only: the head is a few thousand weights, and keeping it fp32 costs nothing.
    """
    model = model.eval().to(device=device, dtype=TORCH_DTYPES[precision])
    if precision == "int8":
        quantize_linear_layers(model.base_model)
    return model


def load_classifier(
    model_name_or_path: str | os.PathLike,
    *,
    device: str = "auto",
    precision: str = "auto",
    revision: str | None = None,
    trust_remote_code: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load any Hugging Face sequence classifier and its tokenizer, ready to `classify` with.

    `precision="auto"` is bf16 on CPUs with native bf16 and fp32 elsewhere; see `resolve_precision` for what
    is refused where. Raises `FatalError` with one readable line when the model can't be loaded.
    """
    resolved_device = resolve_device(device)
    resolved_precision = resolve_precision(precision, resolved_device)
    if _looks_like_a_path(model_name_or_path) and not Path(model_name_or_path).exists():
        raise FatalError(f"model folder not found: {model_name_or_path}")  # not a Hub id: say so plainly
    options = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, **options)
        # Loaded straight in the target dtype: a bf16 model then never holds an fp32 copy of its weights.
        model = AutoModelForSequenceClassification.from_pretrained(
            model_name_or_path, dtype=TORCH_DTYPES[resolved_precision], **options
        )
    except (OSError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FatalError(f"cannot load model {model_name_or_path}: {first_line}") from error
    return prepare_model(model, resolved_device, resolved_precision), tokenizer


def _looks_like_a_path(name: str | os.PathLike) -> bool:
    text = os.fspath(name)
    return isinstance(name, os.PathLike) or os.path.isabs(text) or text.startswith(("./", "../", "~"))


def model_precision(model: PreTrainedModel) -> str:
    """A short name for the precision a prepared model runs in, for messages."""
    if any(type(module).__module__.startswith("torch.ao.nn.quantized") for module in model.modules()):
        return "int8"
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(model.dtype, str(model.dtype))


# ---------------------------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineSettings:
    """How `classify_records` batches. `max_batch_tokens`: None picks the device's default (CPU_BATCH_TOKENS on a
    CPU, no limit on a GPU), 0 means no limit."""

    batch_size: int = DEFAULT_BATCH_SIZE
    max_length: int = 256
    top_k: int = 1
    chunk_size: int = 1024
    max_batch_tokens: int | None = None
    progress: Callable[[int], None] | None = None


def length_sorted_batches(lengths: list[int], batch_size: int, max_batch_tokens: int | None) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length, so that padding each to its longest wastes little.

    A batch closes at `batch_size` sentences, or before its padded size (sentences × longest) would pass
    `max_batch_tokens`, which keeps batches of long sentences from blowing up attention memory.
    """
    batch: list[int] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        too_many_tokens = bool(max_batch_tokens) and (len(batch) + 1) * lengths[index] > max_batch_tokens
        if batch and (len(batch) == batch_size or too_many_tokens):
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def output_activation(model: PreTrainedModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """Softmax over the labels, or a sigmoid per label for multi-label and single-output heads — as `pipeline`."""
    if model.config.problem_type == "multi_label_classification" or model.config.num_labels == 1:
        return torch.sigmoid
    return lambda logits: logits.softmax(dim=-1)


def _probabilities(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, encodings: dict[str, list], batch: list[int]
) -> torch.Tensor:
    """Pad one batch to its own longest sentence, run the model, and return fp32 probabilities on the CPU."""
    features = {name: [values[index] for index in batch] for name, values in encodings.items()}
    padded = tokenizer.pad(
        features,
        padding=True,
        pad_to_multiple_of=8 if model.device.type == "cuda" else None,  # tensor cores want multiples of 8
        return_tensors="pt",
    )
    inputs = {name: tensor.to(model.device, non_blocking=True) for name, tensor in padded.items()}
    logits = model(**inputs).logits
    return output_activation(model)(logits.float()).cpu()


def _classify_chunk(
    chunk: list[InputRecord],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    settings: EngineSettings,
) -> Iterator[Prediction]:
    """Classify one chunk: tokenize without padding, run length-sorted batches, and yield in input order."""
    positions = [position for position, record in enumerate(chunk) if record.error is None]
    probabilities = torch.zeros(len(positions), model.config.num_labels)
    if positions:
        encodings = tokenizer(
            [chunk[position].text for position in positions],
            truncation=True,
            max_length=settings.max_length,
            return_attention_mask=False,
        )
        encodings = {name: encodings[name] for name in tokenizer.model_input_names if name in encodings}
        lengths = [len(ids) for ids in encodings["input_ids"]]
        for batch in length_sorted_batches(lengths, settings.batch_size, settings.max_batch_tokens):
            probabilities[batch] = _probabilities(model, tokenizer, encodings, batch)
            if settings.progress is not None:
                settings.progress(len(batch))
    k = min(settings.top_k, model.config.num_labels)
    top_scores, top_ids = probabilities.topk(k, dim=-1)
    ranked = iter(zip(top_scores.tolist(), top_ids.tolist(), strict=True))
    id2label = model.config.id2label
    for record in chunk:
        if record.error is not None:
            yield Prediction(record.id, error=record.error)
            continue
        scores, label_ids = next(ranked)
        top_k = [(id2label[label_id], score) for score, label_id in zip(scores, label_ids, strict=True)]
        yield Prediction(record.id, label=top_k[0][0], score=top_k[0][1], top_k=top_k)


def resolve_settings(
    settings: EngineSettings, tokenizer: PreTrainedTokenizerBase, device: torch.device
) -> EngineSettings:
    """The settings a run really uses: `max_length` capped at the tokenizer's own limit (the model's positions,
    past which the model would crash), and the device's default token budget."""
    limit = tokenizer.model_max_length
    max_length = (
        min(settings.max_length, limit) if isinstance(limit, int) and limit < 1_000_000 else settings.max_length
    )
    max_batch_tokens = settings.max_batch_tokens
    if max_batch_tokens is None:
        max_batch_tokens = CPU_BATCH_TOKENS if device.type == "cpu" else 0
    return replace(settings, max_length=max_length, max_batch_tokens=max_batch_tokens)


def _silence_pad_advice(tokenizer: PreTrainedTokenizerBase) -> None:
    """transformers 4.x advises once, on stderr, to pad through `__call__` instead: that would tokenize every
    sentence twice here (once to sort by length, once per batch), which is slower, not faster."""
    if isinstance(getattr(tokenizer, "deprecation_warnings", None), dict):
        tokenizer.deprecation_warnings["Asking-to-pad-a-fast-tokenizer"] = True


def classify_records(
    records: Iterable[InputRecord],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    settings: EngineSettings,
) -> Iterator[Prediction]:
    """One prediction per record, in input order, holding at most one chunk of records in memory."""
    settings = resolve_settings(settings, tokenizer, model.device)
    _silence_pad_advice(tokenizer)
    records = iter(records)
    with torch.inference_mode():
        while chunk := list(islice(records, settings.chunk_size)):
            yield from _classify_chunk(chunk, model, tokenizer, settings)


def classify(
    sentences: Iterable[str],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int = 256,
    top_k: int = 1,
    chunk_size: int = 1024,
    max_batch_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Prediction]:
    """Classify `sentences` lazily, yielding one `Prediction` per sentence in input order (`id` = its index).

    A blank or non-string item yields a Prediction with `error` set instead of raising, as a bad line does
    in the command. A batch holds at most `batch_size` sentences and, padded, at most `max_batch_tokens` tokens
    (None: 1,024 on a CPU, no limit on a GPU; 0: no limit). `progress` is called with the number of sentences
    each batch finished.
    """
    records = (sentence_record(index, text, f"item {index}") for index, text in enumerate(sentences))
    settings = EngineSettings(batch_size, max_length, top_k, chunk_size, max_batch_tokens, progress)
    return classify_records(records, model, tokenizer, settings)


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class PredictArguments:
    model: str = field(metadata={"help": "A saved classifier folder or a Hub model id."})
    input: str = field(metadata={"help": "The input file, or - for standard input."})
    output: str = field(default="-", metadata={"help": "The output file, or - for standard output."})
    format: Literal["txt", "jsonl", "csv"] | None = field(
        default=None, metadata={"help": "Input format; by default from the extension (.jsonl, .csv), else txt."}
    )
    output_format: Literal["jsonl", "csv"] | None = field(
        default=None, metadata={"help": "Output format; by default csv for a .csv output, else JSON Lines."}
    )
    text_column: str | None = field(
        default=None, metadata={"help": "The field/column holding the sentence (default: sentence, text or 문장)."}
    )
    id_column: str = field(default="id", metadata={"help": "The field/column whose value becomes the record id."})
    batch_size: int = field(default=DEFAULT_BATCH_SIZE, metadata={"help": "Sentences per forward pass, at most."})
    max_batch_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Also close a batch before its padded size passes this many tokens "
            f"(default: {CPU_BATCH_TOKENS} on a CPU, no limit on a GPU; 0: no limit)."
        },
    )
    max_length: int = field(default=256, metadata={"help": "Truncate sentences to this many tokens."})
    top_k: int = field(default=1, metadata={"help": "Also write the N most probable labels with their scores."})
    chunk_size: int = field(default=1024, metadata={"help": "Sentences read, sorted and written at a time."})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:N, or auto (cuda when available)."})
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = field(
        default="auto",
        metadata={
            "help": "auto = bf16 on CPUs with AVX-512 BF16/AMX, else fp32. int8 (CPU) and fp16 (GPU) are opt-in."
        },
    )
    threads: int | None = field(
        default=None,
        metadata={"help": "CPU threads for torch (default: torch's, one per core). 1 is faster on a busy machine."},
    )
    revision: str | None = field(default=None, metadata={"help": "The Hub revision (branch, tag or commit)."})

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_length", "top_k", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 0:
            raise ValueError(f"--max_batch_tokens must be 0 (no limit) or more, got {self.max_batch_tokens}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {self.threads}")


def infer_input_format(args: PredictArguments) -> str:
    if args.format:
        return args.format
    return INPUT_FORMATS.get(Path(args.input).suffix.lower(), "txt") if args.input != "-" else "txt"


def infer_output_format(args: PredictArguments) -> str:
    if args.output_format:
        return args.output_format
    return "csv" if args.output != "-" and Path(args.output).suffix.lower() == ".csv" else "jsonl"


@contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    if not Path(path).exists():
        raise FatalError(f"input file not found: {path}")
    if Path(path).is_dir():
        raise FatalError(f"input is a folder, not a file: {path}")
    with open(path, "rb") as stream:
        yield stream


class RunSummary:
    """Counts what the run did, for the one-line report on stderr that decides the exit status."""

    def __init__(self) -> None:
        self.classified = 0
        self.failures: Counter[str] = Counter()
        self.started = time.perf_counter()

    def add(self, prediction: Prediction) -> None:
        if prediction.error is None:
            self.classified += 1
        else:
            self.failures[prediction.error.kind] += 1

    @property
    def exit_status(self) -> int:
        return 1 if self.failures else 0

    def line(self, destination: str) -> str:
        seconds = time.perf_counter() - self.started
        total = self.classified + sum(self.failures.values())
        failed = ", ".join(f"{count} {kind}" for kind, count in sorted(self.failures.items()))
        failed_part = f", {sum(self.failures.values())} failed ({failed})" if self.failures else ""
        rate = self.classified / seconds if seconds > 0 else 0.0
        return (
            f"{PROGRAM}: {total} records: {self.classified} classified{failed_part} "
            f"in {seconds:.1f} s ({rate:.1f} sentences/s) -> {destination}"
        )


@contextmanager
def progress_bar() -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar on stderr with sentences/s, only when stderr is a terminal (never in logs or pipes)."""
    if not sys.stderr.isatty():
        yield None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield None
        return
    with tqdm(unit=" sentences", file=sys.stderr, dynamic_ncols=True) as bar:
        yield bar.update


def run(args: PredictArguments) -> int:
    input_format, output_format = infer_input_format(args), infer_output_format(args)
    writer_class = CsvWriter if output_format == "csv" else JsonLinesWriter
    if args.threads:
        torch.set_num_threads(args.threads)
    if not sys.stderr.isatty():  # keep logs to the summary: no "Loading weights" bars
        disable_progress_bar()
    with open_input(args.input) as source:  # before loading the model: a typo in a path should fail fast
        model, tokenizer = load_classifier(
            args.model, device=args.device, precision=args.precision, revision=args.revision
        )
        print(f"{PROGRAM}: {args.model} on {model.device} in {model_precision(model)}", file=sys.stderr)
        summary = RunSummary()
        with open_output(args.output) as destination, progress_bar() as progress:
            records = read_records(source, input_format, args.text_column, args.id_column, args.input)
            settings = EngineSettings(
                args.batch_size, args.max_length, args.top_k, args.chunk_size, args.max_batch_tokens, progress
            )
            writer = writer_class(destination, with_top_k=args.top_k > 1)
            for prediction in classify_records(records, model, tokenizer, settings):
                writer.write(prediction)
                summary.add(prediction)
    print(summary.line("standard output" if args.output == "-" else args.output), file=sys.stderr)
    return summary.exit_status


def parse_arguments(argv: list[str] | None) -> PredictArguments:
    parser = HfArgumentParser(PredictArguments, prog=PROGRAM, description=__doc__.split("\n\n")[0])
    try:
        (args,) = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    except ValueError as error:
        raise FatalError(str(error)) from error
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 all lines classified, 1 some lines failed (see their `error`), 2 the run could not go on."""
    try:
        return run(parse_arguments(argv))
    except FatalError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 2
    except SystemExit as exit_request:  # argparse: --help (0) or a bad argument (2, after its usage line)
        return exit_request.code if isinstance(exit_request.code, int) else 2
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted (an output file is only put in place at the end: none was)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush can't fail again
        return 1


if __name__ == "__main__":
    sys.exit(main())
