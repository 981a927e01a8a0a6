"""Step 2 of a run, and its end: the output folder. Before any data loads, refuse to resume checkpoints that a run
with other settings wrote; before training, clear an earlier run's results and write the resolved config."""

from __future__ import annotations

import glob
import logging
import os

import yaml

from hftl.config import CONFIG_FILE, RunConfig, write_config
from hftl.errors import InputError
from hftl.trainer import last_complete_checkpoint

logger = logging.getLogger("hftl")

RESULT_FILES = (
    "all_results.json",
    "*_results.json",
    "*_report.json",
    "*_confusion_matrix.png",
    "*_predictions.csv",
    "domain_gap.json",
    "domain_gap.png",
    "label_shift.json",
)


def check_output_dir(config: RunConfig) -> None:
    """Refuse, before any model loads, to auto-resume checkpoints that a run with other settings wrote.

    Raises:
        InputError: output_dir holds checkpoints and a config whose `config.resume_keys()` values differ.
    """
    training, output_dir = config.training, config.training.output_dir
    previous_path = os.path.join(output_dir, CONFIG_FILE)
    if (
        config.run.overwrite_output_dir
        or training.resume_from_checkpoint is not None
        or not training.do_train
        or not os.path.isfile(previous_path)
        or last_complete_checkpoint(output_dir) is None
    ):
        return
    with open(previous_path, encoding="utf-8") as handle:
        previous = yaml.safe_load(handle) or {}
    current = config.as_dict()
    keys = config.resume_keys()
    changed = {k: (previous[k], current.get(k)) for k in keys if k in previous and previous[k] != current.get(k)}
    if changed:
        details = ", ".join(f"{k}: {old!r} then, {new!r} now" for k, (old, new) in changed.items())
        raise InputError(
            f"--output_dir {output_dir} holds checkpoints of a run with other settings ({details}), which this run "
            f"would resume. Pass --overwrite_output_dir to start afresh there, or choose another --output_dir."
        )


def start_output_dir(config: RunConfig) -> None:
    """Delete the results an earlier run left (the Trainer merges metrics into `all_results.json`, so a run without,
    say, target data would otherwise report the earlier run's target_* figures) and write `hftl_config.yaml`."""
    output_dir = config.training.output_dir
    if not config.training.should_save:
        return
    stale = sorted({path for pattern in RESULT_FILES for path in glob.glob(os.path.join(output_dir, pattern))})
    for path in stale:
        os.remove(path)
    if stale:
        logger.info("Removed %d result file(s) of an earlier run from %s.", len(stale), output_dir)
    write_config(config, output_dir)


def resume_checkpoint(config: RunConfig) -> str | None:
    """The checkpoint a training run resumes: `--resume_from_checkpoint`, else the last complete one in output_dir
    (none with `--overwrite_output_dir`)."""
    training = config.training
    if training.resume_from_checkpoint is not None:
        return training.resume_from_checkpoint
    if config.run.overwrite_output_dir or not os.path.isdir(training.output_dir):
        return None
    last = last_complete_checkpoint(training.output_dir)
    if last is not None:
        logger.warning("Resuming from %s (pass --overwrite_output_dir to start afresh).", last)
    return last
