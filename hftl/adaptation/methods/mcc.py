"""Minimum Class Confusion (MCC) as a registered method: make the target predictions confuse fewer classes.

Source: Jin et al., "Minimum Class Confusion for Versatile Domain Adaptation", ECCV 2020 (arXiv:1912.03699);
reference code: tllib's `self_training/mcc.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from hftl.adaptation.methods.base import AlignmentLoss, DomainOutputs, register_method


@dataclass
class MCCArguments:
    """Flags of `--adaptation mcc`."""

    mcc_temperature: float = field(
        default=2.5,
        metadata={"help": "mcc: temperature T of the target probabilities softmax(logits / T) (2.5 as in tllib)."},
    )

    def __post_init__(self):
        from hftl.errors import InputError

        if not self.mcc_temperature > 0:
            raise InputError(f"--mcc_temperature must be > 0, got {self.mcc_temperature}.")


def class_confusion_loss(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """The MCC loss of a batch of target logits (Jin et al. 2020, eqs. 1-7), in float32 (safe under autocast).

    - probabilities `p = softmax(logits / T)` (N, C);
    - example weights `w_i = N (1 + exp(-H(p_i))) / sum_j (1 + exp(-H(p_j)))`, H the entropy (detached): confident
      examples count more;
    - class correlation `M = p^T diag(w) p` (C, C), then each row divided by its sum (M is symmetric, so this is the
      paper's column normalisation transposed, and the loss is the same);
    - loss `(sum(M) - trace(M)) / C`: the mass between different classes, 0 when every example is one-hot. A class
      whose probability underflows to 0 on every example of the batch has a zero row, not 0 / 0 (tllib's code gives
      NaN there: a confident head on 5 classes did, after 20 epochs on the speech pair).

    Shape:
        logits: (N, C). Returns a scalar in [0, 1).

    Example:
        >>> class_confusion_loss(torch.tensor([[50.0, 0.0], [0.0, 50.0]])).item() < 1e-6
        True
        >>> class_confusion_loss(torch.zeros(4, 2)).item()
        0.5
    """
    with torch.autocast(logits.device.type, enabled=False):
        num_labels = logits.shape[1]
        p = F.softmax(logits.float() / temperature, dim=-1)
        entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(-1).detach()
        weights = 1.0 + torch.exp(-entropy)
        weights = len(p) * weights / weights.sum()
        confusion = (p * weights[:, None]).T @ p
        # a class no example predicts (its probabilities underflow to 0) has a zero row: it confuses nothing
        confusion = confusion / confusion.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
        return (confusion.sum() - confusion.trace()) / num_labels


@register_method
class MCC(AlignmentLoss):
    """`align_loss = class_confusion_loss(target.logits, T)`, weighted by `--trade_off` (the paper's mu; no schedule,
    as in the paper and tllib).

    A loss on the target logits alone: it aligns no features, and the source weights `w_s` do not enter it. With
    `--importance_weighting` the importance weights still re-weight the source classification loss (the training
    task applies them there).

    Shape:
        target.logits: (N_t, C); the source outputs and `w_s` are not read.

    Example:
        >>> loss = MCC()
        >>> s = DomainOutputs(torch.randn(4, 8), torch.randn(4, 3))
        >>> t = DomainOutputs(torch.randn(6, 8), torch.randn(6, 3))
        >>> sorted(loss(s, t, progress=0.5))
        ['align_loss']
    """

    name = "mcc"
    arguments_class = MCCArguments
    card_text = (
        "Minimum Class Confusion (MCC; Jin et al., ECCV 2020): the confusion between classes in the "
        "temperature-scaled target predictions is minimised"
    )

    def __init__(self, temperature: float = 2.5):
        super().__init__()
        self.temperature = temperature

    @classmethod
    def from_arguments(cls, feature_size, num_labels, gamma, args: MCCArguments) -> MCC:
        return cls(args.mcc_temperature)

    def forward(self, source: DomainOutputs, target: DomainOutputs, progress: float, w_s=None):
        return {"align_loss": class_confusion_loss(target.logits, self.temperature)}
