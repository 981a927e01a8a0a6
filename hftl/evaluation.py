"""Step 9 of a run: metrics, per-class reports, confusion matrices and predictions on source and target splits."""

from __future__ import annotations

import csv
import logging
import os

import numpy as np

from hftl.calibration import calibration_metrics, class_probabilities
from hftl.context import RunContext
from hftl.data.checks import LabelInfo
from hftl.metrics import (
    MAX_PLOT_CLASSES,
    flat_per_class,
    logits_of,
    per_class_report,
    save_confusion_matrix,
    save_report,
)
from hftl.multi_label.evaluation import split_evaluator
from hftl.training import Trained

logger = logging.getLogger("hftl")

# metric prefix -> (the data's split, title of the confusion matrix)
EVALUATIONS = {
    "eval": ("validation", "validation split"),
    "test": ("test", "test split"),
    "target": ("test", "target domain"),
}


def write_predictions(
    path: str,
    rows: list[int] | None,
    predictions: np.ndarray,
    names: list[str],
    probabilities: np.ndarray | None = None,
    files: list[str] | None = None,
) -> None:
    """The predictions CSV: `source_row,prediction` per example (its 0-based row in its file / split, the predicted
    class name), then, given `probabilities` (N, C), `score` (the predicted class's probability) and one
    `prob_<class name>` column per class in id order. Given `files` (one per example), a `path` column follows
    `source_row`. Written with the csv module: a class name holding a comma, a quote or a newline is quoted, and
    reads back as written."""
    rows = rows if rows is not None else list(range(len(predictions)))
    header = ["source_row", *(["path"] if files is not None else []), "prediction"]
    if probabilities is not None:
        header += ["score", *(f"prob_{name}" for name in names)]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for i, (row, p) in enumerate(zip(rows, predictions, strict=True)):
            where = [] if files is None else [files[i]]
            scores = [] if probabilities is None else [probabilities[i, p], *probabilities[i]]
            writer.writerow([row, *where, names[p], *(f"{s:.7g}" for s in scores)])


def _save_split_report(report: dict, prefix: str, output_dir: str) -> None:
    """`{prefix}_report.json` and, up to `MAX_PLOT_CLASSES` classes, `{prefix}_confusion_matrix.png`."""
    save_report(report, os.path.join(output_dir, f"{prefix}_report.json"))
    png = os.path.join(output_dir, f"{prefix}_confusion_matrix.png")
    if not save_confusion_matrix(report, png, EVALUATIONS[prefix][1]):
        logger.info(
            "%s: %d classes, over %d: the confusion matrix is in %s_report.json, not plotted.",
            prefix, len(report["labels"]), MAX_PLOT_CLASSES, prefix,
        )  # fmt: skip


def _warn_absent(labels: np.ndarray, prefix: str, names: list[str]) -> None:
    absent = sorted(set(range(len(names))) - set(np.unique(labels).tolist()))
    if absent:
        shown = ", ".join(repr(names[i]) for i in absent[:10]) + (" ..." if len(absent) > 10 else "")
        logger.warning(
            "%s: %d of %d classes have no example (%s); macro precision / recall / F1 and balanced accuracy "
            "average the %d classes present.",
            prefix, len(absent), len(names), shown, len(names) - len(absent),
        )  # fmt: skip


def evaluate_split(trainer, dataset, rows, prefix: str, labels: LabelInfo, output_dir: str) -> dict[str, float]:
    """Predict `dataset`; metrics (prefixed, with the expected calibration error `{prefix}_ece`), report, confusion
    matrix and predictions CSV (with each class's probability) in `output_dir`."""
    output = trainer.predict(dataset, metric_key_prefix=prefix)
    metrics = {**output.metrics, f"{prefix}_samples": len(dataset)}
    logits = logits_of(output.predictions)
    predictions = np.asarray(logits).argmax(-1)
    probabilities = class_probabilities(logits)
    if output.label_ids is not None:
        metrics.update(calibration_metrics(probabilities, output.label_ids, prefix))
    if trainer.is_world_process_zero():
        if output.label_ids is not None:
            _warn_absent(np.asarray(output.label_ids), prefix, labels.names)
            report = per_class_report(predictions, np.asarray(output.label_ids), labels.names)
            metrics.update(flat_per_class(report, prefix))
            _save_split_report(report, prefix, output_dir)
        path = os.path.join(output_dir, f"{prefix}_predictions.csv")
        write_predictions(path, rows, predictions, labels.names, probabilities)
    trainer.log_metrics(prefix, metrics)
    trainer.save_metrics(prefix, metrics)
    return metrics


def evaluate(trained: Trained, run: RunContext) -> dict[str, float]:
    """Training metrics, then validation (`--do_eval`), test (`--do_predict`) and labelled target test metrics."""
    data, training, output_dir = run.data, run.config.training, run.config.training.output_dir
    os.makedirs(output_dir, exist_ok=True)
    metrics: dict[str, float] = {}
    if training.do_train:
        trained.trainer.log_metrics("train", trained.metrics)
        trained.trainer.save_metrics("train", trained.metrics)
        trained.trainer.save_state()  # trainer_state.json: the training log (loss parts included), as run_glue.py
        metrics.update(trained.metrics)
    wanted = {"eval": training.do_eval, "test": training.do_predict, "target": training.do_eval or training.do_predict}
    evaluate_one = split_evaluator(run) or evaluate_split  # multi-label runs: hftl.multi_label.evaluation
    for prefix, (split, _) in EVALUATIONS.items():
        dataset = trained.evaluation.get(prefix)
        if wanted[prefix] and dataset is not None:
            domain = data.target if prefix == "target" else data.source
            metrics.update(
                evaluate_one(trained.trainer, dataset, domain.rows.get(split), prefix, data.labels, output_dir)
            )
    return metrics
