"""The multi-task Trainer: hftl's own (checkpoints, resume, several processes, logging), drawing one task per batch
and training the uncertainty weights s_t at their own learning rate."""

from __future__ import annotations

import dataclasses

import numpy as np
from transformers import EvalPrediction

from hftl.metrics import logits_of, summary_metrics
from hftl.multi_task.sampling import TaskBatchSampler, TaskCollator, TaskMixture
from hftl.trainer import HftlTrainer


def task_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
    """`compute_metrics` for any task: `summary_metrics` with the number of classes read off the logits (N, C_t)."""
    logits = np.asarray(logits_of(eval_pred.predictions))
    return summary_metrics(logits.argmax(-1), np.asarray(eval_pred.label_ids), logits.shape[-1])


class MultiTaskTrainer(HftlTrainer):
    """`HftlTrainer` whose training batches come from `TaskBatchSampler` (one task each, seeded by epoch so that a
    resumed run replays the same batches) and whose optimizer gives the uncertainty weights their own rate.

    Args:
        task_sampling: "proportional" or "round_robin" (`--task_sampling`).
        task_weight_learning_rate: the learning rate of `UncertaintyWeighting.log_variances` (no weight decay).
    """

    def __init__(self, *args, task_sampling: str = "proportional", task_weight_learning_rate: float = 1e-2, **kwargs):
        super().__init__(*args, **kwargs)
        self.task_sampling = task_sampling
        self.task_weight_learning_rate = task_weight_learning_rate

    def _get_train_sampler(self, train_dataset=None):  # private hook, as in hftl.trainer.internals (RELIED_ON)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        sizes = [len(d) for d in dataset.datasets]
        sampler = TaskBatchSampler(sizes, self.args.per_device_train_batch_size, self.task_sampling, seed)
        self._length_sampler = sampler  # its epoch is set by `TrainerInternals._run_epoch`
        return sampler

    def create_optimizer(self, model=None):
        """transformers' optimizer, with the s_t of uncertainty weighting moved into a group of their own (rate
        `task_weight_learning_rate`, no weight decay)."""
        optimizer = super().create_optimizer(model)
        weighting = getattr(self.model, "weighting", None)
        if weighting is None or any(g.get("hftl_task_weights") for g in optimizer.param_groups):
            return optimizer
        own = {id(p) for p in weighting.parameters()}
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in own]
        optimizer.add_param_group(
            {
                "params": list(weighting.parameters()),
                "lr": self.task_weight_learning_rate,
                "weight_decay": 0.0,
                "hftl_task_weights": True,
            }
        )
        return optimizer


def multi_task_trainer(model, args, train: list | None, evaluation: dict, collator, processor, flags):
    """A `MultiTaskTrainer` of `model` on the tasks' training sets (`train`, task order; None: no training),
    evaluated during training on `evaluation` (task name -> validation set; metrics `eval_<task>_<metric>`).

    The datasets hold model inputs only, so no column is removed by name.
    """
    args = dataclasses.replace(args, remove_unused_columns=False, train_sampling_strategy="random")
    return MultiTaskTrainer(
        model=model,
        args=args,
        train_dataset=TaskMixture(train) if train else None,
        eval_dataset=evaluation or None,
        data_collator=TaskCollator(collator),
        processing_class=processor,
        compute_metrics=task_metrics,
        task_sampling=flags.task_sampling,
        task_weight_learning_rate=flags.task_weight_learning_rate,
    )
