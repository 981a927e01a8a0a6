"""LogME: the log maximum evidence of a Bayesian linear model from frozen features to one-hot labels.

Source: You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021
(arXiv:2102.11005); the fixed-point iteration of "Ranking and Tuning Pre-trained Models: A New Paradigm for
Exploiting Model Hubs", JMLR 2022 (arXiv:2110.10545), as in the reference implementation (github.com/thuml/LogME).

For each class c, the target y = 1[label == c] (N,) is modelled as y = f w + noise, w ~ N(0, alpha^-1 I),
noise ~ N(0, beta^-1 I). The evidence p(y | f, alpha, beta) = N(y; 0, beta^-1 I + alpha^-1 f f^T) is maximised over
alpha and beta by MacKay's fixed point, computed from one SVD of f shared by every class:

    gamma = sum_i s_i / (s_i + alpha / beta),  alpha = gamma / |m|^2,  beta = (N - gamma) / |y - f m|^2

(s_i the squared singular values of f, m the posterior mean of w). LogME is the mean over classes of
log p(y | f, alpha*, beta*) / N. Higher is better. The maximum is unchanged when f is scaled (alpha absorbs the
scale), but the reference's guard epsilon is not: f is first divided by its root mean square entry, so that the
score of hidden states of norm 100 is the score of the same features at unit scale.

With fewer than two examples per feature (N < 2F), f is cut to its top N / 2 singular directions (the evidence is
unchanged by a rotation of f, so this is PCA without centring). With as many directions as examples, any labels are
fitted exactly, the fixed point runs off to beta = infinity on some layers and not on others, and the scores of one
model's layers jumped between about +0.3 and -1.1 on 300 review snippets with 384 features (the reference behaves
the same); cut, they are stable.
"""

from __future__ import annotations

import numpy as np

_EPSILON = 1e-5  # the reference's guard against a zero residual or a zero weight norm
_MAX_STEPS = 100  # the reference stops after 11; features far from unit scale need more steps to converge


def _class_evidence(x2: np.ndarray, residual: float, sigma: np.ndarray, n: int, d: int) -> float:
    """Log evidence / N of one target, from x = u^T y (projections on the left singular vectors) squared."""
    alpha, beta = 1.0, 1.0
    for _ in range(_MAX_STEPS):
        t = alpha / beta
        gamma = (sigma / (sigma + t)).sum()
        m2 = (sigma * x2 / (t + sigma) ** 2).sum()
        res2 = (x2 / (1 + sigma / t) ** 2).sum() + residual
        alpha = gamma / (m2 + _EPSILON)
        beta = (n - gamma) / (res2 + _EPSILON)
        if abs(alpha / beta - t) / t <= 1e-3:
            break
    evidence = (
        d / 2.0 * np.log(alpha)
        + n / 2.0 * np.log(beta)
        - 0.5 * np.log(alpha + beta * sigma).sum()
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - n / 2.0 * np.log(2 * np.pi)
    )
    return float(evidence / n)


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of `features` for the class labels `labels` (see the module docstring).

    Args:
        features: (N, F) frozen features, any scale (see the module docstring).
        labels: (N,) class ids in [0, C).

    Returns:
        The mean over classes of the per-example log evidence (nats); higher is better. Typical values lie in
        about [-1, 1]: one-vs-rest targets of a well separated problem approach the upper end.

    Raises:
        ValueError: fewer than two examples, or features and labels of different lengths.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 2, 200)
        >>> logme(y[:, None] + 0.1 * rng.normal(size=(200, 3)), y) > logme(rng.normal(size=(200, 3)), y)
        True
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if f.ndim != 2 or len(f) != len(y) or len(f) < 2:
        raise ValueError(f"logme needs (N, F) features and (N,) labels, N >= 2; got {f.shape} and {y.shape}")
    n, d = f.shape
    scale = np.sqrt((f**2).mean())
    u, s, _ = np.linalg.svd(f / scale if scale > 0 else f, full_matrices=False)
    if n < 2 * d:
        d = max(1, n // 2)
        u, s = u[:, :d], s[:d]
    sigma = s**2
    evidences = []
    for c in np.unique(y):
        target = (y == c).astype(np.float64)
        x = u.T @ target
        x2 = x**2
        residual = float((target**2).sum() - x2.sum())  # the part of y outside the span of f
        evidences.append(_class_evidence(x2, max(residual, 0.0), sigma, n, d))
    return float(np.mean(evidences))
