"""The model card (README.md) of a saved classifier folder, shared by the converter and the trainer."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .configuration_kosenttype import KoSentTypeConfig

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
