"""`feature_extraction`: the backbone frozen, only the head trained, on head inputs computed once and cached."""

from __future__ import annotations

from hftl.strategies.base import Stage, Strategy, register_strategy
from hftl.strategies.parts import freeze_backbone


@register_strategy
class FeatureExtraction(Strategy):
    name = "feature_extraction"
    description = "backbone frozen; only the classification head trained (on cached backbone features)."
    default_learning_rate = 1e-2  # a head trained alone needs far larger steps (measured on MiniLM, README)

    def apply(self, model, parts, args, task_type):
        freeze_backbone(model, parts)
        return model

    def stages(self, args, training_args):
        return [
            Stage("train", True, training_args.num_train_epochs, training_args.learning_rate, training_args.output_dir)
        ]
