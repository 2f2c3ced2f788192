"""Classification metrics with scikit-learn, in the one shape the logs, `eval_results.json` and the card read."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def classification_metrics(labels: Iterable[int], predictions: Iterable[int], label_names: Sequence[str]) -> dict:
    """Accuracy, macro-/weighted-F1 and per-label precision/recall/F1/support, every label of `label_names` included
    (absent ones score 0) so runs and folds report the same keys; scikit-learn, as `evaluate` needs the Hub."""
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
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for name, p, r, f, n in zip(label_names, precision, recall, f1, support, strict=True)
        },
    }
