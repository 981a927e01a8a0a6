"""`--hp_search_trials N`: an Optuna study whose trials are whole hftl runs, scored on the validation split.

Each trial is the run the search's flags describe with the trial's values set (`hftl.search.space`), in
`output_dir/trial-<n>`: resolved, trained, saved and evaluated by `hftl.pipeline.run_config` exactly as a plain run
with those flags, on the data the search loaded and checked once. Its objective is the validation metric
`--metric_for_best_model` (default accuracy); trials evaluate neither the test split nor a labelled target test
split, whose labels must not choose the model.

Why not `Trainer.hyperparameter_search(backend="optuna")`: it re-runs one Trainer's `train()` per trial, with the
model rebuilt by `model_init` and the trial's values set on that Trainer's `TrainingArguments` (any other name is
skipped with a warning). hftl's runs do not fit that without distortion: `two_stage` trains two Trainers in turn
(stage 2's epochs and rate are not the first Trainer's), `feature_extraction` trains a head on cached features, an
adaptation run trains an `AdaptationTask` around the model whose `--trade_off` lives outside `TrainingArguments`, and
the strategy's own flags (`--lora_r`, `--num_frozen_layers`, `--unfreeze_top_k`) change which parameters exist or
train, which `model_init` cannot see. It also keeps the study in memory (a killed search loses it) and runs every
trial in the same output folder. The study here is Optuna's own, which `hyperparameter_search` wraps too: ask and
tell, `TPESampler(seed=--seed)` (a resumed search reseeds it with --seed plus the trials recorded, so that it does not
draw the first trials' values again).

Files in output_dir: `hftl_config.yaml` (the search's flags), `hp_search.db` (the Optuna study, SQLite; open it with
`optuna-dashboard sqlite:///hp_search.db`), `trial-<n>/` (each trial's run: metrics, logs, config; its checkpoints are
deleted once it finishes and its model unless it is the best so far), `hp_search.json` (every trial: state,
parameters, objective, eval metrics, error), `best_config.yaml` (the best trial's flags, for `--config`).

A trial that raises is marked FAIL (its error in `trial-<n>/trial_error.txt` and hp_search.json) and the search goes
on. A search stopped midway (killed, Ctrl-C) resumes when rerun with the same flags: finished trials are kept, a trial
that was running resumes from its last complete checkpoint, and new trials fill up to N; `--overwrite_output_dir`
starts afresh. One search per output folder at a time; several processes (torchrun) are refused.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import json
import logging
import math
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable
from typing import Any

from accelerate.utils.memory import clear_device_cache

from hftl.config import CONFIG_FILE, RunConfig, resolve_config, write_config
from hftl.data.domains import RunData, load_data
from hftl.errors import InputError
from hftl.output import check_writable
from hftl.search.records import (
    BEST_CONFIG_FILE,
    ERROR_FILE,
    RECORD_FILE,
    Objective,
    log_table,
    trial_dir,
    write_records,
)
from hftl.search.space import check_space, default_space, read_space, trial_flags
from hftl.writes import output_writes

logger = logging.getLogger("hftl")

STUDY_FILE = "hp_search.db"
STUDY_NAME = "hftl"
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth")
# flags that may change between a stopped search and its resumption (the rest must match)
VOLATILE_FLAGS = {
    "hp_search_trials",
    "overwrite_output_dir",
    "do_predict",
    "push_to_hub",
    "hub_model_id",
    "hub_private_repo",
    "hub_strategy",
    "report_to",
    "run_name",
    "project",
    "logging_steps",
    "logging_strategy",
    "logging_first_step",
    "disable_tqdm",
    "log_level",
    "log_level_replica",
    "dataloader_num_workers",
}


@dataclasses.dataclass(frozen=True)
class Search:
    """A search's fixed parts: the modality, the resolved flags, the function that runs one trial
    (`hftl.pipeline.run_config`), the objective, the space (as written) and its Optuna distributions, the data."""

    modality: Any
    config: RunConfig
    run: Callable[..., dict[str, float]]
    objective: Objective
    space: dict[str, dict]
    distributions: dict[str, Any]
    data: RunData | None = None

    @property
    def output_dir(self) -> str:
        return self.config.training.output_dir


def run_search(modality, config: RunConfig, run: Callable[..., dict[str, float]]) -> dict[str, float]:
    """Search the hyper-parameters: `config.search.hp_search_trials` trials, each a whole run (module docstring).

    Args:
        modality: the recipe's modality.
        config: the search's resolved flags (`--hp_search_trials` > 0).
        run: `hftl.pipeline.run_config`, called as `run(modality, trial_config, data)`; returns the run's metrics.

    Returns:
        The best trial's metrics (its all_results.json) and `hp_search_best_trial`, its number.

    Raises:
        InputError: bad flags, space or data (before any model loads), a stored search with other settings in
            output_dir, or every trial failed.
    """
    search = _prepare(modality, config, run)
    search = dataclasses.replace(search, data=_without_target_labels(load_data(modality, config)))
    if config.run.overwrite_output_dir:
        _start_afresh(search.output_dir)
    study = _open_study(search)
    with output_writes(search.output_dir, CONFIG_FILE):
        write_config(config, search.output_dir)
    _run_trials(study, search)
    log_table(study, search.objective)
    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not completed:
        raise InputError(
            f"Every trial of the search failed; their errors are in {os.path.join(search.output_dir, RECORD_FILE)}. "
            f"Fix the cause (or narrow --hp_space) and rerun with --overwrite_output_dir."
        )
    best = study.best_trial
    logger.info(
        "Best trial: %d, %s %.4f, %s. Its model is in %s; rerun it with --config %s.",
        best.number, search.objective.metric, best.value, best.params, trial_dir(search.output_dir, best.number),
        os.path.join(search.output_dir, BEST_CONFIG_FILE),
    )  # fmt: skip
    with open(os.path.join(trial_dir(search.output_dir, best.number), "all_results.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    return {**metrics, "hp_search_best_trial": best.number}


def _prepare(modality, config: RunConfig, run) -> Search:
    """Check the search's flags and its space, before any data or model loads.

    Raises:
        InputError: Optuna missing, several processes, no training or no evaluation, --resume_from_checkpoint, a bad
            space.
    """
    training = config.training
    if importlib.util.find_spec("optuna") is None:
        raise InputError("--hp_search_trials needs Optuna: `pip install 'hftl[search]'` (or `pip install optuna`).")
    if training.world_size > 1:
        raise InputError(
            f"--hp_search_trials runs its trials one after the other in one process; this run has "
            f"{training.world_size}. Start it with `python`, not torchrun / accelerate launch."
        )
    if not (training.do_train and training.do_eval):
        raise InputError("--hp_search_trials needs --do_train and --do_eval: each trial trains and is scored on the "
                         "validation split.")  # fmt: skip
    if training.resume_from_checkpoint is not None:
        raise InputError("--hp_search_trials with --resume_from_checkpoint: a stopped search resumes by itself when "
                         "rerun with the same flags; drop --resume_from_checkpoint.")  # fmt: skip
    check_writable(training.output_dir)
    objective = _objective(training, config.search, config.problem.multi_label)
    path = config.search.hp_space
    space = read_space(path) if path else default_space(modality, config)
    where = f"--hp_space {path}" if path else "the default search space"
    os.makedirs(training.output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=training.output_dir, prefix=".hp-space-check-") as folder:
        write_config(config, folder)
        distributions = check_space(space, modality, config, os.path.join(folder, CONFIG_FILE), where)
    logger.info("Searching %d trial(s) for the best %s (%s) over %s.", config.search.hp_search_trials,
                objective.metric, objective.direction, space)  # fmt: skip
    return Search(modality, config, run, objective, space, distributions)


def _objective(training, search, multi_label: bool = False) -> Objective:
    """The validation metric (the --metric_for_best_model the user gave, default accuracy; micro F1 for multi-label
    runs) and its direction: --hp_search_direction, else --greater_is_better for a metric the user gave, else
    minimise a loss and maximise anything else."""
    given = search.objective_metric
    name = (given or ("f1_micro" if multi_label else "accuracy")).removeprefix("eval_")
    direction = search.hp_search_direction
    if direction is None:
        greater = training.greater_is_better if given and training.greater_is_better is not None else None
        direction = "maximize" if (greater if greater is not None else not name.endswith("loss")) else "minimize"
    return Objective(f"eval_{name}", direction)


def _without_target_labels(data: RunData) -> RunData:
    """The data as trials see it: a labelled target test split is kept out of their evaluations."""
    if data.target is None or not data.target.labelled_test:
        return data
    return dataclasses.replace(data, target=dataclasses.replace(data.target, labelled_test=False))


def _start_afresh(output_dir: str) -> None:
    """--overwrite_output_dir: delete an earlier search's study, records and trial folders."""
    paths = [os.path.join(output_dir, name) for name in (STUDY_FILE, RECORD_FILE, BEST_CONFIG_FILE)]
    paths += glob.glob(os.path.join(output_dir, "trial-*"))
    removed = [p for p in paths if os.path.lexists(p)]
    for path in removed:
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    if removed:
        logger.info("--overwrite_output_dir: removed an earlier search from %s (%d files / folders).", output_dir,
                    len(removed))  # fmt: skip


