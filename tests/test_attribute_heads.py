"""Attribute heads (polarity, tense, certainty) beside the sentence type: a model without them is exactly today's,
one with them round-trips through transformers 5.x and 4.57, and its joint loss is the weighted sum of the heads'."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import KOREAN_SENTENCES, REPO_ROOT, TINY_MAX_LENGTH, run_python, tiny_config
from torch import nn
from transformers import RobertaModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils.generic import find_labels

from kosenttype import SENTENCE_TYPES, KoSentTypeConfig, KoSentTypeForSequenceClassification
from kosenttype.configuration_kosenttype import ATTRIBUTE_LABELS
from kosenttype.hub_tokenizer import save_tokenizer_for_hub
from kosenttype.modeling_kosenttype import attribute_losses, cross_entropy_sums
from kosenttype.scratch_models import tiny_encoder_config

TF4_PYTHON = os.environ.get("KOSENTTYPE_TF4_PYTHON")
# The last commit before attribute heads existed: its model files are "today's" model, which a config, weights and
# outputs without heads must reproduce exactly.
BASELINE_COMMIT = "ed7ea757778aa820927ab8649e54e186af212025"
# An order that sorting would change (certainty < polarity < tense), so a lost order shows.
AXES = ("polarity", "tense", "certainty")


def encode(tokenizer, sentences=KOREAN_SENTENCES):
    return tokenizer(sentences, padding=True, truncation=True, max_length=TINY_MAX_LENGTH, return_tensors="pt")


def model_with_heads(vocab_size: int, **overrides) -> KoSentTypeForSequenceClassification:
    torch.manual_seed(5)
    model = KoSentTypeForSequenceClassification(
        tiny_config(vocab_size=vocab_size, attributes=ATTRIBUTE_LABELS, **overrides)
    )
    with torch.no_grad():  # biases start at 0: make them count, so a head loaded wrongly shows
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    return model.eval()


def reference_logits(model: KoSentTypeForSequenceClassification, batch) -> dict[str, torch.Tensor]:
    """Every head's logits written out by hand: transformers' RobertaModel, a per-sentence mean, one matmul each."""
    encoder = RobertaModel(model.config.encoder_config, add_pooling_layer=False)
    encoder.load_state_dict(model.kosenttype.encoder.state_dict())
    with torch.no_grad():
        states = encoder.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    lengths = batch["attention_mask"].sum(dim=1)
    pooled = torch.stack([states[row, : lengths[row]].mean(dim=0) for row in range(states.shape[0])])
    heads = {"type": model.classifier} | dict(getattr(model, "attribute_classifiers", {}).items())
    return {name: pooled @ head.weight.T + head.bias for name, head in heads.items()}


# --- configuration -------------------------------------------------------------------------------------------------


def test_attribute_heads_are_off_by_default_and_can_be_removed():
    config = KoSentTypeConfig()
    assert config.attributes is None and config.attribute_loss_weights is None
    assert not {"attributes", "attribute_loss_weights"} & set(config.to_dict())
    config.attributes = ATTRIBUTE_LABELS
    assert config.attribute_loss_weights == dict.fromkeys(AXES, 1.0)
    config.attributes = None
    assert config == KoSentTypeConfig()


def test_changing_the_axes_keeps_the_weights_of_the_axes_that_stay():
    config = tiny_config(attributes=ATTRIBUTE_LABELS, attribute_loss_weights={"tense": 0.5, "certainty": 0.0})
    config.attributes = {"tense": ["과거", "현재", "미래"], "mood": ["평서", "의문"]}
    assert config.attribute_loss_weights == {"tense": 0.5, "mood": 1.0}


def test_config_without_heads_writes_the_keys_it_always_wrote(tmp_path):
    tiny_config().save_pretrained(tmp_path)
    assert set(json.loads((tmp_path / "config.json").read_text())) == {
        "auto_map",
        "backbone_name",
        "classifier_dropout",
        "encoder_config",
        "id2label",
        "initializer_range",
        "label2id",
        "model_type",
        "pooling",
        "transformers_version",
    }


def test_config_with_heads_keeps_the_axes_order_and_weights(tmp_path):
    config = tiny_config(attributes=ATTRIBUTE_LABELS, attribute_loss_weights={"tense": 0.5})
    assert list(config.attributes) == list(AXES)
    assert config.attribute_loss_weights == {"polarity": 1.0, "tense": 0.5, "certainty": 1.0}
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["attributes"] == [
        ["polarity", ["긍정", "부정", "미정"]],
        ["tense", ["과거", "현재", "미래"]],
        ["certainty", ["확실", "불확실"]],
    ]
    reloaded = KoSentTypeConfig.from_pretrained(tmp_path)
    assert list(reloaded.attributes.items()) == [(axis, list(ATTRIBUTE_LABELS[axis])) for axis in AXES]
    assert list(reloaded.attribute_loss_weights.items()) == [("polarity", 1.0), ("tense", 0.5), ("certainty", 1.0)]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"attributes": {}}, "attributes is empty"),
        ({"attributes": {"극성 축": ["긍정", "부정"]}}, "Attribute name '극성 축' must be an identifier"),
        (
            {"attributes": [["tense", ["과거", "현재"]], ["tense", ["과거", "현재"]]]},
            "Attribute 'tense' is given twice",
        ),
        ({"attributes": {"tense": "과거현재"}}, "Attribute 'tense' needs a list of label names"),
        ({"attributes": {"tense": ["과거", ""]}}, "Attribute 'tense' needs a list of label names"),
        ({"attributes": {"tense": ["과거"]}}, "Attribute 'tense' needs at least two distinct labels"),
        ({"attributes": {"tense": ["과거", "과거"]}}, "Attribute 'tense' needs at least two distinct labels"),
        (
            {"attributes": ATTRIBUTE_LABELS, "attribute_loss_weights": {"mood": 1.0}},
            r"attribute_loss_weights names mood, which are not attributes \(polarity, tense, certainty\)",
        ),
        (
            {"attributes": ATTRIBUTE_LABELS, "attribute_loss_weights": {"tense": -1}},
            r"attribute_loss_weights\['tense'\] must be a finite number >= 0",
        ),
        (
            {"attributes": ATTRIBUTE_LABELS, "attribute_loss_weights": {"tense": math.nan}},
            r"attribute_loss_weights\['tense'\] must be a finite number >= 0",
        ),
        ({"attribute_loss_weights": {"tense": 2.0}}, "attribute_loss_weights needs attributes"),
    ],
)
def test_bad_attribute_config_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_an_axis_named_like_a_module_method_is_refused():
    with pytest.raises(ValueError, match=r"Attribute name 'type' is reserved by torch\.nn\.ModuleDict"):
        KoSentTypeForSequenceClassification(tiny_config(attributes={"type": ["a", "b"]}))


# --- without heads: exactly the model before attribute heads ------------------------------------------------------

BASELINE_SCRIPT = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from baseline.configuration_kosenttype import KoSentTypeConfig
from baseline.modeling_kosenttype import KoSentTypeForSequenceClassification
request = json.loads(sys.argv[2])
for folder, kwargs in request["configs"]:
    KoSentTypeConfig(**kwargs).save_pretrained(folder)
model = KoSentTypeForSequenceClassification.from_pretrained(request["model"]).eval()
model.save_pretrained(request["resaved"])
batch = {name: torch.tensor(values) for name, values in request["batch"].items()}
with torch.no_grad():
    plain = model(**batch)
    with_loss = model(**batch, labels=torch.tensor(request["labels"]))
    as_tuple = model(**batch, return_dict=False, output_hidden_states=True)
print(json.dumps({
    "logits": plain.logits.tolist(),
    "keys": list(plain.keys()),
    "loss_keys": list(with_loss.keys()),
    "loss": with_loss.loss.item(),
    "tuple_length": len(as_tuple),
}))
"""

