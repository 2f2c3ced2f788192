"""predict.py: order through length sorting, every input/output format, every bad line, streaming, agreement."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import torch
from conftest import KOREAN_SENTENCES, REPO_ROOT, TINY_MAX_LENGTH
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from kosenttype import SENTENCE_TYPES, engine, torch_backend
from kosenttype.batching import length_sorted_batches
from kosenttype.engine import load_classifier
from kosenttype.errors import KoSentTypeError
from kosenttype.predict import main
from kosenttype.torch_backend import resolve_precision

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Sentences of very different token lengths, in an order that length sorting must undo and restore.
VARIED_SENTENCES = [
    KOREAN_SENTENCES[4] + " " + KOREAN_SENTENCES[6] + " " + KOREAN_SENTENCES[0],
    "네.",
    KOREAN_SENTENCES[1],
    KOREAN_SENTENCES[9] + " " + KOREAN_SENTENCES[10],
    "좋아요",
    *KOREAN_SENTENCES,
    " ".join(KOREAN_SENTENCES),  # longer than the tiny model's 64 tokens: truncated
    "그렇다.",
]


@pytest.fixture(scope="module")
def fp32_classifier(tiny_model_dir):
    return load_classifier(tiny_model_dir, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """Probabilities computed one sentence at a time (no batching, no padding, no sorting), label by label."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, trust_remote_code=True).eval()
    cache: dict[str, dict[str, float]] = {}

    def probabilities(sentence: str) -> dict[str, float]:
        if sentence not in cache:
            inputs = tokenizer(sentence, truncation=True, max_length=TINY_MAX_LENGTH, return_tensors="pt")
            with torch.no_grad():
                scores = model(**inputs).logits[0].softmax(-1).tolist()
            cache[sentence] = {model.config.id2label[index]: score for index, score in enumerate(scores)}
        return cache[sentence]

    return probabilities


def assert_matches_reference(record: dict, sentence: str, reference, tolerance: float = 2e-5) -> None:
    expected = reference(sentence)
    best = max(expected, key=expected.get)
    assert record["score"] == pytest.approx(expected[best], abs=tolerance), (sentence, record)
    for entry in record.get("top_k", []):
        assert entry["score"] == pytest.approx(expected[entry["label"]], abs=tolerance), (sentence, record)


def run_cli(tmp_path: Path, model_dir: Path, input_bytes: bytes, suffix: str, *options: str, capsys=None):
    """Run the command in-process in fp32 (exact against the reference); returns (status, output or None, stderr)."""
    source, target = tmp_path / f"input{suffix}", tmp_path / options_output_name(options)
    source.write_bytes(input_bytes)
    argv = ["--model", str(model_dir), "--input", str(source), "--output", str(target), "--precision", "fp32"]
    status = main([*argv, *options])
    stderr = capsys.readouterr().err if capsys else ""
    return status, (target.read_text(encoding="utf-8") if target.exists() else None), stderr


def options_output_name(options: tuple[str, ...]) -> str:
    return "output.csv" if "--output_format" in options and "csv" in options else "output.jsonl"


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


# --- the engine ----------------------------------------------------------------------------------------------


def test_order_survives_length_sorting_across_batches_and_chunks(fp32_classifier, reference):
    classifier = fp32_classifier
    lengths = [len(ids) for ids in classifier.token_ids(VARIED_SENTENCES, TINY_MAX_LENGTH)]
    assert lengths != sorted(lengths)  # the test only means something if sorting moves sentences
    predictions = list(classifier.classify(VARIED_SENTENCES, batch_size=3, chunk_size=7, top_k=4))
    assert [prediction.id for prediction in predictions] == list(range(len(VARIED_SENTENCES)))
    for prediction, sentence in zip(predictions, VARIED_SENTENCES, strict=True):
        record = prediction.to_record(with_top_k=True)
        assert_matches_reference(record, sentence, reference)
        assert [label for label, _ in prediction.top_k] == sorted(
            reference(sentence), key=reference(sentence).get, reverse=True
        )


def test_token_budget_splits_batches_without_changing_results(fp32_classifier, reference):
    classifier = fp32_classifier
    predictions = classifier.classify(VARIED_SENTENCES, batch_size=64, max_batch_tokens=40, top_k=4)
    for prediction, sentence in zip(predictions, VARIED_SENTENCES, strict=True):
        assert_matches_reference(prediction.to_record(with_top_k=True), sentence, reference)


