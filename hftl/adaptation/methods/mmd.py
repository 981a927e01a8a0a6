"""MMD as a registered method: multi-kernel MMD^2 between source and target features, ramped by lambda_p.

Source: Long et al., "Learning Transferable Features with Deep Adaptation Networks", ICML 2015 (arXiv:1502.02791).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from hftl.adaptation.grl import grl_lambda
from hftl.adaptation.methods.base import AlignmentLoss, DomainOutputs, register_method
from hftl.adaptation.mmd import DEFAULT_KERNEL_MULTIPLIERS, MultipleKernelMMDLoss


@dataclass
class MMDArguments:
    """Flags of `--adaptation mmd`."""

    mmd_kernel_multipliers: list[float] = field(
        default_factory=lambda: list(DEFAULT_KERNEL_MULTIPLIERS),
        metadata={"help": "mmd: Gaussian bandwidths, as multiples of the batch's mean squared pairwise distance."},
    )
    mmd_estimator: Literal["unbiased", "biased"] = field(default="unbiased", metadata={"help": "mmd: MMD^2 estimator."})

    def __post_init__(self):
        from hftl.errors import InputError

        if not self.mmd_kernel_multipliers or any(m <= 0 for m in self.mmd_kernel_multipliers):
            raise InputError(f"--mmd_kernel_multipliers must be positive numbers, got {self.mmd_kernel_multipliers}.")


@register_method
class MMD(AlignmentLoss):
    """`align_loss = lambda_p * MK-MMD^2(f_s, f_t)`: the ramp lambda_p = `grl_lambda(progress, gamma)` lets alignment
    start once the features carry class information.

    Shape:
        source.features: (N_s, F), target.features: (N_t, F), w_s: (N_s,) or None.

    Example:
        >>> loss = MMD()
        >>> s, t = DomainOutputs(torch.randn(8, 4), None), DomainOutputs(torch.randn(8, 4) + 2, None)
        >>> loss(s, t, progress=1.0)["mmd"] > 0
        tensor(True)
    """

    name = "mmd"
    arguments_class = MMDArguments
    card_text = (
        "Multi-kernel MMD (DAN; Long et al., ICML 2015) between source and target features entering the "
        "classification layer"
    )

    def __init__(self, kernel_multipliers=DEFAULT_KERNEL_MULTIPLIERS, estimator: str = "unbiased", gamma: float = 10.0):
        super().__init__()
        self.mmd = MultipleKernelMMDLoss(kernel_multipliers, estimator)
        self.gamma = gamma

    @classmethod
    def from_arguments(cls, feature_size, num_labels, gamma, args: MMDArguments) -> MMD:
        return cls(tuple(args.mmd_kernel_multipliers), args.mmd_estimator, gamma)

    def forward(self, source: DomainOutputs, target: DomainOutputs, progress: float, w_s=None):
        coefficient = grl_lambda(progress, self.gamma)
        mmd = self.mmd(source.features, target.features, w_s)
        return {"align_loss": coefficient * mmd, "mmd": mmd.detach(), "grl_lambda": torch.tensor(coefficient)}
