"""Helpers shared by the command-line scripts (converter, trainer, predictor, quickstart).

Kept apart from the two model files, which are copied to the Hub alone and must hold nothing but the model.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase

if TYPE_CHECKING:
    from .configuration_kosenttype import KoSentTypeConfig

# The special tokens in the order KLUE's vocabularies (and so jhgan/ko-sroberta-multitask) have them:
# [CLS]=0, [PAD]=1, [SEP]=2, [UNK]=3, [MASK]=4.
KLUE_SPECIAL_TOKENS = ("[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]")

# Keys transformers 5.x writes into tokenizer_config.json that describe the machine it was saved on, not the
# tokenizer; published folders must not carry them.
MACHINE_LOCAL_TOKENIZER_KEYS = ("is_local", "local_files_only", "name_or_path", "_commit_hash", "cache_dir")


def train_wordpiece_tokenizer(sentences: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerBase:
    """Train a cased BERT WordPiece tokenizer with the real backbone's special-token ids.

    Cased and without accent stripping, as KLUE's: lower-casing would NFD-decompose Hangul into jamo.
    """
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(KLUE_SPECIAL_TOKENS))
    backend.train_from_iterator(sentences, trainer)
    vocabulary = sorted(backend.get_vocab().items(), key=lambda item: item[1])
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.txt").write_text("".join(f"{token}\n" for token, _ in vocabulary), encoding="utf-8")
        tokenizer_config = {"tokenizer_class": "BertTokenizer", "do_lower_case": False, "strip_accents": False}
        Path(folder, "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")
        return AutoTokenizer.from_pretrained(folder)


def save_tokenizer_for_hub(tokenizer: PreTrainedTokenizerBase, folder: str | os.PathLike, max_length: int) -> None:
    """Save a tokenizer that transformers 4.57 and 5.x both load, with nothing local to this machine in it.

    5.x would otherwise record `is_local`/`local_files_only` and an unbounded `model_max_length`, and
    `pipeline` would then never truncate.
    """
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(folder)
    config_path = Path(folder, "tokenizer_config.json")
    tokenizer_config: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
    for key in MACHINE_LOCAL_TOKENIZER_KEYS:
        tokenizer_config.pop(key, None)
    tokenizer_config["tokenizer_class"] = _hub_tokenizer_class(tokenizer)
    config_path.write_text(json.dumps(tokenizer_config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _hub_tokenizer_class(tokenizer: PreTrainedTokenizerBase) -> str:
    """The slow class name both major versions map to a fast tokenizer (`BertTokenizerFast` → `BertTokenizer`).

    5.x has no `*Fast` classes and would otherwise save the generic `TokenizersBackend`, which 4.57 can't load.
    """
    return type(tokenizer).__name__.removesuffix("Fast")


def tiny_encoder_config(vocab_size: int, hidden_size: int = 64, num_layers: int = 2, max_length: int = 256) -> dict:
    """A small RoBERTa that trains from scratch on a CPU in minutes, with the real backbone's token ids."""
    return {
        "model_type": "roberta",
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": max(1, hidden_size // 32),
        "intermediate_size": hidden_size * 4,
        "max_position_embeddings": max_length + 2,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-5,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }


# What each sentence type means, as the AI Hub annotation guidelines define them; the model card's label table.
SENTENCE_TYPE_DEFINITIONS = {
    "사실형": "Factual: states facts or events.",
    "추론형": "Inferential: infers, judges or analyses from facts.",
    "예측형": "Predictive: predicts or plans the future.",
    "대화형": "Conversational: spoken dialogue — questions, requests, greetings, exclamations.",
}
# Headline metrics of a normalized metrics dict → (model-index metric type, pretty name, averaging).
MODEL_INDEX_METRICS = {
    "accuracy": ("accuracy", "Accuracy", None),
    "macro_f1": ("f1", "Macro F1", "macro"),
    "weighted_f1": ("f1", "Weighted F1", "weighted"),
}


