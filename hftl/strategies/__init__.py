"""Adaptation strategies: which parameters of a pretrained classifier train, in which stages (one file each).

Importing a strategy's module registers it; the lines below are the registration of every strategy hftl ships.
"""
# ruff: noqa: E402, F401, I001

from hftl.strategies.base import Defaults, Stage, Strategy, get_strategy, register_strategy, strategy_names
from hftl.strategies.parts import (
    ModelParts,
    backbone_name,
    count_parameters,
    keep_bottom_layers,
    log_parameter_counts,
    model_parts,
    set_trainable,
)

__all__ = [
    "Defaults",
    "ModelParts",
    "Stage",
    "Strategy",
    "backbone_name",
    "count_parameters",
    "get_strategy",
    "keep_bottom_layers",
    "log_parameter_counts",
    "model_parts",
    "register_strategy",
    "set_trainable",
    "strategy_names",
]

from hftl.strategies import full
from hftl.strategies import feature_extraction
from hftl.strategies import freeze
from hftl.strategies import two_stage
from hftl.strategies import lora
