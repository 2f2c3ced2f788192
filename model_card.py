"""The model card (README.md) of a saved classifier folder, shared by the converter, the trainer and the ONNX export:
`templates/model_card.md` rendered with huggingface_hub's `ModelCard.from_template` (as setfit does) from a config,
metrics and the folder's files; every section whose data is absent is left out.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic_output import write_text_atomically

if TYPE_CHECKING:
    from .configuration_kosenttype import KoSentTypeConfig

TEMPLATE_PATH = Path(__file__).with_name("templates") / "model_card.md"
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
# The Hub's convention for ONNX files beside the weights (Optimum, Transformers.js), and what each one holds.
ONNX_FILES = {
    "onnx/model.onnx": "fp32",
    "onnx/model_quantized.onnx": "int8 (dynamic quantization, per-channel weights)",
}
MISSING = "—"


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
    """Write `folder/README.md`: YAML the Hub indexes (model-index, base model…), then what the labels mean and how
    good the model is. `metrics`: `run_side_files.normalize_metrics`'s dict, with attribute heads also `attributes`,
    `combined_exact_match` and `dacon_weighted_f1`. `repo_id` names the model in the usage snippets."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    metrics = metrics or {}
    headline = {key: spec for key, spec in MODEL_INDEX_METRICS.items() if metrics.get(key) is not None}
    dataset = metrics.get("eval_dataset") or "held-out split"
    eval_results = [
        EvalResult(
            task_type="text-classification",
            task_name="Sentence-type classification",
            dataset_type=re.sub(r"[^\w.]+", "-", dataset.lower()).strip("-"),
            dataset_name=dataset,
            metric_type=metric_type,
            metric_name=pretty_name,
            metric_value=round(float(metrics[key]), 4),
            metric_args={"average": average} if average else None,
        )
        for key, (metric_type, pretty_name, average) in headline.items()
    ]
    # Only a Hub id (`owner/name`) is a valid `base_model`; a local training folder is provenance, not a link.
    backbone = config.backbone_name
    is_hub_id = backbone and not os.path.isabs(backbone) and not backbone.startswith(".") and backbone.count("/") == 1
    model_name = repo_id.split("/")[-1] if repo_id else "kosenttype"
    card_data = ModelCardData(
        language="ko",
        license=license,
        library_name="transformers",
        pipeline_tag="text-classification",
        base_model=backbone if is_hub_id else None,
        tags=["text-classification", "korean", "sentence-type", "kosenttype", "custom_code"],
        metrics=sorted({result.metric_type for result in eval_results}) or None,
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )
    per_label = metrics.get("per_label") or {}
    ordered = [label for label in config.id2label.values() if label in per_label]
    ordered += [label for label in per_label if label not in ordered]
    attributes = metrics.get("attributes") or {}
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        repo_id=repo_id,
        model_reference=repo_id or "path/to/this-model",
        max_length=(training_procedure or {}).get("max_length"),
        datasets_note=datasets_note,
        training_procedure=training_procedure or {},
        onnx_files=[
            {"path": name, "weights": weights, "size": f"{Path(folder, name).stat().st_size / 2**20:.1f} MB"}
            for name, weights in ONNX_FILES.items()
            if Path(folder, name).is_file()
        ],
        backbone=f"`{backbone}`" if backbone else "a from-scratch encoder",
        encoder=config.encoder_config,
        pooling=config.pooling,
        classifier_dropout=config.classifier_dropout,
        labels=[
            {"id": index, "name": label, "meaning": SENTENCE_TYPE_DEFINITIONS.get(label, MISSING)}
            for index, label in sorted(config.id2label.items())
        ],
        attribute_heads=[
            {"axis": axis, "labels": list(names)} for axis, names in (getattr(config, "attributes", None) or {}).items()
        ],
        eval_dataset=metrics.get("eval_dataset"),
        headline=[(pretty_name, metrics[key]) for key, (_, pretty_name, _) in headline.items()],
        per_label=[(label, per_label[label]) for label in ordered],
        axes={"type": metrics, **attributes} if attributes else {},  # one row per axis, when there are attribute heads
        combined_exact_match=metrics.get("combined_exact_match"),
        dacon_weighted_f1=metrics.get("dacon_weighted_f1"),
    )
    # Conditional sections leave runs of blank lines behind; Markdown needs at most one between blocks.
    text = re.sub(r"\n{3,}", "\n\n", str(card).strip()) + "\n"
    return write_text_atomically(Path(folder, "README.md"), text)
