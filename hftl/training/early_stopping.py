"""Early stopping: transformers' `EarlyStoppingCallback`, saying in words when and why it stopped.

transformers' callback counts the evaluations in a row whose `--metric_for_best_model` did not beat the best so far
(`state.best_metric`) by more than `--early_stopping_threshold`, and stops training when the count reaches
`--early_stopping_patience`. hftl's subclass adds three things:

- the log says when it stopped (step, epoch), the best value and its step, the patience; `early_stopping_metrics`
  gives `all_results.json` its record (`early_stopped`, `stopped_step`, `best_step`, `best_metric`);
- a resumed run recounts the evaluations without improvement from the checkpoint's `log_history`, with this run's
  patience and threshold (transformers restores the counter only with `--restore_callback_states_from_checkpoint`,
  and then with the checkpoint's patience), so it stops where an uninterrupted run would;
- a Trainer that writes no checkpoints (head training on cached features, the first stage of `two_stage`) keeps the
  best evaluation's trainable weights in memory and puts them back at the end, as `--load_best_model_at_end` does
  from the best checkpoint elsewhere.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from transformers import EarlyStoppingCallback

logger = logging.getLogger("hftl")


def _metric_key(args) -> str:
    name = args.metric_for_best_model
    return name if name.startswith("eval_") else f"eval_{name}"


class EarlyStopping(EarlyStoppingCallback):
    """`EarlyStoppingCallback` that reports, recounts on resume and can keep the best weights in memory.

    Args:
        early_stopping_patience: evaluations in a row without an improvement that stop training (>= 1).
        early_stopping_threshold: the improvement that counts, in the metric's units (absolute, >= 0).
        keep_best_in_memory: snapshot the trainable parameters at each new best evaluation and restore them when
            training ends (for Trainers without checkpoints to load the best one from).
    """

    def __init__(
        self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0, keep_best_in_memory=False
    ):
        super().__init__(early_stopping_patience, early_stopping_threshold or 0.0)
        self.keep_best_in_memory = keep_best_in_memory
        self.best_step: int | None = None
        self.best_value: float | None = None
        self.stopped_step: int | None = None
        self._best_weights: dict[str, torch.Tensor] | None = None

    def state(self) -> dict:
        state = super().state()
        state["args"]["keep_best_in_memory"] = self.keep_best_in_memory
        return state

    def _improves(self, args, best: float | None, value: float) -> bool:
        """transformers' rule for a new best (`Trainer._determine_best_metric`): strictly better, no threshold."""
        return best is None or (np.greater if args.greater_is_better else np.less)(value, best)

    def on_train_begin(self, args, state, control, **kwargs):
        if args.metric_for_best_model is None or args.eval_strategy == "no":
            raise ValueError("early stopping needs evaluations and --metric_for_best_model")
        self.early_stopping_patience_counter, self.stopped_step = 0, None
        best = None
        for entry in state.log_history:  # a resumed run: replay the evaluations before the checkpoint
            value = entry.get(_metric_key(args))
            if value is None:
                continue
            self.check_metric_value(args, _Best(best), control, value)
            if self._improves(args, best, value):
                best, self.best_value, self.best_step = value, value, entry.get("step")
        if best is not None:
            logger.info(
                "Early stopping resumed: best %s %.6g at step %s, %d evaluation(s) since without improvement.",
                _metric_key(args), best, self.best_step, self.early_stopping_patience_counter,
            )  # fmt: skip

    def on_evaluate(self, args, state, control, metrics, model=None, **kwargs):
        key = _metric_key(args)
        value = metrics.get(key)
        improved = value is not None and self._improves(args, state.best_metric, value)
        super().on_evaluate(args, state, control, metrics, **kwargs)
        if value is None:
            return
        if improved:
            self.best_value, self.best_step = float(value), state.global_step
            if self.keep_best_in_memory and model is not None:
                self._best_weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        stops = control.should_training_stop and self.early_stopping_patience_counter >= self.early_stopping_patience
        if stops and state.global_step < state.max_steps:
            self.stopped_step = state.global_step
            logger.warning(
                "Early stopping at step %d of %d (epoch %.2f): %s did not improve by more than %g "
                "(--early_stopping_threshold) for %d evaluation(s) in a row (--early_stopping_patience %d). Best %s "
                "%.6g, at step %s.",
                state.global_step, state.max_steps, state.epoch or 0.0, key, self.early_stopping_threshold,
                self.early_stopping_patience_counter, self.early_stopping_patience,
                key, self.best_value, self.best_step,
            )  # fmt: skip

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.keep_best_in_memory and self._best_weights is not None and model is not None:
            parameters = dict(model.named_parameters())
            with torch.no_grad():
                for name, value in self._best_weights.items():
                    parameters[name].copy_(value)
            logger.info("Restored the weights of the best evaluation (step %s, kept in memory).", self.best_step)
        if self.stopped_step is None and self.best_step is not None:
            logger.info(
                "Early stopping did not trigger: trained all %d steps; best %s %.6g at step %s.",
                state.max_steps, _metric_key(args), self.best_value, self.best_step,
            )  # fmt: skip

    def results(self, max_steps: int) -> dict[str, float | int | bool]:
        """What `all_results.json` records: whether training stopped early and where, the best evaluation."""
        return {
            "early_stopped": self.stopped_step is not None,
            "stopped_step": self.stopped_step if self.stopped_step is not None else max_steps,
            "best_step": self.best_step if self.best_step is not None else -1,
            "best_metric": self.best_value if self.best_value is not None else float("nan"),
        }


class _Best:
    """What `EarlyStoppingCallback.check_metric_value` reads of the Trainer's state: the best metric so far."""

    def __init__(self, best_metric: float | None):
        self.best_metric = best_metric


def early_stopping_callbacks(config, args) -> list:
    """[the `EarlyStopping` callback] when `--early_stopping_patience` is set, else [].

    Args:
        config: the run's `RunConfig`; args: the stage's `TrainingArguments` (its `load_best_model_at_end` is off
            where the stage writes no checkpoints: the best weights are then kept in memory, unless the user turned
            `--load_best_model_at_end` off).
    """
    control = config.control
    if not control.early_stopping:
        return []
    keep = config.training.load_best_model_at_end and not args.load_best_model_at_end
    return [EarlyStopping(control.early_stopping_patience, control.early_stopping_threshold or 0.0, keep)]


def early_stopping_metrics(trainer) -> dict[str, float | int | bool]:
    """The early-stopping record of a trained `trainer` ({} without early stopping)."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, EarlyStopping):
            return callback.results(trainer.state.max_steps)
    return {}