CONFIGS_TO_COMPARE = [
    {},
    {"encoder_config": tiny_encoder_config(vocab_size=300, hidden_size=32), "backbone_name": None, "pooling": "cls"},
    {"id2label": {"0": "no", "1": "yes"}, "classifier_dropout": 0.25, "initializer_range": 0.05},
]


@pytest.fixture(scope="module")
def baseline_package(tmp_path_factory) -> Path:
    """The model files of BASELINE_COMMIT as a package `baseline`, read from git (skips where history is absent)."""
    root = tmp_path_factory.mktemp("baseline")
    (root / "baseline").mkdir()
    (root / "baseline" / "__init__.py").write_text("")
    for name in ("configuration_kosenttype.py", "modeling_kosenttype.py"):
        try:
            source = subprocess.run(
                ["git", "-C", str(REPO_ROOT), "show", f"{BASELINE_COMMIT}:{name}"],
                capture_output=True,
                check=True,
                timeout=60,
            ).stdout
        except (OSError, subprocess.CalledProcessError) as error:
            pytest.skip(f"git history with commit {BASELINE_COMMIT[:7]} is not available: {error}")
        (root / "baseline" / name).write_bytes(source)
    return root


@pytest.fixture(scope="module")
def baseline_run(baseline_package, tiny_model_dir, tiny_tokenizer, tmp_path_factory) -> dict:
    """The baseline code, in a fresh process: configs saved, tiny_model_dir loaded, re-saved and run."""
    work = tmp_path_factory.mktemp("baseline_run")
    batch = encode(tiny_tokenizer)
    request = {
        "configs": [[str(work / f"config_{index}"), kwargs] for index, kwargs in enumerate(CONFIGS_TO_COMPARE)],
        "model": str(tiny_model_dir),
        "resaved": str(work / "resaved"),
        "batch": {name: tensor.tolist() for name, tensor in batch.items()},
        "labels": [index % len(SENTENCE_TYPES) for index in range(len(KOREAN_SENTENCES))],
    }
    code = f"import sys; sys.argv = ['-', {str(baseline_package)!r}, {json.dumps(request)!r}]\n" + BASELINE_SCRIPT
    return {"work": work, "request": request, "result": run_python(code)}


