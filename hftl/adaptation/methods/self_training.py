"""Self-training as a registered method: the model learns from its own confident predictions on the target.

Sources: Lee, "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for Deep Neural Networks",
ICML 2013 Workshop on Challenges in Representation Learning; the confidence mask of Sohn et al., "FixMatch:
Simplifying Semi-Supervised Learning with Consistency and Confidence", NeurIPS 2020 (arXiv:2001.07685).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from hftl.adaptation.methods.base import AlignmentLoss, DomainOutputs, register_method


@dataclass
class SelfTrainingArguments:
    """Flags of `--adaptation self_training`."""

    pseudo_label_threshold: float = field(
        default=0.9,
        metadata={
            "help": "self_training: a target example is trained on its predicted class only when the predicted "
            "probability is at least this (FixMatch's tau; 0.95 there)."
        },
    )

    def __post_init__(self):
        from hftl.errors import InputError

        if not 0 < self.pseudo_label_threshold <= 1:
            raise InputError(f"--pseudo_label_threshold must be in (0, 1], got {self.pseudo_label_threshold}.")


def pseudo_label_loss(logits: torch.Tensor, threshold: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the target logits against their own argmax, on the confident examples only.

    `loss = (1 / N) sum_i 1[max_c p_ic >= threshold] * CE(logits_i, argmax_c p_ic)`, p = softmax(logits); the
    pseudo-labels and the mask are detached, and the sum is divided by the whole batch N (FixMatch's normalisation,
    so a batch with few confident examples weighs little). Computed in float32 (safe under autocast).

    Shape:
        logits: (N, C). Returns (loss: scalar, share: scalar, the fraction of the N examples kept).

    Example:
        >>> loss, share = pseudo_label_loss(torch.tensor([[4.0, 0.0], [0.0, 0.1]]))
        >>> round(share.item(), 2), round(loss.item(), 4)
        (0.5, 0.0091)
    """
    logits = logits.float()
    with torch.no_grad():
        confidence, labels = F.softmax(logits, dim=-1).max(dim=-1)
        mask = (confidence >= threshold).float()
    loss = (F.cross_entropy(logits, labels, reduction="none") * mask).sum() / max(len(logits), 1)
    return loss, mask.mean()


@register_method
class SelfTraining(AlignmentLoss):
    """`align_loss = pseudo_label_loss(target.logits, threshold)`, weighted by `--trade_off` (no schedule).

    A loss on the target logits alone: the source weights `w_s` do not enter it; with `--importance_weighting` the
    importance weights still re-weight the source classification loss (the training task applies them there). The
    share of target examples kept is logged as `pseudo_label_share`.

    Without data augmentation (FixMatch predicts the pseudo-label on a weak view and trains a strong one) the loss
    sharpens the confident predictions, like entropy minimisation restricted to them. The pseudo-labels are not
    class-balanced: a class the source model under-predicts on the target stays under-predicted (kept simple on
    purpose; `--importance_weighting` corrects the source side of a label shift).

    Shape:
        target.logits: (N_t, C); the source outputs and `w_s` are not read.

    Example:
        >>> loss = SelfTraining(0.9)
        >>> s = DomainOutputs(torch.randn(4, 8), torch.randn(4, 3))
        >>> t = DomainOutputs(torch.randn(6, 8), torch.randn(6, 3))
        >>> sorted(loss(s, t, progress=0.5))
        ['align_loss', 'pseudo_label_share']
    """

    name = "self_training"
    arguments_class = SelfTrainingArguments
    card_text = (
        "Self-training on confident target pseudo-labels (Lee, 2013; with FixMatch's confidence threshold, Sohn et "
        "al., NeurIPS 2020): target examples whose predicted probability passes the threshold are trained on their "
        "predicted class"
    )

    def __init__(self, threshold: float = 0.9):
        super().__init__()
        self.threshold = threshold

    @classmethod
    def from_arguments(cls, feature_size, num_labels, gamma, args: SelfTrainingArguments) -> SelfTraining:
        return cls(args.pseudo_label_threshold)

    def forward(self, source: DomainOutputs, target: DomainOutputs, progress: float, w_s=None):
        loss, share = pseudo_label_loss(target.logits, self.threshold)
        return {"align_loss": loss, "pseudo_label_share": share}
