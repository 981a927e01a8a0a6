"""Multi-label metrics, loss and decisions, computed with scikit-learn and torch (no metric scripts from the Hub).

Each label is a yes / no decision: label k is predicted when its logit is above 0, i.e. its sigmoid above 0.5, once
its threshold is folded into the classifier's bias (`hftl.multi_label.thresholds`). The averages (scikit-learn's
definitions, Tsoumakas et al., "Mining Multi-label Data", Data Mining and Knowledge Discovery Handbook 2010):

- micro: precision / recall / F1 of all (example, label) decisions pooled;
- macro: the mean over the labels present in the split (a label without a true example has no recall, so it is left
  out, as single-label macro averages leave out absent classes);
- weighted: the per-label figures weighted by each label's true examples;
- samples: the mean over examples of each example's figures (F1 of an empty prediction for an empty label set is 1);
- subset accuracy: the fraction of examples whose predicted set is exactly the true set;
- Hamming loss: the fraction of (example, label) decisions that are wrong.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    hamming_loss,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)
from torch.nn import functional as F
from transformers import EvalPrediction

from hftl.metrics import logits_of

AVERAGES = ("micro", "macro", "weighted", "samples")


def multi_label_summary(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Averaged precision / recall / F1, subset accuracy and Hamming loss of multi-label decisions.

    Args:
        predicted: (N, C) 0 / 1 decisions.
        true: (N, C) 0 / 1 labels.

    Returns:
        `precision_<avg>`, `recall_<avg>`, `f1_<avg>` for avg in micro, macro, weighted, samples; `subset_accuracy`,
        `hamming_loss` and `absent_labels` (labels without a true example here).

    Example:
        >>> m = multi_label_summary(np.array([[1, 0], [1, 1]]), np.array([[1, 0], [0, 1]]))
        >>> m["f1_micro"], m["subset_accuracy"], m["hamming_loss"]
        (0.8, 0.5, 0.25)
    """
    predicted, true = np.asarray(predicted).astype(int), np.asarray(true).astype(int)
    present = np.flatnonzero(true.sum(0) > 0).tolist()
    metrics = {}
    for average in AVERAGES:
        labels = present if average == "macro" else None
        precision, recall, f1, _ = precision_recall_fscore_support(
            true, predicted, labels=labels, average=average, zero_division=0
        )
        if average == "samples":
            f1 = f1_score(true, predicted, average="samples", zero_division=1.0)
        metrics.update({f"precision_{average}": precision, f"recall_{average}": recall, f"f1_{average}": f1})
    metrics = {key: float(value) for key, value in metrics.items()}
    metrics["subset_accuracy"] = float(accuracy_score(true, predicted))
    metrics["hamming_loss"] = float(hamming_loss(true, predicted))
    metrics["absent_labels"] = true.shape[1] - len(present)
    return metrics


def per_label_report(predicted: np.ndarray, true: np.ndarray, names: list[str], thresholds: dict[str, float]) -> dict:
    """Per-label precision / recall / F1 / support / threshold and 2 x 2 confusion matrix `[[tn, fp], [fn, tp]]`.

    Args:
        predicted, true: (N, C) 0 / 1 decisions and labels; names: the C label names; thresholds: name -> threshold.
    """
    predicted, true = np.asarray(predicted).astype(int), np.asarray(true).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(true, predicted, average=None, zero_division=0)
    matrices = multilabel_confusion_matrix(true, predicted)
    return {
        "labels": names,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "predicted": int(predicted[:, i].sum()),
                "threshold": thresholds.get(name, 0.5),
                "confusion_matrix": matrices[i].tolist(),
            }
            for i, name in enumerate(names)
        },
    }


def multi_label_metrics_function():
    """A `compute_metrics` for `transformers.Trainer`: `multi_label_summary` of the decisions `logits > 0`."""

    def compute_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
        logits = logits_of(eval_pred.predictions)
        return multi_label_summary(np.asarray(logits) > 0, np.asarray(eval_pred.label_ids) > 0.5)

    return compute_metrics


def multi_label_loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """The batch mean of binary cross-entropy on the logits, whatever loss the model itself would compute (some
    models, such as wav2vec2's and Whisper's audio classifiers, compute a softmax cross-entropy only).

    A `compute_loss_func` for `transformers.Trainer`; in float32 from logits, so safe under autocast.

    Shape:
        outputs.logits: (B, C); labels: (B, C) multi-hot. Returns a scalar.
    """
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