def test_config_without_heads_is_byte_identical_to_the_baseline(baseline_run, tmp_path):
    for index, kwargs in enumerate(CONFIGS_TO_COMPARE):
        KoSentTypeConfig(**json.loads(json.dumps(kwargs))).save_pretrained(tmp_path / str(index))
        expected = (baseline_run["work"] / f"config_{index}" / "config.json").read_bytes()
        assert (tmp_path / str(index) / "config.json").read_bytes() == expected, kwargs


def test_saved_model_without_heads_is_byte_identical_to_the_baseline(baseline_run, tiny_model_dir, tmp_path):
    KoSentTypeForSequenceClassification.from_pretrained(tiny_model_dir).save_pretrained(tmp_path)
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / name).read_bytes() == (baseline_run["work"] / "resaved" / name).read_bytes(), name


def test_outputs_without_heads_are_the_baselines(baseline_run, tiny_model_dir):
    expected = baseline_run["result"]
    request = baseline_run["request"]
    model = KoSentTypeForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    batch = {name: torch.tensor(values) for name, values in request["batch"].items()}
    with torch.no_grad():
        plain = model(**batch)
        with_loss = model(**batch, labels=torch.tensor(request["labels"]))
        as_tuple = model(**batch, return_dict=False, output_hidden_states=True)
    assert isinstance(plain, SequenceClassifierOutput)
    assert plain.attribute_logits is None
    assert torch.equal(plain.logits, torch.tensor(expected["logits"]))
    assert (list(plain.keys()), list(with_loss.keys())) == (expected["keys"], expected["loss_keys"])
    assert with_loss.loss.item() == expected["loss"]
    assert len(as_tuple) == expected["tuple_length"]


# --- with heads ---------------------------------------------------------------------------------------------------


def test_heads_add_one_linear_layer_per_axis_and_nothing_else(tiny_tokenizer):
    plain = KoSentTypeForSequenceClassification(tiny_config(vocab_size=len(tiny_tokenizer))).state_dict()
    with_heads = model_with_heads(len(tiny_tokenizer)).state_dict()
    added = {name: tuple(tensor.shape) for name, tensor in with_heads.items() if name not in plain}
    assert set(plain) <= set(with_heads)
    assert added == {
        "attribute_classifiers.polarity.weight": (3, 32),
        "attribute_classifiers.polarity.bias": (3,),
        "attribute_classifiers.tense.weight": (3, 32),
        "attribute_classifiers.tense.bias": (3,),
        "attribute_classifiers.certainty.weight": (2, 32),
        "attribute_classifiers.certainty.bias": (2,),
    }


