"""A multi-task run (`--tasks`), as named steps like the single-task one (`hftl.pipeline`):

config -> output folder -> every task's data -> the model (first task's classifier) and one head per other task
-> inputs -> strategy -> train (one task per batch) -> each task's BatchNorm statistics -> export one classifier per
task -> evaluate every task -> cards
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from transformers import set_seed

from hftl.context import FeatureLayer
from hftl.errors import InputError
from hftl.features import wrapped_name
from hftl.modeling import LoadedModel, load_model
from hftl.multi_task.batch_norm import task_statistics
from hftl.multi_task.data import Task, load_tasks, task_inputs
from hftl.multi_task.evaluation import evaluate_tasks
from hftl.multi_task.export import export_tasks, save_cards
from hftl.multi_task.model import MultiTaskModel, sized_head
from hftl.multi_task.trainer import multi_task_trainer
from hftl.output import check_output_dir, resume_checkpoint, start_output_dir
from hftl.strategies import get_strategy, log_parameter_counts, model_parts
from hftl.training.checkpointing import keep_gradients_flowing
from hftl.writes import output_writes

logger = logging.getLogger("hftl")


@dataclass(frozen=True)
class MultiTaskRun:
    """What the card writer reads: the modality, the resolved flags and the loaded model (path, processor)."""

    modality: Any
    config: Any
    loaded: LoadedModel


def build_model(modality, config, tasks: list[Task], loaded: LoadedModel) -> tuple[MultiTaskModel, str]:
    """The strategy applied to the first task's classifier, wrapped with a head per other task.

    Returns:
        (the model, the name of the classification layer in the plain classifier).

    Raises:
        InputError: the classifier has no linear classification layer to copy for the other tasks.
    """
    layer = FeatureLayer.of(loaded.model, tasks[0].num_labels)
    if layer is None:
        raise InputError(
            f"--tasks: {type(loaded.model).__name__} has no linear classification layer with "
            f"{tasks[0].num_labels} outputs to copy for the other tasks; choose another --model_name_or_path."
        )
    source = loaded.model.get_submodule(layer.name)
    heads = [sized_head(source, task.num_labels) for task in tasks[1:]]
    strategy, parts = get_strategy(config.strategy.strategy), model_parts(loaded.model, loaded.new_parameters)
    classifier = strategy.apply(loaded.model, parts, config.strategy, modality.peft_task_type)
    modality.after_strategy(classifier, config.inputs)
    keep_gradients_flowing(classifier, config.training)
    uncertainty = config.multi_task.task_weighting == "uncertainty"
    if uncertainty and any(task.weight != 1.0 for task in tasks):
        logger.warning("--task_weighting uncertainty learns the task weights: the tasks' `weight` keys are ignored.")
    model = MultiTaskModel(classifier, wrapped_name(classifier, layer.name), heads, [t.weight for t in tasks],
                           uncertainty)  # fmt: skip
    return model, layer.name


def train_tasks(model: MultiTaskModel, tasks: list[Task], inputs, processor, config):
    """Train every task together (`--task_sampling`, `--task_weighting`); resumes the last checkpoint like a
    single-task run. Returns: (the Trainer, the training metrics)."""
    training = config.training
    train = [i.source.training["train"] for i in inputs] if training.do_train else None
    evaluation = {}
    if training.do_train and training.eval_strategy != "no":
        from hftl.multi_task.sampling import TaskSplit

        evaluation = {
            t.name: TaskSplit(i.source.plain["validation"], t.index)
            for t, i in zip(tasks, inputs, strict=True)
            if "validation" in i.source.plain
        }
    trainer = multi_task_trainer(model, training, train, evaluation, inputs[0].collator, processor, config.multi_task)
    metrics: dict[str, float] = {}
    if training.do_train:
        metrics = dict(trainer.train(resume_from_checkpoint=resume_checkpoint(config)).metrics)
        metrics["train_samples"] = sum(len(t.data.source.splits["train"]) for t in tasks)
        metrics.update({f"train_{t.name}_samples": len(t.data.source.splits["train"]) for t in tasks})
    return trainer, metrics


def run_multi_task(modality, config) -> dict[str, float]:
    """The steps of a multi-task run (see the module docstring).

    Returns:
        All metrics, as written to `all_results.json` (`eval_<task>_<metric>`, `test_<task>_<metric>`, train_*).

    Raises:
        InputError: bad flags or data (naming the task), before any model loads.
    """
    check_output_dir(config)
    set_seed(config.training.seed)
    tasks = load_tasks(modality, config)
    loaded = load_model(modality, tasks[0].config, tasks[0].data.labels)
    inputs = task_inputs(modality, tasks, loaded.processor)
    model, layer_name = build_model(modality, config, tasks, loaded)
    counts = log_parameter_counts(model, f"Multi-task ({len(tasks)} tasks), strategy '{config.strategy.strategy}'")
    start_output_dir(config)
    trainer, train_metrics = train_tasks(model, tasks, inputs, loaded.processor, config)
    train_metrics.update(trainable_parameters=counts[0], total_parameters=counts[1])
    statistics = _batch_norm_statistics(model, inputs, config.training)
    run, output_dir = MultiTaskRun(modality, config, loaded), config.training.output_dir
    if trainer.is_world_process_zero():
        with output_writes(output_dir, "the task classifiers"):
            export_tasks(model, layer_name, tasks, loaded.processor, output_dir, statistics)
            save_cards(run, tasks, None, counts)
    try:
        metrics = evaluate_tasks(trainer, tasks, inputs, config.training, train_metrics, statistics)
        if trainer.is_world_process_zero():
            with output_writes(output_dir, "the model cards"):
                save_cards(run, tasks, metrics, counts)
    finally:
        _finish(trainer)
    return metrics


def _batch_norm_statistics(model: MultiTaskModel, inputs, training):
    """Each task's BatchNorm statistics after training (`hftl.multi_task.batch_norm`); None without training or
    without BatchNorm layers."""
    if not training.do_train:
        return None
    datasets = [i.source.plain["train"] for i in inputs]
    try:
        return task_statistics(model.classifier, datasets, inputs[0].collator, training.per_device_eval_batch_size)
    except Exception as error:  # noqa: BLE001 (the trained model must still be exported)
        logger.warning("Could not recompute each task's BatchNorm statistics (%s); the shared ones are kept.", error)
        return None


def _finish(trainer) -> None:
    """Wait for every process, then close the process group (as `hftl.saving.publish` does)."""
    import torch.distributed as dist

    trainer.accelerator.wait_for_everyone()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
