"""`freeze`: the embeddings and the first N encoder layers frozen, the rest fine-tuned."""

from __future__ import annotations

import dataclasses
import logging

from hftl.errors import InputError
from hftl.strategies.base import Strategy, register_strategy
from hftl.strategies.parts import set_trainable

logger = logging.getLogger("hftl")


def freeze_bottom(model, parts, num_frozen_layers: int) -> None:
    """Freeze the embeddings and the first `num_frozen_layers` encoder layers (new modules still train).

    Raises:
        InputError: more layers than the model has.
    """
    if num_frozen_layers > len(parts.layers):
        raise InputError(
            f"--num_frozen_layers {num_frozen_layers} exceeds the model's {len(parts.layers)} encoder layers."
        )
    frozen = set(parts.embeddings) | set(parts.layer_parameters(model, parts.layers[:num_frozen_layers]))
    set_trainable(model, {n for n, _ in model.named_parameters() if n not in frozen} | set(parts.new))


@register_strategy
class Freeze(Strategy):
    name = "freeze"
    description = "embeddings and the first {num_frozen_layers} encoder layers frozen; the rest fine-tuned."
    resume_keys = ("num_frozen_layers",)

    def resolve(self, args, defaults):
        """Without --num_frozen_layers, freeze half of the encoder layers.

        Raises:
            InputError: more layers to freeze than the model has (before anything loads or trains).
        """
        count = defaults.layer_count()
        if args.num_frozen_layers is None:
            return dataclasses.replace(args, num_frozen_layers=count // 2)
        if args.num_frozen_layers > count:
            raise InputError(
                f"--num_frozen_layers {args.num_frozen_layers} exceeds the model's {count} encoder layers."
            )
        return args

    def search_space(self, args, layer_count):
        """--num_frozen_layers from 0 to all but one layer."""
        count = layer_count()
        return {"num_frozen_layers": {"low": 0, "high": count - 1}} if count > 1 else {}

    def apply(self, model, parts, args, task_type):
        logger.info(
            "Freezing the embeddings and the first %d of %d encoder layers.", args.num_frozen_layers, len(parts.layers)
        )
        freeze_bottom(model, parts, args.num_frozen_layers)
        return model