def test_function_agrees_with_the_pipeline(tiny_model_dir, fp32_classifier):
    classifier = pipeline("text-classification", model=str(tiny_model_dir), trust_remote_code=True, top_k=None)
    expected = classifier(KOREAN_SENTENCES)
    classifier = fp32_classifier
    predictions = list(classifier.classify(KOREAN_SENTENCES, top_k=len(SENTENCE_TYPES)))
    for prediction, scores in zip(predictions, expected, strict=True):
        assert [label for label, _ in prediction.top_k] == [entry["label"] for entry in scores]
        assert [score for _, score in prediction.top_k] == pytest.approx([entry["score"] for entry in scores], abs=1e-5)
        assert (prediction.label, prediction.score) == prediction.top_k[0]


def test_length_sorted_batches_cover_every_index_once_within_limits():
    lengths = [5, 1, 9, 3, 3, 7, 2, 8, 1, 6]
    batches = list(length_sorted_batches(lengths, batch_size=3, max_batch_tokens=16))
    assert sorted(index for batch in batches for index in batch) == list(range(len(lengths)))
    flattened = [lengths[index] for batch in batches for index in batch]
    assert flattened == sorted(lengths)
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths[index] for index in batch) <= 16


def test_blank_and_non_string_items_yield_errors_in_place(fp32_classifier):
    classifier = fp32_classifier
    predictions = list(classifier.classify(["좋은 아침입니다.", "  ", None, "감사합니다."]))
    assert [prediction.error is None for prediction in predictions] == [True, False, False, True]
    assert [prediction.error.kind for prediction in predictions if prediction.error] == ["empty", "not_text"]
    assert predictions[1].label is None and predictions[1].score is None


def test_classify_reads_its_input_lazily(fp32_classifier):
    """An endless input still yields results: memory is bounded by one chunk, not by the input."""
    classifier = fp32_classifier
    consumed = 0

    def endless():
        nonlocal consumed
        for sentence in itertools.cycle(KOREAN_SENTENCES):
            consumed += 1
            yield sentence

    first = list(itertools.islice(classifier.classify(endless(), chunk_size=16), 20))
    assert len(first) == 20
    assert consumed <= 32


# --- input and output formats --------------------------------------------------------------------------------


def test_txt_to_jsonl_numbers_lines_from_one(tmp_path, tiny_model_dir, reference, capsys):
    text = "\n".join(VARIED_SENTENCES) + "\n"
    status, output, stderr = run_cli(tmp_path, tiny_model_dir, text.encode(), ".txt", "--top_k", "2", capsys=capsys)
    assert status == 0
    records = jsonl(output)
    assert [record["id"] for record in records] == list(range(1, len(VARIED_SENTENCES) + 1))
    for record, sentence in zip(records, VARIED_SENTENCES, strict=True):
        assert len(record["top_k"]) == 2 and "error" not in record
        assert_matches_reference(record, sentence, reference)
    assert f"{len(VARIED_SENTENCES)} records: {len(VARIED_SENTENCES)} classified in" in stderr


def test_a_uri_input_reads_as_the_same_file(tmp_path, tiny_model_dir, reference):
    """`--input` takes a storage URI (here file://) without --engine ray, and reads it as the local file."""
    source, target = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("\n".join(VARIED_SENTENCES[:4]) + "\n", encoding="utf-8")
    argv = ["--model", str(tiny_model_dir), "--input", source.as_uri(), "--output", str(target), "--precision", "fp32"]
    assert main(argv) == 0
    records = jsonl(target.read_text(encoding="utf-8"))
    assert [record["id"] for record in records] == [1, 2, 3, 4]
    for record, sentence in zip(records, VARIED_SENTENCES[:4], strict=True):
        assert_matches_reference(record, sentence, reference)


def test_txt_with_bom_and_crlf(tmp_path, tiny_model_dir, reference):
    data = ("\ufeff" + "\r\n".join(KOREAN_SENTENCES[:3]) + "\r\n").encode()
    status, output, _ = run_cli(tmp_path, tiny_model_dir, data, ".txt")
    assert status == 0
    for record, sentence in zip(jsonl(output), KOREAN_SENTENCES[:3], strict=True):
        assert_matches_reference(record, sentence, reference)


