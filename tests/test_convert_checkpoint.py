"""convert_checkpoint.py: checkpoints saved the way an independent training script saves them become model folders
whose logits, in a fresh process, match the original module's.

The reference module below is written here, independently of `kosenttype`: a transformers encoder, mean pooling,
dropout and a linear head, under the attribute names various training scripts use.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.server
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from conftest import KOREAN_SENTENCES, REPO_ROOT, run_python
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from torch import nn
from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

from kosenttype import SENTENCE_TYPES, convert_checkpoint
from kosenttype.hub_tokenizer import save_tokenizer_for_hub
from kosenttype.run_side_files import labels_from, normalize_metrics
from kosenttype.scratch_models import tiny_encoder_config

MAX_LENGTH = 256
UMASK = 0o027
LONG_SENTENCE = " ".join(KOREAN_SENTENCES * 6)
TEST_SENTENCES = [
    KOREAN_SENTENCES[0],
    KOREAN_SENTENCES[4],
    KOREAN_SENTENCES[9],
    "",
    "🎉🎉🎉",
    "오늘 날씨 진짜 좋다 😊",
    "Apple과 삼성전자의 실적 발표가 이어졌다.",
    LONG_SENTENCE,
]
LABEL_MAPPING = {"label2id": {label: i for i, label in enumerate(SENTENCE_TYPES)}}
LABEL_MAPPING["id2label"] = {str(i): label for i, label in enumerate(SENTENCE_TYPES)}
# The shape sklearn's classification_report(output_dict=True) gives, with the run's headline scores beside it.
BEST_METRICS = {
    "epoch": 4,
    "eval_accuracy": 0.827,
    "eval_macro_f1": 0.8153,
    "report": {
        "사실형": {"precision": 0.81, "recall": 0.79, "f1-score": 0.7994, "support": 1000},
        "추론형": {"precision": 0.74, "recall": 0.72, "f1-score": 0.7326, "support": 400},
        "예측형": {"precision": 0.70, "recall": 0.77, "f1-score": 0.7334, "support": 300},
        "대화형": {"precision": 0.99, "recall": 1.0, "f1-score": 0.9955, "support": 200},
        "accuracy": 0.827,
        "macro avg": {"precision": 0.81, "recall": 0.82, "f1-score": 0.8153, "support": 1900},
        "weighted avg": {"precision": 0.83, "recall": 0.827, "f1-score": 0.8283, "support": 1900},
    },
}
EXPORT_CONFIG = {
    "backbone": "jhgan/ko-sroberta-multitask",
    "max_length": MAX_LENGTH,
    "pooling": "mean",
    "dropout": 0.1,
    "learning_rate": 2e-5,
    "batch_size": 32,
    "epochs": 8,
    "output_dir": "/home/someone/runs/kosenttype",
}


class RunSettings:
    """A training script's own settings class: unpickling it needs this module, so only --trust-checkpoint may."""

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = learning_rate


class CodeRunningPayload:
    """What a malicious checkpoint carries: unpickling it calls `open(marker, "w")`, creating the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class FolderMakingPayload:
    """The same in a module torch blocks outright (`os`): unpickling it would call `os.makedirs(marker)`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


class ReferenceClassifier(nn.Module):
    """encoder → mean pooling over the attention mask → dropout → linear, under configurable attribute names."""

    def __init__(self, encoder: nn.Module, encoder_name: str, head_name: str, sequential_head: bool = False) -> None:
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder_name, self.head_name = encoder_name, head_name
        setattr(self, encoder_name, encoder)
        self.dropout = nn.Dropout(0.1)
        linear = nn.Linear(hidden, len(SENTENCE_TYPES))
        setattr(self, head_name, nn.Sequential(nn.Dropout(0.1), linear) if sequential_head else linear)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = getattr(self, self.encoder_name)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return getattr(self, self.head_name)(self.dropout(pooled))


def tiny_roberta(vocab_size: int, add_pooling_layer: bool) -> RobertaModel:
    """ko-sroberta's shape in miniature (256 + 2 positions, one token type, eps 1e-5, pad 1), with the 64 dims
    per head that shape inference assumes."""
    settings = tiny_encoder_config(vocab_size, hidden_size=64, num_layers=2, max_length=MAX_LENGTH)
    settings.pop("model_type")
    config = RobertaConfig(**{**settings, "num_attention_heads": 1, "intermediate_size": 128})
    return RobertaModel(config, add_pooling_layer=add_pooling_layer)


def tiny_bert_config(vocab_size: int, **overrides) -> BertConfig:
    """Not inferable from shapes (2 heads of 16 dims, eps 1e-12): needs --backbone."""
    settings = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH,
    )
    return BertConfig(**{**settings, **overrides})


