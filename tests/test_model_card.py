"""model_card.py: the card is the shipped template, rendered with what is there and nothing about what is not."""

from __future__ import annotations

import importlib.resources
import re

import pytest
from conftest import REPO_ROOT, tiny_config
from huggingface_hub import ModelCard

from kosenttype.model_card import write_model_card

ATTRIBUTES = {"polarity": ["긍정", "부정", "미정"], "tense": ["과거", "현재", "미래"], "certainty": ["확실", "불확실"]}
TYPE_F1 = {"사실형": 0.81, "추론형": 0.72, "예측형": 0.66, "대화형": 0.97}
ATTRIBUTE_SCORES = {  # axis: (accuracy, macro-F1, per-label F1)
    "polarity": (0.95, 0.61, {"긍정": 0.97, "부정": 0.74, "미정": 0.12}),
    "tense": (0.88, 0.83, {"과거": 0.9, "현재": 0.86, "미래": 0.73}),
    "certainty": (0.93, 0.7, {"확실": 0.96, "불확실": 0.44}),
}


def per_label(f1_by_label: dict[str, float]) -> dict[str, dict]:
    return {label: {"precision": f1, "recall": f1, "f1": f1, "support": 10} for label, f1 in f1_by_label.items()}


def four_axis_metrics(**extra) -> dict:
    metrics = {"accuracy": 0.827, "macro_f1": 0.79, "weighted_f1": 0.82, "per_label": per_label(TYPE_F1)}
    metrics["attributes"] = {
        axis: {"accuracy": accuracy, "macro_f1": macro_f1, "weighted_f1": accuracy, "per_label": per_label(f1)}
        for axis, (accuracy, macro_f1, f1) in ATTRIBUTE_SCORES.items()
    }
    return {**metrics, **extra}


def attribute_config():
    config = tiny_config()
    config.attributes = ATTRIBUTES
    return config


def card_text(folder, config=None, metrics=None, procedure=None, **options) -> str:
    path = write_model_card(folder, config or tiny_config(), metrics, procedure, **options)
    return path.read_text(encoding="utf-8")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_template_ships_as_package_data():
    assert importlib.resources.files("kosenttype").joinpath("templates/model_card.md").is_file()
    package_data = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8").split("[tool.setuptools.package-data]")
    assert '"templates/*"' in package_data[1].split("[")[1], "wheels must ship the template"


def test_card_without_metrics_has_only_what_is_known(tmp_path):
    text = card_text(tmp_path)
    card = ModelCard.load(tmp_path / "README.md")
    assert "model-index" not in card.data.to_dict()
    for section in ("## Labels", "## Usage", "## Intended use and limitations"):
        assert section in text
    for absent in ("## Evaluation", "## Training", "## ONNX", "Attribute heads", "Every axis", "Combined label"):
        assert absent not in text
    assert "\n\n\n" not in text, "an omitted section must not leave blank lines behind"
    for code in python_blocks(text):
        compile(code, "usage", "exec")


def test_four_axis_evaluation_and_attribute_labels(tmp_path):
    metrics = four_axis_metrics(combined_exact_match=0.612, dacon_weighted_f1=0.65432)
    text = card_text(tmp_path, attribute_config(), metrics)
    assert "| polarity | 0 긍정, 1 부정, 2 미정 |" in text
    assert "| certainty | 0 확실, 1 불확실 |" in text
    type_f1 = ", ".join(f"{label} {f1:.2f}" for label, f1 in TYPE_F1.items())
    assert f"| type | 0.8270 | 0.7900 | {type_f1} |" in text
    for axis, (accuracy, macro_f1, f1_by_label) in ATTRIBUTE_SCORES.items():
        f1_cells = ", ".join(f"{label} {f1:.2f}" for label, f1 in f1_by_label.items())
        assert f"| {axis} | {accuracy:.4f} | {macro_f1:.4f} | {f1_cells} |" in text
    assert "Combined label (type-polarity-tense-certainty, e.g. `사실형-긍정-과거-확실`): exact-match" in text
    assert "exact-match accuracy 0.6120" in text
    assert "(weighted F1 over the combined labels) 0.6543" in text
    assert '"attributes": {"polarity":' in text, "the usage section says where the attributes come out"


@pytest.mark.parametrize("present", ["combined_exact_match", "dacon_weighted_f1"])
def test_combined_figures_each_only_when_present(tmp_path, present):
    text = card_text(tmp_path, attribute_config(), four_axis_metrics(**{present: 0.5}))
    assert ("exact-match accuracy 0.5000" in text) == (present == "combined_exact_match")
    assert ("combined labels) 0.5000" in text) == (present == "dacon_weighted_f1")


def test_type_only_model_has_no_axis_table(tmp_path):
    metrics = {key: value for key, value in four_axis_metrics().items() if key != "attributes"}
    text = card_text(tmp_path, tiny_config(), metrics)
    assert "| 추론형 | 0.7200 | 0.7200 | 0.7200 | 10 |" in text
    assert "Every axis" not in text and "Attribute heads" not in text


def test_onnx_files_are_listed_once_they_exist(tmp_path):
    """Writing the card again after an export is how the export refreshes it."""
    assert "## ONNX" not in card_text(tmp_path, procedure={"max_length": 128}, repo_id="someone/kosenttype")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model_quantized.onnx").write_bytes(b"\0" * 3 * 2**20)
    text = card_text(tmp_path, procedure={"max_length": 128}, repo_id="someone/kosenttype")
    assert "| `onnx/model_quantized.onnx` | int8 (dynamic quantization, per-channel weights) | 3.0 MB |" in text
    assert "onnx/model.onnx" not in text
    assert "kosenttype-predict --backend onnxruntime --model someone/kosenttype" in text
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"\0" * 2**20)
    text = card_text(tmp_path, procedure={"max_length": 128}, repo_id="someone/kosenttype")
    assert "| `onnx/model.onnx` | fp32 | 1.0 MB |" in text and "`onnx/model_quantized.onnx`" in text
    snippet = python_blocks(text.split("## ONNX")[1])[0]
    compile(snippet, "onnx usage", "exec")
    assert 'snapshot_download("someone/kosenttype")' in snippet
    assert "enable_truncation(max_length=128)" in snippet
    assert 'InferenceSession(f"{folder}/onnx/model.onnx")' in snippet


def test_onnx_usage_without_a_repository_names_the_folder(tmp_path):
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"\0")
    snippet = python_blocks(card_text(tmp_path).split("## ONNX")[1])[0]
    compile(snippet, "onnx usage", "exec")
    assert 'folder = "path/to/this-model"' in snippet and "snapshot_download" not in snippet