@pytest.mark.parametrize("key", ["sentence", "text", "문장"])
def test_jsonl_accepts_the_usual_text_fields_and_keeps_ids(tmp_path, tiny_model_dir, reference, key):
    lines = [{"id": f"doc-{index}", key: sentence} for index, sentence in enumerate(KOREAN_SENTENCES[:4])]
    lines[2].pop("id")  # no id: the line number stands in
    data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
    status, output, _ = run_cli(tmp_path, tiny_model_dir, data, ".jsonl")
    assert status == 0
    records = jsonl(output)
    assert [record["id"] for record in records] == ["doc-0", "doc-1", 3, "doc-3"]
    for record, sentence in zip(records, KOREAN_SENTENCES[:4], strict=True):
        assert_matches_reference(record, sentence, reference)


def test_jsonl_with_a_named_text_column(tmp_path, tiny_model_dir, reference):
    lines = [{"body": sentence, "sentence": "not this one"} for sentence in KOREAN_SENTENCES[:3]]
    data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
    status, output, _ = run_cli(tmp_path, tiny_model_dir, data, ".jsonl", "--text_column", "body")
    assert status == 0
    for record, sentence in zip(jsonl(output), KOREAN_SENTENCES[:3], strict=True):
        assert_matches_reference(record, sentence, reference)


def test_csv_in_csv_out_with_top_k(tmp_path, tiny_model_dir, reference):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "headline"])
    sentences = [*KOREAN_SENTENCES[:3], '따옴표 "안의" 문장, 쉼표까지.']
    writer.writerows([[f"r{index}", sentence] for index, sentence in enumerate(sentences)])
    options = ("--text_column", "headline", "--output_format", "csv", "--top_k", "4")
    status, output, _ = run_cli(tmp_path, tiny_model_dir, buffer.getvalue().encode(), ".csv", *options)
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(output)))
    assert list(rows[0]) == ["id", "label", "score", "top_k", "error"]
    assert [row["id"] for row in rows] == ["r0", "r1", "r2", "r3"]
    for row, sentence in zip(rows, sentences, strict=True):
        record = {"score": float(row["score"]), "top_k": json.loads(row["top_k"])}
        assert_matches_reference(record, sentence, reference)
        assert row["label"] == record["top_k"][0]["label"] and row["error"] == ""


def test_csv_without_id_column_numbers_rows(tmp_path, tiny_model_dir, reference):
    data = ("문장,유형\n" + "".join(f"{sentence},?\n" for sentence in KOREAN_SENTENCES[:3])).encode()
    status, output, _ = run_cli(tmp_path, tiny_model_dir, data, ".csv")
    assert status == 0
    records = jsonl(output)
    assert [record["id"] for record in records] == [1, 2, 3]
    for record, sentence in zip(records, KOREAN_SENTENCES[:3], strict=True):
        assert_matches_reference(record, sentence, reference)