def reference_logits(module: ReferenceClassifier, tokenizer) -> list[list[float]]:
    batch = tokenizer(TEST_SENTENCES, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    with torch.no_grad():
        return module.eval()(batch["input_ids"], batch["attention_mask"]).tolist()


def convert(*args: str | Path, capsys=None) -> tuple[int, str, str]:
    code = convert_checkpoint.main([str(arg) for arg in args])
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return code, out, err


def assert_refused(code: int, err: str, *expected: str) -> None:
    """One clear line `kosenttype-convert: error: …`, naming what is wrong, and exit status 2 (can't go on)."""
    errors = [line for line in err.strip().splitlines() if line.startswith("kosenttype-convert: error:")]
    assert code == 2, err
    assert len(errors) == 1, err
    for text in expected:
        assert text in errors[0], errors[0]


def assert_nothing_written(output_dir: Path) -> None:
    assert not output_dir.exists()
    assert not [p for p in output_dir.parent.iterdir() if p.name.startswith(f".{output_dir.name}.")]


@pytest.fixture(scope="module")
def offline():
    """Hub look-ups fail at once (as on an offline machine) instead of retrying for half a minute."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="module")
def run_a(tmp_path_factory, tiny_tokenizer, offline):
    """A training run saved with everything beside the weights, as a thorough training script would."""
    torch.manual_seed(1)
    module = ReferenceClassifier(tiny_roberta(len(tiny_tokenizer), add_pooling_layer=True), "encoder", "classifier")
    optimizer = torch.optim.AdamW(module.parameters(), lr=2e-5)
    module(torch.tensor([[0, 7, 2]]), torch.ones(1, 3, dtype=torch.long)).sum().backward()
    optimizer.step()
    run = tmp_path_factory.mktemp("run_a")
    torch.save(
        {
            "epoch": 4,
            "model_state_dict": module.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(),
            "args": argparse.Namespace(lr=2e-5, output_dir=pathlib.PosixPath("/tmp/run"), seed=42),
            "best_macro_f1": np.float64(0.8153),
            "confusion_matrix": np.eye(4, dtype=np.int64),
        },
        run / "best.pt",
    )
    tiny_tokenizer.save_pretrained(run / "tokenizer")
    (run / "label_mapping.json").write_text(json.dumps(LABEL_MAPPING, ensure_ascii=False), encoding="utf-8")
    (run / "best_metrics.json").write_text(json.dumps(BEST_METRICS, ensure_ascii=False), encoding="utf-8")
    (run / "hf_export_config.json").write_text(json.dumps(EXPORT_CONFIG), encoding="utf-8")
    (run / "load_spec.json").write_text(json.dumps({"pooling": "mean", "max_length": MAX_LENGTH}), encoding="utf-8")
    out = run.parent / "converted_a"
    with contextlib.redirect_stdout(io.StringIO()) as report:
        code = convert_checkpoint.main(["--checkpoint", str(run / "best.pt"), "--output-dir", str(out)])
    assert code == 0
    return {"run": run, "out": out, "report": report.getvalue(), "expected": reference_logits(module, tiny_tokenizer)}


@pytest.fixture(scope="module")
def run_b(tmp_path_factory, tiny_tokenizer):
    """DataParallel prefixes on a bare state dict, a BERT encoder without pooler, nn.Sequential(dropout, linear) head,
    side files elsewhere and named explicitly, the architecture from a --backbone folder; converted under umask 027."""
    torch.manual_seed(2)
    encoder = BertModel(tiny_bert_config(len(tiny_tokenizer)), add_pooling_layer=False)
    module = ReferenceClassifier(encoder, "bert", "head", sequential_head=True)
    run = tmp_path_factory.mktemp("run_b")
    torch.save({f"module.{key}": tensor for key, tensor in module.state_dict().items()}, run / "best.pt")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    tiny_tokenizer.save_pretrained(elsewhere / "tok")
    encoder.config.save_pretrained(elsewhere / "backbone")
    labels = {label: i for i, label in enumerate(SENTENCE_TYPES)}
    (elsewhere / "labels.json").write_text(json.dumps(labels, ensure_ascii=False), encoding="utf-8")
    out = run.parent / "converted_b"
    args = ["--checkpoint", run / "best.pt", "--output-dir", out, "--tokenizer", elsewhere / "tok"]
    args += ["--label-mapping", elsewhere / "labels.json", "--backbone", elsewhere / "backbone"]
    previous_umask = os.umask(UMASK)
    try:
        assert convert_checkpoint.main([str(arg) for arg in args]) == 0
    finally:
        os.umask(previous_umask)
    return {
        "run": run,
        "out": out,
        "backbone": elsewhere / "backbone",
        "expected": reference_logits(module, tiny_tokenizer),
    }


@pytest.fixture(scope="module")
def run_c(tmp_path_factory, tiny_tokenizer):
    """Float16 weights under 'state_dict' beside the run's own labels and settings object (needs
    --trust-checkpoint), an encoder called 'model' with the position_ids buffer older transformers saved, a head
    called 'fc', no side files, and an existing OUT replaced with --overwrite."""
    torch.manual_seed(3)
    module = ReferenceClassifier(tiny_roberta(len(tiny_tokenizer), add_pooling_layer=False), "model", "fc").half()
    state_dict = {**module.state_dict(), "model.embeddings.position_ids": torch.arange(MAX_LENGTH + 2)[None]}
    module.float()  # the reference computes in float32 with the float16 weights, as the converted model will
    run = tmp_path_factory.mktemp("run_c")
    checkpoint = {"state_dict": state_dict, "id2label": dict(enumerate(SENTENCE_TYPES)), "cfg": RunSettings(2e-5)}
    torch.save(checkpoint, run / "best.pt")
    tiny_tokenizer.save_pretrained(run / "tokenizer")
    out = run.parent / "converted_c"
    out.mkdir()
    (out / "stale.txt").write_text("from an older conversion", encoding="utf-8")
    args = ["--checkpoint", str(run / "best.pt"), "--output-dir", str(out), "--overwrite", "--trust-checkpoint"]
    assert convert_checkpoint.main(args) == 0
    return {"run": run, "out": out, "expected": reference_logits(module, tiny_tokenizer)}


LOAD_IN_FRESH_PROCESS = """
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
folders, sentences = json.loads(sys.argv[1]), json.loads(sys.argv[2])
results = {}
for folder in folders:
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits.tolist()
    results[folder] = {"logits": logits, "module": type(model).__module__, "id2label": model.config.id2label,
                       "longest": batch["input_ids"].shape[1]}
