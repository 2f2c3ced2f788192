"""kosenttype-predict against a hostile user: its own input as output, signals, full disks, broken quoting, huge
lines, UTF-16, NaN, broken or foreign model folders. Each case: one line on stderr, the documented exit status,
strict JSON out, and nothing lost or half-written."""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import torch
from conftest import KOREAN_SENTENCES, REPO_ROOT
from safetensors.torch import load_file, save_file

from kosenttype.predict import main

GOOD = KOREAN_SENTENCES[0]
PREDICT = [sys.executable, "-m", "kosenttype.predict"]


def strict_json_lines(text: str) -> list[dict]:
    """Parse JSON Lines as every other parser would: NaN and Infinity are not JSON."""

    def refuse(constant: str):
        raise AssertionError(f"invalid JSON constant {constant} in the output")

    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("kosenttype-predict: error: ")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


def listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_the_input_as_output_is_refused_and_kept(tmp_path, tiny_model_dir, capsys):
    source = tmp_path / "s.txt"
    content = f"{GOOD}\n{KOREAN_SENTENCES[1]}\n".encode()
    source.write_bytes(content)
    link = tmp_path / "link.txt"
    link.symlink_to(source)
    for output in (source, link, tmp_path / "." / "s.txt"):
        assert main(["--model", str(tiny_model_dir), "--input", str(source), "--output", str(output)]) == 2
        assert "is also an input" in one_error_line(capsys.readouterr().err)
        assert source.read_bytes() == content
    assert listing(tmp_path) == ["link.txt", "s.txt"]


