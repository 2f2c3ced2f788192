"""train_hf.py: reading the data, bad input, a full tiny run from scratch, resume, k-fold, and the saved package.

The training runs use an encoder trained from scratch (2 layers, hidden 32) and a WordPiece tokenizer built here,
the same way the quickstart does, since no backbone can be downloaded.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import KOREAN_SENTENCES, REPO_ROOT, TINY_MAX_LENGTH, run_python
from safetensors.torch import load_file
from sklearn.metrics import accuracy_score, f1_score

from kosenttype import SENTENCE_TYPES
from kosenttype.errors import KoSentTypeError
from kosenttype.hub_tokenizer import save_tokenizer_for_hub
from kosenttype.labelled_data import Example, hold_out_validation, read_labelled_file, report_shared_sentences
from kosenttype.scratch_models import tiny_encoder_config
from kosenttype.train_hf import PACKAGE_FOLDER, main, parse_arguments, preferred_mixed_precision

# KOREAN_SENTENCES in order: 3 사실형, 3 추론형, 3 예측형, 3 대화형, then a 사실형 and a 대화형.
TYPE_IDS = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0, 3]
LABELLED = list(zip(KOREAN_SENTENCES, TYPE_IDS, strict=True))
TRAIN_HF = REPO_ROOT / "train_hf.py"


def write_json(path: Path, rows: list) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ---- reading ----------------------------------------------------------------------------------------------------


def test_reads_json_array_jsonl_and_csv_with_names_or_ids(tmp_path):
    expected = [Example(text, label) for text, label in LABELLED]
    by_name = [{"sentence": text, "label": SENTENCE_TYPES[label]} for text, label in LABELLED]
    by_id = [{"sentence": text, "label": label} for text, label in LABELLED]
    assert read_labelled_file(write_json(tmp_path / "a.json", by_name), SENTENCE_TYPES) == expected
    assert read_labelled_file(write_jsonl(tmp_path / "b.jsonl", by_id), SENTENCE_TYPES) == expected
    # JSON Lines in a .json file, as prepare_aihub.py or `datasets` may write them.
    assert read_labelled_file(write_jsonl(tmp_path / "c.json", by_name), SENTENCE_TYPES) == expected
    csv_rows = [[text, str(label)] for text, label in LABELLED]
    assert (
        read_labelled_file(write_csv(tmp_path / "d.csv", ["sentence", "label"], csv_rows), SENTENCE_TYPES) == expected
    )


def test_recognises_dacon_columns_and_named_columns(tmp_path):
    # DACON's own `label` column is the combined 유형-극성-시제-확실성 string: 문장/유형 must win over it.
    header = ["ID", "문장", "유형", "극성", "시제", "확실성", "label"]
    rows = [
        [
            f"TRAIN_{index}",
            text,
            SENTENCE_TYPES[label],
            "긍정",
            "현재",
            "확실",
            f"{SENTENCE_TYPES[label]}-긍정-현재-확실",
        ]
        for index, (text, label) in enumerate(LABELLED)
    ]
    dacon = write_csv(tmp_path / "dacon.csv", header, rows)
    assert read_labelled_file(dacon, SENTENCE_TYPES) == [Example(text, label) for text, label in LABELLED]
    custom = write_jsonl(tmp_path / "custom.jsonl", [{"body": "  앞뒤 공백은 지운다.  ", "type": "예측형"}])
    assert read_labelled_file(custom, SENTENCE_TYPES, "body", "type") == [Example("앞뒤 공백은 지운다.", 2)]


def test_reports_sentences_shared_with_training(caplog):
    train = [Example(text, label) for text, label in LABELLED[:8]]
    validation = [Example(text, label) for text, label in LABELLED[5:12]]
    with caplog.at_level("WARNING"):
        shared = report_shared_sentences(train, validation, "train.json", "dev.json")
    assert shared == 3
    (message,) = [record.getMessage() for record in caplog.records]
    assert "3 sentences of dev.json also appear in train.json" in message
    assert KOREAN_SENTENCES[5][:20] in message


def test_lone_training_file_gets_a_stratified_validation_part():
    examples = [Example(f"문장 {index}", index % 4) for index in range(40)]
    train, validation = hold_out_validation(examples, 10, seed=0)
    assert len(train) == 36 and len(validation) == 4
    assert sorted(example.label for example in validation) == [0, 1, 2, 3]
    assert set(train).isdisjoint(validation)


# ---- bad input --------------------------------------------------------------------------------------------------

GOOD_ROWS = [{"sentence": text, "label": SENTENCE_TYPES[label]} for text, label in LABELLED[:4]]


def _bad_inputs(folder: Path) -> list[tuple[Path, str]]:
    """(file, what the one-line error must say) for each kind of bad input."""
    unknown = [*GOOD_ROWS[:2], {"sentence": "문장이다.", "label": "감탄형"}, *GOOD_ROWS[2:]]
    empty = [*GOOD_ROWS, {"sentence": "   ", "label": "사실형"}]
    missing = [GOOD_ROWS[0], {"sentence": "라벨이 없다."}]
    return [
        (write_json(folder / "unknown.json", unknown), "unknown.json: item 3: unknown label '감탄형' in 'label'"),
        (write_jsonl(folder / "empty.jsonl", empty), "empty.jsonl: line 5: empty text in 'sentence'"),
        (write_jsonl(folder / "missing.jsonl", missing), "missing.jsonl: line 2: missing field 'label'"),
        (
            write_csv(folder / "missing.csv", ["sentence", "label"], [["문장이다.", "사실형"], ["라벨 칸이 빈 줄."]]),
            "missing.csv: line 3: missing field 'label'",
        ),
        (
            write_csv(folder / "id.csv", ["sentence", "label"], [["문장이다.", "7"]]),
            "id.csv: line 2: unknown label '7'",
        ),
        (
            write_json(folder / "nocolumn.json", [{"text": "열 이름이 다르다.", "label": 0}]),
            "nocolumn.json: no text column",
        ),
        (folder / "absent.json", "absent.json: no such file"),
        (write_json(folder / "notes.txt", GOOD_ROWS), "notes.txt: unsupported format"),
        *_hostile_inputs(folder),
    ]


def _hostile_inputs(folder: Path) -> list[tuple[Path, str]]:
    """Inputs that used to pass silently, crash or print a traceback (issue 9)."""
    good_line = json.dumps(GOOD_ROWS[0], ensure_ascii=False)
    unclosed = folder / "unclosed.csv"  # the quote opened on line 3 would swallow lines 4-5 into one text
    unclosed.write_text(
        'sentence,label\n첫 문장.,0\n"닫히지 않은 따옴표,1\n셋째 문장.,2\n넷째 문장.,3\n', encoding="utf-8"
    )
    extra = folder / "extra.csv"  # pandas would take the first column for an index and shift the others
    extra.write_text("sentence,label\n첫 문장.,0\n둘째 문장,1,덤\n", encoding="utf-8")
    (folder / "a_folder").mkdir()  # no data-file suffix: still "a folder", not "unsupported format"
    deep_array = folder / "deep.json"
    deep_array.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    deep_line = folder / "deep.jsonl"  # this one crashed the process inside pyarrow (segmentation fault)
    deep_line.write_text(f'{good_line}\n{{"sentence": "깊다", "label": {"[" * 100_000}{"]" * 100_000}}}\n')
    surrogate = folder / "surrogate.jsonl"
    surrogate.write_text(f'{good_line}\n{{"sentence": "\\ud800 외톨이", "label": 0}}\n', encoding="utf-8")
    utf16 = folder / "utf16.jsonl"
    utf16.write_bytes((good_line + "\n").encode("utf-16"))
    control = write_jsonl(folder / "control.jsonl", [*GOOD_ROWS, {"sentence": "\u0000\u0001 \t", "label": 0}])
    return [
        (unclosed, "unclosed.csv: line 3: a quoted field opened here is not closed properly"),
        (extra, "extra.csv: line 3: 3 fields, but the header has 2"),
        (folder / "a_folder", "a_folder: is a folder, not a data file"),
        (deep_array, "deep.json: JSON nested too deeply"),
        (deep_line, "deep.jsonl: line 2: JSON nested too deeply"),
        (surrogate, "surrogate.jsonl: line 2: a lone surrogate escape (\\ud800) is not text"),
        (utf16, "utf16.jsonl: UTF-16 text; save it as UTF-8"),
        (control, "control.jsonl: line 5: empty text in 'sentence'"),
    ]


def test_bad_input_is_one_line_naming_file_and_row_and_writes_nothing(tmp_path, capsys):
    good = write_json(tmp_path / "good.json", GOOD_ROWS)
    for bad, message in _bad_inputs(tmp_path):
        for role in ("--train_file", "--validation_file"):
            files = {"--train_file": good, "--validation_file": good, role: bad}
            output = tmp_path / f"out_{bad.stem}"
            argv = [argument for pair in files.items() for argument in (pair[0], str(pair[1]))]
            assert main([*argv, "--output_dir", str(output)]) == 2
            error_lines = capsys.readouterr().err.strip().splitlines()
            assert len(error_lines) == 1 and error_lines[0].startswith("kosenttype-train: error: "), error_lines
            assert message in error_lines[0], error_lines[0]
            assert str(bad.parent) in error_lines[0]
            assert not output.exists()


def test_read_errors_are_data_errors(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"sentence": "첫 줄", "label": 0}\n{"sentence": "둘째 줄", \n', encoding="utf-8")
    with pytest.raises(KoSentTypeError, match=r"broken.jsonl: line 2: invalid JSON"):
        read_labelled_file(broken, SENTENCE_TYPES)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("sentence,label\ncaf\xe9,0\n".encode("latin-1"))
    with pytest.raises(KoSentTypeError, match=r"latin\.csv: not UTF-8"):
        read_labelled_file(latin, SENTENCE_TYPES)


# ---- arguments --------------------------------------------------------------------------------------------------


def test_defaults_are_the_published_recipe_and_a_json_file_works(tmp_path):
    config = write_json(tmp_path / "config.json", {})
    config.write_text(json.dumps({"train_file": "t.json", "output_dir": str(tmp_path), "cv_folds": 5}))
    model_args, data_args, args = parse_arguments([str(config)])
    assert model_args.model_name_or_path == "jhgan/ko-sroberta-multitask"
    assert (data_args.cv_folds, data_args.max_seq_length, data_args.early_stopping_patience) == (5, 256, 2)
    assert (data_args.class_weighting, data_args.weighted_sampler) == ("balanced", True)
    assert (args.learning_rate, args.weight_decay, args.num_train_epochs) == (2e-5, 0.01, 8)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.max_grad_norm) == (32, 1, 1.0)
    assert getattr(args, "warmup_ratio", None) or args.warmup_steps == 0.1
    assert (args.lr_scheduler_type.value, args.eval_strategy.value, args.save_strategy.value) == (
        "linear",
        "epoch",
        "epoch",
    )
    assert (args.load_best_model_at_end, args.metric_for_best_model, args.greater_is_better) == (True, "macro_f1", True)
    assert args.report_to == [] or args.report_to == ["none"]
    assert (args.bf16, args.fp16) == preferred_mixed_precision()
    _, data_args, args = parse_arguments(
        ["--train_file", "t.json", "--no_weighted_sampler", "--class_weighting", "none", "--num_train_epochs", "3"]
    )
    assert (data_args.weighted_sampler, data_args.class_weighting, args.num_train_epochs) == (False, "none", 3)


def test_mixed_precision_prefers_bf16_then_fp16_on_gpus(monkeypatch):
    import kosenttype.train_hf as train_hf

    monkeypatch.setattr(train_hf, "is_torch_bf16_gpu_available", lambda: True)
    assert preferred_mixed_precision() == (True, False)
    monkeypatch.setattr(train_hf, "is_torch_bf16_gpu_available", lambda: False)
    monkeypatch.setattr(train_hf, "is_torch_cuda_available", lambda: True)
    assert preferred_mixed_precision() == (False, True)
    monkeypatch.setattr(train_hf, "is_torch_cuda_available", lambda: False)
    assert preferred_mixed_precision() == (False, False)


# ---- training -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch_setup(tmp_path_factory, tiny_tokenizer) -> dict:
    """Data files, a saved tokenizer and an encoder config: what a from-scratch run needs."""
    folder = tmp_path_factory.mktemp("train_inputs")
    train_rows = [{"sentence": text, "label": SENTENCE_TYPES[label]} for text, label in LABELLED[:12]] * 2
    validation_rows = [{"sentence": text, "label": label} for text, label in LABELLED[12:] + LABELLED[:6]]
    save_tokenizer_for_hub(tiny_tokenizer, folder / "tokenizer", max_length=TINY_MAX_LENGTH)
    encoder = tiny_encoder_config(len(tiny_tokenizer), hidden_size=32, max_length=TINY_MAX_LENGTH)
    encoder.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return {
        "train": write_json(folder / "train.json", train_rows),
        "validation": write_jsonl(folder / "dev.jsonl", validation_rows),
        "validation_rows": validation_rows,
        "arguments": [
            "--encoder_config",
            json.dumps(encoder),
            "--tokenizer_name",
            str(folder / "tokenizer"),
            "--max_seq_length",
            str(TINY_MAX_LENGTH),
            "--classifier_dropout",
            "0",
            "--num_train_epochs",
            "2",
            "--per_device_train_batch_size",
            "8",
            "--learning_rate",
            "3e-3",
            "--disable_tqdm",
            "true",
            "--dataloader_pin_memory",
            "false",
            "--seed",
            "3",
        ],
    }


@pytest.fixture(scope="module")
def trained_run(scratch_setup, tmp_path_factory) -> Path:
    """The run folder: the Trainer's checkpoints and state, and the package in PACKAGE_FOLDER."""
    output = tmp_path_factory.mktemp("run") / "run"
    argv = ["--train_file", str(scratch_setup["train"]), "--validation_file", str(scratch_setup["validation"])]
    assert main([*argv, *scratch_setup["arguments"], "--output_dir", str(output)]) == 0
    return output


