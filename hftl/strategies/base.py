"""What every adaptation strategy implements, and the registry that maps `--strategy NAME` to it.

A strategy is one file in this folder: a `Strategy` subclass decorated with `@register_strategy` that says which
parameters train (`apply`), in which stages (`stages`), at which default learning rate, and how the card describes
it. Adding one means writing that file and one import line in `strategies/__init__.py`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from hftl.registry import Registry
from hftl.strategies.parts import ModelParts

logger = logging.getLogger("hftl")


@dataclass(frozen=True)
class Stage:
    """One training stage of a strategy.

    Attributes:
        name: "train", "stage1", "stage2".
        head_only: only the head trains, so its inputs may be computed once and cached.
        num_train_epochs, learning_rate: this stage's values.
        output_dir: where its Trainer writes.
        final: the stage whose model is adapted to the target, evaluated and saved (the last one); earlier stages
            write no checkpoints.
        prepare: called as `prepare(model, parts)` before the stage trains (e.g. unfreeze the top layers).
    """

    name: str
    head_only: bool
    num_train_epochs: float
    learning_rate: float
    output_dir: str
    final: bool = True
    prepare: Callable[[nn.Module, ModelParts], None] | None = None


@dataclass(frozen=True)
class Defaults:
    """What a strategy may fill in of its flags: the recipe's fine-tuning rate, whether the user gave
    --learning_rate, and the model's encoder layer count (a callable: it is computed only when asked)."""

    fine_tuning_rate: float
    learning_rate_given: bool
    layer_count: Callable[[], int]


class Strategy(ABC):
    """Base class: full fine-tuning in one stage, saved with the Trainer (subclasses override what differs).

    Class attributes:
        name: the `--strategy` value.
        description: the model card's sentence; `{flag}` fields are filled from the strategy flags.
        default_learning_rate: used when --learning_rate is not given (None: the recipe's rate).
        resume_keys: flags that change which parameters train: a checkpoint made with other values is not resumed.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    default_learning_rate: ClassVar[float | None] = None
    resume_keys: ClassVar[tuple[str, ...]] = ()

    def resolve(self, args, defaults: Defaults):
        """The strategy flags with their model-dependent defaults filled in (a new object). Default: unchanged."""
        return args

    def search_space(self, args, layer_count: Callable[[], int]) -> dict[str, dict]:
        """This strategy's own flags for `--hp_search_trials`, around their resolved values in `args`, as
        `hftl.search.space` reads them: flag -> {"low", "high"[, "log", "step"]} or {"choices": [...]}.
        `layer_count()`: the model's encoder layers. Default: none."""
        return {}

    @abstractmethod
    def apply(self, model: nn.Module, parts: ModelParts, args, task_type: str | None) -> nn.Module:
        """Set `requires_grad` (or add adapters); return the model to train."""

    def stages(self, args, training_args) -> list[Stage]:
        """The training stages, in order. Default: one stage at the run's epochs and learning rate."""
        epochs, rate = training_args.num_train_epochs, training_args.learning_rate
        return [Stage("train", False, epochs, rate, training_args.output_dir)]

    def save(self, model: nn.Module, trainer, processor, output_dir: str, args) -> None:
        """Save the artifact: a plain Hugging Face model and its processor in `output_dir`."""
        if trainer.model is model:
            trainer.save_model(output_dir)  # handles FSDP / DeepSpeed gathering and the main-process check
        elif trainer.is_world_process_zero():
            model.save_pretrained(output_dir)
            processor.save_pretrained(output_dir)


_STRATEGIES: Registry[Strategy] = Registry("strategy")


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make `cls` available as `--strategy cls.name`.

    Raises:
        TypeError: `cls` lacks `name` or `description`, or does not override `apply` (found when its module is
            imported, not after training).
    """
    missing = [a for a in ("name", "description") if not isinstance(getattr(cls, a, None), str)]
    missing += sorted(cls.__abstractmethods__)
    if missing:
        raise TypeError(f"strategy {cls.__name__} must define {missing} (see Strategy)")
    _STRATEGIES.add(cls.name, cls())
    return cls


def get_strategy(name: str) -> Strategy:
    """The registered strategy named `name`. Raises: KeyError for an unknown name."""
    return _STRATEGIES.get(name)


def strategy_names() -> tuple[str, ...]:
    """The registered strategy names, in registration order."""
    return _STRATEGIES.names()
