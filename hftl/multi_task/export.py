"""The artifacts of a multi-task run: each task as its own plain Hugging Face classifier in `output_dir/tasks/<name>/`
(the shared backbone with that task's classification layer, its real `id2label`, the processor and a model card
naming the tasks it was trained with)."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os

from torch import nn

from hftl.modelcard import model_card
from hftl.multi_task.batch_norm import using_statistics
from hftl.multi_task.model import MultiTaskModel
from hftl.strategies import get_strategy

logger = logging.getLogger("hftl")

TASKS_DIR = "tasks"


def task_dir(output_dir: str, name: str) -> str:
    """`output_dir/tasks/<name>`: where task `name`'s classifier, card, reports and predictions go."""
    return os.path.join(output_dir, TASKS_DIR, name)


def plain_classifier(model: MultiTaskModel) -> nn.Module:
    """The shared classifier as a plain model: a copy with LoRA adapters merged into it, else the classifier itself."""
    classifier = model.classifier
    if hasattr(classifier, "merge_and_unload"):  # a peft model: merge a copy, keep the trained one as it is
        return copy.deepcopy(classifier).merge_and_unload()
    return classifier


def task_classifier(plain: nn.Module, layer_name: str, model: MultiTaskModel, task) -> nn.Module:
    """Task `task`'s classifier: `plain` (task 0) or a copy of it whose classification layer `layer_name` is the
    task's head; its config carries the task's `id2label` / `label2id`."""
    labels = task.data.labels
    if task.index == 0:
        classifier = plain
    else:
        classifier = copy.deepcopy(plain)
        parent, _, leaf = layer_name.rpartition(".")
        setattr(classifier.get_submodule(parent) if parent else classifier, leaf, copy.deepcopy(model.head(task.index)))
    classifier.config.id2label = dict(labels.id2label)
    classifier.config.label2id = dict(labels.label2id)
    return classifier


def export_tasks(model: MultiTaskModel, layer_name: str, tasks, processor, output_dir: str,
                 statistics=None) -> list[str]:  # fmt: skip
    """Save every task's classifier and the processor into `tasks/<name>/` (main process only).

    Args:
        model: the trained multi-task model; layer_name: the classification layer's name in the plain classifier.
        statistics: each task's BatchNorm statistics (`hftl.multi_task.batch_norm.task_statistics`), saved with its
            classifier; None: the shared ones.

    Returns:
        The folders written.
    """
    plain = plain_classifier(model)
    folders = []
    for task in tasks:
        folder = task_dir(output_dir, task.name)
        classifier = task_classifier(plain, layer_name, model, task)
        with using_statistics(classifier, statistics[task.index] if statistics else None):
            classifier.save_pretrained(folder)
        processor.save_pretrained(folder)
        folders.append(folder)
        logger.info("Saved task '%s' (%d classes) to %s", task.name, task.num_labels, folder)
    # task 0's classifier is the trained one: its config keeps task 0's labels, as it had them
    return folders


def _task_metrics(metrics: dict[str, float] | None, name: str) -> dict[str, float] | None:
    """`eval_<name>_accuracy` ... as `eval_accuracy` ... (the card's results table reads these names)."""
    if metrics is None:
        return None
    out = {}
    for prefix in ("eval", "test"):
        start = f"{prefix}_{name}_"
        out.update({f"{prefix}_{k[len(start) :]}": v for k, v in metrics.items() if k.startswith(start)})
    return out


def _multi_task_section(task, tasks, config, metrics: dict[str, float] | None) -> str:
    flags = config.multi_task
    rows = []
    for other in tasks:
        values = [None if metrics is None else metrics.get(f"{p}_{other.name}_accuracy") for p in ("eval", "test")]
        cells = " | ".join("" if v is None else f"{v:.4f}" for v in values)
        mark = " (this model)" if other is task else ""
        rows.append(f"| {other.name}{mark} | {other.num_labels} | {len(other.data.source.splits['train'])} | {cells} |")
    weighting = "fixed weights " + ", ".join(f"{t.name}: {t.weight:g}" for t in tasks)
    if flags.task_weighting == "uncertainty":
        weighting = "learned uncertainty weights (Kendall et al., CVPR 2018)"
    return (
        f"\n\n## Multi-task training\nTrained with hftl's multi-task learning: one backbone shared by {len(tasks)} "
        f"tasks, one classification layer per task; batches drawn `{flags.task_sampling}`, losses summed with "
        f"{weighting}. This folder is task `{task.name}`: the shared backbone with its own layer.\n\n"
        "| task | classes | training examples | validation accuracy | test accuracy |\n|---|---|---|---|---|\n"
        + "\n".join(rows)
    )


def save_cards(run, tasks, metrics: dict[str, float] | None, counts: tuple[int, int]) -> None:
    """Each task folder's `README.md`: the single-task card of that task plus a section naming every task trained
    together and their accuracies (`metrics`: None before evaluation)."""
    config, loaded = run.config, run.loaded
    args, training = config.strategy, config.training
    for task in tasks:
        card = model_card(
            model_path=loaded.path,
            pipeline_task=run.modality.pipeline_task,
            data_description=task.data.source.description,
            hub_dataset=task.data.source.hub_dataset,
            strategy=args.strategy,
            strategy_details=get_strategy(args.strategy).description.format(**dataclasses.asdict(args)),
            labels=task.data.labels,
            metrics=_task_metrics(metrics, task.name),
            hyperparameters={
                "learning_rate": training.learning_rate,
                "num_train_epochs": training.num_train_epochs,
                "per_device_train_batch_size": training.per_device_train_batch_size,
                "seed": training.seed,
                "trainable_parameters": f"{counts[0]:,} of {counts[1]:,} (all tasks)",
            },
            is_adapter=False,
            custom_code=getattr(type(loaded.model), "_auto_class", None) is not None,
            usage=run.modality.pipeline_usage(loaded.processor, task.config.inputs),
        )
        card.data.tags = [*(card.data.tags or []), "multi-task"]
        card.text = card.text.rstrip() + _multi_task_section(task, tasks, config, metrics) + "\n"
        card.save(os.path.join(task_dir(config.training.output_dir, task.name), "README.md"))