@pytest.fixture(scope="module")
def trained_model(trained_run) -> Path:
    return trained_run / PACKAGE_FOLDER


def test_output_is_a_hub_package_with_metrics_card_and_plot(trained_run, trained_model):
    config = json.loads((trained_model / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "kosenttype" and set(config["auto_map"]) >= {
        "AutoConfig",
        "AutoModelForSequenceClassification",
    }
    tokenizer_config = json.loads((trained_model / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tokenizer_config["tokenizer_class"] == "BertTokenizer" and "is_local" not in tokenizer_config
    metrics = json.loads((trained_model / "eval_results.json").read_text(encoding="utf-8"))
    assert {"eval_accuracy", "eval_macro_f1", "eval_weighted_f1", "eval_예측형_recall", "eval_대화형_support"} <= set(
        metrics
    )
    card = (trained_model / "README.md").read_text(encoding="utf-8")
    assert f"| Macro F1 | {metrics['eval_macro_f1']:.4f} |" in card and "dev.jsonl" in card
    assert (trained_model / "eval_confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    checkpoints = sorted(trained_run.glob("checkpoint-*"))
    assert len(checkpoints) == 2
    for checkpoint in checkpoints:
        assert (checkpoint / "configuration_kosenttype.py").is_file()
        assert (checkpoint / "modeling_kosenttype.py").is_file()
        assert json.loads((checkpoint / "tokenizer_config.json").read_text())["tokenizer_class"] == "BertTokenizer"


def test_saved_model_loads_in_a_fresh_process_and_reproduces_the_reported_metrics(trained_model, scratch_setup):
    """Auto classes and pipeline with trust_remote_code in a new interpreter; macro-F1 recomputed independently."""
    texts = [row["sentence"] for row in scratch_setup["validation_rows"]]
    code = f"""
import json
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
folder = {str(trained_model)!r}
texts = {texts!r}
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
with torch.no_grad():
    logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
classifier = pipeline("text-classification", model=folder, trust_remote_code=True)
print(json.dumps({{
    "module": type(model).__module__,
    "argmax": logits.argmax(-1).tolist(),
    "pipeline": [result["label"] for result in classifier(texts)],
    "all_scores": sum(result["score"] for result in classifier(texts[0], top_k=None)),
}}))
"""
    result = run_python(code)
    assert result["module"].startswith("transformers_modules")
    assert result["pipeline"] == [SENTENCE_TYPES[index] for index in result["argmax"]]
    assert result["all_scores"] == pytest.approx(1.0, abs=1e-5)
    truth = [row["label"] for row in scratch_setup["validation_rows"]]
    reported = json.loads((trained_model / "eval_results.json").read_text(encoding="utf-8"))
    assert reported["eval_accuracy"] == pytest.approx(accuracy_score(truth, result["argmax"]))
    assert reported["eval_macro_f1"] == pytest.approx(
        f1_score(truth, result["argmax"], labels=range(4), average="macro", zero_division=0)
    )


def test_resume_from_checkpoint_continues_to_the_same_weights(trained_run, scratch_setup, tmp_path):
    """Resuming after epoch 1 into a new folder must end at the same weights as the uninterrupted run."""
    first, last = sorted(trained_run.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    output = tmp_path / "resumed"
    argv = ["--train_file", str(scratch_setup["train"]), "--validation_file", str(scratch_setup["validation"])]
    argv += [*scratch_setup["arguments"], "--output_dir", str(output), "--resume_from_checkpoint", str(first)]
    assert main(argv) == 0
    # Only the second epoch ran: a fresh start would have saved the first epoch's checkpoint too.
    assert [path.name for path in output.glob("checkpoint-*")] == [last.name]
    expected = load_file(last / "model.safetensors")
    resumed = load_file(output / last.name / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_cross_validation_reports_mean_and_std_over_folds(scratch_setup, tmp_path):
    output = tmp_path / "cv"
    argv = ["--train_file", str(scratch_setup["train"]), "--cv_folds", "2", *scratch_setup["arguments"]]
    assert main([*argv, "--num_train_epochs", "1", "--output_dir", str(output)]) == 0
    summary = json.loads((output / "cv_results.json").read_text(encoding="utf-8"))
    folds = [json.loads((output / f"fold_{k}" / "eval_results.json").read_text(encoding="utf-8")) for k in (0, 1)]
    # Stratified: each fold holds out half of every type (24 sentences, 6 of them 대화형).
    assert [fold["eval_대화형_support"] for fold in folds] == [3, 3]
    for key in ("accuracy", "macro_f1", "weighted_f1", "추론형_f1"):
        values = [fold[f"eval_{key}"] for fold in folds]
        assert summary["mean"][key] == pytest.approx(np.mean(values))
        assert summary["std"][key] == pytest.approx(np.std(values, ddof=1))
    assert len(summary["folds"]) == 2 and set(summary["folds"][0]) == {
        "accuracy",
        "macro_f1",
        "weighted_f1",
        "per_label",
    }


class RecordingHubApi:
    """Stands in for huggingface_hub's HfApi in transformers.trainer: records the repo and the uploaded folder."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.uploads: list[dict] = []

    def create_repo(self, repo_id: str, **kwargs):
        self.created.append(repo_id)
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, *, repo_id: str, folder_path: str, **kwargs):
        folder = Path(folder_path)
        files = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
        card = (folder / "README.md").read_text(encoding="utf-8")
        self.uploads.append({"repo_id": repo_id, "files": files, "card": card, "ignore": kwargs.get("ignore_patterns")})


def test_push_to_hub_uploads_the_package_with_our_card(scratch_setup, tmp_path, monkeypatch):
    api = RecordingHubApi()
    monkeypatch.setattr("kosenttype.hub_publishing.HfApi", lambda: api)
    output = tmp_path / "pushed"
    argv = ["--train_file", str(scratch_setup["train"]), "--validation_file", str(scratch_setup["validation"])]
    argv += [*scratch_setup["arguments"], "--num_train_epochs", "1", "--output_dir", str(output)]
    argv += ["--push_to_hub", "--hub_model_id", "someone/kosenttype-test", "--hub_strategy", "end"]
    assert main(argv) == 0
    assert api.created == ["someone/kosenttype-test"]
    (upload,) = api.uploads
    assert upload["repo_id"] == "someone/kosenttype-test"
    assert {"config.json", "model.safetensors", "modeling_kosenttype.py", "tokenizer.json", "README.md"} <= set(
        upload["files"]
    )
    assert "## Labels" in upload["card"] and 'model="someone/kosenttype-test"' in upload["card"]


def test_torchrun_on_two_cpu_processes_trains_one_model_on_shards(scratch_setup, tmp_path):
    """The command itself under torchrun, without --use_cpu: the processes must train together (each on its shard:
    half the steps of one process), not each alone on all the data."""
    output = tmp_path / "ddp"
    argv = ["--train_file", str(scratch_setup["train"]), "--validation_file", str(scratch_setup["validation"])]
    argv += [*scratch_setup["arguments"], "--num_train_epochs", "1", "--output_dir", str(output)]
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(TRAIN_HF), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    state = json.loads((output / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 2  # 24 sentences, 8 per process and step, 2 processes
    assert completed.stdout.count("eval (8 sentences)") == 1  # the table is printed once, by the main process
    assert (output / PACKAGE_FOLDER / "model.safetensors").is_file() and (
        output / PACKAGE_FOLDER / "README.md"
    ).is_file()


# ---- retraining, the output folder, resuming, lengths and signals (issue 9) -----------------------------------------


def run_refused(capsys, argv: list[str]) -> str:
    """Run the command, expecting it to stop at once: exit 2 and exactly one line `kosenttype-train: error: …`."""
    assert main(argv) == 2
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert len(error_lines) == 1 and error_lines[0].startswith("kosenttype-train: error: "), error_lines
    return error_lines[0]


def files_under(folder: Path) -> dict[str, int]:
    """Every file below `folder` with its size: a listing to compare before and after."""
    return {str(path.relative_to(folder)): path.stat().st_size for path in folder.rglob("*") if path.is_file()}


def scratch_argv(scratch_setup: dict, output: Path, *extra: str) -> list[str]:
    files = ["--train_file", str(scratch_setup["train"]), "--validation_file", str(scratch_setup["validation"])]
    return [*files, *scratch_setup["arguments"], "--output_dir", str(output), *extra]


@pytest.mark.parametrize("start", ["converted", "trained"])
def test_retrains_from_a_saved_kosenttype_folder(start, tiny_model_dir, trained_model, scratch_setup, tmp_path):
    """A published folder (config.json without pad_token_id, as the converter writes it under transformers 5.x) and a
    folder this command trained both start a new run (it died with TypeError: unexpected keyword 'pad_token_id')."""
    source = tmp_path / "published"
    shutil.copytree(tiny_model_dir if start == "converted" else trained_model, source)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    config.pop("pad_token_id", None)
    (source / "config.json").write_text(json.dumps(config), encoding="utf-8")
    output = tmp_path / "retrained"
    argv = ["--train_file", str(scratch_setup["train"]), "--validation_file", str(scratch_setup["validation"])]
    argv += ["--model_name_or_path", str(source), "--num_train_epochs", "1", "--per_device_train_batch_size", "8"]
    assert main([*argv, "--max_seq_length", str(TINY_MAX_LENGTH), "--output_dir", str(output)]) == 0
    retrained = load_file(output / PACKAGE_FOLDER / "model.safetensors")
    started = load_file(source / "model.safetensors")
    assert retrained.keys() == started.keys()  # the same architecture, trained further: weights moved
    assert not torch.equal(retrained["classifier.weight"], started["classifier.weight"])


def test_model_package_holds_no_training_state(trained_run, trained_model):
    """What the README calls Hub-ready is the package only; the Trainer's state stays in the run folder."""
    package = set(files_under(trained_model))
    assert package == {
        "config.json",
        "model.safetensors",
        "configuration_kosenttype.py",
        "modeling_kosenttype.py",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "eval_results.json",
        "eval_confusion_matrix.png",
    }, package
    assert (trained_run / "trainer_state.json").is_file() and (trained_run / "training_run.json").is_file()
    assert not list(trained_run.parent.glob(".*"))  # no staging folder left beside the run


def test_refuses_to_train_over_another_run_unless_asked(trained_run, scratch_setup, tmp_path, capsys):
    before = files_under(trained_run)
    message = run_refused(capsys, scratch_argv(scratch_setup, trained_run))
    assert f"--output_dir {trained_run} already holds a run" in message and "--overwrite_output_dir" in message
    assert files_under(trained_run) == before
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    assert main(scratch_argv(scratch_setup, copy, "--overwrite_output_dir", "--num_train_epochs", "1")) == 0
    # One epoch of 3 steps: the old run's checkpoint-6 is gone, not mixed with the new run's checkpoint-3.
    assert sorted(path.name for path in copy.glob("checkpoint-*")) == ["checkpoint-3"]
    state = json.loads((copy / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 3


@pytest.mark.parametrize(
    ("change", "named"),
    [(["--learning_rate", "1e-2"], "learning_rate"), (["--class_weighting", "none"], "class_weighting")],
)
def test_resume_refuses_the_checkpoint_of_another_run(trained_run, scratch_setup, tmp_path, capsys, change, named):
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    before = files_under(copy)
    message = run_refused(capsys, scratch_argv(scratch_setup, copy, "--resume_from_checkpoint", "true", *change))
    assert "comes from another run" in message and f"({named} was" in message
    assert files_under(copy) == before


def test_resume_refuses_other_training_data(trained_run, scratch_setup, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    other = write_json(tmp_path / "train.json", [{"sentence": text, "label": label} for text, label in LABELLED] * 2)
    argv = scratch_argv(scratch_setup, copy, "--resume_from_checkpoint", "true")
    argv[argv.index("--train_file") + 1] = str(other)
    assert "(train_file (content) was" in run_refused(capsys, argv)


@pytest.mark.parametrize("existing", [False, True])
def test_resume_without_a_checkpoint_is_one_line_and_leaves_no_folder(scratch_setup, tmp_path, capsys, existing):
    output = tmp_path / "empty"
    if existing:
        output.mkdir()
    message = run_refused(capsys, scratch_argv(scratch_setup, output, "--resume_from_checkpoint", "true"))
    assert f"{output} holds no checkpoint to resume from" in message
    assert (sorted(output.iterdir()) == []) if existing else not output.exists()
    missing = tmp_path / "run" / "checkpoint-9"
    message = run_refused(capsys, scratch_argv(scratch_setup, output, "--resume_from_checkpoint", str(missing)))
    assert f"--resume_from_checkpoint {missing}: not found" in message


def test_bad_arguments_are_one_line_and_leave_no_folder(scratch_setup, tmp_path, capsys):
    output = tmp_path / "out"
    # 24 training sentences, 6 of each type: 7 folds can't all hold one of each.
    for folds, expected in (("1", "--cv_folds must be 0 (off) or at least 2, not 1"), ("7", "needs at least 7")):
        assert expected in run_refused(capsys, scratch_argv(scratch_setup, output, "--cv_folds", folds))
    for missing in (str(tmp_path / "no_such_folder"), "./no_such_folder"):
        argv = scratch_argv(scratch_setup, output)
        argv[argv.index("--tokenizer_name") + 1] = missing
        assert f"--tokenizer_name {missing}: not found" in run_refused(capsys, argv)
        argv = scratch_argv(scratch_setup, output)
        del argv[argv.index("--encoder_config") : argv.index("--encoder_config") + 2]
        argv += ["--model_name_or_path", missing]
        assert f"--model_name_or_path {missing}: not found" in run_refused(capsys, argv)
    a_file = write_json(tmp_path / "a_file", [])
    assert f"--output_dir {a_file} exists and is not a folder" in run_refused(
        capsys, scratch_argv(scratch_setup, a_file)
    )
    assert not output.exists()


def test_max_seq_length_above_the_encoders_positions_is_capped(scratch_setup, tmp_path):
    """--max_seq_length 200 on an encoder with 66 positions (RoBERTa: 64 tokens) used to stop with an IndexError at
    the first batch holding a long sentence; it trains, cut at what the encoder takes."""
    long_sentence = " ".join(KOREAN_SENTENCES) * 3
    rows = [{"sentence": long_sentence, "label": "사실형"}, *json.loads(scratch_setup["train"].read_text())]
    train = write_json(tmp_path / "long.json", rows)
    argv = scratch_argv(scratch_setup, tmp_path / "out", "--max_seq_length", "200", "--num_train_epochs", "1")
    argv[argv.index("--train_file") + 1] = str(train)
    assert main(argv) == 0
    encoder = json.loads(argv[argv.index("--encoder_config") + 1])
    positions = encoder["max_position_embeddings"] - encoder["pad_token_id"] - 1  # RoBERTa counts from pad + 1
    tokenizer_config = json.loads((tmp_path / "out" / PACKAGE_FOLDER / "tokenizer_config.json").read_text())
    assert tokenizer_config["model_max_length"] == positions == TINY_MAX_LENGTH


def send_sigterm(*args, **kwargs) -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_during_training_leaves_no_model_folder(scratch_setup, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("kosenttype.train_hf.HubTokenizerInCheckpoints.on_save", send_sigterm)
    output = tmp_path / "run"
    assert main(scratch_argv(scratch_setup, output)) == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM" in capsys.readouterr().err
    assert not (output / PACKAGE_FOLDER).exists() and not list(output.glob(".*"))


def test_sigterm_while_saving_the_package_keeps_the_previous_one(trained_run, scratch_setup, tmp_path, monkeypatch):
    """The package is staged beside its place: a signal halfway through (weights and tokenizer written, the card
    not yet) leaves the previous run's package as it was, and no staging folder."""
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    previous = files_under(copy / PACKAGE_FOLDER)
    monkeypatch.setattr("kosenttype.train_hf.write_model_card", send_sigterm)
    argv = scratch_argv(scratch_setup, copy, "--overwrite_output_dir", "--num_train_epochs", "1")
    assert main(argv) == 128 + signal.SIGTERM
    assert files_under(copy / PACKAGE_FOLDER) == previous
    assert not list(copy.glob(".*"))


# ---- attribute heads (issue 14) -------------------------------------------------------------------------------------

POLARITY, TENSE, CERTAINTY = ("긍정", "부정", "미정"), ("과거", "현재", "미래"), ("확실", "불확실")


def dacon_rows(labelled: list[tuple[str, int]]) -> list[list[str]]:
    """DACON's layout (ID, 문장, 유형, 극성, 시제, 확실성, label), the attributes made up per sentence."""
    rows = []
    for index, (text, label) in enumerate(labelled):
        values = [SENTENCE_TYPES[label], POLARITY[index % 3], TENSE[(index // 3) % 3], CERTAINTY[index % 2]]
        rows.append([f"TRAIN_{index:05d}", text, *values, "-".join(values)])
    return rows


DACON_HEADER = ["ID", "문장", "유형", "극성", "시제", "확실성", "label"]


def test_attribute_heads_train_jointly_and_report_every_axis(scratch_setup, tmp_path):
    """--attribute_columns with DACON's Korean names: the package has the heads, and eval_results.json's per-axis,
    exact-match and DACON scores equal those recomputed here from the saved model's own predictions."""
    train = write_csv(tmp_path / "train.csv", DACON_HEADER, dacon_rows(LABELLED[:12] * 2))
    validation_rows = dacon_rows(LABELLED[12:] + LABELLED[:6])
    validation = write_csv(tmp_path / "dev.csv", DACON_HEADER, validation_rows)
    output = tmp_path / "run"
    argv = scratch_argv(scratch_setup, output, "--attribute_columns", "극성,시제,확실성")
    argv[argv.index("--train_file") + 1], argv[argv.index("--validation_file") + 1] = str(train), str(validation)
    assert main([*argv, "--attribute_loss_weight", "polarity=0.5,tense=1,certainty=2"]) == 0
    package = output / PACKAGE_FOLDER
    config = json.loads((package / "config.json").read_text(encoding="utf-8"))
    assert config["attributes"] == [
        ["polarity", list(POLARITY)],
        ["tense", list(TENSE)],
        ["certainty", list(CERTAINTY)],
    ]
    assert config["attribute_loss_weights"] == {"polarity": 0.5, "tense": 1.0, "certainty": 2.0}

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(package).eval()
    tokenizer = AutoTokenizer.from_pretrained(package)
    with torch.no_grad():
        output_heads = model(**tokenizer([row[1] for row in validation_rows], padding=True, return_tensors="pt"))
    predicted = [
        output_heads.logits.argmax(-1).tolist(),
        *(head.argmax(-1).tolist() for head in output_heads.attribute_logits),
    ]
    names = [SENTENCE_TYPES, POLARITY, TENSE, CERTAINTY]
    guesses = [
        "-".join(names[axis][ids[row]] for axis, ids in enumerate(predicted)) for row in range(len(validation_rows))
    ]
    truth = [row[6] for row in validation_rows]
    reported = json.loads((package / "eval_results.json").read_text(encoding="utf-8"))
    assert reported["eval_combined_exact_match"] == pytest.approx(accuracy_score(truth, guesses))
    assert reported["eval_dacon_weighted_f1"] == pytest.approx(f1_score(truth, guesses, average="weighted"))
    for axis, column, labels in (("polarity", 3, POLARITY), ("tense", 4, TENSE), ("certainty", 5, CERTAINTY)):
        true_ids = [labels.index(row[column]) for row in validation_rows]
        predicted_ids = predicted[column - 2]
        expected = f1_score(true_ids, predicted_ids, labels=range(len(labels)), average="macro", zero_division=0)
        assert reported[f"eval_{axis}_macro_f1"] == pytest.approx(expected)
        assert f"eval_{axis}_{labels[0]}_f1" in reported
    card = (package / "README.md").read_text(encoding="utf-8")
    assert "polarity" in card and f"{reported['eval_dacon_weighted_f1']:.4f}" in card


def test_bad_attribute_values_and_settings_are_refused(scratch_setup, tmp_path, capsys):
    rows = dacon_rows(LABELLED[:8])
    rows[5][3] = "슬픔"  # not a polarity
    bad_value = write_csv(tmp_path / "bad_value.csv", DACON_HEADER, rows)
    no_tense = write_csv(
        tmp_path / "no_tense.csv", ["문장", "유형", "극성"], [row[1:4] for row in dacon_rows(LABELLED)]
    )
    output = tmp_path / "out"
    cases = [
        (bad_value, ["--attribute_columns", "polarity"], "bad_value.csv: line 7: unknown label '슬픔' in '극성'"),
        (no_tense, ["--attribute_columns", "polarity,tense"], "no_tense.csv: no tense column tense or 시제"),
        (no_tense, ["--attribute_columns", "sentiment"], "--attribute_columns: unknown attribute 'sentiment'"),
        (no_tense, ["--attribute_columns", "극성", "--attribute_loss_weight", "tense=1"], "--attribute_loss_weight"),
        (no_tense, ["--attribute_columns", "극성", "--attribute_loss_weight", "-1"], "--attribute_loss_weight"),
    ]
    for train, options, expected in cases:
        argv = scratch_argv(scratch_setup, output, *options)
        argv[argv.index("--train_file") + 1] = str(train)
        assert expected in run_refused(capsys, argv)
    assert not output.exists()


def test_combined_scores_are_dacons_exact_match_and_weighted_f1():
    """evaluation_metrics on made-up logits: every axis's macro-F1, and over the combined labels the exact-match
    accuracy and DACON's weighted F1, against scikit-learn on the label strings built here."""
    from kosenttype.reporting import evaluation_metrics

    attributes = {"polarity": list(POLARITY), "tense": list(TENSE), "certainty": list(CERTAINTY)}
    truth = np.array([[0, 0, 1, 0], [1, 1, 0, 1], [3, 2, 2, 0], [0, 0, 1, 1], [2, 1, 2, 1], [0, 0, 0, 0]])
    guess = np.array([[0, 0, 1, 0], [1, 1, 0, 0], [3, 2, 2, 0], [0, 0, 1, 1], [2, 0, 2, 1], [0, 2, 0, 0]])
    sizes = [4, 3, 3, 2]
    logits = [np.eye(size)[guess[:, axis]] for axis, size in enumerate(sizes)]  # one-hot: argmax is the guess
    metrics = evaluation_metrics(
        (logits[0], tuple(logits[1:])), (truth[:, 0], truth[:, 1:]), SENTENCE_TYPES, attributes
    )
    names = [SENTENCE_TYPES, POLARITY, TENSE, CERTAINTY]

    def as_text(rows: np.ndarray) -> list[str]:
        return ["-".join(names[axis][value] for axis, value in enumerate(row)) for row in rows]

    assert metrics["combined_exact_match"] == pytest.approx(accuracy_score(as_text(truth), as_text(guess))) == 0.5
    assert metrics["dacon_weighted_f1"] == pytest.approx(f1_score(as_text(truth), as_text(guess), average="weighted"))
    for axis, name in enumerate(attributes, start=1):
        expected = f1_score(truth[:, axis], guess[:, axis], labels=range(sizes[axis]), average="macro", zero_division=0)
        assert metrics["attributes"][name]["macro_f1"] == pytest.approx(expected)
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(truth[:, 0], guess[:, 0], labels=range(4), average="macro", zero_division=0)
    )