def test_every_head_reads_the_pooled_sentence_and_the_type_logits_do_not_change(tiny_tokenizer):
    model = model_with_heads(len(tiny_tokenizer))
    type_only = KoSentTypeForSequenceClassification(tiny_config(vocab_size=len(tiny_tokenizer))).eval()
    missing, unexpected = type_only.load_state_dict(model.state_dict(), strict=False)
    assert (missing, len(unexpected)) == ([], 6)
    batch = encode(tiny_tokenizer)
    with torch.no_grad():
        output = model(**batch)
        type_only_logits = type_only(**batch).logits
    assert torch.equal(output.logits, type_only_logits)
    assert len(output.attribute_logits) == len(AXES)
    expected = reference_logits(model, batch)
    for axis, logits in zip(AXES, (output.logits, *output.attribute_logits)[1:], strict=True):
        torch.testing.assert_close(logits, expected[axis], atol=1e-5, rtol=1e-5, msg=axis)
    torch.testing.assert_close(output.logits, expected["type"], atol=1e-5, rtol=1e-5)


def test_heads_can_be_added_to_a_type_only_model(tiny_model_dir, tiny_tokenizer):
    """Fine-tuning the published 4-way model with heads: its weights load, only the heads are new."""
    model, info = KoSentTypeForSequenceClassification.from_pretrained(
        tiny_model_dir, attributes=ATTRIBUTE_LABELS, attribute_loss_weights={"tense": 2.0}, output_loading_info=True
    )
    assert sorted(info["missing_keys"]) == sorted(
        f"attribute_classifiers.{axis}.{part}" for axis in AXES for part in ("weight", "bias")
    )
    assert model.config.attribute_loss_weights == {"polarity": 1.0, "tense": 2.0, "certainty": 1.0}
    batch = encode(tiny_tokenizer, KOREAN_SENTENCES[:2])
    with torch.no_grad():
        output = model.eval()(**batch, attribute_targets=torch.tensor([[0, 1, 0], [1, 2, 1]]))
        seed_logits = KoSentTypeForSequenceClassification.from_pretrained(tiny_model_dir).eval()(**batch).logits
    assert torch.equal(output.logits, seed_logits)
    assert torch.isfinite(output.loss)


def test_from_backbone_reports_the_new_heads(tmp_path):
    RobertaModel(tiny_config().encoder_config).save_pretrained(tmp_path)
    _, info = KoSentTypeForSequenceClassification.from_backbone(
        tmp_path, attributes=ATTRIBUTE_LABELS, output_loading_info=True
    )
    assert sorted(info["missing_keys"]) == sorted(
        ["classifier.weight", "classifier.bias"]
        + [f"attribute_classifiers.{axis}.{part}" for axis in AXES for part in ("weight", "bias")]
    )


def test_trainer_sees_only_the_type_labels_by_default():
    """transformers' Trainer treats every forward argument named *label* as a label, and then evaluates a batch
    only when all are present: an argument `attribute_labels` would leave type-only models without eval metrics."""
    assert find_labels(KoSentTypeForSequenceClassification) == ["labels"]


# --- joint loss ----------------------------------------------------------------------------------------------------

# Columns polarity, tense, certainty; -100 = unknown. Certainty is unknown in the whole batch.
ATTRIBUTE_TARGETS = [[0, 2, -100], [1, -100, -100], [-100, 0, -100], [2, 1, -100], [1, 1, -100]]
TYPE_LABELS = [0, 1, 2, 3, 0]