classify = pipeline("text-classification", model=folders[0], trust_remote_code=True)
results["pipeline"] = classify(sentences[:2], top_k=None)
print(json.dumps(results, ensure_ascii=False))
"""


def load_in_fresh_process(folders: list[Path], python: str = sys.executable) -> dict:
    code = f"import sys; sys.argv[1:] = {[json.dumps([str(f) for f in folders]), json.dumps(TEST_SENTENCES)]!r}\n"
    return run_python(code + LOAD_IN_FRESH_PROCESS, python=python)


@pytest.fixture(scope="module")
def reloaded(run_a, run_b, run_c) -> dict:
    return load_in_fresh_process([run_a["out"], run_b["out"], run_c["out"]])


def test_long_sentence_exceeds_the_limit(tiny_tokenizer):
    assert len(tiny_tokenizer(LONG_SENTENCE)["input_ids"]) > MAX_LENGTH


@pytest.mark.parametrize("name", ["run_a", "run_b", "run_c"])
def test_converted_model_predicts_what_the_training_module_predicted(name, request, reloaded):
    run = request.getfixturevalue(name)
    result = reloaded[str(run["out"])]
    assert result["module"].startswith("transformers_modules"), "loaded the package, not the folder's own code"
    assert result["id2label"] == {str(i): label for i, label in enumerate(SENTENCE_TYPES)}
    assert result["longest"] == MAX_LENGTH, "the saved tokenizer must truncate at the training length by itself"
    np.testing.assert_allclose(result["logits"], run["expected"], atol=1e-5, rtol=0)


def test_pipeline_scores_every_sentence_type(reloaded):
    for scores in reloaded["pipeline"]:
        assert sorted(entry["label"] for entry in scores) == sorted(SENTENCE_TYPES)
        assert sum(entry["score"] for entry in scores) == pytest.approx(1.0, abs=1e-5)


def test_output_folder_holds_the_hub_files_and_nothing_else(run_a, run_c):
    expected = {
        "README.md",
        "config.json",
        "configuration_kosenttype.py",
        "model.safetensors",
        "modeling_kosenttype.py",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    assert {p.name for p in run_a["out"].iterdir()} == expected
    assert {p.name for p in run_c["out"].iterdir()} == expected, "--overwrite must replace OUT, not merge into it"
    config = json.loads((run_a["out"] / "config.json").read_text(encoding="utf-8"))
    assert config["auto_map"]["AutoModelForSequenceClassification"].startswith("modeling_kosenttype.")
    assert config["backbone_name"] == "jhgan/ko-sroberta-multitask"
    tokenizer_config = json.loads((run_a["out"] / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tokenizer_config["model_max_length"] == MAX_LENGTH


def test_every_checkpoint_tensor_is_kept_except_the_unused_pooler_and_buffers(run_a, run_c):
    """The saved weights are the checkpoint's, bit for bit, under the new names."""
    original = torch.load(run_a["run"] / "best.pt", weights_only=False)["model_state_dict"]
    saved = load_file(run_a["out"] / "model.safetensors")
    expected = {
        f"kosenttype.{key}" if key.startswith("encoder.") else key: tensor
        for key, tensor in original.items()
        if not key.startswith("encoder.pooler.")
    }
    assert sorted(saved) == sorted(expected)
    for key, tensor in expected.items():
        assert torch.equal(saved[key], tensor), key
    saved_c = load_file(run_c["out"] / "model.safetensors")
    assert "kosenttype.encoder.embeddings.position_ids" not in saved_c
    original_head = torch.load(run_c["run"] / "best.pt", weights_only=False)["state_dict"]["fc.weight"]
    assert original_head.dtype == torch.float16
    assert torch.equal(saved_c["classifier.weight"], original_head.float())


