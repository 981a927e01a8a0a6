"""Choosing the pretrained model and its layer before training: transferability scores of frozen features (LogME,
H-score, TransRate), the source -> target domain gap, size and speed of every layer of every candidate model.

- `logme.py`, `hscore.py`, `transrate.py`: the scores, (N, F) features and (N,) labels -> float, higher is better.
- `layers.py`: every layer's features of a model from one forward pass (what `--feature_layer N` gives).
- `cache.py`: those features on disk (`--feature_cache_dir`).
- `candidates.py`: a model's candidate layers on the run's data, with size and speed.
- `table.py`: scoring, the ranking rule, the printed table and the JSON.
- `command.py`: `hftl rank`; `auto.py`: `--feature_layer auto` in the recipes.
"""

from hftl.ranking.hscore import h_score
from hftl.ranking.logme import logme
from hftl.ranking.transrate import transrate

__all__ = ["h_score", "logme", "transrate"]
