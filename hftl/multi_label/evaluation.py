"""Evaluation of a multi-label split: metrics, per-label report and a predictions CSV with each label's probability.

Decisions are the folded logits' signs (`hftl.multi_label.thresholds`): exactly what `pipeline(...)` gives with
`score > 0.5`. Probabilities and the loss are the model's own, from the logits with the thresholds unfolded.
"""

from __future__ import annotations

import csv
import logging
import os
from functools import partial

import numpy as np
import torch
from torch.nn import functional as F

from hftl.data.checks import LabelInfo
from hftl.metrics import flat_per_class, logits_of, save_report
from hftl.multi_label.metrics import multi_label_summary, per_label_report
from hftl.multi_label.thresholds import THRESHOLDS, sigmoid

logger = logging.getLogger("hftl")


def write_predictions(path: str, rows, decisions: np.ndarray, probabilities: np.ndarray, names, delimiter: str):
    """`source_row,predictions,prob_<label>...`: per example its 0-based row in its file / split, the labels above
    their thresholds joined by `delimiter` (empty when none is), and each label's probability (csv module quoting).

    Shape:
        decisions: (N, C) bool; probabilities: (N, C) in [0, 1].
    """
    rows = rows if rows is not None else list(range(len(decisions)))
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["source_row", "predictions", *(f"prob_{name}" for name in names)])
        for row, chosen, probs in zip(rows, decisions, probabilities, strict=True):
            labels = delimiter.join(name for name, on in zip(names, chosen, strict=True) if on)
            writer.writerow([row, labels, *(f"{p:.6g}" for p in probs)])


def evaluate_multi_label_split(
    trainer, dataset, rows, prefix: str, labels: LabelInfo, output_dir: str, thresholds: dict, delimiter: str
) -> dict[str, float]:
    """Predict `dataset`; `<prefix>_*` metrics (`multi_label_summary`, per-label P / R / F1 up to 20 labels), the
    report `<prefix>_report.json` and `<prefix>_predictions.csv` in `output_dir`.

    Args:
        thresholds: label name -> threshold on the probability (already folded into the model's logits).
        delimiter: joins a row's predicted labels in the CSV (`--label_delimiter`).

    Returns:
        The metrics; `<prefix>_loss` is the mean binary cross-entropy of the model's probabilities.
    """
    output = trainer.predict(dataset, metric_key_prefix=prefix)
    metrics = {**output.metrics, f"{prefix}_samples": len(dataset)}
    folded = np.asarray(logits_of(output.predictions))
    chosen = np.array([thresholds[name] for name in labels.names], dtype=np.float64)
    logits = folded.astype(np.float64) + np.log(chosen / (1 - chosen))  # the model's own logits, unfolded
    decisions = folded > 0
    summary = {}
    if output.label_ids is not None:
        true = np.asarray(output.label_ids) > 0.5
        loss = F.binary_cross_entropy_with_logits(torch.as_tensor(logits), torch.as_tensor(true, dtype=torch.float64))
        summary = {"loss": loss.item(), **multi_label_summary(decisions, true)}
        metrics.update({f"{prefix}_{key}": value for key, value in summary.items()})
    if trainer.is_world_process_zero():
        if output.label_ids is not None:
            report = {**per_label_report(decisions, true, labels.names, thresholds), "summary": summary}
            metrics.update(flat_per_class(report, prefix))
            save_report(report, os.path.join(output_dir, f"{prefix}_report.json"))
        path = os.path.join(output_dir, f"{prefix}_predictions.csv")
        write_predictions(path, rows, decisions, sigmoid(logits), labels.names, delimiter)
    trainer.log_metrics(prefix, metrics)
    trainer.save_metrics(prefix, metrics)
    return metrics


def split_evaluator(run):
    """`evaluate_multi_label_split` with the run's thresholds and delimiter, or None for single-label runs."""
    problem = run.config.problem
    if not problem.multi_label:
        return None
    thresholds = getattr(run.loaded.model.config, THRESHOLDS, None) or {name: 0.5 for name in run.data.labels.names}
    return partial(evaluate_multi_label_split, thresholds=thresholds, delimiter=problem.label_delimiter)
