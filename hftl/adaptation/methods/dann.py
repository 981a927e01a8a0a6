"""DANN as a registered method: a domain discriminator behind a gradient reversal layer.

Source: Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016 (arXiv:1505.07818).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hftl.adaptation.dann import DomainAdversarialLoss, DomainDiscriminator
from hftl.adaptation.grl import grl_lambda
from hftl.adaptation.methods.base import AlignmentLoss, DomainOutputs, register_method


@dataclass
class DANNArguments:
    """Flags of `--adaptation dann`."""

    discriminator_hidden_size: int = field(default=1024, metadata={"help": "dann: width of the discriminator MLP."})
    discriminator_dropout: float = field(default=0.5, metadata={"help": "dann: dropout in the discriminator."})

    def __post_init__(self):
        from hftl.errors import InputError

        if self.discriminator_hidden_size < 1:
            raise InputError(f"--discriminator_hidden_size must be positive, got {self.discriminator_hidden_size}.")
        if not 0 <= self.discriminator_dropout < 1:
            raise InputError(f"--discriminator_dropout must be in [0, 1), got {self.discriminator_dropout}.")


@register_method
class DANN(AlignmentLoss):
    """`align_loss` = the discriminator's binary cross-entropy on reversed-gradient features (`DomainAdversarialLoss`),
    the GRL coefficient following `grl_lambda(progress, gamma)`.

    Shape:
        source.features: (N_s, F), target.features: (N_t, F), w_s: (N_s,) or None.

    Example:
        >>> loss = DANN(8, hidden_size=16)
        >>> s, t = DomainOutputs(torch.randn(4, 8), torch.randn(4, 2)), DomainOutputs(torch.randn(6, 8), None)
        >>> sorted(loss(s, t, progress=0.5))
        ['align_loss', 'grl_lambda']
    """

    name = "dann"
    arguments_class = DANNArguments
    card_text = (
        "Domain-adversarial training (DANN; Ganin et al., JMLR 2016): a domain discriminator behind a gradient "
        "reversal layer, on the features entering the classification layer"
    )
    resume_keys = ("discriminator_hidden_size",)

    def __init__(self, feature_size: int, hidden_size: int = 1024, dropout: float = 0.5, gamma: float = 10.0):
        super().__init__()
        self.adversarial = DomainAdversarialLoss(DomainDiscriminator(feature_size, hidden_size, dropout))
        self.gamma = gamma

    @classmethod
    def from_arguments(cls, feature_size, num_labels, gamma, args: DANNArguments) -> DANN:
        return cls(feature_size, args.discriminator_hidden_size, args.discriminator_dropout, gamma)

    def forward(self, source: DomainOutputs, target: DomainOutputs, progress: float, w_s=None):
        coefficient = grl_lambda(progress, self.gamma)
        loss = self.adversarial(source.features, target.features, coefficient, w_s)
        return {"align_loss": loss, "grl_lambda": torch.tensor(coefficient)}
