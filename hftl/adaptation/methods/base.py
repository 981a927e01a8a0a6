"""What every domain-alignment method implements, and the registry that maps `--adaptation NAME` to it.

A method is one file in this folder: an `AlignmentLoss` subclass decorated with `@register_method`, carrying its own
flags (`arguments_class`, a dataclass the recipes parse), its text for the model card and the flags a resumed run
must keep (`resume_keys`). Adding one means writing that file and one import line in `methods/__init__.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from hftl.registry import Registry


@dataclass
class DomainOutputs:
    """What the classifier computed for one domain's batch.

    Attributes:
        features: (N, F) the input of the classification layer (see `hftl.features.feature_layer`).
        logits: (N, C) the classifier's output.
    """

    features: torch.Tensor
    logits: torch.Tensor


class AlignmentLoss(nn.Module, ABC):
    """A domain-alignment loss between source and target outputs.

    `forward(source, target, progress, w_s)` returns named loss parts: `align_loss`, the scalar tensor that the
    training task adds to the classification loss as `trade_off * align_loss`, and any number of other scalars to
    log (e.g. `grl_lambda`). Subclasses are pure, picklable and autocast-safe modules; their trainable parameters (a
    domain discriminator) are saved with the Trainer's checkpoints, never with the model.

    Class attributes:
        name: the `--adaptation` value.
        arguments_class: a dataclass of the method's own flags (or None).
        card_text: one sentence for the model card, with the paper.
        resume_keys: flags that change the method's parameters: a checkpoint made with other values is not resumed.
    """

    name: ClassVar[str]
    arguments_class: ClassVar[type | None] = None
    card_text: ClassVar[str]
    resume_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abstractmethod
    def from_arguments(cls, feature_size: int, num_labels: int, gamma: float, args) -> AlignmentLoss:
        """Build the loss for F = `feature_size` features and C = `num_labels` classes.

        Args:
            gamma: the rate of the lambda schedule (`--grl_gamma`), for methods that ramp their weight.
            args: an instance of `arguments_class` (None when the method has no flags).
        """

    @abstractmethod
    def forward(
        self, source: DomainOutputs, target: DomainOutputs, progress: float, w_s: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Loss parts for a source batch (with optional per-example weights `w_s` (N_s,)) and a target batch.

        Args:
            progress: p, the fraction of training done, in [0, 1].
        """


_METHODS: Registry[type[AlignmentLoss]] = Registry("adaptation method", reserved=("none",))


def register_method(cls: type[AlignmentLoss]) -> type[AlignmentLoss]:
    """Class decorator: make `cls` available as `--adaptation cls.name`.

    Raises:
        TypeError: `cls` lacks `name` or `card_text`, or does not override `from_arguments` and `forward` (found when
            its module is imported, not after training).
    """
    missing = [a for a in ("name", "card_text") if not isinstance(getattr(cls, a, None), str)]
    missing += sorted(cls.__abstractmethods__)
    if missing:
        raise TypeError(f"adaptation method {cls.__name__} must define {missing} (see AlignmentLoss)")
    _METHODS.add(cls.name, cls)
    return cls


def get_method(name: str) -> type[AlignmentLoss]:
    """The registered method class named `name`. Raises: KeyError for an unknown name."""
    return _METHODS.get(name)


def method_names() -> tuple[str, ...]:
    """The registered method names, in registration order."""
    return _METHODS.names()