def test_stdin_to_stdout_as_a_script(tiny_model_dir, reference):
    """`python predict.py` from the repository root, reading a pipe and writing a pipe."""
    data = ("\n".join(KOREAN_SENTENCES[:3]) + "\n\n").encode()
    command = [sys.executable, "predict.py", "--model", str(tiny_model_dir), "--input", "-", "--precision", "fp32"]
    completed = subprocess.run(
        [*command, "--threads", "1"],
        input=data,
        capture_output=True,
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert completed.returncode == 1, completed.stderr.decode()[-2000:]
    records = jsonl(completed.stdout.decode("utf-8"))
    assert [record["id"] for record in records] == [1, 2, 3, 4]
    for record, sentence in zip(records, KOREAN_SENTENCES[:3], strict=False):
        assert_matches_reference(record, sentence, reference)
    assert records[3]["error"] == "line 4: empty sentence"
    assert "1 failed (1 empty)" in completed.stderr.decode()


# --- bad lines: an error record each, the run goes on, the exit status says so ----------------------------------

GOOD = KOREAN_SENTENCES[0]


@pytest.mark.parametrize(
    ("suffix", "data", "expected_errors"),
    [
        (
            ".txt",
            f"{GOOD}\n\n   \n".encode() + b"\xff\xfe broken\n" + f"{GOOD}\n".encode(),
            {2: "line 2: empty sentence", 3: "line 3: empty sentence", 4: "line 4: not valid UTF-8"},
        ),
        (
            ".jsonl",
            b"\n".join(
                [
                    json.dumps({"sentence": GOOD}).encode(),
                    b'{"sentence": "unterminated',
                    b'{"title": "no sentence here"}',
                    b'["a", "list"]',
                    b'{"sentence": 42}',
                    b"",
                    b'{"sentence": "\xff bad bytes"}',
                    b'{"sentence": "  "}',
                    json.dumps({"sentence": GOOD}).encode(),
                ]
            )
            + b"\n",
            {
                2: "line 2: not valid JSON",
                3: "line 3: no 'sentence' / 'text' / '문장' field (fields: title)",
                4: "line 4: expected a JSON object, got list",
                5: "line 5: the text is int, not a string",
                6: "line 6: empty line",
                7: "line 7: not valid UTF-8",
                8: "line 8: empty sentence",
            },
        ),
        (
            ".csv",
            f"sentence,extra\n{GOOD},x\n\n,x\n".encode() + b'"\xff\xfe",x\n' + f"{GOOD},x\n".encode(),
            {2: "row 2: empty row", 3: "row 3: empty sentence", 4: "row 4: not valid UTF-8"},
        ),
    ],
    ids=["txt", "jsonl", "csv"],
)
def test_every_bad_line_gets_an_error_record_in_place(
    tmp_path, tiny_model_dir, reference, capsys, suffix, data, expected_errors
):
    status, output, stderr = run_cli(tmp_path, tiny_model_dir, data, suffix, capsys=capsys)
    assert status == 1
    records = jsonl(output)
    assert [record["id"] for record in records] == list(range(1, len(records) + 1))
    for record in records:
        if record["id"] in expected_errors:
            assert record["error"].startswith(expected_errors[record["id"]]), record
            assert record["label"] is None and record["score"] is None
        else:
            assert "error" not in record
            assert_matches_reference(record, GOOD, reference)
    assert len(records) == len(expected_errors) + 2
    assert f"{len(expected_errors)} failed (" in stderr


def test_csv_row_missing_the_column(tmp_path, tiny_model_dir, capsys):
    data = f"id,extra,sentence\na,x,{GOOD}\nb,x\n".encode()
    status, output, stderr = run_cli(tmp_path, tiny_model_dir, data, ".csv", capsys=capsys)
    assert status == 1
    records = jsonl(output)
    assert records[1] == {"id": "b", "label": None, "score": None, "error": "row 2: no value in column 'sentence'"}
    assert "1 missing_text" in stderr


# --- fatal errors: one line, exit 2, nothing written --------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--input", "{missing}"], "input file not found"),
        (["--model", "{tmp}/no_such_model"], "model folder not found"),
        (["--model", "{tmp}"], "cannot load model"),
        (["--batch_size", "0"], "--batch_size must be at least 1"),
        (["--precision", "fp16", "--device", "cpu"], "fp16 needs a GPU"),
        (["--device", "tpu"], "unknown device"),
        (["--text_column", "body", "--format", "csv"], "the CSV header has no 'body' column"),
        (["--input", "{tmp}"], "input is a folder"),
        (["--output", "{tmp}"], "it is a folder"),
        (["--output", "{tmp}/no_such_folder/out.jsonl"], "does not exist"),
    ],
)
def test_fatal_errors_are_one_line_and_write_nothing(tmp_path, tiny_model_dir, capsys, arguments, message):
    source, target = tmp_path / "input.csv", tmp_path / "output.jsonl"
    source.write_text(f"sentence\n{GOOD}\n", encoding="utf-8")
    base = {"--model": str(tiny_model_dir), "--input": str(source), "--output": str(target)}
    filled = [argument.format(missing=tmp_path / "missing.txt", tmp=tmp_path) for argument in arguments]
    overrides = dict(zip(filled[::2], filled[1::2], strict=True))
    argv = [item for pair in {**base, **overrides}.items() for item in pair]
    assert main(argv) == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(error_lines) == 1 and message in error_lines[0], error_lines
    assert sorted(path.name for path in tmp_path.iterdir()) == ["input.csv"]


