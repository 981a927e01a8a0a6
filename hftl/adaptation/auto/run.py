"""`--adaptation auto`: train every candidate as the plain run would, score each without target labels, keep one.

Each candidate (`candidates.py`) trains as the plain run `--adaptation METHOD --trade_off L [--importance_weighting]`
does, with the same flags and budget: the strategy applied to a fresh copy of the same pretrained model, the random
state of that run restored, the pipeline's own training step (`hftl.pipeline.train_model`), in
`output_dir/candidates/<name>/`. With a head trained on cached inputs (`feature_extraction`) the backbone's features
are extracted once for all candidates (`--feature_cache_dir`, by default `candidates/feature_cache`), so a candidate
costs a head's training. Each finished candidate is recorded (`records.py`); a rerun with the same flags reuses it.

The scores (`hftl.adaptation.scorers.score_all`) of every candidate go to `hftl.adaptation.selection.select_candidate`,
which keeps one, or source only. The kept candidate's trained weights are loaded into the pretrained model with the
strategy applied (not retrained); the rest of the run (calibration, saving, evaluation, reports, card, export, push)
is the plain run's, for that candidate's flags. `adaptation_selection.json` says what was tried and why one was kept.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import glob
import logging
import os
import random
import shutil
import time
from collections.abc import Callable

import numpy as np
import torch
from accelerate.utils.memory import clear_device_cache

from hftl.adaptation.auto.candidates import (
    CANDIDATES_DIR,
    Candidate,
    candidate_config,
    candidate_folder,
    candidate_list,
)
from hftl.adaptation.auto.outputs import candidate_outputs, true_target_metrics
from hftl.adaptation.auto.records import fingerprint, load_trained_state, read_record, trained_state, write_record
from hftl.adaptation.auto.report import TARGET_KEY, selection_record, write_selection
from hftl.adaptation.scorers import score_all
from hftl.adaptation.selection import ScoredCandidate, select_candidate
from hftl.config import RunConfig
from hftl.context import RunContext
from hftl.output import check_output_dir

logger = logging.getLogger("hftl")

FEATURE_CACHE = "feature_cache"


def _random_state() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def _restore_random_state(state: tuple) -> None:
    """Every candidate starts training from the random state the plain run would have at that step."""
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])
    if state[3] is not None:
        torch.cuda.set_rng_state_all(state[3])


def _base_config(config: RunConfig) -> RunConfig:
    """The run's flags, with a feature cache in `candidates/` when head inputs are cached and none is given."""
    strategy = config.strategy
    if not strategy.cache_features or strategy.feature_cache_dir is not None:
        return config
    folder = os.path.join(config.training.output_dir, CANDIDATES_DIR, FEATURE_CACHE)
    return dataclasses.replace(config, strategy=dataclasses.replace(strategy, feature_cache_dir=folder))


def _train_candidate(run: RunContext, base: RunConfig, candidate: Candidate, train_model, state) -> tuple:
    """Train one candidate on a fresh copy of the pretrained model, record it; returns (record, outputs)."""
    folder = candidate_folder(base, candidate)
    config = candidate_config(base, candidate, folder)
    check_output_dir(config)  # its own checkpoints, if a stopped run left any, must be of these flags
    _restore_random_state(state)
    logger.info("--adaptation auto: training candidate %s in %s.", candidate.name, folder)
    fresh = dataclasses.replace(run.loaded, model=copy.deepcopy(run.loaded.model))
    start = time.perf_counter()
    model, trained, _ = train_model(dataclasses.replace(run, config=config, loaded=fresh))
    seconds = time.perf_counter() - start
    training = config.training
    limit, seed = base.auto.auto_score_samples, training.seed
    outputs = candidate_outputs(trained, limit, seed, training.per_device_eval_batch_size)
    record = {
        **candidate.as_dict(),
        "fingerprint": fingerprint(config),
        "training_seconds": round(seconds, 2),
        TARGET_KEY: true_target_metrics(trained),
        "train_metrics": trained.metrics,
        "log_history": trained.trainer.state.log_history,
    }
    write_record(folder, record, outputs, trained_state(model))
    for checkpoint in glob.glob(os.path.join(folder, "checkpoint-*")):  # the record holds what they held
        shutil.rmtree(checkpoint, ignore_errors=True)
    del model, trained
    gc.collect()
    clear_device_cache()
    return record, outputs