def test_model_card_metadata_and_tables(run_a):
    card = ModelCard.load(run_a["out"] / "README.md")
    data = card.data.to_dict()
    assert data["language"] == "ko"
    assert data["license"] == "apache-2.0"
    assert data["pipeline_tag"] == "text-classification"
    assert data["library_name"] == "transformers"
    assert data["base_model"] == "jhgan/ko-sroberta-multitask"
    metrics = {m["name"]: m["value"] for m in data["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"Accuracy": 0.827, "Macro F1": 0.8153, "Weighted F1": 0.8283}
    text = card.text
    assert "| 2 | 예측형 | Predictive: predicts or plans the future. |" in text
    assert "| 추론형 | 0.7400 | 0.7200 | 0.7326 | 400 |" in text
    assert "| learning_rate | 2e-05 |" in text
    assert "/home/someone" not in text, "machine-local paths must not be published"
    assert 'pipeline("text-classification", model=' in text and "trust_remote_code=True" in text
    assert "## Intended use and limitations" in text


def test_converted_folder_loads_in_transformers_4(run_a):
    python = os.environ.get("KOSENTTYPE_TF4_PYTHON")
    if not python:
        pytest.skip("KOSENTTYPE_TF4_PYTHON (a python with transformers 4.57) is not set")
    result = load_in_fresh_process([run_a["out"]], python=python)[str(run_a["out"])]
    np.testing.assert_allclose(result["logits"], run_a["expected"], atol=1e-5, rtol=0)


def test_report_names_what_was_mapped_dropped_and_inferred(run_a):
    out = run_a["report"]
    assert "'encoder.*' → 'kosenttype.encoder.*'" in out
    assert "dropped on purpose" in out and "encoder.pooler.dense.weight [64, 64]" in out
    assert "inferred from tensor shapes" in out and "num_attention_heads 1" in out
    assert "max abs logit difference" in out


# --- publishing ----------------------------------------------------------------------------------------------


class FakeHub(http.server.ThreadingHTTPServer):
    """The few Hub endpoints that create_repo and upload_folder call, recording what they receive."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeHubHandler)
        self.requests: list[dict] = []
        self.committed: dict[str, bytes] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FakeHubHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        hub: FakeHub = self.server
        hub.requests.append({"path": self.path, "authorization": self.headers.get("Authorization"), "body": body})
        route = self.path.split("?")[0]
        if route == "/api/repos/create":
            payload = json.loads(body)
            self.reply(200, {"url": f"{hub.url}/{payload['organization']}/{payload['name']}"})
        elif route == "/api/validate-yaml":
            self.reply(200, {"errors": [], "warnings": []})
        elif "/preupload/" in route:
            files = json.loads(body)["files"]
            self.reply(
                200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
            )
        elif "/commit/" in route:
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    hub.committed[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            repo_id = route.removeprefix("/api/models/").split("/commit/")[0]
            self.reply(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{'0' * 40}", "commitOid": "0" * 40})
        else:
            self.reply(404, {"error": f"not faked: {route}"})

    def reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_hub():
    hub = FakeHub()
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    yield hub
    hub.shutdown()
    hub.server_close()


def test_push_to_hub_uploads_the_converted_folder(tmp_path, run_b, fake_hub):
    """The console script as a user runs it, with huggingface_hub's real client talking to HF_ENDPOINT."""
    out = tmp_path / "published"
    command = [sys.executable, "convert_checkpoint.py", "--checkpoint", str(run_b["run"] / "best.pt")]
    command += ["--output-dir", str(out), "--tokenizer", str(run_b["out"]), "--backbone", str(run_b["backbone"])]
    command += ["--push-to-hub", "someone/kosenttype-test", "--private", "--commit-message", "first upload"]
    env = {**os.environ, "HF_ENDPOINT": fake_hub.url, "HF_TOKEN": "hf_dummy_token", "NO_PROXY": "127.0.0.1"}
    env.pop("HF_HUB_OFFLINE", None)
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"published: {fake_hub.url}/someone/kosenttype-test" in completed.stdout
    create = json.loads(fake_hub.requests[0]["body"])
    assert fake_hub.requests[0]["path"] == "/api/repos/create"
    assert (create["organization"], create["name"], create.get("visibility")) == (
        "someone",
        "kosenttype-test",
        "private",
    )
    assert all(r["authorization"] == "Bearer hf_dummy_token" for r in fake_hub.requests)
    assert any(r["path"].startswith("/api/models/someone/kosenttype-test/commit/main") for r in fake_hub.requests)
    assert sorted(fake_hub.committed) == sorted(p.name for p in out.iterdir())
    assert fake_hub.committed["model.safetensors"] == (out / "model.safetensors").read_bytes()
    assert 'model="someone/kosenttype-test"' in fake_hub.committed["README.md"].decode()


# --- refusing bad input ---------------------------------------------------------------------------------------


def test_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path, run_a, capsys):
    marker = tmp_path / "code_ran"
    weights = torch.load(run_a["run"] / "best.pt", weights_only=False)["model_state_dict"]
    torch.save({"model_state_dict": weights, "payload": CodeRunningPayload(marker)}, tmp_path / "best.pt")
    code, _, err = convert("--checkpoint", tmp_path / "best.pt", "--output-dir", tmp_path / "out", capsys=capsys)
    assert_refused(code, err, "best.pt", f"{open.__module__}.open", "--trust-checkpoint")
    assert not marker.exists(), "the checkpoint's code ran"
    assert_nothing_written(tmp_path / "out")


def test_unknown_class_needs_trust_checkpoint(tmp_path, run_c, capsys):
    out = tmp_path / "out"
    code, _, err = convert("--checkpoint", run_c["run"] / "best.pt", "--output-dir", out, capsys=capsys)
    assert_refused(code, err, "RunSettings", "--trust-checkpoint")
    assert_nothing_written(out)


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make_checkpoint", "message"),
    [
        (lambda tmp, run: tmp / "absent.pt", "checkpoint not found"),
        (lambda tmp, run: write_bytes(tmp / "best.pt", b""), "empty file"),
        (lambda tmp, run: write_bytes(tmp / "best.pt", b'{"epoch": 3}'), "not a PyTorch checkpoint"),
        (
            lambda tmp, run: write_bytes(tmp / "best.pt", (run / "best.pt").read_bytes()[:50_000]),
            "truncated or corrupt",
        ),
    ],
    ids=["missing", "empty", "not-a-checkpoint", "truncated"],
)
def test_unreadable_checkpoint_is_named(tmp_path, run_a, capsys, make_checkpoint, message):
    checkpoint = make_checkpoint(tmp_path, run_a["run"])
    code, _, err = convert("--checkpoint", checkpoint, "--output-dir", tmp_path / "out", capsys=capsys)
    assert_refused(code, err, str(checkpoint), message)
    assert_nothing_written(tmp_path / "out")


