"""The flags of a hyper-parameter search, named after `Trainer.hyperparameter_search`'s arguments (`n_trials`,
`direction`, `hp_space`) as the transformers examples spell search flags (`--hp_search_*`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hftl.errors import InputError


@dataclass
class HPSearchArguments:
    """`--hp_search_trials N` turns a recipe run into a search of N trials (see `hftl.search.study`)."""

    hp_search_trials: int = field(
        default=0,
        metadata={
            "help": "Run an Optuna search of N trials, each a whole run in output_dir/trial-<n>, that maximises the "
            "validation --metric_for_best_model (default accuracy); the best trial's flags go to "
            "output_dir/best_config.yaml. A search stopped midway resumes when rerun. 0: no search."
        },
    )
    hp_search_direction: Literal["maximize", "minimize"] | None = field(
        default=None,
        metadata={
            "help": "maximize or minimize the metric (default: minimize a *loss metric, else maximize, or as "
            "--greater_is_better says)."
        },
    )
    hp_space: str | None = field(
        default=None,
        metadata={
            "help": "YAML / JSON file of the search space, flag -> {low, high[, log, step]} or a list of choices. "
            "Default: --learning_rate, --num_train_epochs, --per_device_train_batch_size and the strategy's own "
            "flags, around their values (README, 'Hyper-parameter search')."
        },
    )

    # the --metric_for_best_model the user gave (None: the default objective), set by `hftl.config`: early stopping
    # and --load_best_model_at_end make transformers fill the flag with `loss`, which is not the search's default
    objective_metric: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.hp_search_trials < 0:
            raise InputError(f"--hp_search_trials must be >= 0 (0: no search), got {self.hp_search_trials}.")
