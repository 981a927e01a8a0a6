"""`full`: every parameter fine-tuned."""

from __future__ import annotations

from hftl.strategies.base import Strategy, register_strategy
from hftl.strategies.parts import set_trainable


@register_strategy
class Full(Strategy):
    name = "full"
    description = "every parameter fine-tuned."

    def apply(self, model, parts, args, task_type):
        set_trainable(model, {n for n, _ in model.named_parameters()})
        return model
