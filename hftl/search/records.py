"""What a search writes beside its trials: `hp_search.json` (every trial), `best_config.yaml` (the best trial's
flags, for `--config`) and the table of trials in the log. Both files are rewritten after every trial, each written
whole to a temporary file and renamed over the old one, so a search killed at any point leaves them complete."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import yaml

from hftl.config import CONFIG_FILE
from hftl.config_file import dump_config

logger = logging.getLogger("hftl")

RECORD_FILE = "hp_search.json"
BEST_CONFIG_FILE = "best_config.yaml"
ERROR_FILE = "trial_error.txt"
BEST_RUN_DIR = "best"


@dataclass(frozen=True)
class Objective:
    """What a search optimises: `metric` (e.g. "eval_accuracy", from the validation split), `direction`
    ("maximize" or "minimize")."""

    metric: str
    direction: str


def trial_dir(output_dir: str, number: int) -> str:
    """The folder of trial `number`: output_dir/trial-<number>."""
    return os.path.join(output_dir, f"trial-{number}")


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def trial_record(trial, output_dir: str) -> dict[str, Any]:
    """One trial of the study (an Optuna `FrozenTrial`) as hp_search.json lists it; `metrics`: its eval_* results."""
    folder = trial_dir(output_dir, trial.number)
    results = _read_json(os.path.join(folder, "all_results.json"))
    error_path = os.path.join(folder, ERROR_FILE)
    error = open(error_path, encoding="utf-8").read().strip() if os.path.isfile(error_path) else None
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "objective": trial.value if trial.state.name == "COMPLETE" else None,
        "params": trial.params,
        "output_dir": folder,
        "duration_seconds": duration,
        "metrics": {k: v for k, v in results.items() if k.startswith("eval_")},
        **({"error": error} if error else {}),
    }


def _write_atomically(path: str, write) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        write(handle)
    os.replace(temporary, path)


def write_records(study, objective: Objective, space: dict, output_dir: str, user_values: dict[str, Any]) -> None:
    """Write hp_search.json and, once a trial has completed, best_config.yaml (see `best_config`)."""
    trials = [trial_record(t, output_dir) for t in study.get_trials(deepcopy=False)]
    best = _best(study)
    record = {
        "metric": objective.metric,
        "direction": objective.direction,
        "sampler": type(study.sampler).__name__,
        "space": space,
        "best_trial": best.number if best else None,
        "best_objective": best.value if best else None,
        "best_params": best.params if best else None,
        "trials": trials,
    }
    _write_atomically(os.path.join(output_dir, RECORD_FILE), lambda h: json.dump(record, h, indent=2))
    if best is not None:
        values = best_config(trial_dir(output_dir, best.number), output_dir, user_values)
        _write_atomically(os.path.join(output_dir, BEST_CONFIG_FILE), lambda h: dump_config(values, h))


def _best(study):
    """The best completed trial, or None."""
    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    return study.best_trial if completed else None


def best_config(folder: str, output_dir: str, user_values: dict[str, Any]) -> dict[str, Any]:
    """The best trial's resolved flags (its hftl_config.yaml) as a plain run's: no search, the user's values of the
    flags that trials override (`user_values`: do_predict, push_to_hub, run_name ...), output_dir/best as the
    output folder."""
    with open(os.path.join(folder, CONFIG_FILE), encoding="utf-8") as handle:
        values = yaml.safe_load(handle)
    values.update(user_values)
    values.update(output_dir=os.path.join(output_dir, BEST_RUN_DIR), hp_search_trials=0)
    return values


def log_table(study, objective: Objective) -> None:
    """Log every trial: number, state, objective and parameters, one line each; the best one marked."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({name for t in trials for name in t.params})
    best = _best(study)
    header = ["trial", "state", objective.metric, *names]
    rows = [header]
    for t in trials:
        value = f"{t.value:.4f}" if t.value is not None and math.isfinite(t.value) else "-"
        mark = "*" if best is not None and t.number == best.number else ""
        rows.append([f"{t.number}{mark}", t.state.name, value, *(_format(t.params.get(n)) for n in names)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    logger.info("Hyper-parameter search, %s (%s; * best):\n%s", objective.metric, objective.direction, "\n".join(lines))


def _format(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)
