"""Soft Neighborhood Density (SND): how densely the target predictions cluster.

Source: Saito, Kim, Teterwak, Sclaroff, Darrell & Saenko, "Tune it the Right Way: Unsupervised Validation of Domain
Adaptation via Soft Neighborhood Density", ICCV 2021 (eq. 1-3; reference code github.com/VisionLearningGroup/SND).
Each target example's softmax vector is L2-normalised; its cosine similarities to the other examples, divided by a
temperature T = 0.05, go through a softmax over the neighbours (itself excluded); SND is the mean entropy of those
neighbour distributions. Dense clusters of like predictions give high entropy. Known failure: a collapsed model (all
target examples predicted alike) has the densest neighbourhood of all, hence the selection rule's collapse veto.
"""

from __future__ import annotations

import numpy as np

from hftl.adaptation.scorers.base import CandidateOutputs, register_scorer
from hftl.adaptation.scorers.entropy import entropy_rows, softmax

TEMPERATURE = 0.05  # the paper's value
MAX_EXAMPLES = 2000  # a seeded subsample of the target beyond this (the similarity matrix is N x N)


def soft_neighborhood_density(probabilities: np.ndarray, temperature: float = TEMPERATURE) -> float:
    """SND of (N, C) target probabilities, in [0, log(N - 1)] nats (0 for N < 2), higher is better.

    Example:
        >>> round(soft_neighborhood_density(np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])), 4)  # log 2
        0.6931
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if len(p) < 2:
        return 0.0  # no neighbours
    p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    similarity = p @ p.T / temperature
    np.fill_diagonal(similarity, -np.inf)
    return float(np.mean(entropy_rows(softmax(similarity))))


@register_scorer("snd", source="Saito et al., ICCV 2021 (Soft Neighborhood Density)")
def snd(outputs: CandidateOutputs) -> float:
    """SND of the softmax of target_logits (N_t, C), on at most MAX_EXAMPLES of them (seeded by outputs.seed; the
    same examples for every candidate of one target set). Higher is better."""
    logits = np.asarray(outputs.target_logits)
    if len(logits) > MAX_EXAMPLES:
        rng = np.random.default_rng(outputs.seed)
        logits = logits[np.sort(rng.choice(len(logits), MAX_EXAMPLES, replace=False))]
    return soft_neighborhood_density(softmax(logits))
