"""What a training run reports: the Trainer's metric function, the per-label tables of the log, the confusion-matrix
PNG, and a cross-validation's mean ± std — every figure from `metrics.classification_metrics`, so they all agree."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import classification_metrics
from .tables import format_table

logger = logging.getLogger(__name__)

HEADLINE_METRICS = ("accuracy", "macro_f1", "weighted_f1")
COMBINED_METRICS = ("combined_exact_match", "dacon_weighted_f1")
# Fonts that have Hangul, in order of preference, for the confusion matrix's axis labels.
HANGUL_FONTS = (
    "Noto Sans CJK KR",
    "Noto Sans KR",
    "NanumGothic",
    "Malgun Gothic",
    "Apple SD Gothic Neo",
    "AppleGothic",
)


def evaluation_metrics(
    predictions: Any, label_ids: Any, label_names: Sequence[str], attributes: Mapping[str, Sequence[str]] | None = None
) -> dict:
    """`classification_metrics` of the type from the Trainer's predictions; with attribute heads also `attributes`
    ({axis: metrics}) and, over DACON's combined label, `combined_exact_match` and `dacon_weighted_f1`."""
    type_logits, attribute_logits = _split_heads(predictions)
    type_labels, attribute_targets = _split_heads(label_ids)
    predicted = np.argmax(type_logits, axis=-1)
    metrics = classification_metrics(type_labels, predicted, label_names)
    if attributes:
        from sklearn.metrics import accuracy_score, f1_score

        predicted_attributes = np.stack([np.argmax(logits, axis=-1) for logits in attribute_logits], axis=-1)
        metrics["attributes"] = {
            axis: classification_metrics(attribute_targets[:, index], predicted_attributes[:, index], labels)
            for index, (axis, labels) in enumerate(attributes.items())
        }
        known = (attribute_targets != -100).all(axis=-1)  # the combined label needs every axis
        truth = combined_labels(type_labels[known], attribute_targets[known], label_names, attributes)
        guess = combined_labels(predicted[known], predicted_attributes[known], label_names, attributes)
        metrics["combined_exact_match"] = float(accuracy_score(truth, guess))
        metrics["dacon_weighted_f1"] = float(f1_score(truth, guess, average="weighted", zero_division=0))
    return metrics


def type_labels_and_predictions(prediction: Any) -> tuple[np.ndarray, np.ndarray]:
    """The sentence type's true and predicted ids from a Trainer `PredictionOutput` (for the confusion matrix)."""
    return _split_heads(prediction.label_ids)[0], np.argmax(_split_heads(prediction.predictions)[0], axis=-1)


def _split_heads(values: Any) -> tuple[np.ndarray, Any]:
    """(type, attributes) of the Trainer's predictions or labels: a tuple when the model has attribute heads."""
    if isinstance(values, (tuple, list)):
        return values[0], (values[1] if len(values) > 1 else None)
    return values, None


def combined_labels(
    types: np.ndarray, attribute_ids: np.ndarray, label_names: Sequence[str], attributes: Mapping[str, Sequence[str]]
) -> list[str]:
    """DACON's combined labels, the type then each axis, joined by '-': `사실형-긍정-현재-확실`."""
    return [
        "-".join([label_names[kind], *(labels[value] for labels, value in zip(attributes.values(), row, strict=True))])
        for kind, row in zip(types, attribute_ids, strict=True)
    ]


def flat_metrics(metrics: dict) -> dict[str, float]:
    """The Trainer logs and compares flat scalars: `macro_f1`, `사실형_f1`, and with attribute heads
    `polarity_macro_f1`, `polarity_긍정_f1`, …, `combined_exact_match`, `dacon_weighted_f1`."""
    flat = {key: metrics[key] for key in HEADLINE_METRICS}
    for label, scores in metrics["per_label"].items():
        flat.update({f"{label}_{name}": value for name, value in scores.items()})
    for axis, axis_metrics in metrics.get("attributes", {}).items():
        flat.update({f"{axis}_{key}": value for key, value in flat_metrics(axis_metrics).items()})
    flat.update({key: metrics[key] for key in COMBINED_METRICS if key in metrics})
    return flat


def metrics_computer(
    label_names: Sequence[str], attributes: Mapping[str, Sequence[str]] | None = None
) -> Callable[[Any], dict[str, float]]:
    """The Trainer's `compute_metrics`: `evaluation_metrics`, flattened."""
    return lambda prediction: flat_metrics(
        evaluation_metrics(prediction.predictions, prediction.label_ids, label_names, attributes)
    )


def format_metrics_table(metrics: dict) -> str:
    """The per-label table and headline figures as plain text for the log; one per axis with attribute heads."""
    tables = [_label_table(metrics)]
    for axis, axis_metrics in metrics.get("attributes", {}).items():
        tables.append(f"{axis}\n{_label_table(axis_metrics)}")
    if "combined_exact_match" in metrics:
        tables.append(
            f"combined label: exact match {metrics['combined_exact_match']:.4f} · "
            f"DACON weighted-F1 {metrics['dacon_weighted_f1']:.4f}"
        )
    return "\n\n".join(tables)


def _label_table(metrics: dict) -> str:
    rows = [
        [label, scores["precision"], scores["recall"], scores["f1"], scores["support"]]
        for label, scores in metrics["per_label"].items()
    ]
    headline = (
        f"accuracy {metrics['accuracy']:.4f} · macro-F1 {metrics['macro_f1']:.4f} · "
        f"weighted-F1 {metrics['weighted_f1']:.4f}"
    )
    return f"{format_table(['label', 'precision', 'recall', 'F1', 'support'], rows)}\n{headline}"


def save_confusion_matrix(
    labels: Sequence[int], predictions: Sequence[int], label_names: Sequence[str], path: Path
) -> Path | None:
    """A PNG of the counts (rows: true, columns: predicted); without matplotlib (the `plot` extra), a warning."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import font_manager
        from matplotlib import pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no confusion-matrix PNG (pip install matplotlib).")
        return None
    from sklearn.metrics import ConfusionMatrixDisplay

    installed = {font.name for font in font_manager.fontManager.ttflist}
    hangul_font = next((name for name in HANGUL_FONTS if name in installed), None)
    # Where no installed font has Hangul, matplotlib would draw empty boxes: number the labels instead.
    ids = list(range(len(label_names)))
    ticks = list(label_names) if hangul_font else [str(index) for index in ids]
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    with plt.rc_context({"font.family": hangul_font or "sans-serif"}):
        ConfusionMatrixDisplay.from_predictions(
            labels, predictions, labels=ids, display_labels=ticks, cmap="Blues", ax=axes, xticks_rotation=30
        )
        axes.set(xlabel="predicted", ylabel="true")
        figure.tight_layout()
        figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def summarize_folds(fold_metrics: list[dict]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1) of every flat metric but the supports, attribute axes included."""
    flat = [flat_metrics(metrics) for metrics in fold_metrics]
    keys = [key for key in flat[0] if not key.endswith("_support")]
    return {
        "folds": fold_metrics,
        "mean": {key: float(np.mean([metrics[key] for metrics in flat])) for key in keys},
        "std": {key: float(np.std([metrics[key] for metrics in flat], ddof=1)) for key in keys},
    }


def format_cv_table(summary: dict) -> str:
    """Mean ± std of the headline metrics and per-label F1, one row each."""
    keys = [key for key in summary["mean"] if not key.endswith(("_precision", "_recall"))]
    rows = [[key, f"{summary['mean'][key]:.4f} ± {summary['std'][key]:.4f}"] for key in keys]
    return format_table(["metric", "mean ± std"], rows)