def test_explicit_side_file_that_is_missing_is_an_error(tmp_path, run_a, capsys):
    args = ["--checkpoint", run_a["run"] / "best.pt", "--output-dir", tmp_path / "out"]
    code, _, err = convert(*args, "--label-mapping", tmp_path / "labels.json", capsys=capsys)
    assert_refused(code, err, "labels.json", "--label-mapping")


def test_side_file_that_is_not_json_is_named(tmp_path, run_a, capsys):
    broken = tmp_path / "best_metrics.json"
    broken.write_text('{"accuracy": 0.8,', encoding="utf-8")
    args = ["--checkpoint", run_a["run"] / "best.pt", "--output-dir", tmp_path / "out"]
    code, _, err = convert(*args, "--metrics", broken, capsys=capsys)
    assert_refused(code, err, str(broken), "not readable JSON")
    assert_nothing_written(tmp_path / "out")


def test_different_architecture_is_named_key_by_key(tmp_path, run_b, capsys):
    weights = torch.load(run_b["run"] / "best.pt", weights_only=True)
    head = {"classifier.dense.weight": torch.zeros(32, 32), "classifier.dense.bias": torch.zeros(32)}
    head |= {"classifier.out_proj.weight": torch.zeros(4, 32), "classifier.out_proj.bias": torch.zeros(4)}
    encoder_only = {k: v for k, v in weights.items() if not k.startswith("module.head.")}
    torch.save({**encoder_only, **head}, tmp_path / "two_layer_head.pt")
    args = ["--output-dir", tmp_path / "out", "--tokenizer", run_b["out"], "--backbone", run_b["backbone"]]
    code, _, err = convert("--checkpoint", tmp_path / "two_layer_head.pt", *args, capsys=capsys)
    assert_refused(code, err, "classifier.dense.weight [32, 32]", "classifier.out_proj.weight [4, 32]")

    for overrides, expected in [
        ({"num_hidden_layers": 3}, "missing from the checkpoint: kosenttype.encoder.encoder.layer.2."),
        ({"intermediate_size": 48}, "shape mismatch: kosenttype.encoder.encoder.layer.0.intermediate.dense.weight"),
    ]:
        other = tmp_path / f"backbone_{next(iter(overrides))}"
        tiny_bert_config(len(weights["module.bert.embeddings.word_embeddings.weight"]), **overrides).save_pretrained(
            other
        )
        args = ["--checkpoint", run_b["run"] / "best.pt", "--output-dir", tmp_path / "out", "--backbone", other]
        code, _, err = convert(*args, "--tokenizer", run_b["out"], capsys=capsys)
        assert_refused(code, err, expected)
    assert_nothing_written(tmp_path / "out")


