"""The multi-task flags: the task list (`--tasks`), how batches mix the tasks and how their losses are weighted.

A task is a mapping with a `name`, its own data flags (any of hftl's data flags: `dataset_name`, `train_file` /
`validation_file` / `test_file`, `train_dir` ..., `label_column_name`, `text_column_name`, `max_train_samples` ...)
and an optional `weight`. The list is given in a `--config` file as `tasks:`, or on the command line as
`--tasks tasks.yaml` (a YAML / JSON file holding the list, or a mapping with a `tasks:` list).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from hftl.errors import InputError

TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # a folder name and a metric-name part
TOP_LEVEL_DATA_FLAGS = ("dataset_name", "train_file", "validation_file", "test_file", "train_dir", "validation_dir",
                        "test_dir")  # fmt: skip
# strategies whose model is one backbone trained end to end (the cached-feature ones train a head alone per stage)
MULTI_TASK_STRATEGIES = ("full", "freeze", "lora")


@dataclass(frozen=True)
class TaskSpec:
    """One task as the user declared it: `name`, `weight` (fixed weighting's w_t) and its data flags."""

    name: str
    weight: float
    flags: dict[str, Any]


@dataclass
class MultiTaskArguments:
    """Multi-task learning: one shared backbone, one classification head per task, trained together."""

    tasks: str | None = field(
        default=None,
        metadata={
            "help": "Multi-task learning: a YAML / JSON file listing the tasks (in a --config file: the `tasks:` list "
            "itself). Each task: `name`, its data flags (dataset_name or train_file / validation_file / test_file, "
            "train_dir ..., label_column_name, text_column_name ...) and an optional `weight` (default 1)."
        },
    )
    task_sampling: Literal["proportional", "round_robin"] = field(
        default="proportional",
        metadata={
            "help": "How batches mix the tasks (each batch holds one task's examples). proportional: every batch of "
            "every task once per epoch, in random order (a task's share of steps = its share of the data). "
            "round_robin: the tasks in turn, a smaller task's batches repeating (same number of steps per epoch)."
        },
    )
    task_weighting: Literal["fixed", "uncertainty"] = field(
        default="fixed",
        metadata={
            "help": "fixed: loss = w_t * L_t with each task's `weight`. uncertainty: loss = exp(-s_t) * L_t + s_t with "
            "s_t = log sigma_t^2 learned (Kendall, Gal & Cipolla, CVPR 2018)."
        },
    )
    task_weight_learning_rate: float = field(
        default=1e-2,
        metadata={"help": "uncertainty: learning rate of the s_t (the backbone's rate is too small to move them)."},
    )

    def __post_init__(self):
        if self.task_weight_learning_rate <= 0:
            raise InputError(f"--task_weight_learning_rate must be > 0, got {self.task_weight_learning_rate}.")
        self.task_specs()  # a bad list fails now, before any data loads

    def task_specs(self) -> list[TaskSpec]:
        """The declared tasks, in order (empty without `--tasks`).

        Raises:
            InputError: the file is missing or does not parse, fewer than two tasks, a task that is no mapping, a
                name missing, repeated or not a plain word, a weight that is not a positive number.
        """
        if not self.tasks:
            return []
        items = _read_tasks(self.tasks)
        if not isinstance(items, list) or len(items) < 2:
            raise InputError(f"--tasks must list at least two tasks (each a mapping with a name), got {items!r:.200}.")
        specs, seen = [], set()
        for position, item in enumerate(items, 1):
            spec = _task_spec(position, item)
            if spec.name in seen:
                raise InputError(f"--tasks: the name '{spec.name}' is given twice; each task needs its own name.")
            seen.add(spec.name)
            specs.append(spec)
        return specs


def _read_tasks(value: str) -> Any:
    """The task list: JSON text (as a --config file hands it over) or a YAML / JSON file's list (or `tasks:` key)."""
    from hftl.config_file import read_file

    if value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise InputError(f"--tasks: not a JSON list ({error.msg}, column {error.colno}).") from None
    content = read_file(value, "--tasks")
    return content.get("tasks") if isinstance(content, dict) else content


def _task_spec(position: int, item: Any) -> TaskSpec:
    if not isinstance(item, dict):
        raise InputError(f"--tasks: task {position} is a {type(item).__name__}, not a mapping of name and data flags.")
    flags = dict(item)
    name = str(flags.pop("name", "") or "")
    if not TASK_NAME.match(name):
        raise InputError(
            f"--tasks: task {position} needs a `name` of letters, digits, '_' or '-' (it names its output folder and "
            f"metrics), got {name!r}."
        )
    weight = flags.pop("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
        raise InputError(f"--tasks: task '{name}': `weight` must be a positive number, got {weight!r}.")
    return TaskSpec(name, float(weight), flags)


# flag -> (the value multi-task training needs, why)
_REFUSED = {
    "adaptation": ("none", "domain adaptation trains one classifier on a source and a target"),
    "importance_weighting": (False, "it corrects one classifier's label shift"),
    "problem_type": ("single_label_classification", "each task is single-label classification"),
    "hp_search_trials": (0, "a search runs single-task trials"),
    "temperature_scaling": (False, "it folds one temperature into one classifier"),
    "balanced_sampling": (False, "batches are drawn per task (--task_sampling)"),
    "class_weights": (None, "class weights are one task's"),
    "load_best_model_at_end": (False, "the best checkpoint is chosen by one metric of one task"),
    "early_stopping_patience": (None, "it watches one metric of one task"),
    "export_onnx": (False, "export each tasks/<name> folder with `hftl export`"),
    "push_to_hub": (False, "push each tasks/<name> folder yourself"),
}


_TARGET_FLAGS = ("target_dataset_name", "target_train_file", "target_train_dir")


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def check_multi_task_flags(values: dict[str, Any]) -> None:
    """With `--tasks`: refuse the flags multi-task training does not support (before any data or model loads).

    Raises:
        InputError: naming the flag, why, and the fix.
    """
    if not values.get("tasks"):
        return
    strategy = values.get("strategy")
    if strategy is not None and strategy not in MULTI_TASK_STRATEGIES:
        raise InputError(
            f"--strategy {strategy} is not supported with --tasks (one backbone trained end to end for all tasks): "
            f"choose one of {', '.join(MULTI_TASK_STRATEGIES)}."
        )
    for flag, (fine, why) in _REFUSED.items():
        value = _plain(values.get(flag))
        if value is not None and value != fine:
            raise InputError(f"--{flag} is not supported with --tasks ({why}): drop it, or train one task alone.")
    if values.get("feature_layer") == "auto":
        raise InputError(
            "--feature_layer auto is not supported with --tasks (it ranks layers on one task's labels): run `hftl "
            "rank` on the task that matters most and pass --feature_layer N."
        )
    given = [name for name in (*TOP_LEVEL_DATA_FLAGS, *_TARGET_FLAGS) if values.get(name)]
    if given:
        raise InputError(
            f"--{given[0]} is given beside --tasks: with --tasks each task names its own data. Move it into a task's "
            f"entry in the tasks list (target data: multi-task training does not adapt to a target domain)."
        )
