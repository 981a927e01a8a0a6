"""What training hands on to evaluation, the domain-gap report and saving."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from hftl.trainer import HftlTrainer


@dataclass
class Trained:
    """The last stage's outcome.

    Attributes:
        trainer: its Trainer (predicts the evaluation splits).
        evaluation: "eval", "test", "target" -> the datasets to predict (model-ready or cached head inputs).
        metrics: training metrics (an earlier stage's prefixed with its name).
        report_model / report_layer: the trained model, and its feature layer, whose input the domain-gap report
            reads after training; report_data: "train", "target_train" -> the datasets it reads them from;
            report_collator: their collator (None for cached inputs).
    """

    trainer: HftlTrainer
    evaluation: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    report_model: nn.Module | None = None
    report_layer: nn.Module | None = None
    report_data: dict[str, Any] = field(default_factory=dict)
    report_collator: Any = None
