"""Domain-adversarial training: a domain discriminator behind a gradient reversal layer.

Source: Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016 (arXiv:1505.07818); the
importance-weighted form is IWDAN, Tachet des Combes et al., "Domain Adaptation with Conditional Distribution
Matching and Generalized Label Shift", NeurIPS 2020 (arXiv:2003.04475).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from hftl.adaptation.grl import GradientReversalLayer


class DomainDiscriminator(nn.Sequential):
    """An MLP that tells source features from target features; it returns one logit per example.

    It ends in a logit (no sigmoid), so its loss is `binary_cross_entropy_with_logits`, which is safe under
    bf16 / fp16 autocast (a sigmoid followed by BCE is not).

    Args:
        in_features: F, the size of the features entering the classification head.
        hidden_size: width of the two hidden layers (1024 in the DANN paper's larger setups).
        dropout: dropout after each hidden layer.

    Shape:
        features: (N, F); returns logits (N,), positive for "source".
    """

    def __init__(self, in_features: int, hidden_size: int = 1024, dropout: float = 0.5):
        super().__init__(
            nn.Linear(in_features, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return super().forward(features).squeeze(-1)


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """The mean of `values` (N,), weighted by `weights` (N,) if given; 0, not NaN, when every weight is 0."""
    if weights is None:
        return values.mean()
    weights = weights.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1e-6)


class DomainAdversarialLoss(nn.Module):
    """L_domain of DANN: binary cross-entropy of the discriminator on reversed-gradient features.

    `loss = 0.5 * (BCE(D(R(f_s)), 1) + BCE(D(R(f_t)), 0))`, with R the gradient reversal layer at coefficient
    lambda. Minimising it trains the discriminator to tell the domains apart while the reversed gradient trains the
    feature extractor to make them indistinguishable. Source terms may carry weights `w_s` (e.g. class importance
    weights p_t(y) / p_s(y), IWDAN); the source term is then their weighted mean. Target terms may carry weights `w_t`
    likewise (CDAN's entropy conditioning).

    Args:
        discriminator: maps (N, F) features to (N,) logits.

    Shape:
        f_s: (N_s, F), f_t: (N_t, F) (N_s and N_t may differ), w_s: (N_s,) or None, w_t: (N_t,) or None. Returns a
        scalar.

    Example:
        >>> loss = DomainAdversarialLoss(DomainDiscriminator(8, hidden_size=16))
        >>> loss(torch.randn(4, 8), torch.randn(6, 8), coefficient=1.0).shape
        torch.Size([])
    """

    def __init__(self, discriminator: nn.Module):
        super().__init__()
        self.discriminator = discriminator
        self.grl = GradientReversalLayer()

    def forward(
        self,
        f_s: torch.Tensor,
        f_t: torch.Tensor,
        coefficient: float = 1.0,
        w_s: torch.Tensor | None = None,
        w_t: torch.Tensor | None = None,
    ) -> torch.Tensor:
        features = self.grl(torch.cat([f_s, f_t]), coefficient)
        logits = self.discriminator(features).float()
        logits_s, logits_t = logits[: len(f_s)], logits[len(f_s) :]
        loss_s = F.binary_cross_entropy_with_logits(logits_s, torch.ones_like(logits_s), reduction="none")
        loss_t = F.binary_cross_entropy_with_logits(logits_t, torch.zeros_like(logits_t), reduction="none")
        return 0.5 * (_weighted_mean(loss_s, w_s) + _weighted_mean(loss_t, w_t))

    @torch.no_grad()
    def domain_accuracy(self, f_s: torch.Tensor, f_t: torch.Tensor) -> float:
        """Share of source and target examples the discriminator assigns to their own domain."""
        logits = self.discriminator(torch.cat([f_s, f_t])).float()
        truth = torch.cat([torch.ones(len(f_s)), torch.zeros(len(f_t))]).to(logits.device)
        return ((logits > 0).float() == truth).float().mean().item()