def test_labels_that_disagree_show_both(tmp_path, run_c, capsys):
    reordered = tmp_path / "label_mapping.json"
    reordered.write_text(json.dumps({"대화형": 0, "사실형": 1, "추론형": 2, "예측형": 3}, ensure_ascii=False), "utf-8")
    args = ["--checkpoint", run_c["run"] / "best.pt", "--output-dir", tmp_path / "out", "--trust-checkpoint"]
    code, _, err = convert(*args, "--label-mapping", reordered, capsys=capsys)
    assert_refused(
        code, err, "labels disagree", str(["대화형", "사실형", "추론형", "예측형"]), str(list(SENTENCE_TYPES))
    )
    assert_nothing_written(tmp_path / "out")


def test_label_count_must_match_the_head(tmp_path, run_a, capsys):
    three = tmp_path / "three.json"
    three.write_text(json.dumps(["사실형", "추론형", "예측형"], ensure_ascii=False), "utf-8")
    args = ["--checkpoint", run_a["run"] / "best.pt", "--output-dir", tmp_path / "out"]
    code, _, err = convert(*args, "--label-mapping", three, capsys=capsys)
    assert_refused(code, err, "three.json", "3 labels", "head has 4")
    assert_nothing_written(tmp_path / "out")


def test_existing_output_is_refused_without_overwrite(tmp_path, run_a, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious", encoding="utf-8")
    code, _, err = convert("--checkpoint", run_a["run"] / "best.pt", "--output-dir", out, capsys=capsys)
    assert_refused(code, err, str(out), "--overwrite")
    assert (out / "keep.txt").read_text(encoding="utf-8") == "precious"


def test_overwrite_never_deletes_the_inputs(run_a, capsys):
    checkpoint = run_a["run"] / "best.pt"
    code, _, err = convert("--checkpoint", checkpoint, "--output-dir", run_a["run"], "--overwrite", capsys=capsys)
    assert_refused(code, err, "holds the input")
    assert checkpoint.exists()


def test_failed_verification_leaves_nothing(tmp_path, run_a, capsys, monkeypatch):
    """A tokenizer saved with the wrong length changes the long sentence's logits: the check must catch it."""

    def save_wrong_length(tokenizer, folder, max_length):
        save_tokenizer_for_hub(tokenizer, folder, max_length=16)

    monkeypatch.setattr(convert_checkpoint, "save_tokenizer_for_hub", save_wrong_length)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "nested" / "out"
    code, _, err = convert("--checkpoint", run_a["run"] / "best.pt", "--output-dir", out, capsys=capsys)
    assert_refused(code, err, "verification failed", "max abs logit difference")
    assert not (tmp_path / "nested").exists(), "folders created for OUT must go too"


# --- side-file formats ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mapping",
    [
        {"label2id": {"b": 1, "a": 0}},
        {"id2label": {"1": "b", "0": "a"}},
        {"a": 0, "b": 1},
        {"0": "a", "1": "b"},
        ["a", "b"],
    ],
)
def test_label_mapping_formats(mapping):
    assert labels_from(mapping, "labels.json") == ["a", "b"]


def test_metrics_from_a_classification_report():
    report = {name: value for name, value in BEST_METRICS["report"].items()}
    metrics = normalize_metrics({"val_report": None, "classification_report": report}, list(SENTENCE_TYPES))
    assert metrics["accuracy"] == 0.827
    assert metrics["macro_f1"] == 0.8153
    assert metrics["weighted_f1"] == 0.8283
    assert metrics["per_label"]["대화형"] == {"precision": 0.99, "recall": 1.0, "f1": 0.9955, "support": 200}


# --- hostile input, signals and the output folder (issue 9) ---------------------------------------------------


def run_a_weights(run_a) -> dict[str, torch.Tensor]:
    return torch.load(run_a["run"] / "best.pt", weights_only=False)["model_state_dict"]


def row_the_verification_never_reads(tokenizer) -> int:
    read = {token for sentence in convert_checkpoint.VERIFICATION_SENTENCES for token in tokenizer(sentence).input_ids}
    return max(set(range(len(tokenizer))) - read)


@pytest.mark.parametrize(
    ("key", "value"),
    [("encoder.embeddings.word_embeddings.weight", float("nan")), ("classifier.bias", float("inf"))],
    ids=["nan-in-an-unread-embedding-row", "inf-in-the-head"],
)
def test_non_finite_weight_is_refused_naming_the_tensor(tmp_path, run_a, tiny_tokenizer, capsys, key, value):
    """NaN in an embedding row that no verification sentence reaches: only a scan of every tensor finds it."""
    weights = run_a_weights(run_a)
    position = [row_the_verification_never_reads(tiny_tokenizer), 3] if weights[key].ndim == 2 else [2]
    weights[key] = weights[key].clone()
    weights[key][tuple(position)] = value
    torch.save({"model_state_dict": weights}, tmp_path / "best.pt")
    args = ["--checkpoint", tmp_path / "best.pt", "--output-dir", tmp_path / "out", "--tokenizer", run_a["out"]]
    code, _, err = convert(*args, capsys=capsys)
    assert_refused(code, err, str(tmp_path / "best.pt"), f"tensor {key}", "1 NaN/inf", f"first at {position}")
    assert_nothing_written(tmp_path / "out")


