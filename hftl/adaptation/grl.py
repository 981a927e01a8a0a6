"""Gradient reversal layer and the DANN schedule of its coefficient.

Source: Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015 (arXiv:1409.7495);
Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016 (arXiv:1505.07818).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _GradientReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return features.view_as(features)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return -ctx.coefficient * grad_output, None


def gradient_reverse(features: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by `-coefficient` in the backward pass."""
    return _GradientReverse.apply(features, float(coefficient))


class GradientReversalLayer(nn.Module):
    """Gradient reversal layer (GRL): forward `R(x) = x`, backward `dR/dx = -lambda * I`.

    The coefficient is an argument of `forward`, not an attribute, so the layer holds no state: it pickles and
    runs under multi-process data parallelism unchanged, and the schedule that sets lambda lives with the
    training progress (see `grl_lambda`).

    Shape:
        features: (N, F) (any shape); returns the same tensor, shape (N, F).

    Example:
        >>> grl = GradientReversalLayer()
        >>> x = torch.ones(2, 3, requires_grad=True)
        >>> grl(x, 0.5).sum().backward(); x.grad[0, 0].item()
        -0.5
    """

    def forward(self, features: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
        return gradient_reverse(features, coefficient)


def grl_lambda(progress: float, gamma: float = 10.0, max_value: float = 1.0) -> float:
    """The DANN schedule `lambda_p = max_value * (2 / (1 + exp(-gamma * p)) - 1)` (Ganin et al. 2016, sec. 5.2.2).

    Args:
        progress: p, the fraction of training done (optimizer steps done / total steps), clipped to [0, 1].
        gamma: how fast lambda rises (10 in the paper).
        max_value: lambda at p = 1 (up to exp(-gamma)).

    Returns:
        lambda_p: 0 at p = 0, about 0.987 * max_value at p = 0.5 with gamma 10, about max_value at p = 1.
    """
    p = min(max(float(progress), 0.0), 1.0)
    return max_value * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)
