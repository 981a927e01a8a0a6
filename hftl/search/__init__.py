"""Hyper-parameter search (`--hp_search_trials N`): an Optuna study whose trials are whole hftl runs.

`arguments` holds the flags, `space` the search space (default or `--hp_space FILE`), `study` the search itself and
`records` what it writes (`hp_search.json`, `best_config.yaml`, the table of trials). `hftl.search.study` imports
`hftl.config`, which imports `HPSearchArguments` from here: import `run_search` from `hftl.search.study`.
"""

from hftl.search.arguments import HPSearchArguments

__all__ = ["HPSearchArguments"]
