"""hftl's `Trainer`: transformers' own, with losses that count each example once, loss parts logged as means,
evaluation in dataset order, crash-safe checkpoints and length-grouped batches that a resumed run replays exactly.

The public hooks (`compute_loss`, `log`, `evaluation_loop`, `train`) are overridden here; what must touch private
methods lives in `hftl.trainer.internals`.
"""

from __future__ import annotations

import logging

import torch
from torch.nn import functional as F
from transformers import Trainer

from hftl.errors import InputError
from hftl.metrics import logits_of
from hftl.trainer.balance import class_weighted_loss
from hftl.trainer.checkpoints import (
    check_resumable,
    last_complete_checkpoint,
    read_manifest,
    remove_partial_checkpoints,
)
from hftl.trainer.fingerprint import data_record, record_differences
from hftl.trainer.internals import TrainerInternals

logger = logging.getLogger("hftl")


def _scalar_parts(outputs) -> dict[str, torch.Tensor]:
    """The scalar tensors of a model's output dict other than `loss` (e.g. `cls_loss`, `align_loss`, `grl_lambda`)."""
    if not isinstance(outputs, dict):
        return {}
    return {
        k: v.detach().float()
        for k, v in outputs.items()
        if k != "loss" and isinstance(v, torch.Tensor) and v.numel() == 1
    }


class HftlTrainer(TrainerInternals, Trainer):
    """`transformers.Trainer` whose losses count each example once and whose loss parts are logged as means.

    - The training loss is the batch mean for any number of processes and accumulation steps (see `__init__`), and a
      classifier's evaluation loss the mean over the examples (see `evaluation_loop`).
    - Scalar parts of the model's output beside `loss` (a training task's `cls_loss`, `align_loss`, `grl_lambda`)
      are logged with the training loss, each the mean over the micro-batches since the last log (every accumulation
      step) and over the processes.
    - `class_weights` (C,): a classifier's training loss is the class-weighted cross-entropy of its logits
      (`hftl.trainer.balance`); `balanced_labels` (N,): the training labels, drawn class-balanced (`BalancedSampler`).
    - Evaluation keeps the dataset's order; checkpoints are written atomically, with a sha256 of each file and a
      record of the data trained on; `train(resume_from_checkpoint=True)` resumes the last complete one, and an
      explicit checkpoint that is incomplete, or one trained on other data, is refused.
    """

    def __init__(self, *args, class_weights: torch.Tensor | None = None, balanced_labels=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_weights = class_weights
        self.balanced_labels = balanced_labels
        # Classification models return the mean loss of their batch and ignore `num_items_in_batch`, although their
        # forward takes **kwargs. Left True, transformers takes that mean for a sum over the whole batch: it
        # multiplies it by the number of processes (2 processes: twice the gradients and the logged loss) and does
        # not divide it by the gradient accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False  # a `compute_loss_func` (multi-label BCE) returns a batch mean too
        self._part_sums: dict[str, torch.Tensor] = {}
        self._part_count = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.class_weights is not None and model.training and "labels" in inputs:
            smoothing = self.args.label_smoothing_factor
            loss, outputs = class_weighted_loss(model, inputs, self.class_weights, smoothing)
        else:
            # every loss here is a batch mean: without `num_items_in_batch`, transformers does not rescale a
            # `compute_loss_func`'s loss by the number of processes
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch=None)
        if model.training:
            parts = _scalar_parts(outputs)
            for key, value in parts.items():
                self._part_sums[key] = self._part_sums.get(key, 0.0) + value
            self._part_count += bool(parts)
        return (loss, outputs) if return_outputs else loss

    def _mean_loss_parts(self) -> dict[str, float]:
        """Each recorded part's mean over the micro-batches since the last log and over the processes; resets."""
        means = {}
        for key in sorted(self._part_sums):
            local = torch.as_tensor(self._part_sums[key] / self._part_count).to(self.accelerator.device)
            means[key] = self.accelerator.reduce(local, reduction="mean").item()
        self._part_sums, self._part_count = {}, 0
        return means

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs and self._part_count:
            logs = {**logs, **self._mean_loss_parts()}
        super().log(logs, *args, **kwargs)

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """As transformers', but a classifier's `<prefix>_loss` is the mean cross-entropy over the examples, from the
        gathered logits (N, C) and labels (N,) (multi-label: the mean binary cross-entropy, labels (N, C) multi-hot).

        transformers averages batch means, weighting a short last batch as a full one and, with several processes,
        counting the examples repeated to even out the processes' batches. For a training task it is its
        classifier's plain cross-entropy (not an importance-weighted training loss).
        """
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        logits = logits_of(output.predictions)
        key = f"{metric_key_prefix}_loss"
        labels = output.label_ids
        if key not in output.metrics or logits is None or labels is None or logits.ndim != 2:
            return output
        logits = torch.as_tensor(logits).float()
        if labels.ndim == 1:
            output.metrics[key] = F.cross_entropy(logits, torch.as_tensor(labels).long()).item()
        elif labels.shape == logits.shape:
            output.metrics[key] = F.binary_cross_entropy_with_logits(logits, torch.as_tensor(labels).float()).item()
        return output

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`, after removing unfinished checkpoint saves; `True` resumes the last complete checkpoint.

        Checkpoints record the data trained on (`hftl.trainer.fingerprint`); a checkpoint resumed with other data
        (other classes, another number of training examples, other content) is refused before any step.

        Raises:
            InputError: `resume_from_checkpoint` names an incomplete checkpoint, or one trained on other data.
        """
        output_dir = self.args.output_dir
        if self.args.should_save and output_dir:
            remove_partial_checkpoints(output_dir)
        self.accelerator.wait_for_everyone()
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"No complete checkpoint found in output directory ({output_dir})")
        elif isinstance(resume_from_checkpoint, str):
            check_resumable(resume_from_checkpoint)
        self._data_record = None
        if resume_from_checkpoint or self.args.save_strategy != "no":
            self._data_record = data_record(self.train_dataset, self.model)
        if resume_from_checkpoint:
            self._check_same_data(resume_from_checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _check_same_data(self, checkpoint: str) -> None:
        """Raise an `InputError` when `checkpoint`'s manifest records other data than `_data_record`."""
        then = (read_manifest(checkpoint) or {}).get("data")
        if not then:
            logger.info(
                "%s records no data to compare with (written by an older hftl or plain transformers).", checkpoint
            )
            return
        differences = record_differences(then, self._data_record)
        if differences:
            raise InputError(
                f"{checkpoint} was trained on other data than this run's ({'; '.join(differences)}), and resuming it "
                f"would go on training it with other examples or classes. Rerun with the data it was trained on, or "
                f"start afresh: --overwrite_output_dir true (and no --resume_from_checkpoint), or another --output_dir."
            )
