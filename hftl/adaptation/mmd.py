"""Multi-kernel maximum mean discrepancy (MK-MMD) between source and target features.

Source: Long et al., "Learning Transferable Features with Deep Adaptation Networks", ICML 2015 (arXiv:1502.02791);
Gretton et al., "A Kernel Two-Sample Test", JMLR 2012 (the biased and unbiased estimators).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

DEFAULT_KERNEL_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def _weighted_mean_kernel(kernel: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ kernel @ b


def multiple_kernel_mmd(
    f_s: torch.Tensor,
    f_t: torch.Tensor,
    kernel_multipliers: Sequence[float] = DEFAULT_KERNEL_MULTIPLIERS,
    estimator: str = "unbiased",
    w_s: torch.Tensor | None = None,
) -> torch.Tensor:
    """Squared MK-MMD between the source and target samples, with a family of Gaussian kernels.

    `k(x, y) = mean_m exp(-||x - y||^2 / (multiplier_m * sigma^2))`, where sigma^2 is the mean squared pairwise
    distance between the distinct examples of the joint batch (detached: the bandwidth follows the data but is not
    optimised). `MMD^2 = E k(s, s') + E k(t, t') - 2 E k(s, t)`. The *biased* estimator (a V-statistic) averages
    over all pairs, diagonals included, and is >= 0; the *unbiased* one (a U-statistic) leaves out the pairs of an
    example with itself, so it is ~0 (and can be slightly negative) for samples of one distribution. Source
    examples may carry weights `w_s` (class importance weights p_t(y) / p_s(y)); the source expectations are then
    weighted means. Computed in float32 whatever the input dtype (safe under autocast).

    Args:
        f_s: source features (N_s, F). f_t: target features (N_t, F); N_s and N_t may differ.
        kernel_multipliers: bandwidth multipliers of the kernels (DAN: 5 kernels, factors of 2 apart).
        estimator: "unbiased" or "biased"; unbiased needs N_s, N_t >= 2 (otherwise the biased one is used).
        w_s: (N_s,) non-negative source weights, or None for equal weights.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: an unknown estimator, or features of different widths.

    Example:
        >>> x = torch.randn(64, 8)
        >>> multiple_kernel_mmd(x, x + 2.0) > multiple_kernel_mmd(x, x + 0.5)
        tensor(True)
    """
    if estimator not in ("unbiased", "biased"):
        raise ValueError(f"estimator must be 'unbiased' or 'biased', got {estimator!r}")
    if f_s.shape[-1] != f_t.shape[-1]:
        raise ValueError(f"source and target features differ in width: {f_s.shape[-1]} vs {f_t.shape[-1]}")
    n_s, n_t = len(f_s), len(f_t)
    features = torch.cat([f_s, f_t]).float()
    squared = torch.cdist(features, features).pow(2)
    n = n_s + n_t
    sigma2 = (squared.detach().sum() / max(n * (n - 1), 1)).clamp_min(1e-12)
    kernel = torch.stack([torch.exp(-squared / (m * sigma2)) for m in kernel_multipliers]).mean(0)
    k_ss, k_tt, k_st = kernel[:n_s, :n_s], kernel[n_s:, n_s:], kernel[:n_s, n_s:]

    if w_s is None or float(w_s.sum()) <= 0:  # no weights, or a batch whose examples all weigh 0: equal weights
        a = torch.full((n_s,), 1.0 / n_s, device=features.device)
    else:
        a = w_s.float() / w_s.float().sum()
    b = torch.full((n_t,), 1.0 / n_t, device=features.device)
    cross = _weighted_mean_kernel(k_st, a, b)
    if estimator == "biased" or n_s < 2 or n_t < 2:
        return _weighted_mean_kernel(k_ss, a, a) + _weighted_mean_kernel(k_tt, b, b) - 2 * cross
    # U-statistics: drop the i == j terms and renormalise by the weight mass of the i != j pairs
    source = (_weighted_mean_kernel(k_ss, a, a) - (a * a * k_ss.diagonal()).sum()) / (1 - (a * a).sum()).clamp_min(
        1e-12
    )
    target = (_weighted_mean_kernel(k_tt, b, b) - (b * b * k_tt.diagonal()).sum()) / (1 - (b * b).sum())
    return source + target - 2 * cross


class MultipleKernelMMDLoss(nn.Module):
    """`multiple_kernel_mmd` as a module (no parameters): `loss(f_s, f_t, w_s=None)`.

    Args:
        kernel_multipliers: bandwidth multipliers (see `multiple_kernel_mmd`).
        estimator: "unbiased" or "biased".

    Shape:
        f_s: (N_s, F), f_t: (N_t, F), w_s: (N_s,) or None. Returns a scalar.
    """

    def __init__(self, kernel_multipliers: Sequence[float] = DEFAULT_KERNEL_MULTIPLIERS, estimator: str = "unbiased"):
        super().__init__()
        if estimator not in ("unbiased", "biased"):
            raise ValueError(f"estimator must be 'unbiased' or 'biased', got {estimator!r}")
        self.kernel_multipliers = tuple(float(m) for m in kernel_multipliers)
        self.estimator = estimator

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, w_s: torch.Tensor | None = None) -> torch.Tensor:
        return multiple_kernel_mmd(f_s, f_t, self.kernel_multipliers, self.estimator, w_s)
