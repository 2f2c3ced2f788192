"""What a training run reports: the Trainer's metric function, the per-label table printed to the log, the
confusion-matrix PNG, and the mean ± standard deviation of a cross-validation's folds.

Every figure comes from `metrics.classification_metrics`, so the log, `eval_results.json` and the model card agree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import classification_metrics
from .tables import format_table

logger = logging.getLogger(__name__)

HEADLINE_METRICS = ("accuracy", "macro_f1", "weighted_f1")
# Fonts that have Hangul, in order of preference, for the confusion matrix's axis labels.
HANGUL_FONTS = (
    "Noto Sans CJK KR",
    "Noto Sans KR",
    "NanumGothic",
    "Malgun Gothic",
    "Apple SD Gothic Neo",
    "AppleGothic",
)


def flat_metrics(metrics: dict) -> dict[str, float]:
    """The Trainer logs and compares flat scalars: `macro_f1`, `사실형_f1`, … ."""
    flat = {key: metrics[key] for key in HEADLINE_METRICS}
    for label, scores in metrics["per_label"].items():
        flat.update({f"{label}_{name}": value for name, value in scores.items()})
    return flat


def metrics_computer(label_names: Sequence[str]) -> Callable[[Any], dict[str, float]]:
    """The Trainer's `compute_metrics`: argmax of the logits, then `classification_metrics`, flattened."""

    def compute_metrics(prediction: Any) -> dict[str, float]:
        predicted = np.argmax(prediction.predictions, axis=-1)
        return flat_metrics(classification_metrics(prediction.label_ids, predicted, label_names))

    return compute_metrics


def format_metrics_table(metrics: dict) -> str:
    """The model card's per-label table, plus the headline figures, as plain text for the log."""
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
    """A PNG of the counts (rows: true label, columns: predicted), drawn by scikit-learn's `ConfusionMatrixDisplay`;
    skipped, with a warning, when matplotlib is missing (it is the optional `plot` extra)."""
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
    ticks = list(label_names) if hangul_font else [str(index) for index in range(len(label_names))]
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    with plt.rc_context({"font.family": hangul_font or "sans-serif"}):
        ConfusionMatrixDisplay.from_predictions(
            labels,
            predictions,
            labels=list(range(len(label_names))),
            display_labels=ticks,
            cmap="Blues",
            ax=axes,
            xticks_rotation=30,
            colorbar=True,
        )
        axes.set(xlabel="predicted", ylabel="true")
        figure.tight_layout()
        figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def summarize_folds(fold_metrics: list[dict]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1) of every headline metric and per-label score."""
    series = {key: [metrics[key] for metrics in fold_metrics] for key in HEADLINE_METRICS}
    for label in fold_metrics[0]["per_label"]:
        for score in ("precision", "recall", "f1"):
            series[f"{label}_{score}"] = [metrics["per_label"][label][score] for metrics in fold_metrics]
    return {
        "folds": fold_metrics,
        "mean": {key: float(np.mean(values)) for key, values in series.items()},
        "std": {key: float(np.std(values, ddof=1)) for key, values in series.items()},
    }


def format_cv_table(summary: dict) -> str:
    """Mean ± std of the headline metrics and per-label F1, one row each."""
    keys = [key for key in summary["mean"] if not key.endswith(("_precision", "_recall"))]
    rows = [[key, f"{summary['mean'][key]:.4f} ± {summary['std'][key]:.4f}"] for key in keys]
    return format_table(["metric", "mean ± std"], rows)