def write_model_card(
    folder: str | os.PathLike,
    config: KoSentTypeConfig,
    metrics: dict | None,
    training_procedure: dict | None,
    *,
    license: str = "apache-2.0",
    datasets_note: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write `folder/README.md`: the Hub reads its YAML (language, licence, pipeline, base model, model-index)
    to index and badge the model, and users read the rest to know what the labels mean and how good it is.

    `metrics` is the normalized dict (`accuracy`, `macro_f1`, `weighted_f1`, `per_label` {label: {precision,
    recall, f1, support}}, `eval_dataset`), `training_procedure` a flat dict of hyper-parameters; any key may be
    absent and only what is there is written. `repo_id` names the model in the usage snippet (a placeholder
    otherwise, since the folder may be a temporary one).
    """
    from huggingface_hub import ModelCard, ModelCardData

    metrics = metrics or {}
    model_name = repo_id.split("/")[-1] if repo_id else "kosenttype"
    eval_results = _model_index_results(metrics)
    card_data = ModelCardData(
        language="ko",
        license=license,
        library_name="transformers",
        pipeline_tag="text-classification",
        base_model=_hub_model_id(config.backbone_name),
        tags=["text-classification", "korean", "sentence-type", "kosenttype", "custom_code"],
        metrics=sorted({result.metric_type for result in eval_results}) or None,
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )
    sections = [
        _card_overview(config, model_name),
        _card_label_table(config),
        _card_evaluation(config, metrics),
        _card_training(training_procedure, datasets_note),
        _card_usage(repo_id or "path/to/this-model", (training_procedure or {}).get("max_length")),
        _card_limitations(),
    ]
    body = "\n\n".join(section for section in sections if section)
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}\n")
    path = Path(folder, "README.md")
    card.save(path)
    return path


def _hub_model_id(backbone_name: str | None) -> str | None:
    """Only a Hub id (`owner/name`) is a valid `base_model`; a local training folder is provenance, not a link."""
    if not backbone_name or os.path.isabs(backbone_name) or backbone_name.startswith("."):
        return None
    return backbone_name if backbone_name.count("/") == 1 else None


def _model_index_results(metrics: dict) -> list:
    """The headline metrics as model-index entries, so the Hub shows them on the model page."""
    from huggingface_hub import EvalResult

    dataset = metrics.get("eval_dataset") or "held-out split"
    dataset_id = re.sub(r"[^\w.]+", "-", dataset.lower()).strip("-")
    return [
        EvalResult(
            task_type="text-classification",
            task_name="Sentence-type classification",
            dataset_type=dataset_id,
            dataset_name=dataset,
            metric_type=metric_type,
            metric_name=pretty_name,
            metric_value=round(float(metrics[key]), 4),
            metric_args={"average": average} if average else None,
        )
        for key, (metric_type, pretty_name, average) in MODEL_INDEX_METRICS.items()
        if metrics.get(key) is not None
    ]


def _card_overview(config: KoSentTypeConfig, model_name: str) -> str:
    encoder = config.encoder_config
    backbone = f"`{config.backbone_name}`" if config.backbone_name else "a from-scratch encoder"
    return (
        f"# {model_name}: Korean sentence-type classifier\n\n"
        "Classifies one Korean sentence into one of the AI Hub sentence types "
        f"({', '.join(config.id2label[index] for index in sorted(config.id2label))}).\n\n"
        f"Architecture: {backbone} ({encoder.model_type}, {encoder.num_hidden_layers} layers, hidden size "
        f"{encoder.hidden_size}, vocabulary {encoder.vocab_size}) → {config.pooling} pooling over the attention mask "
        f"→ dropout {config.classifier_dropout} → linear layer. The model code ships with the weights "
        "(`configuration_kosenttype.py`, `modeling_kosenttype.py`), hence `trust_remote_code=True`."
    )


def _card_label_table(config: KoSentTypeConfig) -> str:
    rows = [
        f"| {index} | {label} | {SENTENCE_TYPE_DEFINITIONS.get(label, '—')} |"
        for index, label in sorted(config.id2label.items())
    ]
    return "## Labels\n\n| id | label | meaning |\n|---|---|---|\n" + "\n".join(rows)


def _card_evaluation(config: KoSentTypeConfig, metrics: dict) -> str:
    headline = [
        f"| {pretty_name} | {float(metrics[key]):.4f} |"
        for key, (_, pretty_name, _) in MODEL_INDEX_METRICS.items()
        if metrics.get(key) is not None
    ]
    per_label = metrics.get("per_label") or {}
    if not headline and not per_label:
        return ""
    parts = ["## Evaluation"]
    if metrics.get("eval_dataset"):
        parts.append(f"On {metrics['eval_dataset']}.")
    if headline:
        parts.append("| metric | value |\n|---|---|\n" + "\n".join(headline))
    if per_label:
        ordered = [label for label in config.id2label.values() if label in per_label]
        ordered += [label for label in per_label if label not in ordered]
        parts.append(
            "| label | precision | recall | F1 | support |\n|---|---|---|---|---|\n"
            + "\n".join(_per_label_row(label, per_label[label]) for label in ordered)
        )
    return "\n\n".join(parts)


def _per_label_row(label: str, scores: dict) -> str:
    def cell(key: str) -> str:
        value = scores.get(key)
        if value is None:
            return "—"
        return str(int(value)) if key == "support" else f"{float(value):.4f}"

    return f"| {label} | {cell('precision')} | {cell('recall')} | {cell('f1')} | {cell('support')} |"


def _card_training(training_procedure: dict | None, datasets_note: str | None) -> str:
    parts = []
    if datasets_note:
        parts.append(f"## Training data\n\n{datasets_note}")
    if training_procedure:
        rows = "\n".join(f"| {key} | {value} |" for key, value in training_procedure.items())
        parts.append(f"## Training procedure\n\n| hyper-parameter | value |\n|---|---|\n{rows}")
    return "\n\n".join(parts)


def _card_usage(model_reference: str, max_length: Any) -> str:
    truncation_note = f" (inputs are truncated at {max_length} tokens)" if max_length else ""
    return (
        "## Usage\n\n"
        "```python\n"
        "from transformers import pipeline\n\n"
        f'classifier = pipeline("text-classification", model="{model_reference}", trust_remote_code=True)\n'
        'print(classifier("내년 경제성장률은 2% 안팎에 머물 것으로 전망된다.", top_k=None, truncation=True))\n'
        "```\n\n"
        f"`top_k=None` returns the score of every sentence type{truncation_note}."
    )


def _card_limitations() -> str:
    return (
        "## Intended use and limitations\n\n"
        "- Intended for tagging Korean sentences one at a time by their type, e.g. to separate facts from "
        "analysis and forecasts in news text, or to filter dialogue out of documents.\n"
        "- The labels follow the AI Hub annotation guidelines; the boundaries between 사실형, 추론형 and 예측형 are "
        "subjective, and most errors are confusions among these three.\n"
        "- Trained on written Korean (mostly news-like text); other domains, other languages, and whole paragraphs "
        "instead of single sentences are out of scope and will be less accurate.\n"
        "- Long inputs are truncated at the tokenizer's maximum length, so only their beginning is classified.\n"
        "- Scores are not calibrated probabilities; do not use the output alone for decisions about people."
    )


@contextmanager
def atomic_text_output(path: str | os.PathLike) -> Iterator[TextIO]:
    """A UTF-8 text stream whose content lands at `path` only once the `with` block finishes without error.

    A crash, a full disk or an exception in the producer then leaves either the previous file or the complete new
    one, never a half-written file a later step would take for a whole one. The temporary file sits in the same
    folder (a rename is atomic only within one file system) and is opened normally, so the result gets the usual
    permissions rather than `mkstemp`'s owner-only ones. Newlines are written as given (`csv` needs that).
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | os.PathLike, text: str | Iterable[str]) -> Path:
    """Write UTF-8 text (one string or pieces of it, consumed lazily) to `path` with `atomic_text_output`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_text_output(path) as handle:
        handle.writelines([text] if isinstance(text, str) else text)
    return path


def classification_metrics(labels: Iterable[int], predictions: Iterable[int], label_names: Sequence[str]) -> dict:
    """Accuracy, macro-/weighted-F1 and per-label precision/recall/F1/support with scikit-learn.

    scikit-learn rather than `evaluate`, which fetches its metric scripts from the Hub at run time and so fails
    offline. Every label in `label_names` gets a row, even one absent from both `labels` and `predictions` (its
    scores are then 0), so runs and folds always report the same keys. The shape is the one `write_model_card` reads.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    labels, predictions = list(labels), list(predictions)
    label_ids = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=label_ids, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, labels=label_ids, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(labels, predictions, labels=label_ids, average="weighted", zero_division=0)),
        "per_label": {
            name: {
                "precision": float(precision[index]),
                "recall": float(recall[index]),
                "f1": float(f1[index]),
                "support": int(support[index]),
            }
            for index, name in enumerate(label_names)
        },
    }
