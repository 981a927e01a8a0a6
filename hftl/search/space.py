"""The search space of `--hp_search_trials`: which flags a trial sets, and from what range.

A space maps flag names to a range or a list of choices, the format of `--hp_space FILE` (YAML or JSON)::

    learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}   # log-uniform
    num_train_epochs: {low: 1, high: 4, step: 1}             # 1, 2, 3 or 4
    per_device_train_batch_size: [8, 16, 32]                 # one of these
    lora_r: [4, 8, 16]

A range becomes an Optuna `IntDistribution` for an integer flag and a `FloatDistribution` otherwise (`log`: sampled
log-uniformly; `step`: on a grid); a list, a `CategoricalDistribution`. The default space
(`default_space`) searches `--learning_rate` (log-uniform, a tenth to ten times the run's rate), `--num_train_epochs`
(whole epochs from 1 to twice the run's; not with `--max_steps`), `--per_device_train_batch_size` (half, the same,
twice), the strategy's own flags (`Strategy.search_space`) and, with `--adaptation`, `--trade_off` (log-uniform, a
tenth to ten times).

Searchable: the flags of `TrainingArguments`, of the strategy and of the adaptation method, and `--trade_off`,
`--grl_gamma`, `--bottleneck_dim`, `--importance_weighting`. The data and its columns, the model, the output folder and
`--seed` (which also carves the validation split) stay as given: the data is loaded and checked once per search.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import re
from typing import Any

from transformers import TrainingArguments

from hftl.adaptation.methods import get_method, method_names
from hftl.arguments import StrategyArguments
from hftl.config import argument_types, layer_count, resolve_config
from hftl.config_file import read_file
from hftl.errors import InputError
from hftl.strategies import get_strategy, strategy_names
from hftl.validation import FlagParser, suggestion

logger = logging.getLogger("hftl")

# flags that a trial may not change: where the run writes, what it runs, how it is tracked, and the trial mechanics
FIXED_TRAINING_FLAGS = {
    "output_dir",
    "do_train",
    "do_eval",
    "do_predict",
    "seed",
    "resume_from_checkpoint",
    "push_to_hub",
    "hub_model_id",
    "hub_strategy",
    "report_to",
    "run_name",
    "project",
    "metric_for_best_model",
    "greater_is_better",
}
# adaptation flags that change training, with what they need
ADAPTATION_KNOBS = {
    "trade_off": "--adaptation",
    "grl_gamma": "--adaptation",
    "bottleneck_dim": "--adaptation",
    "importance_weighting": "target data",
}
_RANGE_KEYS = {"low", "high", "log", "step"}


def default_space(modality, config) -> dict[str, dict]:
    """The default search space of a resolved `RunConfig` (see the module docstring), in the `--hp_space` format."""
    training = config.training
    rate = training.learning_rate
    space: dict[str, dict] = {"learning_rate": {"low": rate / 10, "high": rate * 10, "log": True}}
    if training.max_steps <= 0:
        space["num_train_epochs"] = {"low": 1, "high": max(2, math.ceil(2 * training.num_train_epochs)), "step": 1}
    batch = training.per_device_train_batch_size
    space["per_device_train_batch_size"] = {"choices": sorted({max(1, batch // 2), batch, 2 * batch})}
    count = functools.cache(functools.partial(layer_count, modality, config.model, config.strategy.feature_layer))
    space.update(get_strategy(config.strategy.strategy).search_space(config.strategy, count))
    trade_off = config.adaptation.trade_off
    if config.adaptation.adaptation != "none" and trade_off > 0:
        space["trade_off"] = {"low": trade_off / 10, "high": trade_off * 10, "log": True}
    return space


def read_space(path: str) -> dict[str, dict]:
    """The space in the `--hp_space` file at `path`, each entry as a mapping ({"choices": [...]} for a list).

    Raises:
        InputError: the file is missing, does not parse, is empty or not a mapping, or an entry is neither a list nor
            a mapping of low / high / log / step.
    """
    values = read_file(path, "--hp_space")
    if not isinstance(values, dict) or not values:
        raise InputError(
            f"--hp_space {path} must map flag names to a range or a list of choices, e.g. "
            f"'learning_rate: {{low: 1.0e-5, high: 1.0e-3, log: true}}' (README, 'Hyper-parameter search')."
        )
    space = {}
    for name, entry in values.items():
        if isinstance(entry, list):
            entry = {"choices": entry}
        if not isinstance(entry, dict) or not (set(entry) <= _RANGE_KEYS or set(entry) == {"choices"}):
            raise InputError(
                f"--hp_space {path}: {name}: give a list of choices or a mapping of low, high and optionally log or "
                f"step, got {entry!r}."
            )
        space[str(name)] = entry
    return space


def distributions(space: dict[str, dict], actions: dict[str, Any], where: str) -> dict[str, Any]:
    """Optuna distributions of `space`: integer flags (by their argparse type) get an `IntDistribution`.

    Raises:
        InputError: a range without low and high, bounds that are not numbers, low above high, `log` with a bound
            <= 0 or with `step`, choices that are not a non-empty list of numbers, strings or booleans.
    """
    import optuna

    result = {}
    for name, entry in space.items():
        try:
            result[name] = _distribution(optuna.distributions, entry, actions[name].type is int)
        except (ValueError, TypeError) as error:
            raise InputError(f"{where}: {name} {entry!r}: {error}.") from None
    return result


def _distribution(module, entry: dict, integer: bool):
    if "choices" in entry:
        choices = entry["choices"]
        if not choices or not all(isinstance(c, (bool, int, float, str)) for c in choices):
            raise ValueError("choices must be a non-empty list of numbers, strings or booleans")
        return module.CategoricalDistribution(list(choices))
    if "low" not in entry or "high" not in entry:
        raise ValueError("a range needs both low and high")
    bounds = (entry["low"], entry["high"], entry.get("step"))
    if any(isinstance(b, bool) or not isinstance(b, (int, float)) for b in bounds if b is not None):
        raise ValueError("low, high and step must be numbers")
    if entry["low"] > entry["high"]:
        raise ValueError("low must not exceed high")
    log = bool(entry.get("log", False))
    if integer and any(isinstance(b, float) and not b.is_integer() for b in bounds if b is not None):
        raise ValueError("an integer flag takes integer low, high and step")
    if integer:
        return module.IntDistribution(int(entry["low"]), int(entry["high"]), log=log, step=int(entry.get("step", 1)))
    return module.FloatDistribution(float(entry["low"]), float(entry["high"]), log=log, step=entry.get("step"))


def searchable_flags(config) -> dict[str, str | None]:
    """Flag -> what it needs to have an effect (None: always has one), for every flag a trial may set."""
    used = {config.strategy.strategy, config.adaptation.adaptation}
    flags: dict[str, str | None] = {
        f.name: None for f in dataclasses.fields(TrainingArguments) if f.init and f.name not in FIXED_TRAINING_FLAGS
    }
    owners = [StrategyArguments, *(get_method(m).arguments_class for m in method_names())]
    for cls in (c for c in owners if c is not None):
        for f in dataclasses.fields(cls):
            prefix = f.metadata.get("help", "").split(":", 1)[0]
            names = set(re.findall(r"[a-z_]+", prefix)) & {*strategy_names(), *method_names()}
            flags[f.name] = None if not names or names & used else " or ".join(sorted(names))
    flags.pop("strategy", None)
    flags.pop("feature_cache_dir", None)
    for name, need in ADAPTATION_KNOBS.items():
        met = config.adaptation.adaptation != "none" if need == "--adaptation" else config.adaptation.has_target
        flags[name] = None if met else need
    return flags


def check_space(space: dict[str, dict], modality, config, config_path: str, where: str) -> dict[str, Any]:
    """Check `space` against the run and return its Optuna distributions.

    Every name must be a searchable flag that has an effect in this run, and every bound or choice must be a value
    the flag accepts with the run's other flags: each is resolved as a trial would be (`--config config_path`, the
    search's resolved flags, then `--name value`), so every range, type and combination check of a plain run applies.

    Args:
        where: how errors name the space ("--hp_space FILE" or "the default search space").

    Raises:
        InputError: naming the flag, the value and why.
    """
    actions = {a.dest: a for a in FlagParser(argument_types(modality))._actions if a.dest not in ("help", "config")}
    searchable = searchable_flags(config)
    for name in space:
        if name not in actions:
            raise InputError(f"{where}: {name} is not a flag{suggestion(name, actions)}.")
        if name not in searchable:
            raise InputError(
                f"{where}: --{name} cannot be searched: the data, the model, the output folder, --seed and the "
                f"tracking flags stay as given (README, 'Hyper-parameter search')."
            )
        if searchable[name] is not None:
            raise InputError(f"{where}: --{name} has no effect in this run (it needs {searchable[name]}).")
        if name == "num_train_epochs" and config.training.max_steps > 0:
            raise InputError(f"{where}: --num_train_epochs has no effect with --max_steps {config.training.max_steps}.")
    result = distributions(space, actions, where)
    with _quiet():
        for name, entry in space.items():
            for value in entry.get("choices") or [entry["low"], entry["high"]]:
                try:
                    resolve_config(modality, None, ["--config", config_path, *trial_flags({name: value})])
                except InputError as error:
                    raise InputError(f"{where}: {name} = {value!r} is refused: {error}") from None
    return result


def trial_flags(params: dict[str, Any]) -> list[str]:
    """Command-line tokens that set `params` (flag -> value), after `--hp_search_trials 0`."""
    tokens = ["--hp_search_trials", "0"]
    for name, value in params.items():
        text = (
            ("true" if value else "false")
            if isinstance(value, bool)
            else repr(value)
            if isinstance(value, float)
            else str(value)
        )
        tokens += [f"--{name}", text]
    return tokens


@contextlib.contextmanager
def _quiet():
    """Hide hftl's INFO lines (each resolve logs the world size) while the space's values are checked."""

    def only_warnings(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING

    logger.addFilter(only_warnings)
    try:
        yield
    finally:
        logger.removeFilter(only_warnings)
