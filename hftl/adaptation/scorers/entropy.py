"""Target prediction entropy: a confident model on the target is taken for an accurate one.

Source: Morerio, Cavazza & Murino, "Minimal-Entropy Correlation Alignment for Unsupervised Deep Domain Adaptation",
ICLR 2018 (entropy of target predictions to choose the alignment weight); skada's `PredictionEntropyScorer`. Known
failure: a model that puts every target example in one class with confidence has the lowest entropy of all, so the
selection rule never reads it without the collapse veto (`selection.py`).
"""

from __future__ import annotations

import numpy as np

from hftl.adaptation.scorers.base import CandidateOutputs, register_scorer


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64. Shape: (N, C) -> (N, C)."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def entropy_rows(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats of each row of (N, C) probabilities -> (N,) (0 log 0 = 0)."""
    p = np.asarray(probabilities, dtype=np.float64)
    return np.sum(np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


@register_scorer("entropy", source="Morerio et al., ICLR 2018 (minimal target prediction entropy)")
def target_entropy(outputs: CandidateOutputs) -> float:
    """Minus the mean entropy (nats) of the softmax of target_logits (N_t, C): in [-log C, 0], higher is better.

    Example:
        >>> o = CandidateOutputs(np.zeros((1, 2)), np.array([0]), np.zeros((1, 1)), np.zeros((2, 2)), np.zeros((2, 1)))
        >>> round(target_entropy(o), 4)
        -0.6931
    """
    return -float(np.mean(entropy_rows(softmax(outputs.target_logits))))
