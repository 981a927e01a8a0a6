"""Class imbalance: the class weights of `--class_weights` and the warning about strongly imbalanced training labels.

Both read the training split's class counts (`LabelInfo.counts["train"]`, after a validation split was carved and
`--max_train_samples` applied), so they are known, and checked, before any model loads. The weighted loss and the
balanced sampler that use them are in `hftl.trainer.balance`.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight

from hftl.errors import InputError
from hftl.training_flags import TrainingControlArguments, parse_class_weights

logger = logging.getLogger("hftl")

STRONG_IMBALANCE = 10.0  # largest / smallest training class count from which the log warns


def balanced_class_weights(counts) -> np.ndarray:
    """scikit-learn's `compute_class_weight("balanced")` from class counts: w_c = n_samples / (n_classes * count_c).

    The mean weight over the training examples is then 1, and each class's weights sum to n_samples / n_classes.

    Shape:
        counts: (C,) examples per class id, each > 0. Returns (C,) float64.

    Example:
        >>> balanced_class_weights([1000, 100]).round(3).tolist()
        [0.55, 5.5]
    """
    counts = np.asarray(counts, dtype=np.int64)
    classes = np.arange(len(counts))
    return compute_class_weight("balanced", classes=classes, y=np.repeat(classes, counts))


def class_weights(control: TrainingControlArguments, names: list[str], counts) -> np.ndarray | None:
    """The per-class loss weights of `--class_weights` (None when unset), in label-id order.

    Args:
        names: class names (id = index); counts: (C,) training examples per class id.

    Raises:
        InputError: a list with another number of weights than classes, or a pair naming no class.
    """
    if control.class_weights is None:
        return None
    spec = parse_class_weights(control.class_weights)
    if spec == "balanced":
        return balanced_class_weights(counts)
    if isinstance(spec, list):
        if len(spec) != len(names):
            raise InputError(
                f"--class_weights {control.class_weights}: {len(spec)} weight(s) for {len(names)} classes. Give one "
                f"per class in label order ({', '.join(names[:20])}), 'name=weight' pairs, or 'balanced'."
            )
        return np.asarray(spec, dtype=np.float64)
    unknown = sorted(set(spec) - set(names))
    if unknown:
        raise InputError(
            f"--class_weights {control.class_weights}: no class named {unknown[:10]}; the classes are "
            f"{names[:20]}{' ...' if len(names) > 20 else ''}."
        )
    return np.asarray([spec.get(name, 1.0) for name in names], dtype=np.float64)


def check_class_balance(config, labels) -> None:
    """Before any model loads, in a training run: check `--class_weights` against the classes, log the weights, and
    warn once when the training labels are strongly imbalanced (largest / smallest class count >=
    `STRONG_IMBALANCE`) and neither `--class_weights` nor `--balanced_sampling` is set.

    Args:
        config: the run's `RunConfig`; labels: the data's `LabelInfo` (names, training counts).

    Raises:
        InputError: see `class_weights`.
    """
    if not config.training.do_train or "train" not in labels.counts:
        return
    control, names, counts = config.control, labels.names, np.asarray(labels.counts["train"])
    weights = class_weights(control, names, counts)
    shown = ", ".join(f"{name} {int(c)}" for name, c in list(zip(names, counts, strict=True))[:20])
    if weights is not None:
        pairs = ", ".join(f"{name} {w:.4g}" for name, w in list(zip(names, weights, strict=True))[:20])
        logger.info("Class weights in the training loss (--class_weights %s): %s.", control.class_weights, pairs)
    if control.balanced_sampling:
        logger.info("Balanced sampling: each class drawn equally often (training counts: %s).", shown)
        if weights is not None:
            logger.warning("--balanced_sampling with --class_weights corrects the imbalance twice.")
    if len(counts) < 2 or counts.min() == 0:
        return
    ratio = counts.max() / counts.min()
    if ratio >= STRONG_IMBALANCE and weights is None and not control.balanced_sampling:
        logger.warning(
            "The training labels are strongly imbalanced: %s examples (largest / smallest class %.1f : 1). The "
            "model may learn to ignore the small classes; consider --class_weights balanced (or --balanced_sampling "
            "true), and read balanced_accuracy and the per-class recall.",
            shown, ratio,
        )  # fmt: skip


def loss_weights(run) -> torch.Tensor | None:
    """(C,) float32 `--class_weights` of a run's classification loss, from its training counts (None when unset)."""
    labels = run.data.labels
    weights = class_weights(run.config.control, labels.names, labels.counts["train"])
    return None if weights is None else torch.as_tensor(weights, dtype=torch.float32)


def balanced_labels(run, train) -> list[int] | None:
    """The class ids of `train`'s examples (the source training split, as model inputs or cached features), in
    order, when `--balanced_sampling` is on; else None."""
    if not run.config.control.balanced_sampling or train is None:
        return None
    labels = run.data.source.splits["train"]["labels"]  # the checked split: no preprocessing to run
    if len(labels) != len(train):
        raise RuntimeError(f"{len(train)} training inputs for {len(labels)} training examples")
    return labels
