"""The `--problem_type` flags: one class per example (the default) or a set of labels per example, and how label
sets are read and thresholded.

The flag names follow transformers: `problem_type` is the model config's field (`PretrainedConfig.problem_type`),
whose value `multi_label_classification` makes its classifiers use `BCEWithLogitsLoss` and its pipelines a sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from hftl.errors import InputError

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
DEFAULT_LABEL_DELIMITER = "|"  # Amazon Comprehend's multi-label CSV default; rare in label names and in CSV layouts


@dataclass
class ProblemArguments:
    """Single-label or multi-label classification (`--problem_type`), and the multi-label options."""

    problem_type: Literal["single_label_classification", "multi_label_classification"] = field(
        default=SINGLE_LABEL,
        metadata={
            "help": "single_label_classification: one class per example (softmax). multi_label_classification: a "
            "set of labels per example, each a yes / no decision (sigmoid outputs, binary cross-entropy), given as "
            "lists (JSON, JSON Lines, parquet) or --label_delimiter-separated strings (CSV)."
        },
    )
    label_delimiter: str = field(
        default=DEFAULT_LABEL_DELIMITER,
        metadata={
            "help": "Multi-label: what separates the labels in a string cell, e.g. 'sports|politics' (default '|'). "
            "List cells need none."
        },
    )
    allow_empty_labels: bool = field(
        default=False,
        metadata={
            "help": "Multi-label: an example may have no label at all (an empty list, an empty string or an empty "
            "CSV cell). Off by default: an empty label set is then an invalid row."
        },
    )
    tune_thresholds: bool = field(
        default=True,
        metadata={
            "help": "Multi-label: after training, tune each label's threshold to maximise its F1 on the validation "
            "split (false: 0.5 for every label). The thresholds are folded into the classifier's bias."
        },
    )

    def __post_init__(self):
        if self.label_delimiter == "":
            raise InputError("--label_delimiter must not be empty; the default is '|'.")
        if self.multi_label:
            return
        set_flags = [
            name
            for name, given in (
                ("label_delimiter", self.label_delimiter != DEFAULT_LABEL_DELIMITER),
                ("allow_empty_labels", self.allow_empty_labels),
                ("tune_thresholds", not self.tune_thresholds),
            )
            if given
        ]
        if set_flags:
            raise InputError(
                f"--{set_flags[0]} applies to multi-label classification: add --problem_type "
                f"{MULTI_LABEL}, or drop --{set_flags[0]}."
            )

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL


# flags that make no sense for label sets: the value that is fine, and why the others are not
_REFUSED = {
    "adaptation": ("none", "domain alignment and its reports are built on single-label classes"),
    "importance_weighting": (False, "label-shift weights w_y are defined for one class per example"),
    "domain_gap_report": (False, "the report's class prior is defined for one class per example"),
    "target_dataset_name": (None, "target-domain data is for single-label domain adaptation"),
    "target_train_file": (None, "target-domain data is for single-label domain adaptation"),
    "target_train_dir": (None, "target-domain data is for single-label domain adaptation"),
    "label_smoothing_factor": (0.0, "transformers' label smoother is a softmax cross-entropy"),
    "temperature_scaling": (
        False,
        "one temperature calibrates a softmax; multi-label thresholds are tuned instead",
    ),
    "class_weights": (None, "class weights weigh a softmax cross-entropy over one class per example"),
    "balanced_sampling": (False, "balanced sampling draws one class per example"),
}


def check_multi_label_flags(values: dict[str, Any]) -> None:
    """Flags a multi-label run cannot use (`values`: every parsed flag, dest name -> value).

    Raises:
        InputError: `--problem_type multi_label_classification` with domain adaptation, importance weighting, target
            data, the domain-gap report, label smoothing, temperature scaling, class weights or balanced sampling
            (the flag named, with the reason).
    """
    if values.get("problem_type") != MULTI_LABEL:
        return
    for flag, (fine, reason) in _REFUSED.items():
        value = values.get(flag, fine)
        if value != fine and not (fine is None and not value):
            raise InputError(
                f"--{flag} {value} does not work with --problem_type {MULTI_LABEL}: {reason}. Drop --{flag}, or "
                f"train a single-label classifier."
            )