def hand_cross_entropy(logits: torch.Tensor, labels: list[int], class_weights: list[float] | None = None) -> float:
    """Weighted mean of -log softmax at the label, over the known labels; 0 when none is known."""
    terms = []
    for row, label in enumerate(labels):
        if label == -100:
            continue
        weight = 1.0 if class_weights is None else class_weights[label]
        values = logits[row].tolist()
        log_probability = values[label] - math.log(sum(math.exp(value) for value in values))
        terms.append((weight, -weight * log_probability))
    total_weight = sum(weight for weight, _ in terms)
    return sum(term for _, term in terms) / total_weight if total_weight else 0.0


def test_joint_loss_is_the_weighted_sum_of_the_heads_cross_entropies(tiny_tokenizer):
    loss_weights = {"polarity": 0.5, "tense": 2.0, "certainty": 3.0}
    model = model_with_heads(len(tiny_tokenizer), attribute_loss_weights=loss_weights)
    batch = encode(tiny_tokenizer, KOREAN_SENTENCES[: len(TYPE_LABELS)])
    with torch.no_grad():
        output = model(**batch, labels=torch.tensor(TYPE_LABELS), attribute_targets=torch.tensor(ATTRIBUTE_TARGETS))
        attributes_only = model(**batch, attribute_targets=torch.tensor(ATTRIBUTE_TARGETS)).loss
    columns = list(zip(*ATTRIBUTE_TARGETS, strict=True))
    attribute_part = sum(
        loss_weights[axis] * hand_cross_entropy(logits, list(column))
        for axis, logits, column in zip(AXES, output.attribute_logits, columns, strict=True)
    )
    expected = hand_cross_entropy(output.logits, TYPE_LABELS) + attribute_part
    assert output.loss.item() == pytest.approx(expected, rel=1e-5)
    assert attributes_only.item() == pytest.approx(attribute_part, rel=1e-5)


def test_an_axis_unknown_in_the_whole_batch_adds_nothing_and_keeps_gradients_finite(tiny_tokenizer):
    model = model_with_heads(len(tiny_tokenizer)).train()
    batch = encode(tiny_tokenizer, KOREAN_SENTENCES[:2])
    targets = torch.tensor([[0, 1, -100], [1, 2, -100]])
    loss = model(**batch, attribute_targets=targets).loss
    loss.backward()
    assert torch.isfinite(loss)
    certainty_head = model.attribute_classifiers.certainty
    assert torch.count_nonzero(certainty_head.weight.grad) == 0
    assert all(torch.isfinite(parameter.grad).all() for parameter in model.parameters() if parameter.grad is not None)


def test_class_weighted_pieces_match_torch_and_a_hand_computation():
    """The seam a trainer uses: per-axis sums (Σ w_y·CE, Σ w_y) and weighted means."""
    torch.manual_seed(6)
    logits = (torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 2))
    targets = torch.tensor(ATTRIBUTE_TARGETS)
    class_weights = (torch.tensor([0.2, 1.0, 3.0]), None, torch.tensor([1.0, 2.0]))
    total, denominator = cross_entropy_sums(logits[0], targets[:, 0], class_weights[0])
    known = [label for label in targets[:, 0].tolist() if label != -100]
    assert denominator.item() == pytest.approx(sum(class_weights[0][label].item() for label in known))
    assert (total / denominator).item() == pytest.approx(
        hand_cross_entropy(logits[0], targets[:, 0].tolist(), class_weights[0].tolist()), rel=1e-5
    )
    losses = attribute_losses(logits, targets, class_weights)
    torch.testing.assert_close(
        losses[0], nn.functional.cross_entropy(logits[0], targets[:, 0], weight=class_weights[0], ignore_index=-100)
    )
    torch.testing.assert_close(losses[1], nn.functional.cross_entropy(logits[1], targets[:, 1], ignore_index=-100))
    assert losses[2].item() == 0.0


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([[0, 1]], r"attribute_targets has shape \(1, 2\); expected \(1, 3\): one column per attribute"),
        ([0, 1, 0], r"attribute_targets has shape \(3,\); expected \(1, 3\)"),
    ],
)
def test_attribute_targets_of_the_wrong_shape_are_refused(tiny_tokenizer, targets, message):
    model = model_with_heads(len(tiny_tokenizer))
    with pytest.raises(ValueError, match=message):
        model(**encode(tiny_tokenizer, KOREAN_SENTENCES[:1]), attribute_targets=torch.tensor(targets))


