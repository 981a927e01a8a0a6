"""TransRate: the coding-rate gain of the features from knowing the class (mutual information of features and
labels, measured by coding rate).

Source: Huang, Huang, Li, Wang and Wang, "Frustratingly Easy Transferability Estimation", ICML 2022
(arXiv:2106.09362), reference implementation github.com/Long-Kai/TransRate:

    TrR(f, y) = R(f, eps) - mean_c R(f_c, eps),   R(Z, eps) = 1/2 logdet(I + Z^T Z / (n eps))

with f centred and f_c the examples of class c. Chosen as the third score because it measures something LogME and
H-score do not: not how linearly the classes can be read off, but how much the features separate into class-wise
subspaces (compactness within classes against spread overall), with no model fitted and no hyper-parameter search.
Here f is also scaled to a mean squared norm of 1 per example (the reference's variant scales by the trace), so
that layers of different scales and datasets of different sizes compare at the same distortion eps.
"""

from __future__ import annotations

import numpy as np

DEFAULT_EPS = 1e-4  # the reference's distortion


def _coding_rate(z: np.ndarray, eps: float) -> float:
    n, d = z.shape
    # logdet(I_d + a Z^T Z) = logdet(I_n + a Z Z^T): the smaller of the two
    gram = z.T @ z if d <= n else z @ z.T
    _, logdet = np.linalg.slogdet(np.eye(len(gram)) + gram / (n * eps))
    return 0.5 * float(logdet)


def transrate(features: np.ndarray, labels: np.ndarray, eps: float = DEFAULT_EPS) -> float:
    """TransRate of `features` for the class labels `labels` (see the module docstring).

    Args:
        features: (N, F) frozen features.
        labels: (N,) class ids.
        eps: the distortion of the coding rate.

    Returns:
        Nats, higher is better (0 when the classes share one distribution).

    Raises:
        ValueError: fewer than two examples, or features and labels of different lengths.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 2, 200)
        >>> transrate(y[:, None] + 0.1 * rng.normal(size=(200, 3)), y) > transrate(rng.normal(size=(200, 3)), y)
        True
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if f.ndim != 2 or len(f) != len(y) or len(f) < 2:
        raise ValueError(f"transrate needs (N, F) features and (N,) labels, N >= 2; got {f.shape} and {y.shape}")
    f = f - f.mean(axis=0, keepdims=True)
    scale = np.sqrt((f**2).sum(axis=1).mean())
    f = f / scale if scale > 0 else f
    classes = np.unique(y)
    within = np.mean([_coding_rate(f[y == c], eps) for c in classes])
    return _coding_rate(f, eps) - float(within)
