"""Step 10 of an adapting run: `label_shift.json`, `shift_diagnosis.json` and, with `--domain_gap_report`, the
domain-gap report on the features of the same layer (the feature layer's input) before training and after."""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from hftl.adaptation.report import domain_gap, plot_projection, save_report
from hftl.features import extract_features

logger = logging.getLogger("hftl")

REPORT_EXAMPLES = 1000  # examples per domain in the domain-gap figures and the plot


def _first(dataset, limit: int):
    return dataset.select(range(min(limit, len(dataset))))


def _after(trained, config) -> tuple[np.ndarray, np.ndarray] | None:
    """Feature-layer inputs of the trained model on (at most REPORT_EXAMPLES) source and target training examples."""
    if not config.training.do_train or trained.report_layer is None:
        return None
    features = [
        extract_features(
            trained.report_model,
            _first(trained.report_data[split], REPORT_EXAMPLES),
            trained.report_collator,
            config.training.per_device_eval_batch_size,
            trained.report_layer,
        ).numpy()
        for split in ("train", "target_train")
    ]
    return features[0], features[1]


def write_gap_report(trained, run) -> dict:
    """Write `domain_gap.json` and `domain_gap.png`; return the figures (`before`, `after`: each the width of the
    features, the input of the feature layer `run.layer`). Other processes only help extract, and return {}."""
    shift, data, config, layer_name = run.shift, run.data, run.config, run.layer.name
    y_s = np.asarray(data.source.splits["train"]["labels"])
    report: dict = {
        "max_examples_per_domain": REPORT_EXAMPLES,
        "feature_layer": layer_name,
        "label_shift": shift.label_shift.as_dict(data.labels.names),
    }
    if shift.diagnosis is not None:
        report["diagnosis"] = shift.diagnosis.as_dict(data.labels.names)
    panels = {}
    after = _after(trained, config)  # every process extracts its share; the main process measures and writes
    if not trained.trainer.is_world_process_zero():
        return {}
    phases = {"before": (shift.features["train"], shift.features["target_train"]), "after": after}
    for when, pair in phases.items():
        if pair is None:
            continue
        report[when] = domain_gap(pair[0], pair[1], REPORT_EXAMPLES, config.training.seed)
        report[when]["feature_size"] = int(pair[0].shape[1])
        pad = report[when]["proxy_a_distance"]
        title = f"{when} training (MMD^2 {report[when]['mmd']:.3f}, PAD {'n/a' if pad is None else f'{pad:.2f}'})"
        panels[title] = (pair[0], y_s[: len(pair[0])], pair[1], None)
    save_report(report, config.training.output_dir)
    path = os.path.join(config.training.output_dir, "domain_gap.png")
    plot_projection(panels, data.labels.names, path, REPORT_EXAMPLES, config.training.seed)
    logger.info("Domain gap: %s", json.dumps({k: v for k, v in report.items() if k in ("before", "after")}))
    return report


def write_diagnosis(diagnosis, names: list[str], output_dir: str) -> str:
    """Write `shift_diagnosis.json` (`ShiftDiagnosis.as_dict`) in `output_dir`; returns its path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "shift_diagnosis.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(diagnosis.as_dict(names), handle, indent=2)
    return path


def domain_reports(trained, run) -> dict[str, float]:
    """`label_shift.json` and (with --domain_gap_report) the gap report; returns their scalar metrics."""
    shift, data, config = run.shift, run.data, run.config
    if shift is None:
        return {}
    metrics = {"label_shift_total_variation": round(shift.label_shift.total_variation, 4)}
    if shift.diagnosis is not None:
        metrics["shift_gap_p_value"] = round(shift.diagnosis.gap_p_value, 4)
    if trained.trainer.is_world_process_zero():
        with open(os.path.join(config.training.output_dir, "label_shift.json"), "w", encoding="utf-8") as handle:
            json.dump(shift.label_shift.as_dict(data.labels.names), handle, indent=2)
        if shift.diagnosis is not None:
            write_diagnosis(shift.diagnosis, data.labels.names, config.training.output_dir)
    if config.adaptation.domain_gap_report:
        report = write_gap_report(trained, run)
        for when in ("before", "after"):
            for key in ("mmd", "proxy_a_distance"):
                if report.get(when, {}).get(key) is not None:
                    metrics[f"domain_gap_{when}_{key}"] = report[when][key]
    if metrics:
        trained.trainer.save_metrics("domain", metrics)
    return metrics