def test_attribute_targets_need_heads(tiny_tokenizer):
    model = KoSentTypeForSequenceClassification(tiny_config(vocab_size=len(tiny_tokenizer))).eval()
    with pytest.raises(ValueError, match="this model has no attribute heads"):
        model(**encode(tiny_tokenizer, KOREAN_SENTENCES[:1]), attribute_targets=torch.tensor([[0, 0, 0]]))


# --- saved folders with heads, in fresh processes of transformers 5.x and 4.57 ------------------------------------

LOAD_WITH_HEADS = """
import json, sys, torch, transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
folder, sentences, package_root = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")

def run(**loading):
    model = AutoModelForSequenceClassification.from_pretrained(folder, **loading).eval()
    with torch.no_grad():
        output = model(**batch)
    classify = pipeline("text-classification", model=folder, **loading)
    return {
        "module": type(model).__module__,
        "output": type(output).__name__,
        "logits": output.logits.tolist(),
        "attribute_logits": [logits.tolist() for logits in output.attribute_logits],
        "top1": [prediction["label"] for prediction in classify(sentences)],
    }

remote = run(trust_remote_code=True)
sys.path.insert(0, package_root)
import kosenttype  # the installed package: registered with the Auto classes, no remote code needed
installed = run()
print(json.dumps({"version": transformers.__version__, "remote": remote, "installed": installed}))
"""


@pytest.fixture(scope="module")
def folder_with_heads(tmp_path_factory, tiny_tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("with_heads")
    model_with_heads(len(tiny_tokenizer)).save_pretrained(folder)
    save_tokenizer_for_hub(tiny_tokenizer, folder, max_length=TINY_MAX_LENGTH)
    return folder


@pytest.fixture(scope="module")
def package_root(tmp_path_factory) -> Path:
    """A folder holding `kosenttype` (a link to this checkout), for a Python in which it is not installed."""
    root = tmp_path_factory.mktemp("package_root")
    (root / "kosenttype").symlink_to(REPO_ROOT, target_is_directory=True)
    return root


def check_round_trip(folder: Path, tokenizer, package_root: Path, python: str | None = None) -> str:
    code = (
        f"import sys; sys.argv = ['-', {str(folder)!r}, {json.dumps(KOREAN_SENTENCES)!r}, {str(package_root)!r}]\n"
        + LOAD_WITH_HEADS
    )
    result = run_python(code, **({"python": python} if python else {}))
    model = KoSentTypeForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = model(**encode(tokenizer))
    expected_heads = [expected.logits, *expected.attribute_logits]
    for mode in ("remote", "installed"):
        loaded = result[mode]
        assert loaded["output"] == "KoSentTypeSequenceClassifierOutput", mode
        assert loaded["module"].startswith("transformers_modules" if mode == "remote" else "kosenttype."), mode
        loaded_heads = [loaded["logits"], *loaded["attribute_logits"]]
        for head, logits, want in zip(("type", *AXES), loaded_heads, expected_heads, strict=True):
            torch.testing.assert_close(torch.tensor(logits), want, atol=1e-6, rtol=0, msg=f"{mode} {head}")
        assert loaded["top1"] == [SENTENCE_TYPES[index] for index in expected.logits.argmax(dim=-1)], mode
    return result["version"]


def test_saved_folder_with_heads_round_trips(folder_with_heads, tiny_tokenizer, package_root):
    config = json.loads((folder_with_heads / "config.json").read_text())
    assert [axis for axis, _ in config["attributes"]] == list(AXES)
    assert check_round_trip(folder_with_heads, tiny_tokenizer, package_root).startswith("5.")


@pytest.mark.skipif(not TF4_PYTHON, reason="KOSENTTYPE_TF4_PYTHON (a Python with transformers 4.57) is not set")
def test_saved_folder_with_heads_round_trips_in_transformers_4(folder_with_heads, tiny_tokenizer, package_root):
    assert check_round_trip(folder_with_heads, tiny_tokenizer, package_root, python=TF4_PYTHON).startswith("4.")
