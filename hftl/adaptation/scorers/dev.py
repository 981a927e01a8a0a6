"""Deep Embedded Validation (DEV): importance-weighted validation with a control variate, on the model's features.

Source: You, Wang, Long & Jordan, "Towards Accurate Model Selection in Deep Unsupervised Domain Adaptation",
ICML 2019 (reference code github.com/thuml/Deep-Embedded-Validation, `get_dev_risk`). The weights w have a known
mean, E_s[w] = 1, so `mean(w L) + eta (mean(w) - 1)` is unbiased for the target risk for any eta; the variance is
smallest at eta = -Cov(w L, w) / Var(w) (their eq. 9-10, Theorem 3). The weights come from a domain classifier on the
candidate's own features, its "embedded" features (`density_ratio.py`, shared with IWCV).
"""

from __future__ import annotations

import numpy as np

from hftl.adaptation.scorers.base import CandidateOutputs, register_scorer
from hftl.adaptation.scorers.density_ratio import candidate_weights, per_example_cross_entropy


def dev_risk(weights: np.ndarray, losses: np.ndarray) -> float:
    """DEV's control-variate estimate of the target risk (lower is better).

    `mean(w L) + eta mean(w) - eta`, eta = -Cov(w L, w) / Var(w) (sample estimates, ddof 1); eta = 0 when the weights
    are constant (then it is the plain mean loss).

    Shape:
        weights (N,), losses (N,), N >= 2 -> float.

    Example:
        >>> dev_risk(np.array([1.0, 1.0]), np.array([1.0, 3.0]))
        2.0
    """
    w = np.asarray(weights, dtype=np.float64)
    weighted = w * np.asarray(losses, dtype=np.float64)
    variance = float(np.var(w, ddof=1)) if len(w) > 1 else 0.0
    eta = -float(np.cov(weighted, w, ddof=1)[0, 1]) / variance if variance > 0 else 0.0
    return float(np.mean(weighted) + eta * np.mean(w) - eta)


@register_scorer("dev", source="You et al., ICML 2019 (Deep Embedded Validation)")
def dev(outputs: CandidateOutputs) -> float:
    """Minus DEV's estimate of the target cross-entropy (nats): higher is better.

    Reads source_logits (N_s, C), source_labels (N_s,), source_features (N_s, F), target_features (N_t, F) and
    source_train_features (M, F) when given.
    """
    losses = per_example_cross_entropy(outputs.source_logits, outputs.source_labels)
    return -dev_risk(candidate_weights(outputs), losses)
