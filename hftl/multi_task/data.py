"""Each task's data, loaded and checked by the single-task code with that task's own data flags (before any model
loads), and its model inputs built with the shared processor."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from hftl.arguments import DataTrainingArguments
from hftl.data.domains import RunData, load_data
from hftl.errors import InputError
from hftl.inputs import Inputs, build_inputs
from hftl.multi_task.arguments import TaskSpec
from hftl.validation import suggestion

logger = logging.getLogger("hftl")

_DATA_SOURCES = ("dataset_name", "train_file", "train_dir")


@dataclass(frozen=True)
class Task:
    """One task of a multi-task run.

    Attributes:
        index: its place in the task list (its `task_ids` value; task 0's head is the loaded classifier's own).
        name, weight: as declared.
        config: the run's config with this task's data flags (`data`, `inputs`).
        data: its checked splits and classes.
    """

    index: int
    name: str
    weight: float
    config: Any
    data: RunData

    @property
    def num_labels(self) -> int:
        return len(self.data.labels.names)


def task_config(modality, config, spec: TaskSpec):
    """The run's config with `spec`'s data flags: top-level data flags (e.g. `max_train_samples`) are the defaults,
    the task's own values win; the modality's data-dependent defaults (`--random_flip`) are resolved per task.

    Raises:
        InputError: a key that is not a data flag of this recipe (with the closest names), no data source, or a
            value its flag refuses.
    """
    data_fields = {f.name for f in dataclasses.fields(DataTrainingArguments)}
    input_fields = {f.name for f in dataclasses.fields(config.inputs) if f.init}
    unknown = sorted(set(spec.flags) - data_fields - input_fields)
    if unknown:
        known = {name: None for name in sorted(data_fields | input_fields)}
        described = "; ".join(f"{key}{suggestion(key, known, prefix='')}" for key in unknown)
        raise InputError(f"--tasks: task '{spec.name}': unknown data flag(s) {described}.")
    if not any(spec.flags.get(name) for name in _DATA_SOURCES if name in data_fields | input_fields):
        sources = " / ".join(name for name in _DATA_SOURCES if name in data_fields | input_fields)
        raise InputError(f"--tasks: task '{spec.name}' names no data: give it {sources}.")
    own_data = {k: v for k, v in spec.flags.items() if k in data_fields}
    own_inputs = {k: v for k, v in spec.flags.items() if k in input_fields}
    if "random_flip" in input_fields and "random_flip" not in own_inputs:
        own_inputs["random_flip"] = None  # resolved from this task's data (off for built-in digit sets)
    try:
        data = dataclasses.replace(config.data, **own_data)
        inputs = dataclasses.replace(config.inputs, **own_inputs)
    except (TypeError, ValueError) as error:
        raise InputError(f"--tasks: task '{spec.name}': {error}") from None
    except InputError as error:
        raise InputError(f"--tasks: task '{spec.name}': {error}") from None
    inputs = modality.resolve_arguments(inputs, data, config.model)
    return dataclasses.replace(config, data=data, inputs=inputs)


def load_tasks(modality, config) -> list[Task]:
    """Every declared task's config and checked data, in order.

    Raises:
        InputError: bad task flags or data (the message names the task), before any model loads.
    """
    specs = config.multi_task.task_specs()
    configs = [task_config(modality, config, spec) for spec in specs]  # every task's flags checked before any data
    tasks = []
    for index, (spec, own) in enumerate(zip(specs, configs, strict=True)):
        try:
            data = load_data(modality, own)
        except InputError as error:
            raise InputError(f"task '{spec.name}': {error}") from None
        tasks.append(Task(index, spec.name, spec.weight, own, data))
        logger.info("Task '%s': %d classes, %d training examples.", spec.name, len(data.labels.names),
                    len(data.source.splits["train"]))  # fmt: skip
    return tasks


def task_inputs(modality, tasks: list[Task], processor) -> list[Inputs]:
    """Each task's model inputs, through the shared processor and its own input flags (e.g. its text column)."""
    return [build_inputs(modality, task.config, task.data, processor) for task in tasks]