def test_an_unclosed_quote_names_its_row_and_writes_nothing(tmp_path, tiny_model_dir, capsys):
    source, target = tmp_path / "in.csv", tmp_path / "out.jsonl"
    source.write_text(f'id,sentence\n1,{GOOD}\n2,"unclosed\n3,{GOOD}\n', encoding="utf-8")
    assert main(["--model", str(tiny_model_dir), "--input", str(source), "--output", str(target)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "row 2 (line 3)" in line and "never closed" in line
    assert listing(tmp_path) == ["in.csv"]


def test_a_quoted_multiline_field_is_one_record(tmp_path, tiny_model_dir, capsys):
    source, target = tmp_path / "in.csv", tmp_path / "out.jsonl"
    source.write_text(f'id,sentence\n1,"{GOOD}\n{GOOD}"\n2,{GOOD}\n', encoding="utf-8")
    assert main(["--model", str(tiny_model_dir), "--input", str(source), "--output", str(target)]) == 0
    assert [record["id"] for record in strict_json_lines(target.read_text(encoding="utf-8"))] == ["1", "2"]


def test_a_huge_line_is_an_error_record_and_is_never_held_whole(tmp_path, tiny_model_dir, capsys):
    source, target = tmp_path / "in.txt", tmp_path / "out.jsonl"
    huge_bytes = 20 * 1024 * 1024
    with source.open("w", encoding="utf-8") as stream:
        stream.write(f"{GOOD}\n")
        stream.write("가" * (huge_bytes // 3) + "\n")
        stream.write(f"{GOOD}\n")
    tracemalloc.start()
    try:
        status = main(["--model", str(tiny_model_dir), "--input", str(source), "--output", str(target)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 1
    records = strict_json_lines(target.read_text(encoding="utf-8"))
    assert [record["id"] for record in records] == [1, 2, 3]
    assert records[1]["error"].startswith("line 2: longer than 65536 bytes")
    assert records[0]["label"] == records[2]["label"] is not None
    assert peak < huge_bytes / 4, peak  # the 20 MB line was skipped in blocks, not read


def test_a_huge_csv_row_is_an_error_record(tmp_path, tiny_model_dir, capsys):
    source, target = tmp_path / "in.csv", tmp_path / "out.jsonl"
    source.write_text(f"id,sentence\n1,{GOOD}\n2,{'가' * 100_000}\n3,{GOOD}\n", encoding="utf-8")
    assert main(["--model", str(tiny_model_dir), "--input", str(source), "--output", str(target)]) == 1
    records = strict_json_lines(target.read_text(encoding="utf-8"))
    assert [(record["id"], "error" in record) for record in records] == [("1", False), ("2", True), ("3", False)]
    assert "longer than" in records[1]["error"]


def test_utf16_input_is_refused_in_one_line(tmp_path, tiny_model_dir, capsys):
    source, target = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_bytes(f"{GOOD}\n{GOOD}\n".encode("utf-16"))
    assert main(["--model", str(tiny_model_dir), "--input", str(source), "--output", str(target)]) == 2
    assert "UTF-16" in one_error_line(capsys.readouterr().err)
    assert listing(tmp_path) == ["in.txt"]


def test_control_character_lines_are_blank(tmp_path, tiny_model_dir, capsys):
    source, target = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_bytes(f"{GOOD}\n".encode() + b"\x00\x00\x00\n\x01\x1f\x7f\t\n" + f"{GOOD}\n".encode())
    assert main(["--model", str(tiny_model_dir), "--input", str(source), "--output", str(target)]) == 1
    records = strict_json_lines(target.read_text(encoding="utf-8"))
    assert [record.get("error") for record in records] == [
        None,
        "line 2: empty sentence",
        "line 3: empty sentence",
        None,
    ]


def test_nan_and_infinity_ids_are_refused_as_invalid_json(tmp_path, tiny_model_dir, capsys):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    text = "\n".join(
        [
            f'{{"id": "a", "sentence": "{GOOD}"}}',
            f'{{"id": NaN, "sentence": "{GOOD}"}}',
            f'{{"id": -Infinity, "sentence": "{GOOD}"}}',
            f'{{"id": "d", "sentence": "{GOOD}"}}',
        ]
    )
    source.write_text(text + "\n", encoding="utf-8")
    assert main(["--model", str(tiny_model_dir), "--input", str(source), "--output", str(target)]) == 1
    records = strict_json_lines(target.read_text(encoding="utf-8"))
    assert [record["id"] for record in records] == ["a", 2, 3, "d"]
    assert records[1]["error"] == "line 2: not valid JSON (NaN is not JSON)"
    assert records[2]["error"] == "line 3: not valid JSON (-Infinity is not JSON)"


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_non_finite_scores_become_error_records_not_invalid_json(tmp_path, tiny_model_dir, capsys):
    model_dir = copy_model(tiny_model_dir, tmp_path / "model")
    weights = load_file(model_dir / "model.safetensors")
    bias = next(key for key in weights if key.endswith("classifier.bias"))
    weights[bias] = torch.full_like(weights[bias], math.nan)
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    source, target = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text(f"{GOOD}\n", encoding="utf-8")
    status = main(["--model", str(model_dir), "--input", str(source), "--output", str(target), "--precision", "fp32"])
    assert status == 1
    (record,) = strict_json_lines(target.read_text(encoding="utf-8"))
    assert record["label"] is None and record["score"] is None and "non-finite" in record["error"]
    assert "1 failed (1 non_finite)" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_weights_file_is_one_line(tmp_path, tiny_model_dir, capsys, damage):
    model_dir = copy_model(tiny_model_dir, tmp_path / "model")
    weights = model_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00" * 64 + data[64:])
    source = tmp_path / "in.txt"
    source.write_text(f"{GOOD}\n", encoding="utf-8")
    assert main(["--model", str(model_dir), "--input", str(source), "--output", str(tmp_path / "out.jsonl")]) == 2
    assert "cannot load model" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("model", "message"),
    [("models/not/here", "model folder not found"), ("./nothere", "model folder not found")],
)
def test_a_missing_model_path_is_not_sent_to_the_hub(tmp_path, capsys, model, message):
    source = tmp_path / "in.txt"
    source.write_text(f"{GOOD}\n", encoding="utf-8")
    assert main(["--model", model, "--input", str(source)]) == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_a_tokenizer_without_a_length_limit_is_capped_at_the_positions(tmp_path, tiny_model_dir, capsys):
    """No `model_max_length` and --max_length far past the 64 positions: capped, not an IndexError mid-run."""
    model_dir = copy_model(tiny_model_dir, tmp_path / "model")
    tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer_config.pop("model_max_length", None)
    (model_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")
    source, target = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text(f"{GOOD}\n{' '.join(KOREAN_SENTENCES * 4)}\n", encoding="utf-8")
    argv = ["--model", str(model_dir), "--input", str(source), "--output", str(target), "--max_length", "4096"]
    assert main(argv) == 0, capsys.readouterr().err
    assert all("error" not in record for record in strict_json_lines(target.read_text(encoding="utf-8")))


def test_remote_code_runs_only_when_asked(tmp_path, tiny_model_dir, capsys):
    """A folder whose config names code of its own: without --trust_remote_code that code must never run."""
    model_dir = tmp_path / "foreign"
    model_dir.mkdir()
    for tokenizer_file in tiny_model_dir.glob("*token*"):
        shutil.copy(tokenizer_file, model_dir)
    marker = tmp_path / "code_ran"
    (model_dir / "config.json").write_text(
        json.dumps(
            {
                "model_type": "foreign-thing",
                "auto_map": {
                    "AutoConfig": "configuration_foreign.ForeignConfig",
                    "AutoModelForSequenceClassification": "configuration_foreign.ForeignModel",
                },
                "architectures": ["ForeignModel"],
            }
        ),
        encoding="utf-8",
    )
    (model_dir / "configuration_foreign.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom transformers import PretrainedConfig\n"
        "class ForeignConfig(PretrainedConfig):\n    model_type = 'foreign-thing'\n",
        encoding="utf-8",
    )
    source = tmp_path / "in.txt"
    source.write_text(f"{GOOD}\n", encoding="utf-8")
    assert main(["--model", str(model_dir), "--input", str(source)]) == 2
    assert "--trust_remote_code" in one_error_line(capsys.readouterr().err)
    assert not marker.exists()


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, tiny_model_dir):
    """A file-size limit makes every write past 1 KB fail as a full disk does (EFBIG instead of ENOSPC)."""
    source, target = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text(f"{GOOD}\n" * 200, encoding="utf-8")
    target.write_text("previous\n", encoding="utf-8")

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    completed = subprocess.run(
        [*PREDICT, "--model", str(tiny_model_dir), "--input", str(source), "--output", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_file_size,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=REPO_ROOT,
    )
    assert completed.returncode == 2, completed.stderr
    assert "too large" in one_error_line(completed.stderr).lower()
    assert target.read_text(encoding="utf-8") == "previous\n"
    assert listing(tmp_path) == ["in.txt", "out.jsonl"]


def test_standard_output_on_a_full_device_is_one_line(tmp_path, tiny_model_dir):
    source = tmp_path / "in.txt"
    source.write_text(f"{GOOD}\n" * 2000, encoding="utf-8")
    with open("/dev/full", "w") as full:
        completed = subprocess.run(
            [*PREDICT, "--model", str(tiny_model_dir), "--input", str(source)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            cwd=REPO_ROOT,
        )
    assert completed.returncode == 2, completed.stderr
    assert "no space left on device" in one_error_line(completed.stderr)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_run_leaves_the_previous_output_and_no_temporary_file(tmp_path, tiny_model_dir, signum):
    source, target = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text(f"{GOOD}\n" * 200_000, encoding="utf-8")
    target.write_text("previous\n", encoding="utf-8")
    process = subprocess.Popen(
        [*PREDICT, "--model", str(tiny_model_dir), "--input", str(source), "--output", str(target), "--threads", "1"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=REPO_ROOT,
    )
    deadline = time.monotonic() + 120
    while not any(path.name.endswith(".tmp") for path in tmp_path.iterdir()):  # writing has begun
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be signalled"
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    assert f"interrupted by {signal.Signals(signum).name}" in stderr and "Traceback" not in stderr
    assert target.read_text(encoding="utf-8") == "previous\n"
    assert listing(tmp_path) == ["in.txt", "out.jsonl"]


# --- attribute heads: written only when the model has them --------------------------------------------------------


def test_attributes_are_written_only_for_models_with_heads(tmp_path, tiny_model_dir, tiny_tokenizer, capsys):
    """The attribute labels and scores must be the argmax/softmax of the model's own attribute logits, computed
    here one sentence at a time; a model without heads writes no `attributes` key at all."""
    from conftest import tiny_config

    from kosenttype import ATTRIBUTE_LABELS, KoSentTypeForSequenceClassification
    from kosenttype.hub_tokenizer import save_tokenizer_for_hub

    torch.manual_seed(1)
    config = tiny_config(vocab_size=len(tiny_tokenizer), attributes=ATTRIBUTE_LABELS)
    model = KoSentTypeForSequenceClassification(config).eval()
    model_dir = tmp_path / "with_heads"
    model.save_pretrained(model_dir)
    save_tokenizer_for_hub(tiny_tokenizer, model_dir, max_length=64)
    source = tmp_path / "in.txt"
    source.write_text("\n".join(KOREAN_SENTENCES[:5]) + "\n", encoding="utf-8")
    for folder, name in ((model_dir, "heads.jsonl"), (tiny_model_dir, "plain.jsonl")):
        argv = ["--model", str(folder), "--input", str(source), "--output", str(tmp_path / name), "--precision", "fp32"]
        assert main(argv) == 0, capsys.readouterr().err
    plain = strict_json_lines((tmp_path / "plain.jsonl").read_text(encoding="utf-8"))
    assert all(set(record) == {"id", "label", "score"} for record in plain)
    with_heads = strict_json_lines((tmp_path / "heads.jsonl").read_text(encoding="utf-8"))
    for record, sentence in zip(with_heads, KOREAN_SENTENCES[:5], strict=True):
        inputs = tiny_tokenizer(sentence, truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            output = model(**inputs)
        assert record["label"] == config.id2label[int(output.logits[0].argmax())]
        assert list(record["attributes"]) == list(ATTRIBUTE_LABELS)
        for (axis, labels), logits in zip(ATTRIBUTE_LABELS.items(), output.attribute_logits, strict=True):
            probabilities = logits[0].softmax(-1)
            assert record["attributes"][axis]["label"] == labels[int(probabilities.argmax())]
            assert record["attributes"][axis]["score"] == pytest.approx(float(probabilities.max()), abs=1e-5)


@pytest.mark.parametrize("output_name", ["out.jsonl", "out.csv"])
def test_lone_surrogates_in_ids_and_field_names_still_give_valid_utf8_output(tmp_path, tiny_model_dir, output_name):
    source, target = tmp_path / "in.jsonl", tmp_path / output_name
    source.write_text(
        f'{{"a\\udc80": "x"}}\n{{"id": "\\ud800", "sentence": "{GOOD}"}}\n{{"id": "ok", "sentence": "{GOOD}"}}\n',
        encoding="utf-8",
    )
    assert main(["--model", str(tiny_model_dir), "--input", str(source), "--output", str(target)]) == 1
    text = target.read_bytes().decode("utf-8")  # strict UTF-8
    if output_name.endswith(".jsonl"):
        records = strict_json_lines(text)
        assert records[0]["error"] == "line 1: no 'sentence' / 'text' / '문장' field (fields: a\\udc80)"
        assert records[1]["id"] == "\ud800" and records[1]["label"] is not None
        assert records[2]["id"] == "ok" and "\\u" not in text.splitlines()[2]
    else:
        assert "a\\udc80" in text and "\\ud800" in text
