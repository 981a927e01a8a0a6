"""hftl's `Trainer`: transformers' own, with losses that count each example once, loss parts logged as means,
evaluation in dataset order, crash-safe checkpoints and length-grouped batches that a resumed run replays exactly.

The public hooks (`compute_loss`, `log`, `evaluation_loop`, `train`) are overridden here; what must touch private
methods lives in `hftl.trainer.internals`.
"""

from __future__ import annotations

import os

import torch
from torch.nn import functional as F
from transformers import Trainer

from hftl.errors import InputError
from hftl.trainer.checkpoints import checkpoint_problem, last_complete_checkpoint, remove_partial_checkpoints
from hftl.trainer.internals import TrainerInternals


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
    - Evaluation keeps the dataset's order; checkpoints are written atomically; `train(resume_from_checkpoint=True)`
      resumes the last complete one, and an explicit checkpoint that is incomplete is refused.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Classification models return the mean loss of their batch and ignore `num_items_in_batch`, although their
        # forward takes **kwargs. Left True, transformers takes that mean for a sum over the whole batch: it
        # multiplies it by the number of processes (2 processes: twice the gradients and the logged loss) and does
        # not divide it by the gradient accumulation steps.
        self.model_accepts_loss_kwargs = False
        self._part_sums: dict[str, torch.Tensor] = {}
        self._part_count = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
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
        gathered logits (N, C) and labels (N,).

        transformers averages batch means, weighting a short last batch as a full one and, with several processes,
        counting the examples repeated to even out the processes' batches. For a training task it is its
        classifier's plain cross-entropy (not an importance-weighted training loss).
        """
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        key = f"{metric_key_prefix}_loss"
        labels = output.label_ids
        if (
            key in output.metrics
            and logits is not None
            and labels is not None
            and logits.ndim == 2
            and labels.ndim == 1
        ):
            labels = torch.as_tensor(labels).long()
            output.metrics[key] = F.cross_entropy(torch.as_tensor(logits).float(), labels).item()
        return output

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`, after removing unfinished checkpoint saves; `True` resumes the last complete checkpoint.

        Raises:
            InputError: `resume_from_checkpoint` names an incomplete checkpoint.
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
            problem = checkpoint_problem(resume_from_checkpoint)
            if problem is not None:
                latest = last_complete_checkpoint(os.path.dirname(os.path.abspath(resume_from_checkpoint)))
                raise InputError(
                    f"--resume_from_checkpoint {resume_from_checkpoint} is not a complete checkpoint ({problem}); "
                    f"the last complete one beside it: {latest}."
                )
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
