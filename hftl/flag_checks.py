"""The allowed values of the flags a user commonly sets, checked on the parsed values before any dataclass is built
(so before transformers' own checks, and long before any model loads).

`FLAG_RANGES` holds each numeric flag's range (transformers' `TrainingArguments` flags and hftl's that their
dataclasses do not check); `check_flag_values` applies them, then the checks that need several flags or the machine:
training for zero epochs, mixed precision without a GPU, a tracker that is not installed, a best-model metric the
run does not compute, a Hub push that could not succeed.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any

from hftl.errors import InputError


@dataclasses.dataclass(frozen=True)
class Range:
    """`test(value)` is true for allowed values, which `allowed` describes; checked only when `when(values)` is."""

    test: Callable[[Any], bool]
    allowed: str
    when: Callable[[dict[str, Any]], bool] | None = None


def _steps_strategy(flag: str) -> Callable[[dict[str, Any]], bool]:
    return lambda values: _plain(values.get(flag)) == "steps"


def _plain(value: Any) -> Any:
    """An enum's value (IntervalStrategy.STEPS -> 'steps'), else the value."""
    return getattr(value, "value", value)


_STEPS = "> 0 (a value below 1 is a fraction of the training steps)"
_AT_LEAST_ONE = Range(lambda v: v >= 1, ">= 1")
_FRACTION = Range(lambda v: 0 <= v < 1, "in [0, 1)")
_SEED = Range(lambda v: 0 <= v < 2**32, "an integer in [0, 2**32 - 1]")

FLAG_RANGES: dict[str, Range] = {
    "learning_rate": Range(lambda v: v > 0, "> 0, e.g. 5e-5"),
    "weight_decay": Range(lambda v: v >= 0, ">= 0"),
    "adam_beta1": _FRACTION,
    "adam_beta2": _FRACTION,
    "adam_epsilon": Range(lambda v: v > 0, "> 0"),
    "max_grad_norm": Range(lambda v: v >= 0, ">= 0 (0 turns gradient clipping off)"),
    "num_train_epochs": Range(lambda v: v >= 0, "> 0"),
    "max_steps": Range(lambda v: v >= -1, "-1 (train for --num_train_epochs) or a number of steps > 0"),
    "per_device_train_batch_size": _AT_LEAST_ONE,
    "per_device_eval_batch_size": _AT_LEAST_ONE,
    "gradient_accumulation_steps": _AT_LEAST_ONE,
    "eval_accumulation_steps": _AT_LEAST_ONE,
    "save_total_limit": Range(lambda v: v >= 1, ">= 1 (leave it unset to keep every checkpoint)"),
    "seed": _SEED,
    "data_seed": _SEED,
    "dataloader_num_workers": Range(lambda v: v >= 0, ">= 0"),
    "label_smoothing_factor": _FRACTION,
    "logging_steps": Range(lambda v: v > 0, _STEPS, when=_steps_strategy("logging_strategy")),
    "eval_steps": Range(lambda v: v > 0, _STEPS, when=_steps_strategy("eval_strategy")),
    "save_steps": Range(lambda v: v > 0, _STEPS, when=_steps_strategy("save_strategy")),
    "ddp_timeout": Range(lambda v: v > 0, "> 0 (seconds)"),
    "lora_alpha": Range(lambda v: v > 0, "> 0"),
    "lora_dropout": _FRACTION,
}


def check_ranges(values: dict[str, Any]) -> None:
    """Raises: InputError for the first flag of `FLAG_RANGES` whose value is outside its range (None: unset)."""
    for flag, rule in FLAG_RANGES.items():
        value = values.get(flag)
        if value is None or (rule.when is not None and not rule.when(values)):
            continue
        if not rule.test(value):
            raise InputError(f"--{flag} {value}: must be {rule.allowed}.")


def _check_training_length(values: dict[str, Any]) -> None:
    if values.get("do_train") and values.get("num_train_epochs") == 0 and (values.get("max_steps") or -1) <= 0:
        raise InputError(
            "--num_train_epochs 0 with --do_train trains nothing and would save the untrained model: give "
            "--num_train_epochs > 0 (or --max_steps N), or --do_train false to evaluate the model as it is."
        )


def _has_accelerator() -> bool:
    import torch

    accelerator = getattr(torch, "accelerator", None)
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def _check_mixed_precision(values: dict[str, Any]) -> None:
    """bf16 needs a GPU that supports it unless --use_cpu (bf16 autocast on the CPU); fp16 needs a GPU."""
    from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available

    if (values.get("bf16") or values.get("bf16_full_eval")) and not values.get("use_cpu"):
        if not is_torch_bf16_gpu_available() and not is_torch_xla_available():
            flag = "--bf16" if values.get("bf16") else "--bf16_full_eval"
            raise InputError(
                f"{flag} true: this machine has no GPU with bf16 support. To train in bf16 on the CPU add "
                f"--use_cpu true; otherwise drop {flag}."
            )
    if (values.get("fp16") or values.get("fp16_full_eval")) and (values.get("use_cpu") or not _has_accelerator()):
        flag = "--fp16" if values.get("fp16") else "--fp16_full_eval"
        raise InputError(
            f"{flag} true: fp16 mixed precision needs a GPU, and this run is on the CPU. Drop {flag}, or on the "
            f"CPU use --bf16 true --use_cpu true."
        )