def _settings(search: Search) -> dict[str, Any]:
    """What must not change when a stopped search resumes: the objective, the space and the non-volatile flags."""
    flags = {k: v for k, v in search.config.as_dict().items() if k not in VOLATILE_FLAGS}
    settings = {"objective": dataclasses.asdict(search.objective), "space": search.space, "flags": flags}
    return json.loads(json.dumps(settings))


def _open_study(search: Search):
    """The study in output_dir/hp_search.db: created, or loaded to resume it.

    Raises:
        InputError: the stored study was made with other settings (see `_settings`).
    """
    import optuna

    storage = f"sqlite:///{os.path.abspath(os.path.join(search.output_dir, STUDY_FILE))}"
    sampler = optuna.samplers.TPESampler(seed=search.config.training.seed)
    study = optuna.create_study(
        storage=storage, study_name=STUDY_NAME, direction=search.objective.direction, sampler=sampler,
        load_if_exists=True,
    )  # fmt: skip
    settings, stored = _settings(search), study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", settings)
    elif stored != settings:
        changed = _differences(stored, settings)
        raise InputError(
            f"--output_dir {search.output_dir} holds a search with other settings ({changed}), which this one would "
            f"resume. Pass --overwrite_output_dir to start afresh there, or choose another --output_dir."
        )
    count = len(study.get_trials(deepcopy=False))
    if count:
        # a resumed study's sampler starts over: seeded alike, it would draw the first trials' values again
        study.sampler = optuna.samplers.TPESampler(seed=(search.config.training.seed + count) % 2**32)
        logger.info("Resuming the search in %s: %d trial(s) recorded.", search.output_dir, count)
    return study


