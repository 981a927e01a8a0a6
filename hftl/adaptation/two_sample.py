"""Is the source -> target feature gap beyond chance? An MK-MMD permutation test and a proxy A-distance interval.

Sources: Gretton et al., "A Kernel Two-Sample Test", JMLR 2012 (MMD, the permutation null); Long et al., ICML 2015
(the multi-kernel MMD of `hftl.adaptation.mmd`, same kernels and bandwidth); Ben-David et al., NeurIPS 2006 and
Machine Learning 2010 (the proxy A-distance); Efron & Tibshirani, "An Introduction to the Bootstrap", 1993
(percentile intervals).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from hftl.adaptation.mmd import DEFAULT_KERNEL_MULTIPLIERS

MAX_EXAMPLES = 500  # per domain, in the permutation test
PERMUTATIONS = 200


class TwoSampleTest(NamedTuple):
    """`mmd`: the unbiased MK-MMD^2 of the two samples; `p_value`: the share of permutations (the observed split
    counted) whose MMD^2 is at least as large; `n_s`, `n_t`: the sample sizes tested."""

    mmd: float
    p_value: float
    n_s: int
    n_t: int


def subsample(features: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most `limit` rows of `features`, drawn without replacement (all of them, in order, if there are fewer)."""
    return features if len(features) <= limit else features[np.sort(rng.choice(len(features), limit, replace=False))]


def _kernel(features: np.ndarray) -> torch.Tensor:
    """The MK-MMD kernel matrix (N, N) of `hftl.adaptation.mmd.multiple_kernel_mmd` on the pooled sample."""
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    squared = torch.cdist(x, x).pow(2)
    n = len(x)
    sigma2 = (squared.sum() / max(n * (n - 1), 1)).clamp_min(1e-12)
    return torch.stack([torch.exp(-squared / (m * sigma2)) for m in DEFAULT_KERNEL_MULTIPLIERS]).mean(0).double()


def _unbiased_mmd(kernel: torch.Tensor, is_source: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 for each row of `is_source` (P, N) booleans; the kernel's diagonal is 1 (Gaussian kernels)."""
    s = is_source.double()
    t = 1.0 - s
    n_s, n_t = s.sum(1), t.sum(1)
    ks = s @ kernel
    kt = kernel.sum(0) - ks  # t @ kernel, as t = 1 - s
    within_s = ((ks * s).sum(1) - n_s) / (n_s * (n_s - 1))
    within_t = ((kt * t).sum(1) - n_t) / (n_t * (n_t - 1))
    cross = (ks * t).sum(1) / (n_s * n_t)
    return within_s + within_t - 2 * cross


def mmd_permutation_test(
    f_s: np.ndarray,
    f_t: np.ndarray,
    permutations: int = PERMUTATIONS,
    max_examples: int = MAX_EXAMPLES,
    seed: int = 0,
) -> TwoSampleTest:
    """Permutation test of "source and target features come from one distribution", with MK-MMD^2 as statistic.

    Both samples are cut to at most `max_examples` (seeded); the kernel matrix of the pooled sample is computed once
    (bandwidth from the pooled sample, so it does not change under permutation), and the domain labels are shuffled
    `permutations` times. `p = (1 + #{perm: MMD^2_perm >= MMD^2}) / (1 + permutations)`, valid at any sample size.
    About 0.3 s on CPU for 500 + 500 examples and 200 permutations.

    Args:
        f_s: (N_s, F) source features; f_t: (N_t, F) target features; N_s, N_t >= 2.

    Returns:
        `TwoSampleTest`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> mmd_permutation_test(rng.normal(size=(100, 4)), rng.normal(size=(100, 4)) + 1.0).p_value < 0.05
        True
    """
    rng = np.random.default_rng(seed)
    s, t = subsample(f_s, max_examples, rng), subsample(f_t, max_examples, rng)
    kernel = _kernel(np.concatenate([s, t]))
    observed = torch.zeros(1, len(s) + len(t), dtype=torch.bool)
    observed[0, : len(s)] = True
    shuffles = torch.from_numpy(np.stack([rng.permutation(len(s) + len(t)) for _ in range(permutations)]))
    permuted = torch.zeros(permutations, len(s) + len(t), dtype=torch.bool)
    permuted.scatter_(1, shuffles[:, : len(s)], True)
    statistic = float(_unbiased_mmd(kernel, observed)[0])
    null = _unbiased_mmd(kernel, permuted)
    p_value = (1 + int((null >= statistic - 1e-12).sum())) / (1 + permutations)
    return TwoSampleTest(statistic, p_value, len(s), len(t))


class ProxyADistance(NamedTuple):
    """The proxy A-distance `value` and its bootstrap percentile interval [`low`, `high`]."""

    value: float
    low: float
    high: float


def proxy_a_distance_interval(
    f_s: np.ndarray,
    f_t: np.ndarray,
    bootstrap: int = 200,
    confidence: float = 0.9,
    max_examples: int = MAX_EXAMPLES,
    seed: int = 0,
) -> ProxyADistance:
    """Proxy A-distance `2 (1 - 2 err)` with a bootstrap interval over its held-out examples.

    As `hftl.adaptation.report.proxy_a_distance`: equal numbers of each domain (at most `max_examples`), a
    standardised logistic regression trained on half to tell source from target, `err` its error on the other half.
    The interval resamples the held-out half's per-example errors `bootstrap` times (the classifier is fitted once),
    so it shows how much of the figure is the luck of a finite test half.

    Args:
        f_s: (N_s, F), f_t: (N_t, F), each N >= 4.
        confidence: the interval's coverage (0.9: the 5th and 95th percentiles).

    Returns:
        `ProxyADistance`, each in [-2, 2] (about [0, 2] in practice).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(f_s), len(f_t), max_examples)
    s, t = subsample(f_s, n, rng), subsample(f_t, n, rng)
    s, t = s[rng.permutation(n)], t[rng.permutation(n)]
    half = n // 2
    x_train, y_train = np.concatenate([s[:half], t[:half]]), np.r_[np.ones(half), np.zeros(half)]
    x_test, y_test = np.concatenate([s[half:], t[half:]]), np.r_[np.ones(n - half), np.zeros(n - half)]
    scaler = StandardScaler().fit(x_train)
    probe = LogisticRegression(max_iter=1000, random_state=seed).fit(scaler.transform(x_train), y_train)
    wrong = (probe.predict(scaler.transform(x_test)) != y_test).astype(np.float64)
    errors = wrong[rng.integers(0, len(wrong), size=(bootstrap, len(wrong)))].mean(1)
    tail = 100 * (1 - confidence) / 2
    low_err, high_err = np.percentile(errors, [100 - tail, tail])
    return ProxyADistance(
        float(2 * (1 - 2 * wrong.mean())), float(2 * (1 - 2 * low_err)), float(2 * (1 - 2 * high_err))
    )
