"""Classification metrics, computed offline with scikit-learn (no metric scripts from the Hub).

Macro averages weigh every class equally, whatever its size.
"""

from __future__ import annotations

import json
import os

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, precision_recall_fscore_support
from transformers import EvalPrediction


def _predictions(eval_pred: EvalPrediction) -> tuple[np.ndarray, np.ndarray]:
    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    return np.asarray(logits).argmax(-1), np.asarray(eval_pred.label_ids)


def summary_metrics(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro precision / recall / F1.

    Args:
        predictions: (N,) predicted class ids.
        labels: (N,) true class ids.
        num_labels: number of classes (classes absent from `labels` count as zero, not as missing).
    """
    classes = list(range(num_labels))
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, labels=classes, average="macro", zero_division=0
    )
    present = np.unique(labels)
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predictions)) if len(present) > 1 else float("nan"),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


def metrics_function(num_labels: int):
    """A `compute_metrics` for `transformers.Trainer`, returning `summary_metrics`."""

    def compute_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
        predictions, labels = _predictions(eval_pred)
        return summary_metrics(predictions, labels, num_labels)

    return compute_metrics


def per_class_report(predictions: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """Per-class precision / recall / F1 / support and the confusion matrix (rows: true, columns: predicted)."""
    classes = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=classes, average=None, zero_division=0
    )
    return {
        "labels": names,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "confusion_matrix": confusion_matrix(labels, predictions, labels=classes).tolist(),
    }


MAX_FLAT_CLASSES = 20


def flat_per_class(report: dict, prefix: str) -> dict[str, float]:
    """`{prefix}_f1_<label>`-style keys of a `per_class_report`, for `all_results.json` (up to 20 classes;
    the report file always has them all)."""
    flat = {}
    if len(report["labels"]) > MAX_FLAT_CLASSES:
        return flat
    for name, figures in report["per_class"].items():
        for metric in ("precision", "recall", "f1"):
            flat[f"{prefix}_{metric}_{name}"] = figures[metric]
    return flat


def save_confusion_matrix(report: dict, path_png: str, title: str) -> None:
    """Write the confusion matrix of a `per_class_report` as a PNG (counts, true label on the rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    names = report["labels"]
    size = max(4.0, 0.6 * len(names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(np.array(report["confusion_matrix"]), display_labels=names).plot(
        ax=axes, cmap="Blues", colorbar=False, xticks_rotation=45 if len(names) > 4 else "horizontal"
    )
    axes.set_title(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path_png) or ".", exist_ok=True)
    figure.savefig(path_png, dpi=120)
    plt.close(figure)


def save_report(report: dict, path_json: str) -> None:
    with open(path_json, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
