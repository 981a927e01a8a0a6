"""The training task of domain adaptation: classification on the source plus an alignment loss (timm's `task` idea).

`AdaptationTask` wraps the classifier and returns its loss with the named parts:
`{"loss", "logits", "cls_loss", "align_loss", ...}`, `loss = cls_loss + trade_off * align_loss`. The Trainer trains,
checkpoints and resumes the task (so the domain discriminator lives in the checkpoints); the saved or pushed model
is the classifier alone, a plain Hugging Face model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from hftl.adaptation.methods import AlignmentLoss, DomainOutputs
from hftl.features import capture_inputs
from hftl.wrapping import ClassifierWrapper

TARGET_PREFIX = "target_"


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean cross-entropy, each example weighted by `weights[label]` (IWDAN's source weighting); finite when every
    example of the batch weighs 0.

    Shape:
        logits: (N, C), labels: (N,), weights: (C,) or None. Returns a scalar.
    """
    if weights is None:
        return F.cross_entropy(logits.float(), labels)
    w = weights[labels]
    return (F.cross_entropy(logits.float(), labels, reduction="none") * w).sum() / w.sum().clamp_min(1e-6)


class AdaptationTask(ClassifierWrapper):
    """A classifier trained with an optional alignment loss and optional class importance weights.

    Each training batch holds source inputs (with `labels`) and target inputs (keys prefixed `target_`, no labels).
    The classifier runs on both; the inputs of its classification layer (`feature_layer`) are the features the
    alignment loss compares. With `class_weights` (w_y = p_t(y) / p_s(y), label-shift correction), source examples
    are weighted by their class's weight in both terms. In evaluation (no target inputs) it is the classifier with
    its plain cross-entropy. With `loss_weights` (`--class_weights`, against class imbalance) the classification loss
    weights each source example by `loss_weights[y]` too (times w_y under importance weighting); the alignment loss
    keeps the importance weights alone.

    `training_progress` (optimizer steps done / total) is set before each step by `AdaptationCallback` from the
    Trainer's state, so a resumed run continues the schedule.

    Args:
        classifier: a `...ForSequence/Image/AudioClassification` model (or a peft model, or `CachedFeatureHead`)
            returning `logits` (N, C).
        feature_layer: name (in `classifier`) of the classification layer, whose input is aligned.
        alignment: the method's loss, or None (importance-weighted classification alone).
        trade_off: weight of `align_loss`.
        class_weights: (C,) importance weights, or None.
        loss_weights: (C,) class weights of the classification loss alone, or None.
    """

    def __init__(
        self,
        classifier: nn.Module,
        feature_layer: str,
        alignment: AlignmentLoss | None,
        trade_off: float = 1.0,
        class_weights: torch.Tensor | None = None,
        loss_weights: torch.Tensor | None = None,
    ):
        super().__init__()
        self.classifier = classifier
        self.feature_layer = feature_layer
        self.alignment = alignment
        self.trade_off = trade_off
        self.training_progress = 0.0
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights)
        loss_weights = None if loss_weights is None else torch.as_tensor(loss_weights, dtype=torch.float32)
        self.register_buffer("loss_weights", loss_weights, persistent=False)  # from the flags and data: not saved

    def _classify(self, inputs: dict[str, torch.Tensor]) -> DomainOutputs:
        with capture_inputs(self.classifier.get_submodule(self.feature_layer)) as captured:
            logits = self.classifier(**inputs)["logits"]
        return DomainOutputs(captured[-1], logits)

    def _classification_weights(self, importance: torch.Tensor | None) -> torch.Tensor | None:
        """(C,) weights of the classification loss in training: importance x class weights (either may be None)."""
        if not self.training or self.loss_weights is None:
            return importance
        return self.loss_weights if importance is None else importance * self.loss_weights

    def forward(self, labels: torch.Tensor | None = None, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        source_inputs = {k: v for k, v in inputs.items() if not k.startswith(TARGET_PREFIX)}
        target_inputs = {k[len(TARGET_PREFIX) :]: v for k, v in inputs.items() if k.startswith(TARGET_PREFIX)}
        source = self._classify(source_inputs)
        output = {"logits": source.logits}
        if labels is None:
            return output
        weights = self.class_weights if self.training else None  # evaluation: the plain cross-entropy
        output["cls_loss"] = weighted_cross_entropy(source.logits, labels, self._classification_weights(weights))
        output["loss"] = output["cls_loss"]
        if self.alignment is not None and target_inputs and self.training:
            target = self._classify(target_inputs)
            w_s = None if weights is None else weights[labels]
            parts = self.alignment(source, target, self.training_progress, w_s)
            output["loss"] = output["cls_loss"] + self.trade_off * parts["align_loss"]
            output.update(parts)
        return output