def _differences(stored: dict, current: dict) -> str:
    then = {**stored["flags"], "objective": stored["objective"], "space": stored["space"]}
    now = {**current["flags"], "objective": current["objective"], "space": current["space"]}
    keys = sorted(k for k in then.keys() | now.keys() if then.get(k) != now.get(k))
    return ", ".join(f"{k}: {then.get(k)!r} then, {now.get(k)!r} now" for k in keys[:5])


def _run_trials(study, search: Search) -> None:
    """Finish the trials a stopped search left running, then ask for new ones until the study holds N."""
    from optuna.trial import TrialState

    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if set(stale.params) == set(search.space):
            logger.info("Trial %d was stopped before it finished: resuming it.", stale.number)
            _finish_trial(study, search, stale.number, stale.params, fresh=False)
        else:
            study.tell(stale.number, state=TrialState.FAIL)
    while len(study.get_trials(deepcopy=False)) < search.config.search.hp_search_trials:
        trial = study.ask(search.distributions)
        _finish_trial(study, search, trial.number, trial.params, fresh=True)
    write_records(study, search.objective, search.space, search.output_dir, _user_values(search.config))


def _finish_trial(study, search: Search, number: int, params: dict[str, Any], fresh: bool) -> None:
    """Run trial `number` and tell the study its objective, or that it failed; tidy and rewrite the records."""
    from optuna.trial import TrialState

    logger.info("Trial %d of %d: %s", number, search.config.search.hp_search_trials, params)
    try:
        value = _run_trial(search, number, params, fresh)
    except Exception as error:  # a failed trial is recorded and the search goes on
        with open(os.path.join(trial_dir(search.output_dir, number), ERROR_FILE), "w", encoding="utf-8") as handle:
            handle.write(f"{type(error).__name__}: {error}\n\n{traceback.format_exc()}")
        logger.warning("Trial %d failed (%s: %s); the search goes on.", number, type(error).__name__, error)
        study.tell(number, state=TrialState.FAIL)
    else:
        study.tell(number, value)
        logger.info("Trial %d: %s = %.4f", number, search.objective.metric, value)
    clear_device_cache(garbage_collection=True)  # the trial's model, optimizer and Trainer, before the next trial
    _tidy(study, search.output_dir)
    write_records(study, search.objective, search.space, search.output_dir, _user_values(search.config))