def _finished_or_trained(run: RunContext, base: RunConfig, candidate: Candidate, train_model, state) -> dict:
    """The candidate's entry of `adaptation_selection.json`: read from its record when a run with the same flags
    finished it, else trained now; its scores computed from its outputs."""
    folder = candidate_folder(base, candidate)
    found = read_record(folder, fingerprint(candidate_config(base, candidate, folder)))
    if found is not None:
        logger.info("--adaptation auto: candidate %s finished in an earlier run: reusing %s.", candidate.name, folder)
    record, outputs = found if found is not None else _train_candidate(run, base, candidate, train_model, state)
    entry = {k: record[k] for k in ("name", "method", "trade_off", "importance_weighting", "training_seconds")}
    entry.update(scores=score_all(outputs), resumed=found is not None)
    if record.get(TARGET_KEY):
        entry[TARGET_KEY] = record[TARGET_KEY]
    rounded = {k: round(v, 4) for k, v in entry["scores"].items()}
    logger.info("--adaptation auto: %s scores %s.", candidate.name, rounded)
    return entry


def _kept_model(run: RunContext, base: RunConfig, candidate: Candidate, train_model, record: dict) -> tuple:
    """The kept candidate as the plain run would hand it to saving and evaluation: the strategy applied to the
    pretrained model, the candidate's trained weights loaded, its Trainer ready to predict (nothing trains)."""
    config = candidate_config(base, candidate)
    evaluate_only = dataclasses.replace(config, training=dataclasses.replace(config.training, do_train=False))
    model, trained, counts = train_model(dataclasses.replace(run, config=evaluate_only))
    load_trained_state(model, candidate_folder(base, candidate))
    trained.metrics = {**record["train_metrics"], **trained.metrics}
    trained.trainer.state.log_history = record["log_history"]
    return model, trained, counts


def train_auto(run: RunContext, train_model: Callable) -> tuple:
    """Train and score every candidate, keep one (see the module docstring).

    Args:
        run: the steps before training, with `--adaptation auto`.
        train_model: `hftl.pipeline.train_model`, `(run) -> (model, Trained, (trainable, total) parameters)`.

    Returns:
        (the kept candidate's `RunContext` (its flags, and `selection`: the content of adaptation_selection.json),
        its model, its `Trained`, its parameter counts), as the plain run of that candidate hands them on.
    """
    start, config = time.perf_counter(), run.config
    if config.run.overwrite_output_dir:
        shutil.rmtree(os.path.join(config.training.output_dir, CANDIDATES_DIR), ignore_errors=True)
    diagnosis = getattr(run.shift, "diagnosis", None)
    candidates, base, state = candidate_list(config.auto, diagnosis), _base_config(config), _random_state()
    entries = [_finished_or_trained(run, base, c, train_model, state) for c in candidates]
    scored = [
        ScoredCandidate(e["name"], e["method"], e["trade_off"], e["importance_weighting"], e["scores"]) for e in entries
    ]
    selection = select_candidate(scored, diagnosis)
    chosen = candidates[selection.index]
    folder = candidate_folder(base, chosen)
    record, _ = read_record(folder, fingerprint(candidate_config(base, chosen, folder)))
    model, trained, counts = _kept_model(run, base, chosen, train_model, record)
    report = selection_record(entries, selection, diagnosis, config.as_dict(), time.perf_counter() - start)
    write_selection(report, config.training.output_dir)
    trained.metrics.update(auto_candidates=len(candidates), auto_wall_seconds=report["wall_seconds"])
    return dataclasses.replace(run, config=candidate_config(config, chosen), selection=report), model, trained, counts
