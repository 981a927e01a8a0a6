"""Classification metrics, computed offline with scikit-learn (no metric scripts from the Hub).

Macro averages weigh every class present in the split equally, whatever its size (`summary_metrics`).
"""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from transformers import EvalPrediction


def logits_of(predictions):
    """The logits (N, C) of a Trainer's predictions: the first output when the model returned several."""
    return predictions[0] if isinstance(predictions, tuple) else predictions


def _predictions(eval_pred: EvalPrediction) -> tuple[np.ndarray, np.ndarray]:
    logits = logits_of(eval_pred.predictions)
    return np.asarray(logits).argmax(-1), np.asarray(eval_pred.label_ids)


def summary_metrics(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro precision / recall / F1, all over the classes present in `labels`.

    A class with no example in the split has no recall, so it is left out of every macro average rather than
    counted as 0: macro recall is then exactly balanced accuracy (scikit-learn's definition: the mean recall of the
    classes present). Predictions of an absent class still count, as errors of the true classes' recall.

    Args:
        predictions: (N,) predicted class ids.
        labels: (N,) true class ids.
        num_labels: number of classes the model predicts.

    Returns:
        accuracy, balanced_accuracy, precision, recall, f1 and `absent_classes` (classes with no example here).
    """
    present = sorted(int(c) for c in np.unique(labels))
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, labels=present, average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "balanced_accuracy": float(recall),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "absent_classes": num_labels - len(present),
    }


def metrics_function(num_labels: int, multi_label: bool = False):
    """A `compute_metrics` for `transformers.Trainer`, returning `summary_metrics` (multi-label: see
    `hftl.multi_label.metrics.multi_label_metrics_function`)."""
    if multi_label:
        from hftl.multi_label.metrics import multi_label_metrics_function

        return multi_label_metrics_function()

    def compute_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
        predictions, labels = _predictions(eval_pred)
        return summary_metrics(predictions, labels, num_labels)

    return compute_metrics


MAX_DENSE_CLASSES = 200  # above this, the confusion matrix is stored sparse (10,000 classes: 10^8 cells otherwise)
MAX_PLOT_CLASSES = 50  # above this, a confusion-matrix plot is unreadable (and its figure runs into gigabytes)


def per_class_report(predictions: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """Per-class precision / recall / F1 / support and the confusion matrix (rows: true, columns: predicted).

    Up to `MAX_DENSE_CLASSES` classes the matrix is dense (`confusion_matrix`, a list of rows); above, it is
    `confusion_matrix_sparse`: `[true id, predicted id, count]` for each non-zero cell.
    """
    classes = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=classes, average=None, zero_division=0
    )
    report = {
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
    }
    if len(names) <= MAX_DENSE_CLASSES:
        report["confusion_matrix"] = confusion_matrix(labels, predictions, labels=classes).tolist()
    else:
        cells = Counter(zip(np.asarray(labels).tolist(), np.asarray(predictions).tolist(), strict=True))
        report["confusion_matrix_sparse"] = [[t, p, n] for (t, p), n in sorted(cells.items())]
    return report


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


def save_confusion_matrix(report: dict, path_png: str, title: str) -> bool:
    """Write the confusion matrix of a `per_class_report` as a PNG (counts, true label on the rows).

    Returns:
        False, writing nothing, above `MAX_PLOT_CLASSES` classes (the report file holds the matrix).
    """
    if len(report["labels"]) > MAX_PLOT_CLASSES:
        return False
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
    return True


def save_report(report: dict, path_json: str) -> None:
    with open(path_json, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
