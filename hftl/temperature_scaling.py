"""The calibration step of a run (`--temperature_scaling`): after training and before the model is saved, fit one
temperature T on the validation split's logits and fold it into the classification layer.

softmax(W x / T + b / T) = softmax((W x + b) / T): dividing the weight and bias of the layer that outputs the logits
by T makes the saved model itself calibrated, so `pipeline(...)`, the evaluation and the predictions CSVs all see the
calibrated scores, with no custom code. The predicted classes do not change. T is recorded in the model's config
(`hftl_temperature`) and in `all_results.json` (`temperature`, with `eval_ece_before_scaling`).

Source: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017 (arXiv:1706.04599), section 4.2; the maths
is in `hftl.calibration`.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import torch
from torch import nn

from hftl.calibration import class_probabilities, expected_calibration_error, fit_temperature, negative_log_likelihood
from hftl.errors import InputError
from hftl.features import head_modules
from hftl.metrics import logits_of

logger = logging.getLogger("hftl")

CONFIG_KEY = "hftl_temperature"


def logit_layer_name(model: nn.Module, num_labels: int) -> str:
    """Name of the layer that outputs the logits: the last of the model's head modules (`hftl.features.head_modules`).

    Raises:
        InputError: the model has no classification layer, or its head ends in a module that is not an `nn.Linear`
            with `num_labels` outputs (T could not be folded into it).
    """
    try:
        name, module = head_modules(model, num_labels)[-1]
    except ValueError as error:
        raise InputError(f"--temperature_scaling: {error} T is folded into that layer; drop the flag.") from None
    if not isinstance(module, nn.Linear) or module.out_features != num_labels:
        raise InputError(
            f"--temperature_scaling: {type(model).__name__}'s head ends in '{name}' ({type(module).__name__}), not a "
            f"Linear layer with {num_labels} outputs, so T cannot be folded into the saved model; drop the flag."
        )
    return name


def check_temperature_scaling(run) -> None:
    """Before training: with --temperature_scaling, the plain model's logits come out of a Linear layer.

    Raises:
        InputError: see `logit_layer_name`.
    """
    if run.config.calibration.temperature_scaling:
        logit_layer_name(run.loaded.model, run.num_labels)


def _active(module: nn.Module) -> nn.Module:
    """The module a peft `ModulesToSaveWrapper` runs (its active adapter's trained copy), else `module`."""
    copies = getattr(module, "modules_to_save", None)
    if isinstance(copies, nn.ModuleDict) and getattr(module, "active_adapters", None):
        return copies[module.active_adapters[0]]
    return module


def logit_layers(model: nn.Module, trained, run) -> list[nn.Linear]:
    """The Linear layers whose outputs are the logits: the saved model's (inside a peft model, the trained copy of a
    `modules_to_save` head), and, when the evaluation's Trainer runs another head on cached features (a bottleneck
    trained under an alignment loss, folded into the classifier after training), that head's last layer too."""
    from hftl.training.cached_head import CachedFeatureHead  # hftl.training imports the run's context

    plain = model.get_base_model() if hasattr(model, "get_base_model") else model
    # on a model peft wrapped, the layer is found as `x.original_module` or `x.modules_to_save.default`: name it `x`
    name = re.sub(r"\.(original_module|modules_to_save\.[^.]+)(?=\.|$)", "", logit_layer_name(plain, run.num_labels))
    layers = [_active(plain.get_submodule(name))]
    for head in (m for m in trained.trainer.model.modules() if isinstance(m, CachedFeatureHead)):
        if isinstance(head.head[-1], nn.Linear) and all(head.head[-1] is not layer for layer in layers):
            layers.append(head.head[-1])
    return layers


@torch.no_grad()
def fold_temperature(layer: nn.Linear, temperature: float) -> None:
    """Divide `layer`'s weight and bias by `temperature`, in place: its outputs become logits / T.

    Example:
        >>> layer, x = nn.Linear(3, 2), torch.randn(4, 3)
        >>> before = layer(x)
        >>> fold_temperature(layer, 2.0)
        >>> torch.allclose(layer(x), before / 2)
        True
    """
    layer.weight.div_(temperature)
    if layer.bias is not None:
        layer.bias.div_(temperature)


def calibrate(model: nn.Module, trained, run) -> dict[str, float]:
    """With --temperature_scaling: fit T on the validation split's logits and fold it into the model (see the module
    docstring). Every process computes the same T (the prediction is gathered).

    Args:
        model: the trained model (a peft model for LoRA); trained: the last stage's outcome; run: the run's context.

    Returns:
        {} without the flag; else `temperature`, `eval_ece_before_scaling` and `eval_nll_before_scaling` /
        `eval_nll_after_scaling` (also written to `calibration_results.json` and `all_results.json`).

    Raises:
        InputError: no labelled validation split to fit T on.
    """
    if not run.config.calibration.temperature_scaling:
        return {}
    dataset = trained.evaluation.get("eval")
    output = trained.trainer.predict(dataset, metric_key_prefix="calibration") if dataset is not None else None
    if output is None or output.label_ids is None or len(output.label_ids) == 0:
        raise InputError("--temperature_scaling needs a labelled validation split (--validation_file, or --do_eval).")
    logits = logits_of(output.predictions)
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(output.label_ids)
    temperature = fit_temperature(logits, labels)
    for layer in logit_layers(model, trained, run):
        fold_temperature(layer, temperature)
    plain = model.get_base_model() if hasattr(model, "get_base_model") else model
    setattr(plain.config, CONFIG_KEY, temperature)
    figures = {
        "temperature": temperature,
        "eval_ece_before_scaling": expected_calibration_error(class_probabilities(logits), labels),
        "eval_nll_before_scaling": negative_log_likelihood(logits, labels),
        "eval_nll_after_scaling": negative_log_likelihood(logits, labels, temperature),
    }
    logger.info(
        "Temperature scaling: T = %.4f fitted on %d validation examples (NLL %.4f -> %.4f); folded into the model's "
        "classification layer.",
        temperature, len(labels), figures["eval_nll_before_scaling"], figures["eval_nll_after_scaling"],
    )  # fmt: skip
    trained.trainer.save_metrics("calibration", figures)
    return figures


def forget_saved_temperature(model) -> None:
    """Drop `hftl_temperature` from the config of a model hftl saved calibrated: its T is folded into the weights
    that now train on, so a model saved again must not name it (with `--temperature_scaling` it records the new T)."""
    if getattr(model.config, CONFIG_KEY, None) is not None:
        logger.info("The model was saved with temperature %s, folded into its weights: training goes on from them.",
                    getattr(model.config, CONFIG_KEY))  # fmt: skip
        delattr(model.config, CONFIG_KEY)
