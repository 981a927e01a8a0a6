"""The run every recipe shares, as named steps: each takes what earlier steps returned and changes none of it.

    config -> output folder -> data -> model -> inputs -> strategy -> shift -> train -> evaluate -> reports -> save

`hftl/README` ("How hftl is built") says where each step lives.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

import transformers
from transformers import set_seed

from hftl.adaptation.build import card_text
from hftl.adaptation.reporting import domain_reports
from hftl.adaptation.shift import measure_shift
from hftl.config import resolve_config
from hftl.data.domains import load_data
from hftl.evaluation import evaluate
from hftl.features import feature_layer
from hftl.inputs import build_inputs
from hftl.modalities.base import Modality
from hftl.modeling import load_model
from hftl.output import check_output_dir, start_output_dir
from hftl.saving import save
from hftl.strategies import get_strategy, log_parameter_counts, model_parts
from hftl.training import train_stages

logger = logging.getLogger("hftl")


@dataclass(frozen=True)
class FeatureLayer:
    """The plain model's feature layer (`hftl.features.feature_layer`): its name and input width F."""

    name: str
    size: int


def setup_logging(training) -> None:
    """hftl logs at INFO on the main process (WARNING on the others); transformers follows `--log_level`."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training.get_process_log_level()
    transformers.utils.logging.set_verbosity(level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    logger.setLevel(logging.INFO if training.should_log else level)
    logger.info("World size %d (%s), device %s.", training.world_size, training.parallel_mode.value, training.device)


def run_classification(modality: Modality, defaults: dict[str, Any] | None = None, args: list[str] | None = None):
    """Parse flags, check the data, adapt the model, train, evaluate and save (see the module docstring).

    Args:
        modality: how raw examples become model inputs (`hftl.modalities`).
        defaults: the recipe's flag defaults (a `--config` file and the command line override them).
        args: the command line (default: `sys.argv[1:]`).

    Returns:
        All metrics, as written to `all_results.json`.

    Raises:
        InputError: bad flags or data, raised before any model is loaded.
        PushError: `--push_to_hub` failed after the run was saved.
    """
    config = resolve_config(modality, defaults, args)
    setup_logging(config.training)
    check_output_dir(config)
    set_seed(config.training.seed)
    data = load_data(modality, config)
    loaded = load_model(modality, config, data.labels)
    inputs = build_inputs(modality, config, data, loaded.processor)
    shift = measure_shift(loaded.model, loaded.processor, inputs, data, config)
    name, layer = feature_layer(loaded.model, len(data.labels.names))
    strategy, parts = get_strategy(config.strategy.strategy), model_parts(loaded.model, loaded.new_parameters)
    model = strategy.apply(loaded.model, parts, config.strategy, modality.peft_task_type)
    modality.after_strategy(model, config.inputs)
    counts = log_parameter_counts(model, f"Strategy '{strategy.name}'")
    start_output_dir(config)
    trained = train_stages(
        model, parts, strategy, FeatureLayer(name, layer.in_features), config, inputs, data, shift, loaded.processor
    )
    if config.training.do_train:
        trained.metrics.update(
            train_samples=len(data.source.splits["train"]), trainable_parameters=counts[0], total_parameters=counts[1]
        )
    metrics = evaluate(trained, data, config)
    metrics.update(domain_reports(shift, trained, data, config, name))
    adaptation_text = card_text(config, shift, data.target.description) if data.target else ""
    save(modality, config, model, loaded, trained, data, metrics, strategy, adaptation_text, counts)
    return metrics