def test_unknown_argument_exits_2(capsys):
    assert main(["--model", "m", "--input", "x", "--precision", "int4"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_run_that_dies_midway_leaves_the_old_output_untouched(tmp_path, tiny_model_dir, capsys):
    """A malformed CSV (an unclosed quote swallowing the rest) fails after earlier rows were already written."""
    source, target = tmp_path / "input.csv", tmp_path / "output.jsonl"
    source.write_text(f'sentence\n{GOOD}\n{GOOD}\n"unclosed{"가" * 140_000}\n', encoding="utf-8")
    target.write_text("previous results\n", encoding="utf-8")
    argv = ["--model", str(tiny_model_dir), "--input", str(source), "--output", str(target), "--chunk_size", "1"]
    assert main(argv) == 2
    assert "malformed CSV" in capsys.readouterr().err
    assert target.read_text(encoding="utf-8") == "previous results\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["input.csv", "output.jsonl"]


def test_an_interrupted_run_leaves_no_partial_output(tmp_path, tiny_model_dir, capsys, monkeypatch):
    real_classify_records = engine.Classifier.classify_records

    def interrupted_after_one(*args, **kwargs):
        yield next(real_classify_records(*args, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.Classifier, "classify_records", interrupted_after_one)
    source, target = tmp_path / "input.txt", tmp_path / "output.jsonl"
    source.write_text(f"{GOOD}\n{GOOD}\n", encoding="utf-8")
    assert main(["--model", str(tiny_model_dir), "--input", str(source), "--output", str(target)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["input.txt"]


# --- streaming: memory does not grow with the input ---------------------------------------------------------------


def _peak_python_memory(tmp_path: Path, model_dir: Path, lines: int) -> int:
    source = tmp_path / f"lines_{lines}.txt"
    with source.open("w", encoding="utf-8") as stream:
        for index in range(lines):
            stream.write(f"{KOREAN_SENTENCES[index % len(KOREAN_SENTENCES)]} {index}\n")
    tracemalloc.start()
    try:
        argv = ["--model", str(model_dir), "--input", str(source), "--output", str(tmp_path / "out.jsonl")]
        status = main([*argv, "--chunk_size", "256", "--threads", "1"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 0
    assert sum(1 for _ in (tmp_path / "out.jsonl").open(encoding="utf-8")) == lines
    return peak


def test_memory_stays_flat_over_a_ten_times_longer_input(tmp_path, tiny_model_dir, capsys):
    small = _peak_python_memory(tmp_path, tiny_model_dir, 2_000)
    large = _peak_python_memory(tmp_path, tiny_model_dir, 20_000)
    # Holding all records would add ~20k × (record + prediction + output line) ≈ several MB on top.
    assert large < small * 1.3 + 512 * 1024, (small, large)


# --- precision --------------------------------------------------------------------------------------------------


def test_int8_quantizes_the_encoder_and_keeps_the_head(tiny_model_dir, reference):
    classifier = load_classifier(tiny_model_dir, device="cpu", precision="int8")
    model = classifier.backend.model
    assert classifier.precision == "int8"
    assert isinstance(model.classifier, torch.nn.Linear)
    assert not any(type(module) is torch.nn.Linear for module in model.base_model.modules())
    for prediction, sentence in zip(classifier.classify(KOREAN_SENTENCES), KOREAN_SENTENCES, strict=True):
        assert prediction.score == pytest.approx(max(reference(sentence).values()), abs=0.05)


def test_precision_choice_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch_backend, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(KoSentTypeError, match="no AVX-512 BF16 or AMX"):
        resolve_precision("bf16", cpu)
    monkeypatch.setattr(torch_backend, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16"
    assert resolve_precision("int8", cpu) == "int8"
    with pytest.raises(KoSentTypeError, match="runs on CPU only"):
        resolve_precision("int8", torch.device("cuda"))


def test_bf16_where_the_cpu_has_it(tiny_model_dir, reference):
    if not torch_backend.cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16")
    classifier = load_classifier(tiny_model_dir, device="cpu", precision="bf16")
    assert classifier.precision == "bf16"
    for prediction, sentence in zip(classifier.classify(KOREAN_SENTENCES), KOREAN_SENTENCES, strict=True):
        assert prediction.score == pytest.approx(max(reference(sentence).values()), abs=0.02)
