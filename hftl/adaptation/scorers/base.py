"""What a label-free scorer reads of a trained candidate, and the registry mapping a scorer's name to it.

A scorer judges a trained candidate model without target labels (unsupervised domain adaptation cannot read them).
It is one file in this folder: a function decorated with `@register_scorer("name", source="paper")` that takes a
`CandidateOutputs` and returns one float, higher meaning better. Adding one means writing that file and one import
line in `scorers/__init__.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from hftl.registry import Registry


@dataclass(frozen=True)
class CandidateOutputs:
    """A trained candidate's outputs on labelled source data and unlabelled target data.

    Attributes:
        source_logits: (N_s, C) logits on held-out labelled source examples (the validation split).
        source_labels: (N_s,) their class ids.
        source_features: (N_s, F) the input of the candidate's classification layer on the same examples.
        target_logits: (N_t, C) logits on unlabelled target examples (the target train split).
        target_features: (N_t, F) the input of the classification layer on the same examples.
        source_train_features: (M, F) the same candidate's features on (a sample of) the source train split, or None:
            what a scorer that fits a density ratio (IWCV, DEV) may train its domain classifier on, so that the
            held-out examples it weights were not seen by that classifier.
        seed: for any randomness in a scorer (subsampling, a domain classifier's split).
    """

    source_logits: np.ndarray
    source_labels: np.ndarray
    source_features: np.ndarray
    target_logits: np.ndarray
    target_features: np.ndarray
    source_train_features: np.ndarray | None = None
    seed: int = 0


class Scorer(NamedTuple):
    """A registered scorer: `function(outputs) -> float` (higher is better), its name and its source (paper)."""

    name: str
    function: Callable[[CandidateOutputs], float]
    source: str


_SCORERS: Registry[Scorer] = Registry("scorer")


def register_scorer(name: str, source: str) -> Callable:
    """Decorator: register `function(outputs: CandidateOutputs) -> float` (higher is better) as scorer `name`.

    Args:
        name: the scorer's name, as it appears in `adaptation_selection.json` and the model card.
        source: the paper the score comes from, in one line.

    Raises:
        ValueError: `name` is taken.
    """

    def decorate(function: Callable[[CandidateOutputs], float]) -> Callable[[CandidateOutputs], float]:
        _SCORERS.add(name, Scorer(name, function, source))
        return function

    return decorate


def get_scorer(name: str) -> Scorer:
    """The registered scorer named `name`. Raises: KeyError for an unknown name."""
    return _SCORERS.get(name)


def scorer_names() -> tuple[str, ...]:
    """The registered scorer names, in registration order."""
    return _SCORERS.names()


def score_all(outputs: CandidateOutputs, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Every registered scorer's (or those in `names`) score of one candidate: name -> float (higher is better)."""
    return {name: float(get_scorer(name).function(outputs)) for name in names or scorer_names()}
