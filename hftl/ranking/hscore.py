"""H-score: how much of the features' variance the class means explain, with a shrunk feature covariance.

Source: Bao, Li, Zheng, Huang, Kalenderian and Jaynes, "An Information-Theoretic Approach to Transferability in Task
Transfer Learning", ICIP 2019: H(f) = tr(cov(f)^-1 cov(E[f | y])). The sample covariance of many features from few
examples is singular or badly conditioned; following Ibrahim, Ponomareva and Mazumder, "Newer is not always better:
Rethinking transferability metrics, their peculiarities, stability and performance", ECML PKDD 2022
(arXiv:2110.06893), cov(f) is the Ledoit-Wolf shrinkage estimate (1 - a) S + a mu I and the between-class covariance
is scaled by (1 - a) with it.
"""

from __future__ import annotations

import numpy as np


def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """Shrinkage-regularised H-score of `features` for the class labels `labels`.

    Args:
        features: (N, F) frozen features.
        labels: (N,) class ids.

    Returns:
        tr(cov_shrunk(f)^-1 (1 - a) cov(E[f | y])), a non-negative float, at most about min(F, C - 1) (the rank of
        the between-class covariance); higher is better. Unchanged when f is scaled.

    Raises:
        ValueError: fewer than two examples, or features and labels of different lengths.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 2, 200)
        >>> h_score(y[:, None] + 0.1 * rng.normal(size=(200, 3)), y) > h_score(rng.normal(size=(200, 3)), y)
        True
    """
    from sklearn.covariance import LedoitWolf

    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if f.ndim != 2 or len(f) != len(y) or len(f) < 2:
        raise ValueError(f"h_score needs (N, F) features and (N,) labels, N >= 2; got {f.shape} and {y.shape}")
    f = f - f.mean(axis=0, keepdims=True)
    estimate = LedoitWolf(assume_centered=True).fit(f)
    means = np.zeros_like(f)
    for c in np.unique(y):
        means[y == c] = f[y == c].mean(axis=0)
    between = means.T @ means / len(f)
    solved = np.linalg.lstsq(estimate.covariance_, (1.0 - estimate.shrinkage_) * between, rcond=None)[0]
    return float(np.trace(solved))