def test_tensor_repeating_its_storage_is_refused(tmp_path, run_a, capsys):
    """Five million embedding rows that are one row repeated (stride 0): a small checkpoint, a gigabyte once
    written out; refused before anything is materialised."""
    weights = run_a_weights(run_a)
    weights["encoder.embeddings.word_embeddings.weight"] = torch.zeros(1, 64).expand(5_000_000, 64)
    torch.save({"model_state_dict": weights}, tmp_path / "best.pt")
    assert (tmp_path / "best.pt").stat().st_size < 1_000_000
    args = ["--checkpoint", tmp_path / "best.pt", "--output-dir", tmp_path / "out", "--tokenizer", run_a["out"]]
    code, _, err = convert(*args, capsys=capsys)
    assert_refused(code, err, "encoder.embeddings.word_embeddings.weight [5000000, 64]", "repeats its storage")
    assert_nothing_written(tmp_path / "out")


def test_embedding_far_larger_than_the_tokenizer_is_refused(tmp_path, run_a, tiny_tokenizer, capsys):
    weights = run_a_weights(run_a)
    weights["encoder.embeddings.word_embeddings.weight"] = torch.randn(5000, 64)
    torch.save({"model_state_dict": weights}, tmp_path / "best.pt")
    args = ["--checkpoint", tmp_path / "best.pt", "--output-dir", tmp_path / "out", "--tokenizer", run_a["out"]]
    code, _, err = convert(*args, capsys=capsys)
    assert_refused(code, err, f"tokenizer has {len(tiny_tokenizer)} tokens", "5000 rows", "--tokenizer")
    assert_nothing_written(tmp_path / "out")


def test_backbone_that_is_a_kosenttype_model_lends_its_encoder(tmp_path, run_b, capsys):
    """A converted folder as --backbone: its nested encoder configuration is the architecture, and the result is
    the conversion made with the encoder's own configuration, tensor for tensor."""
    out = tmp_path / "out"
    args = ["--checkpoint", run_b["run"] / "best.pt", "--output-dir", out, "--tokenizer", run_b["out"]]
    code, report, err = convert(*args, "--backbone", run_b["out"], capsys=capsys)
    assert code == 0, err
    assert f"the encoder configuration inside {run_b['out']}" in report
    converted, reference = (json.loads((folder / "config.json").read_text()) for folder in (out, run_b["out"]))
    assert converted["encoder_config"] == reference["encoder_config"]
    assert converted["backbone_name"] == str(run_b["backbone"])
    saved, expected = load_file(out / "model.safetensors"), load_file(run_b["out"] / "model.safetensors")
    assert sorted(saved) == sorted(expected)
    assert all(torch.equal(saved[key], expected[key]) for key in expected)


def test_legacy_format_checkpoint_with_code_names_the_global(tmp_path, run_a, capsys):
    """torch.save's pre-1.6 (non-zip) format can't be scanned; torch's own message names what it refused."""
    marker = tmp_path / "code_ran"
    checkpoint = {"model_state_dict": run_a_weights(run_a), "payload": FolderMakingPayload(marker)}
    torch.save(checkpoint, tmp_path / "best.pt", _use_new_zipfile_serialization=False)
    code, _, err = convert("--checkpoint", tmp_path / "best.pt", "--output-dir", tmp_path / "out", capsys=capsys)
    assert_refused(code, err, "refused to unpickle os.makedirs", "rerun with --trust-checkpoint")
    assert not marker.exists(), "the checkpoint's code ran"
    assert_nothing_written(tmp_path / "out")


def test_output_that_is_an_input_is_refused(tmp_path, run_a, capsys):
    checkpoint = run_a["run"] / "best.pt"
    link = tmp_path / "link_to_run"
    link.symlink_to(run_a["run"], target_is_directory=True)
    for output, expected in [
        (checkpoint, "is also an input"),
        (run_a["run"] / "tokenizer", "is also an input"),
        (link, "holds the input"),
    ]:
        code, _, err = convert("--checkpoint", checkpoint, "--output-dir", output, "--overwrite", capsys=capsys)
        assert_refused(code, err, f"--output-dir {output}", expected)
    assert checkpoint.is_file() and (run_a["run"] / "tokenizer" / "tokenizer.json").is_file()


def test_max_length_past_the_position_embeddings_is_refused_at_the_start(tmp_path, run_a, capsys):
    """The tiny RoBERTa has 258 positions, so 256 tokens; 600 would crash at the first long sentence."""
    export_config = tmp_path / "export.json"
    export_config.write_text(json.dumps({**EXPORT_CONFIG, "max_length": 600}), encoding="utf-8")
    args = ["--checkpoint", run_a["run"] / "best.pt", "--output-dir", tmp_path / "out", "--export-config"]
    code, out, err = convert(*args, export_config, capsys=capsys)
    assert_refused(code, err, f"{export_config} ['max_length']", "max_length 600", "the 256 tokens")
    assert "mapped" not in out, "refused before the weights were mapped"
    assert_nothing_written(tmp_path / "out")


