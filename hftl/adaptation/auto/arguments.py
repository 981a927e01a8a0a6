"""The flags of `--adaptation auto` (which candidates it trains) and the combinations it refuses before any model
loads."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from hftl.adaptation.methods import method_names
from hftl.errors import InputError

AUTO = "auto"


@dataclass
class AutoAdaptationArguments:
    """`--adaptation auto`: candidates (source only, then methods x trade-offs) trained with the run's budget, scored
    without target labels, one kept (see `hftl.adaptation.auto`)."""

    auto_methods: list[str] | None = field(
        default=None,
        metadata={"help": "--adaptation auto: the alignment methods it tries (default: every registered method)."},
    )
    auto_trade_offs: list[float] = field(
        default_factory=lambda: [0.1, 0.3, 1.0],
        metadata={"help": "--adaptation auto: the --trade_off values it tries with each method."},
    )
    auto_importance_weighting: Literal["when_credible", "always", "never"] = field(
        default="when_credible",
        metadata={
            "help": "--adaptation auto: also try the importance-weighted form of each candidate (label-shift "
            "correction): when_credible (only when the shift diagnosis finds a credible label shift; never without "
            "a diagnosis), always (trained and scored; the rule still sets them aside when the diagnosis finds no "
            "credible label shift), or never."
        },
    )
    auto_score_samples: int = field(
        default=2000,
        metadata={
            "help": "--adaptation auto: at most this many target (and source train) examples, drawn with --seed, "
            "are given to the label-free scorers."
        },
    )

    def __post_init__(self):
        known = method_names()
        unknown = [m for m in self.auto_methods or () if m not in known]
        if unknown:
            raise InputError(
                f"--auto_methods {' '.join(unknown)}: not a registered method; choose from {', '.join(known)} "
                f"(source only is always a candidate; importance weighting: --auto_importance_weighting)."
            )
        if self.auto_methods is not None and len(set(self.auto_methods)) != len(self.auto_methods):
            raise InputError(f"--auto_methods {' '.join(self.auto_methods)}: a method is named twice.")
        if not self.auto_trade_offs or any(t <= 0 for t in self.auto_trade_offs):
            raise InputError(f"--auto_trade_offs {self.auto_trade_offs}: give one or more values > 0.")
        if self.auto_score_samples < 2:
            raise InputError(f"--auto_score_samples must be >= 2, got {self.auto_score_samples}.")

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods tried, in registry order when not given."""
        return tuple(self.auto_methods) if self.auto_methods is not None else method_names()


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def check_auto_flags(values: dict[str, Any]) -> None:
    """Combinations `--adaptation auto` refuses (flag dest name -> parsed value), before any data or model loads.

    Raises:
        InputError: naming the flag and the fix.
    """
    if values.get("adaptation") != AUTO:
        return
    refusals = [
        (values.get("hp_search_trials"), "--hp_search_trials: auto already trains and compares candidates; search "
         "the hyper-parameters of one method (--adaptation METHOD) instead, or drop --hp_search_trials"),
        (values.get("problem_type") == "multi_label_classification", "--problem_type multi_label_classification: "
         "the adaptation methods and the label-free scorers are single-label; choose --adaptation none"),
        (values.get("importance_weighting"), "--importance_weighting: auto decides which candidates are "
         "importance-weighted (--auto_importance_weighting always | never | when_credible); drop it"),
        (not values.get("do_train"), "--do_train false: auto trains candidates; set --do_train true"),
        (not values.get("do_eval") and _plain(values.get("eval_strategy")) == "no", "--do_eval false: the "
         "label-free scorers read the source validation split; set --do_eval true (or --eval_strategy epoch)"),
        (values.get("resume_from_checkpoint"), "--resume_from_checkpoint: auto resumes by itself (rerun the same "
         "command: finished candidates are kept); drop it"),
        (int(os.environ.get("WORLD_SIZE", "1")) > 1, "several processes: auto runs its candidates in one process; "
         "launch it without torchrun / accelerate's multi-process launcher"),
    ]  # fmt: skip
    for refused, message in refusals:
        if refused:
            raise InputError(f"--adaptation auto with {message}.")
