"""Deep CORAL: match the second-order statistics (covariances) of source and target features.

Source: Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation", ECCV 2016 Workshops
(arXiv:1607.01719).
"""

from __future__ import annotations

import torch

from hftl.adaptation.methods.base import AlignmentLoss, DomainOutputs, register_method


def covariance(features: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The unbiased (weighted) covariance matrix of `features`, in float32.

    `C = sum_i a_i (x_i - mu)(x_i - mu)^T / (1 - sum_i a_i^2)`, `a` the weights normalised to sum 1 (equal weights:
    the usual 1 / (N - 1) estimate), `mu = sum_i a_i x_i`.

    Shape:
        features: (N, F), N >= 2; weights: (N,) non-negative or None. Returns (F, F).
    """
    x = features.float()
    if weights is None or float(weights.sum()) <= 0:
        a = torch.full((len(x),), 1.0 / len(x), device=x.device)
    else:
        a = weights.float() / weights.float().sum()
    centred = x - a @ x
    return (centred * a[:, None]).T @ centred / (1 - (a * a).sum()).clamp_min(1e-12)


def coral_loss(f_s: torch.Tensor, f_t: torch.Tensor, w_s: torch.Tensor | None = None) -> torch.Tensor:
    """The CORAL loss `||C_s - C_t||_F^2 / (4 F^2)` (Sun & Saenko 2016, eq. 1), in float32 (safe under autocast).

    Shape:
        f_s: (N_s, F), f_t: (N_t, F), N_s, N_t >= 2 (they may differ); w_s: (N_s,) or None. Returns a scalar.

    Example:
        >>> x = torch.randn(64, 4)
        >>> coral_loss(x, 3 * x) > coral_loss(x, 1.5 * x)
        tensor(True)
    """
    width = f_s.shape[1]
    with torch.autocast(f_s.device.type, enabled=False):  # float32 matrix products whatever the autocast dtype
        return (covariance(f_s, w_s) - covariance(f_t)).pow(2).sum() / (4 * width * width)


@register_method
class DeepCORAL(AlignmentLoss):
    """`align_loss = coral_loss(f_s, f_t)`, weighted by `--trade_off` (the paper's lambda; no schedule, as in the
    paper). It has no parameters and no flags of its own.

    Shape:
        source.features: (N_s, F), target.features: (N_t, F), w_s: (N_s,) or None.
    """

    name = "coral"
    card_text = (
        "Deep CORAL (Sun and Saenko, ECCV 2016 Workshops): the covariances of source and target features entering "
        "the classification layer are matched"
    )

    @classmethod
    def from_arguments(cls, feature_size, num_labels, gamma, args) -> DeepCORAL:
        return cls()

    def forward(self, source: DomainOutputs, target: DomainOutputs, progress: float, w_s=None):
        return {"align_loss": coral_loss(source.features, target.features, w_s)}
