"""The run every recipe shares, as named steps: each takes what earlier steps returned and changes none of it.

    config -> output folder -> data -> model -> inputs -> shift -> strategy -> train -> calibrate (temperature
    scaling, multi-label thresholds) -> save the model -> evaluate -> reports -> card, (ONNX export) and push

With `--adaptation auto` the strategy and training steps run once per candidate (`hftl.adaptation.auto`), and the
steps after training run for the candidate it keeps.

The model is saved as soon as it is trained: an error in evaluation or the reports loses no training. With
`--hp_search_trials N`, the run is a search whose trials are such runs (`hftl.search.study`).

"How hftl is built" in the project's README.md says where each step lives.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import set_seed

from hftl.adaptation.auto import AUTO
from hftl.adaptation.auto.run import train_auto
from hftl.adaptation.reporting import domain_reports
from hftl.adaptation.shift import measure_shift
from hftl.config import RunConfig, resolve_config
from hftl.context import FeatureLayer, RunContext
from hftl.data.domains import RunData, load_data
from hftl.evaluation import evaluate
from hftl.imbalance import check_class_balance
from hftl.inputs import build_inputs
from hftl.modalities.base import Modality
from hftl.modeling import load_model
from hftl.multi_label.thresholds import set_thresholds
from hftl.output import check_output_dir, start_output_dir
from hftl.ranking.auto import choose_feature_layer, report_layer_choice
from hftl.saving import publish, save_model
from hftl.search.study import run_search
from hftl.strategies import get_strategy, log_parameter_counts, model_parts
from hftl.temperature_scaling import calibrate, check_temperature_scaling
from hftl.training import Trained, train_stages

logger = logging.getLogger("hftl")


def run_classification(modality: Modality, defaults: dict[str, Any] | None = None, args: list[str] | None = None):
    """Parse flags, check the data, adapt the model, train, evaluate and save (see the module docstring).

    Args:
        modality: how raw examples become model inputs (`hftl.modalities`).
        defaults: the recipe's flag defaults (a `--config` file and the command line override them).
        args: the command line (default: `sys.argv[1:]`).

    Returns:
        All metrics, as written to `all_results.json` (a search: the best trial's, see `hftl.search.study`).

    Raises:
        InputError: bad flags or data, raised before any model is loaded.
        PushError: `--push_to_hub` failed after the run was saved.
    """
    config = resolve_config(modality, defaults, args)  # logging is set up as soon as the flags are parsed
    if config.multi_task.tasks:  # several tasks, one shared backbone: hftl.multi_task
        from hftl.multi_task.run import run_multi_task

        return run_multi_task(modality, config)
    if config.search.hp_search_trials:
        return run_search(modality, config, run_config)
    return run_config(modality, config)


def run_config(modality: Modality, config: RunConfig, data: RunData | None = None) -> dict[str, float]:
    """The steps after `resolve_config`, for resolved flags; `data`: already loaded and checked with these flags'
    data flags (a search loads it once for all its trials), else loaded here.

    Returns and raises as `run_classification`.
    """
    check_output_dir(config)
    set_seed(config.training.seed)
    data = data if data is not None else load_data(modality, config)
    config, _ = choose_feature_layer(modality, config, data)  # --feature_layer auto: ranked on the source train data
    check_class_balance(config, data.labels)
    loaded = load_model(modality, config, data.labels)
    inputs = build_inputs(modality, config, data, loaded.processor)
    shift = measure_shift(loaded.model, loaded.processor, inputs, data, config)
    layer = FeatureLayer.of(loaded.model, len(data.labels.names))
    run = RunContext(modality, config, data, loaded, inputs, shift, layer)
    check_temperature_scaling(run)  # before training: T must fold into the layer that outputs the logits
    if config.adaptation.adaptation == AUTO:  # candidates trained, scored without target labels, one kept
        run, model, trained, counts = train_auto(run, train_model)
    else:
        model, trained, counts = train_model(run)
    return finish_run(run, model, trained, counts)


def train_model(run: RunContext) -> tuple[Any, Trained, tuple[int, int]]:
    """The strategy applied to the loaded model, then its stages trained.

    Returns:
        (the trained model, the last stage's `Trained`, the model's (trainable, total) parameter counts).
    """
    config, loaded = run.config, run.loaded
    strategy, parts = get_strategy(config.strategy.strategy), model_parts(loaded.model, loaded.new_parameters)
    model = strategy.apply(loaded.model, parts, config.strategy, run.modality.peft_task_type)
    run.modality.after_strategy(model, config.inputs)
    counts = log_parameter_counts(model, f"Strategy '{strategy.name}'")
    start_output_dir(config)
    return model, train_stages(model, parts, strategy, run), counts


def finish_run(run: RunContext, model, trained: Trained, counts: tuple[int, int]) -> dict[str, float]:
    """The steps after training: calibrate, save the model, evaluate, reports, card / export / push; the metrics."""
    config, data = run.config, run.data
    set_thresholds(model, trained, run)  # multi-label: per-label thresholds tuned on validation, folded into the bias
    if config.training.do_train:
        trained.metrics.update(
            train_samples=len(data.source.splits["train"]), trainable_parameters=counts[0], total_parameters=counts[1]
        )
    calibration = calibrate(model, trained, run)  # --temperature_scaling: T fitted on validation, folded into the model
    save_model(run, model, trained, counts)
    metrics = evaluate(trained, run) | calibration
    metrics.update(domain_reports(trained, run))
    metrics.update(report_layer_choice(config, trained))  # layer_ranking.json
    publish(run, trained, metrics, counts)
    return metrics
