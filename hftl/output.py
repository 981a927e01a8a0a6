"""Step 2 of a run, and its end: the output folder. Before any data loads, refuse an output folder that cannot be
written, a `--resume_from_checkpoint` that is no complete checkpoint, and checkpoints that a run with other settings
wrote; before training, clear an earlier run's results and write the resolved config."""

from __future__ import annotations

import glob
import logging
import os
import tempfile

import yaml

from hftl.config import CONFIG_FILE, RunConfig, write_config
from hftl.errors import InputError
from hftl.trainer import check_resumable, last_complete_checkpoint
from hftl.writes import output_writes, write_failure

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
    "layer_ranking.json",
    "adaptation_selection.json",
)


def check_output_dir(config: RunConfig) -> None:
    """Refuse, before any model loads, an output folder that cannot be written, a `--resume_from_checkpoint` that is
    no complete checkpoint, and auto-resuming checkpoints that a run with other settings wrote.

    Raises:
        InputError: output_dir is (or lies under) a file, or cannot be written (read-only); --resume_from_checkpoint
            names a missing, incomplete or changed checkpoint; output_dir holds checkpoints and a config whose
            `config.resume_keys()` values differ.
    """
    check_writable(config.training.output_dir)
    if config.training.do_train and config.training.resume_from_checkpoint is not None:
        check_resumable(config.training.resume_from_checkpoint)
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


def check_writable(output_dir: str) -> None:
    """Check that `output_dir` is a folder hftl can write into, or can be created: write and delete a probe file in
    it or in its nearest existing parent (permission bits do not tell: root ignores them, but not a read-only mount).

    Raises:
        InputError: `output_dir` or a parent is a file, or the folder cannot be written.
    """
    path = os.path.abspath(output_dir)
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise InputError(f"--output_dir {output_dir} {where}, not a folder: choose another --output_dir.")
    try:
        handle, probe = tempfile.mkstemp(prefix=".hftl-write-check-", dir=existing)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        reason = write_failure(error, existing) or error.strerror
        place = "" if existing == path else f" (in {existing}, where it would be created)"
        raise InputError(
            f"--output_dir {output_dir} cannot be written{place}: {reason}. Choose another --output_dir, or make it "
            f"writable."
        ) from None


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
    with output_writes(output_dir, CONFIG_FILE):
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
