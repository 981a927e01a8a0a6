"""`two_stage`: the head first with the backbone frozen, then the top encoder layers unfrozen at a lower rate."""

from __future__ import annotations

import dataclasses
import os

from hftl.errors import InputError
from hftl.strategies.base import Stage, Strategy, register_strategy
from hftl.strategies.parts import freeze_backbone, log_parameter_counts, set_trainable


def unfreeze_top(model, parts, unfreeze_top_k: int) -> None:
    """Train the top `unfreeze_top_k` encoder layers, what follows them, the head and new modules (stage 2).

    Raises:
        InputError: more layers than the model has.
    """
    if unfreeze_top_k > len(parts.layers):
        raise InputError(f"--unfreeze_top_k {unfreeze_top_k} exceeds the model's {len(parts.layers)} encoder layers.")
    top = parts.layer_parameters(model, parts.layers[-unfreeze_top_k:])
    set_trainable(model, set(top) | set(parts.after_layers) | set(parts.head) | set(parts.new))


@register_strategy
class TwoStage(Strategy):
    name = "two_stage"
    description = (
        "stage 1 trained the head with the backbone frozen ({stage1_num_train_epochs} epoch(s)); stage 2 unfroze the "
        "top {unfreeze_top_k} encoder layers at learning rate {stage2_learning_rate}."
    )
    default_learning_rate = 1e-2  # stage 1 trains a head alone
    resume_keys = ("unfreeze_top_k",)

    def resolve(self, args, defaults):
        """Check --unfreeze_top_k against the model's layers; without --stage2_learning_rate: --learning_rate / 10 if
        given, else the recipe's fine-tuning rate.

        Raises:
            InputError: more layers to unfreeze than the model has (before anything loads or trains).
        """
        if args.unfreeze_top_k > defaults.layer_count():
            raise InputError(
                f"--unfreeze_top_k {args.unfreeze_top_k} exceeds the model's {defaults.layer_count()} encoder layers."
            )
        if args.stage2_learning_rate is not None:
            return args
        rate = defaults.fine_tuning_rate
        return dataclasses.replace(args, stage2_learning_rate=rate / 10 if defaults.learning_rate_given else rate)

    def search_space(self, args, layer_count):
        """--unfreeze_top_k from 1 to every layer; --stage2_learning_rate log-uniform in [rate / 10, rate * 10]."""
        rate = args.stage2_learning_rate
        return {
            "unfreeze_top_k": {"low": 1, "high": layer_count()},
            "stage2_learning_rate": {"low": rate / 10, "high": rate * 10, "log": True},
        }

    def apply(self, model, parts, args, task_type):
        freeze_backbone(model, parts)
        return model

    def stages(self, args, training_args):
        def unfreeze(model, parts):
            unfreeze_top(model, parts, args.unfreeze_top_k)
            log_parameter_counts(model, f"Stage 2 (top {args.unfreeze_top_k} layers unfrozen)")

        stage1_dir = os.path.join(training_args.output_dir, "stage1")
        return [
            Stage("stage1", True, args.stage1_num_train_epochs, training_args.learning_rate, stage1_dir, final=False),
            Stage(
                "stage2",
                False,
                training_args.num_train_epochs,
                args.stage2_learning_rate,
                training_args.output_dir,
                prepare=unfreeze,
            ),
        ]