def test_output_folder_gets_the_umask_mode(run_b):
    assert run_b["out"].stat().st_mode & 0o777 == 0o777 & ~UMASK


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("signum", "existing_output"),
    [(signal.SIGTERM, False), (signal.SIGHUP, True), (signal.SIGINT, False)],
    ids=["sigterm-new-output", "sighup-over-existing-output", "ctrl-c-new-output"],
)
def test_signal_mid_conversion_leaves_nothing_behind(tmp_path, run_a, signum, existing_output):
    """`kill` while the staged folder holds the weights: OUT keeps its previous content (or never appears), and
    neither the staging folder nor the parent folders made for OUT remain; one line, no traceback."""
    out = tmp_path / "out" if existing_output else tmp_path / "new" / "deeper" / "out"
    if existing_output:
        out.mkdir()
        (out / "keep.txt").write_text("previous model", encoding="utf-8")
    command = [sys.executable, "-m", "kosenttype.convert_checkpoint", "--checkpoint", str(run_a["run"] / "best.pt")]
    command += ["--output-dir", str(out), "--overwrite"]
    child = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
    )

    def staged() -> bool:
        return any((folder / "tokenizer_config.json").exists() for folder in out.parent.glob(f".{out.name}.*"))

    try:
        wait_for(lambda: staged() or child.poll() is not None)
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 128 + signum, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"kosenttype-convert: interrupted by {signal.Signals(signum).name}; no output was left half-written"
    )
    assert "Traceback" not in stderr
    if existing_output:
        assert [p.name for p in tmp_path.iterdir()] == ["out"]
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
        assert (out / "keep.txt").read_text(encoding="utf-8") == "previous model"
    else:
        assert list(tmp_path.iterdir()) == []


# --- --onnx (issue 11) --------------------------------------------------------------------------------------------


def softmax(logits) -> np.ndarray:
    exponentials = np.exp(np.asarray(logits) - np.max(logits, axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def test_onnx_conversion_adds_files_the_card_lists_and_onnxruntime_runs(tmp_path, run_a, capsys):
    """The ONNX files join the verified folder before the card is written; `kosenttype-predict --backend
    onnxruntime` on it gives the training module's own probabilities."""
    from kosenttype import predict

    out = tmp_path / "out"
    code, report, err = convert("--checkpoint", run_a["run"] / "best.pt", "--output-dir", out, "--onnx", capsys=capsys)
    assert code == 0, err
    assert sorted(path.name for path in (out / "onnx").iterdir()) == ["model.onnx", "model_quantized.onnx"]
    assert "verified model.onnx" in report and "quantized model_quantized.onnx" in report
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "onnx/model.onnx" in card and "onnx/model_quantized.onnx" in card

    sentences = [sentence for sentence in TEST_SENTENCES if sentence]
    (tmp_path / "in.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    arguments = ["--model", out, "--input", tmp_path / "in.txt", "--output", tmp_path / "out.jsonl", "--top_k", "4"]
    arguments += ["--backend", "onnxruntime", "--precision", "fp32", "--max_length", MAX_LENGTH]
    assert predict.main([str(argument) for argument in arguments]) == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    expected = softmax([row for row, sentence in zip(run_a["expected"], TEST_SENTENCES, strict=True) if sentence])
    assert len(records) == len(sentences)
    for record, probabilities in zip(records, expected, strict=True):
        scores = {entry["label"]: entry["score"] for entry in record["top_k"]}
        np.testing.assert_allclose([scores[label] for label in SENTENCE_TYPES], probabilities, atol=1e-4, rtol=0)


def test_sigterm_during_the_onnx_export_leaves_nothing(tmp_path, run_a):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "kosenttype.convert_checkpoint", "--checkpoint", str(run_a["run"] / "best.pt")]
    child = subprocess.Popen(
        [*command, "--output-dir", str(out), "--onnx"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
    )
    try:
        wait_for(lambda: any(tmp_path.glob(f".{out.name}.*/onnx")) or child.poll() is not None)
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1].startswith("kosenttype-convert: interrupted by SIGTERM")
    assert list(tmp_path.iterdir()) == []


def test_onnx_without_the_onnx_extra_is_refused_before_any_work(tmp_path, run_a, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "kosenttype.onnx_export", None)  # as if onnx/onnxruntime were not installed
    args = ["--checkpoint", run_a["run"] / "best.pt", "--output-dir", tmp_path / "out", "--onnx"]
    code, out, err = convert(*args, capsys=capsys)
    assert_refused(code, err, "--onnx needs the onnx extra", "pip install 'kosenttype[onnx]'")
    assert "checkpoint:" not in out, "refused before the checkpoint was read"
    assert_nothing_written(tmp_path / "out")
