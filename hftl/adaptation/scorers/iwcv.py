"""Importance-weighted validation (IWCV): the source validation loss re-weighted to estimate the target loss.

Source: Sugiyama, Krauledat & Müller, "Covariate Shift Adaptation by Importance Weighted Cross Validation", JMLR 8,
2007. Under covariate shift (p(y | x) shared, p(x) moved), E_s[w(x) L(x, y)] = E_t[L(x, y)] with
w(x) = p_t(x) / p_s(x), so the weighted mean of held-out source losses is an unbiased estimate of the target loss.
Here L is the cross-entropy of the candidate's source validation logits and w comes from a domain classifier on the
candidate's own features (`density_ratio.py`, clipped); the weighted mean is self-normalised (`iwcv_risk`). Known
weakness: high variance when the domains are far apart (few source examples carry large weights); DEV (`dev.py`)
reduces it.
"""

from __future__ import annotations

import numpy as np

from hftl.adaptation.scorers.base import CandidateOutputs, register_scorer
from hftl.adaptation.scorers.density_ratio import candidate_weights, per_example_cross_entropy


def iwcv_risk(weights: np.ndarray, losses: np.ndarray) -> float:
    """The importance-weighted mean loss `sum(w L) / sum(w)` (lower is better); the plain mean when every w is 0.

    Self-normalised, as skada's `ImportanceWeightedScorer`: Sugiyama et al. divide by N, which is the same when the
    weights average 1; when they do not (clipped weights, or domains a linear classifier separates, where every
    source weight is near 0 and `mean(w L)` near 0 whatever the model), the self-normalised form stays a weighted
    mean of real losses.

    Shape:
        weights (N,), losses (N,) -> float.

    Example:
        >>> iwcv_risk(np.array([0.5, 1.5]), np.array([1.0, 2.0]))
        1.75
    """
    w = np.asarray(weights, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    return float(np.sum(w * losses) / np.sum(w)) if np.sum(w) > 0 else float(np.mean(losses))


@register_scorer("iwcv", source="Sugiyama, Krauledat & Müller, JMLR 2007 (importance-weighted cross validation)")
def iwcv(outputs: CandidateOutputs) -> float:
    """Minus the importance-weighted source validation cross-entropy (nats): higher is better, 0 is the best.

    Reads source_logits (N_s, C), source_labels (N_s,), source_features (N_s, F), target_features (N_t, F) and
    source_train_features (M, F) when given.
    """
    losses = per_example_cross_entropy(outputs.source_logits, outputs.source_labels)
    return -iwcv_risk(candidate_weights(outputs), losses)
