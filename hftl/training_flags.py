"""Flags that steer training beyond `TrainingArguments`: early stopping and class imbalance.

`--early_stopping_patience` / `--early_stopping_threshold` are AutoTrain's names for transformers'
`EarlyStoppingCallback` arguments; the metric is TrainingArguments' own `--metric_for_best_model` (default `loss`,
as transformers and AutoTrain use) and `--greater_is_better`. `resolve_early_stopping` turns on what the callback
needs (`load_best_model_at_end`, a save strategy equal to the evaluation strategy) once, when the config is resolved,
so that `hftl_config.yaml` records it. `--class_weights` and `--balanced_sampling` are read by `hftl.imbalance` (the
weights, from the training labels) and `hftl.trainer` (the loss and the sampler).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from hftl.errors import InputError

logger = logging.getLogger("hftl")


@dataclass
class TrainingControlArguments:
    """Early stopping and class imbalance."""

    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop training when --metric_for_best_model (default: loss) has not improved by more than "
            "--early_stopping_threshold for N evaluations in a row (transformers' EarlyStoppingCallback); the best "
            "model is loaded at the end. Needs evaluations (--eval_strategy epoch or steps)."
        },
    )
    early_stopping_threshold: float | None = field(
        default=None,
        metadata={
            "help": "How much the metric must improve on its best value to count as an improvement, in the "
            "metric's own units (e.g. 0.001 of eval_loss). Default 0."
        },
    )
    class_weights: str | None = field(
        default=None,
        metadata={
            "help": "Weighted cross-entropy: 'balanced' (n_samples / (n_classes * count_c), scikit-learn's "
            "compute_class_weight), one weight per class in label order ('1,10'; labels are sorted names), or "
            "'name=weight' pairs ('negative=1,positive=10'; classes left out weigh 1)."
        },
    )
    balanced_sampling: bool = field(
        default=False,
        metadata={
            "help": "Draw training examples with replacement, each class equally often (a seeded "
            "WeightedRandomSampler, one epoch = as many draws as training examples)."
        },
    )

    def __post_init__(self):
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise InputError(
                f"--early_stopping_patience must be >= 1 (evaluations), got {self.early_stopping_patience}."
            )
        if self.early_stopping_threshold is not None:
            if self.early_stopping_patience is None:
                raise InputError(
                    "--early_stopping_threshold needs --early_stopping_patience N (how many evaluations without an "
                    "improvement stop training)."
                )
            if not self.early_stopping_threshold >= 0:  # NaN fails too
                raise InputError(f"--early_stopping_threshold must be >= 0, got {self.early_stopping_threshold}.")
        if self.class_weights is not None:
            parse_class_weights(self.class_weights)

    @property
    def early_stopping(self) -> bool:
        return self.early_stopping_patience is not None


def parse_class_weights(text: str) -> str | list[float] | dict[str, float]:
    """`--class_weights` as 'balanced', a list of weights (label order) or a name -> weight mapping.

    Accepts 'balanced', '1,10', 'negative=1,positive=10', or a JSON object '{"negative": 1}' (what a mapping in a
    `--config` YAML file becomes).

    Raises:
        InputError: a weight that is not a number > 0, or an empty or malformed list.
    """
    import json

    text = text.strip()
    if text.lower() == "balanced":
        return "balanced"
    if text.startswith("{"):
        try:
            pairs = [(str(k), str(v)) for k, v in json.loads(text).items()]
        except (ValueError, AttributeError):
            raise InputError(f"--class_weights {text}: not a JSON object of class name -> weight.") from None
    else:
        items = [item.strip() for item in text.split(",")]
        pairs = [tuple(part.strip() for part in item.split("=", 1)) if "=" in item else (None, item) for item in items]
    named = {name is not None for name, _ in pairs}
    if len(named) > 1 or not pairs:
        raise InputError(f"--class_weights {text}: give either weights in label order ('1,10') or pairs ('a=1,b=10').")
    weights = []
    for name, value in pairs:
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not 0 < weight < float("inf"):
            raise InputError(
                f"--class_weights {text}: {value!r} is not a weight > 0. Give 'balanced', weights in label order "
                f"('1,10') or 'name=weight' pairs ('negative=1,positive=10')."
            )
        weights.append((name, weight))
    if named == {False}:
        return [w for _, w in weights]
    return dict(weights)


def check_early_stopping_flags(values: dict[str, Any]) -> None:
    """On the parsed flag values: early stopping needs evaluations on the validation split.

    Raises:
        InputError: `--early_stopping_patience` with `--do_eval false` or `--eval_strategy no`.
    """
    if values.get("early_stopping_patience") is None:
        return
    strategy = getattr(values.get("eval_strategy"), "value", values.get("eval_strategy"))
    if values.get("do_eval") is False or strategy == "no":
        flag = "--do_eval false" if values.get("do_eval") is False else "--eval_strategy no"
        raise InputError(
            f"--early_stopping_patience compares evaluations on the validation split, and {flag} turns them off: "
            f"drop {flag.split()[0]}, and set --eval_strategy epoch (or steps with --eval_steps N)."
        )


def resolve_early_stopping(training, control: TrainingControlArguments, explicit: set[str]):
    """The `TrainingArguments` early stopping needs: `load_best_model_at_end` (unless the user turned it off) and the
    save strategy (and steps) of the evaluations, so that the best evaluation has a checkpoint to load.

    Returns:
        `training` unchanged without early stopping, else a copy (transformers' checks and defaults rerun: the metric
        defaults to `loss`, `greater_is_better` follows its name).
    """
    if not control.early_stopping:
        return training
    values: dict[str, Any] = {}
    if not training.load_best_model_at_end and "load_best_model_at_end" not in explicit:
        values["load_best_model_at_end"] = True
    elif not training.load_best_model_at_end:  # e.g. a run's hftl_config.yaml given as --config records false
        logger.warning(
            "--early_stopping_patience with --load_best_model_at_end false (from the command line or the --config "
            "file): training stops early, and the model saved is the last one, not the best evaluation's."
        )
    if training.save_strategy.value != training.eval_strategy.value:
        values["save_strategy"] = training.eval_strategy.value
    if training.eval_strategy.value == "steps" and training.save_steps != training.eval_steps:
        values["save_steps"] = training.eval_steps
    changed = {k: v for k, v in values.items() if k in explicit}
    if changed:
        logger.info(
            "Early stopping: %s set to match the evaluations.", ", ".join(f"--{k} {v}" for k, v in changed.items())
        )
    if values:
        training = dataclasses.replace(training, **values)
    if training.metric_for_best_model is None:  # --load_best_model_at_end false: transformers set no metric
        training = dataclasses.replace(training, metric_for_best_model="loss")
    return training
