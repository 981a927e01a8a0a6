"""Per-label decision thresholds of a multi-label classifier: tuned on the validation split after training, stored in
the model's config and folded into its classification layer's bias.

Label k is predicted when its probability p_k = sigmoid(z_k) is above its threshold t_k, i.e. when
z_k - logit(t_k) > 0. Subtracting logit(t_k) from the bias b_k of the layer that computes z_k (b_k -= logit(t_k))
makes the saved model a plain classifier whose sigmoid score is above 0.5 exactly when the label passes its
threshold, so that `pipeline(task, model=path)` needs no custom code:

    [p["label"] for p in classifier(x, top_k=None) if p["score"] > 0.5]

The pipeline's score is then the threshold-adjusted score sigmoid(z_k - logit(t_k)), 0.5 at the threshold; the
model's probability is sigmoid(logit(score) + logit(t_k)). The thresholds (probabilities) are stored in the config as
`hftl_thresholds` (label name -> t_k); when hftl loads such a model again, it adds logit(t_k) back first.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from sklearn.metrics import precision_recall_curve
from torch import nn

from hftl.metrics import logits_of

logger = logging.getLogger("hftl")

THRESHOLDS = "hftl_thresholds"  # the model config's attribute: label name -> threshold on the probability
# Below this many validation examples, a label's F1-best threshold is noise (on SpamAssassin header labels, 7 and 2
# examples gave thresholds of 0.04 and 0.02 that flagged 5x and 24x too many test emails): it stays 0.5.
MIN_POSITIVES = 10


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def best_cut(scores: np.ndarray, positives: np.ndarray) -> float:
    """The logit cut c that maximises the F1 of the decisions `scores > c` (0.0 when there is no positive example).

    Candidates are the midpoints between consecutive distinct scores (and one unit below the lowest); among equally
    good ones, the cut closest to 0 (probability 0.5) wins.

    Args:
        scores: (N,) logits of one label; positives: (N,) its 0 / 1 labels.

    Example:
        >>> best_cut(np.array([-2.0, -1.0, 1.0, 3.0]), np.array([0, 1, 1, 1]))
        -1.5
    """
    positives = np.asarray(positives).astype(int)
    if positives.sum() == 0:
        return 0.0
    precision, recall, thresholds = precision_recall_curve(positives, scores)  # positive when score >= threshold
    precision, recall = precision[:-1], recall[:-1]
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros_like(precision), where=precision + recall > 0
    )
    distinct = np.unique(scores)
    index = np.searchsorted(distinct, thresholds)
    below = np.where(index > 0, distinct[np.maximum(index - 1, 0)], thresholds - 1.0)
    cuts = (thresholds + below) / 2  # `score > cut` keeps exactly the scores >= threshold
    best = np.flatnonzero(np.isclose(f1, f1.max()))
    return float(cuts[best[np.argmin(np.abs(cuts[best]))]])


def best_cuts(logits: np.ndarray, labels: np.ndarray, min_positives: int = MIN_POSITIVES) -> np.ndarray:
    """`best_cut` of each label with at least `min_positives` positive examples; 0.0 (probability 0.5) for the
    others. Shape: logits, labels (N, C) -> (C,)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels) > 0.5
    return np.array(
        [
            best_cut(logits[:, k], labels[:, k]) if labels[:, k].sum() >= min_positives else 0.0
            for k in range(logits.shape[1])
        ]
    )


def classification_layer(model: nn.Module, num_labels: int) -> nn.Linear:
    """The layer that computes the logits (`hftl.features.feature_layer`; in a peft model, its trained copy)."""
    from hftl.features import feature_layer

    return feature_layer(model, num_labels)[1]


def fold(layer: nn.Linear, cuts: np.ndarray) -> None:
    """b_k -= cut_k: the layer's logits become z_k - cut_k (see the module docstring). Shape: cuts (C,)."""
    with torch.no_grad():
        layer.bias.sub_(torch.as_tensor(cuts, dtype=layer.bias.dtype, device=layer.bias.device))


def _validation_cuts(trained, run, names: list[str]) -> np.ndarray:
    """Each label's F1-best cut on the validation logits (zeros when tuning is off or there is no validation)."""
    dataset = trained.evaluation.get("eval")
    if not run.config.problem.tune_thresholds or dataset is None:
        why = "--tune_thresholds false" if dataset is not None else "no validation split predicted (--do_eval false)"
        logger.info("Multi-label thresholds: 0.5 for every label (%s).", why)
        return np.zeros(len(names))
    output = trained.trainer.predict(dataset, metric_key_prefix="thresholds")
    logits = logits_of(output.predictions)
    cuts = best_cuts(logits, output.label_ids)
    counts = (np.asarray(output.label_ids) > 0.5).sum(0)
    untuned = [name for name, count in zip(names, counts, strict=True) if count < MIN_POSITIVES]
    if untuned:
        few = "Label(s) %s have fewer than %d validation examples: their threshold stays 0.5."
        logger.warning(few, untuned[:20], MIN_POSITIVES)
    return cuts


def set_thresholds(model: nn.Module, trained, run) -> None:
    """A multi-label run's post-training step: tune each label's threshold on the validation split (maximising its
    F1; 0.5 without tuning, or for a label with fewer than `MIN_POSITIVES` validation examples), fold them into
    `model`'s classification layer and store them in its config (see the module docstring). Does nothing for
    single-label runs.

    Args:
        model: the trained model (as `train_stages` left it); trained: its `Trained`; run: the `RunContext`.

    Raises:
        InputError: the classification layer has no bias to fold the thresholds into.
    """
    if not run.config.problem.multi_label:
        return
    names = run.data.labels.names
    cuts = _validation_cuts(trained, run, names)
    layer = classification_layer(model, len(names))
    if layer.bias is None:
        from hftl.errors import InputError

        raise InputError(
            f"The classification layer of {type(model).__name__} has no bias, so the per-label thresholds cannot be "
            f"folded into it. Pass --tune_thresholds false (every threshold 0.5)."
        )
    fold(layer, cuts)
    thresholds = {name: float(sigmoid(cut)) for name, cut in zip(names, cuts, strict=True)}
    setattr(run.loaded.model.config, THRESHOLDS, thresholds)
    shown = ", ".join(f"{name}: {t:.3f}" for name, t in list(thresholds.items())[:20])
    logger.info("Multi-label thresholds (folded into the classifier's bias): %s", shown)


def unfold_saved_thresholds(model: nn.Module, names: list[str], new_parameters: list[str]) -> None:
    """When `model` was saved by a multi-label hftl run (its config has `hftl_thresholds`), add logit(t_k) back to
    its classification layer's bias, so that training and tuning start from its probabilities; the attribute is then
    removed (a re-initialised head, or other labels, only remove it)."""
    saved = getattr(model.config, THRESHOLDS, None)
    if saved is None:
        return
    delattr(model.config, THRESHOLDS)
    from hftl.features import feature_layer

    try:
        name, layer = feature_layer(model, len(names))
    except ValueError:
        return
    if list(saved) != list(names) or layer.bias is None or f"{name}.bias" in new_parameters:
        return
    probabilities = np.clip(np.array([saved[label] for label in names], dtype=np.float64), 1e-12, 1 - 1e-12)
    fold(layer, -np.log(probabilities / (1.0 - probabilities)))
    logger.info("The model's saved multi-label thresholds were unfolded from its classifier's bias.")