_TRACKER_PACKAGES = {"azure_ml": "azureml-core", "comet_ml": "comet-ml", "codecarbon": "codecarbon"}


def _check_report_to(values: dict[str, Any]) -> None:
    """Every --report_to tracker is one transformers knows and is installed."""
    from transformers.integrations import get_available_reporting_integrations
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    names = values.get("report_to")
    names = [names] if isinstance(names, str) else list(names or [])
    for name in (n for n in names if n not in ("none", "all")):
        if name not in INTEGRATION_TO_CALLBACK:
            close = difflib.get_close_matches(name, list(INTEGRATION_TO_CALLBACK), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise InputError(
                f"--report_to {name}: not a tracker transformers knows{hint}; choose from "
                f"{', '.join(INTEGRATION_TO_CALLBACK)}, or none."
            )
        if name not in get_available_reporting_integrations():
            raise InputError(
                f"--report_to {name}: {name} is not installed. `pip install {_TRACKER_PACKAGES.get(name, name)}`, "
                f"or pass --report_to none."
            )


def evaluation_metric_names(problem_type: str | None = None) -> list[str]:
    """What an evaluation during training reports (without the `eval_` prefix): the loss and `summary_metrics` (for
    multi-label runs, `hftl.multi_label.metrics.multi_label_summary`)."""
    import numpy as np

    from hftl.metrics import summary_metrics
    from hftl.multi_label.arguments import MULTI_LABEL

    if problem_type == MULTI_LABEL:
        from hftl.multi_label.metrics import multi_label_summary

        return ["loss", *multi_label_summary(np.eye(2), np.eye(2))]
    return ["loss", *summary_metrics(np.array([0, 1]), np.array([0, 1]), 2)]


def _check_best_model(values: dict[str, Any]) -> None:
    """--load_best_model_at_end needs evaluations (transformers checks that the save strategy matches); the metric
    must be one the evaluations report."""
    if values.get("load_best_model_at_end") and _plain(values.get("eval_strategy")) == "no":
        raise InputError(
            "--load_best_model_at_end needs evaluations to compare: set --eval_strategy epoch (or steps) and "
            "the same --save_strategy."
        )
    metric = values.get("metric_for_best_model")
    names = evaluation_metric_names(values.get("problem_type"))
    if metric is not None and metric.removeprefix("eval_") not in names:
        close = difflib.get_close_matches(metric.removeprefix("eval_"), names, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise InputError(
            f"--metric_for_best_model {metric}: not a metric the evaluations report{hint}; choose from "
            f"{', '.join(names)}."
        )


def _check_folders(values: dict[str, Any]) -> None:
    """Flags that name a folder (created if missing) must not name a file."""
    import os

    for flag in ("output_dir", "cache_dir", "feature_cache_dir"):
        path = values.get(flag)
        if path and os.path.exists(path) and not os.path.isdir(path):
            raise InputError(f"--{flag} {path}: a file, not a folder. Give a folder (it is created if missing).")


def _check_temperature_scaling(values: dict[str, Any]) -> None:
    """--temperature_scaling fits T on the validation split: the run must evaluate (transformers turns --do_eval on
    when --eval_strategy is not no)."""
    if values.get("temperature_scaling") and not values.get("do_eval") and _plain(values.get("eval_strategy")) == "no":
        raise InputError(
            "--temperature_scaling fits the temperature on the validation split, and this run does not evaluate "
            "(--do_eval false): set --do_eval true (a validation split is carved from train when none is given), "
            "or drop --temperature_scaling."
        )


def check_flag_values(values: dict[str, Any]) -> None:
    """Ranges (`FLAG_RANGES`) and combinations of the parsed flag values (dest name -> value).

    Raises:
        InputError: naming the flag, the value, what it accepts and the fix.
    """
    from hftl.adaptation.auto import check_auto_flags
    from hftl.export.arguments import check_export_flags
    from hftl.hub import check_push
    from hftl.multi_label.arguments import check_multi_label_flags
    from hftl.multi_task.arguments import check_multi_task_flags
    from hftl.training_flags import check_early_stopping_flags

    check_ranges(values)
    check_multi_label_flags(values)
    _check_training_length(values)
    _check_mixed_precision(values)
    _check_report_to(values)
    _check_best_model(values)
    check_early_stopping_flags(values)
    _check_folders(values)
    _check_temperature_scaling(values)
    check_export_flags(values)
    check_auto_flags(values)
    check_multi_task_flags(values)
    if values.get("push_to_hub"):
        check_push(values.get("hub_model_id"), values.get("output_dir"), values.get("hub_token"))