def _run_trial(search: Search, number: int, params: dict[str, Any], fresh: bool) -> float:
    """One trial: the search's flags with `params`, run in output_dir/trial-<number> on the search's data.

    A fresh trial starts in an empty folder; a resumed one (fresh=False) goes on from its last complete checkpoint.

    Raises:
        ValueError: the run reported no finite objective. Whatever the run raises.
    """
    folder = trial_dir(search.output_dir, number)
    if fresh and os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder, exist_ok=True)
    config, name = search.config, _given_run_name(search.config)
    args = ["--config", os.path.join(search.output_dir, CONFIG_FILE), *trial_flags(params), "--output_dir", folder]
    args += ["--do_predict", "false", "--push_to_hub", "false", "--overwrite_output_dir", "false"]
    args += ["--export_onnx", "false"]  # the best trial's config keeps the user's value
    args += ["--run_name", f"{name}-trial-{number}" if name else folder]
    if config.strategy.cache_features and config.strategy.feature_cache_dir is None:
        args += ["--feature_cache_dir", os.path.join(search.output_dir, "feature_cache")]
    metrics = search.run(search.modality, resolve_config(search.modality, None, args), search.data)
    value = metrics.get(search.objective.metric)
    if value is None or not math.isfinite(value):
        raise ValueError(f"the run reported {search.objective.metric} = {value}; the objective must be a number")
    return float(value)


def _tidy(study, output_dir: str) -> None:
    """Keep finished trials small: delete their checkpoints, and the model of every one but the best so far."""
    trials = study.get_trials(deepcopy=False)
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    best = study.best_trial.number if completed else None
    for trial in (t for t in trials if t.state.name in ("COMPLETE", "FAIL")):
        folder = trial_dir(output_dir, trial.number)
        for path in glob.glob(os.path.join(folder, "**", "checkpoint-*"), recursive=True):
            if os.path.isdir(path):
                shutil.rmtree(path)
        if trial.number != best:
            for pattern in WEIGHT_FILES:
                for path in glob.glob(os.path.join(folder, "**", pattern), recursive=True):
                    os.remove(path)


def _given_run_name(config: RunConfig) -> str | None:
    """--run_name as the user gave it (None: it defaulted to --output_dir, see `hftl.tracking.name_run`)."""
    name = config.training.run_name
    return None if name == config.training.output_dir else name


def _user_values(config: RunConfig) -> dict[str, Any]:
    """The flags that trials override, as the user gave them: best_config.yaml restores them."""
    return {
        "do_predict": config.training.do_predict,
        "push_to_hub": config.push_to_hub,
        "overwrite_output_dir": config.run.overwrite_output_dir,
        "run_name": _given_run_name(config),
        "feature_cache_dir": config.strategy.feature_cache_dir,
        "hp_space": None,
        "hp_search_direction": None,
    }
