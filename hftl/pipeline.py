"""The run every recipe shares, as named steps: each takes what earlier steps returned and changes none of it.

    config -> output folder -> data -> model -> inputs -> shift -> strategy -> train -> save the model -> evaluate
    -> reports -> (ONNX export) -> card and push

The model is saved as soon as it is trained: an error in evaluation or the reports loses no training.

"How hftl is built" in the project's README.md says where each step lives.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import set_seed

from hftl.adaptation.reporting import domain_reports
from hftl.adaptation.shift import measure_shift
from hftl.config import resolve_config
from hftl.context import FeatureLayer, RunContext
from hftl.data.domains import load_data
from hftl.evaluation import evaluate
from hftl.export.step import export_step
from hftl.inputs import build_inputs
from hftl.modalities.base import Modality
from hftl.modeling import load_model
from hftl.output import check_output_dir, start_output_dir
from hftl.saving import publish, save_model
from hftl.strategies import get_strategy, log_parameter_counts, model_parts
from hftl.training import train_stages

logger = logging.getLogger("hftl")


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
    config = resolve_config(modality, defaults, args)  # logging is set up as soon as the flags are parsed
    check_output_dir(config)
    set_seed(config.training.seed)
    data = load_data(modality, config)
    loaded = load_model(modality, config, data.labels)
    inputs = build_inputs(modality, config, data, loaded.processor)
    shift = measure_shift(loaded.model, loaded.processor, inputs, data, config)
    layer = FeatureLayer.of(loaded.model, len(data.labels.names))
    run = RunContext(modality, config, data, loaded, inputs, shift, layer)
    strategy, parts = get_strategy(config.strategy.strategy), model_parts(loaded.model, loaded.new_parameters)
    model = strategy.apply(loaded.model, parts, config.strategy, modality.peft_task_type)
    modality.after_strategy(model, config.inputs)
    counts = log_parameter_counts(model, f"Strategy '{strategy.name}'")
    start_output_dir(config)
    trained = train_stages(model, parts, strategy, run)
    if config.training.do_train:
        trained.metrics.update(
            train_samples=len(data.source.splits["train"]), trainable_parameters=counts[0], total_parameters=counts[1]
        )
    save_model(run, model, trained, counts)
    metrics = evaluate(trained, run)
    metrics.update(domain_reports(trained, run))
    export_step(run, trained)
    publish(run, trained, metrics, counts)
    return metrics
