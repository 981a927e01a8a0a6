"""Every task's metrics on its validation and test splits, named `eval_<task>_<metric>` / `test_<task>_<metric>` in
`all_results.json`; each task's report and predictions CSV in its folder (`tasks/<name>/`)."""

from __future__ import annotations

import os

import numpy as np

from hftl.calibration import calibration_metrics, class_probabilities
from hftl.evaluation import write_predictions
from hftl.metrics import flat_per_class, logits_of, per_class_report, save_report
from hftl.multi_task.batch_norm import using_statistics
from hftl.multi_task.export import task_dir
from hftl.multi_task.sampling import TaskSplit


def evaluate_task_split(trainer, task, dataset, prefix: str, output_dir: str) -> dict[str, float]:
    """Predict one task's split (`prefix`: "eval" or "test"); metrics named `<prefix>_<task>_<metric>`, with the
    per-class report `<prefix>_report.json` and `<prefix>_predictions.csv` (one row per example, each class's
    probability) in the task's folder."""
    name, labels = f"{prefix}_{task.name}", task.data.labels
    split = "validation" if prefix == "eval" else "test"
    output = trainer.predict(TaskSplit(dataset, task.index), metric_key_prefix=name)
    metrics = {**output.metrics, f"{name}_samples": len(dataset)}
    logits = logits_of(output.predictions)
    predictions, probabilities = np.asarray(logits).argmax(-1), class_probabilities(logits)
    if output.label_ids is not None:
        metrics.update(calibration_metrics(probabilities, output.label_ids, name))
    if trainer.is_world_process_zero():
        folder = task_dir(output_dir, task.name)
        os.makedirs(folder, exist_ok=True)
        if output.label_ids is not None:
            report = per_class_report(predictions, np.asarray(output.label_ids), labels.names)
            metrics.update(flat_per_class(report, name))
            save_report(report, os.path.join(folder, f"{prefix}_report.json"))
        rows = task.data.source.rows.get(split)
        write_predictions(os.path.join(folder, f"{prefix}_predictions.csv"), rows, predictions, labels.names,
                          probabilities)  # fmt: skip
    return metrics


def evaluate_tasks(trainer, tasks, inputs, training, train_metrics: dict[str, float], statistics=None) -> dict:
    """Training metrics, then every task's validation (`--do_eval`) and test (`--do_predict`) metrics, logged and
    written to `eval_results.json`, `test_results.json` and `all_results.json` as single-task runs write them. Each
    task is evaluated with its own BatchNorm `statistics` (`hftl.multi_task.batch_norm`) when given."""
    metrics: dict[str, float] = {}
    if training.do_train:
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
        metrics.update(train_metrics)
    for prefix, split, wanted in (("eval", "validation", training.do_eval), ("test", "test", training.do_predict)):
        found: dict[str, float] = {}
        for task, task_inputs in zip(tasks, inputs, strict=True):
            dataset = task_inputs.source.plain.get(split)
            if wanted and dataset is not None:
                with using_statistics(trainer.model.classifier, statistics[task.index] if statistics else None):
                    found.update(evaluate_task_split(trainer, task, dataset, prefix, training.output_dir))
        if found:
            trainer.log_metrics(prefix, found)
            trainer.save_metrics(prefix, found)
            metrics.update(found)
    return metrics
