"""Step 8 of an adapting run: the training task (classification + the chosen alignment method, with importance
weights when asked) and what the model card says of it."""

from __future__ import annotations

import logging

import torch

from hftl.adaptation.auto.report import selection_card_text
from hftl.adaptation.methods import get_method
from hftl.adaptation.task import AdaptationTask

logger = logging.getLogger("hftl")


def build_task(
    classifier, feature_layer: str, feature_size: int, num_labels: int, config, shift, loss_weights=None
) -> AdaptationTask:
    """The `AdaptationTask` of `--adaptation` / `--importance_weighting` around `classifier`.

    Args:
        feature_layer: name in `classifier` of the layer whose input is aligned; feature_size: its width F.
        shift: the `DomainShift` measured before training (its weights for `--importance_weighting`).
        loss_weights: (C,) `--class_weights` of the classification loss, or None.
    """
    adaptation = config.adaptation
    alignment = None
    if adaptation.adaptation != "none":
        method = get_method(adaptation.adaptation)
        alignment = method.from_arguments(feature_size, num_labels, adaptation.grl_gamma, config.method)
        size = sum(p.numel() for p in alignment.parameters())
        if size:
            logger.info(
                "%s: %s trainable parameters (training only; not saved with the model).", method.name, f"{size:,}"
            )
    weights = None
    if adaptation.importance_weighting:
        weights = torch.tensor(shift.label_shift.weights, dtype=torch.float32)
    return AdaptationTask(classifier, feature_layer, alignment, adaptation.trade_off, weights, loss_weights)


def card_text(config, shift, target_description: str, selection: dict | None = None) -> str:
    """One paragraph for the model card: method, trade-off, target data, label-shift correction ("" if none); with
    `selection` (`--adaptation auto`'s record), the candidates' table after it."""
    adaptation = config.adaptation
    if not adaptation.adapts:
        return selection_card_text(selection).lstrip()
    if adaptation.adaptation == "none":
        text = "Source classes re-weighted to the target class prior (no alignment loss)"
    else:
        text = f"{get_method(adaptation.adaptation).card_text}; trade-off {adaptation.trade_off}"
    text += f". Target data: {target_description}."
    if adaptation.importance_weighting and shift is not None:
        prior = ", ".join(f"{p:.3f}" for p in shift.label_shift.target_prior)
        text += (
            f" Source classes re-weighted to the target class prior estimated without target labels "
            f"({shift.label_shift.estimator}: {prior})."
        )
    text += " The alignment loss and any domain discriminator are training-time parts, not in this model."
    return text + selection_card_text(selection)
