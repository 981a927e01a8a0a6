"""What the Trainer does against class imbalance: a class-weighted cross-entropy and a class-balanced sampler.

The weights themselves come from `hftl.imbalance` (`--class_weights`); both pieces are plain torch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import WeightedRandomSampler


def class_weighted_loss(model, inputs: dict, weights: torch.Tensor, label_smoothing: float = 0.0):
    """(loss, outputs): run `model` without its labels and compute a class-weighted cross-entropy from its logits.

    The loss is torch's `cross_entropy(logits, labels, weight=weights)`: sum_i w_{y_i} l_i / sum_i w_{y_i} over the
    batch (a weighted mean, so its scale does not depend on the weights' scale), with `label_smoothing` as torch
    applies it.

    Shape:
        inputs["labels"]: (N,) class ids; the model's `logits`: (N, C); weights: (C,). The loss is a scalar.

    Example:
        >>> logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
        >>> model = lambda **_: {"logits": logits}
        >>> round(class_weighted_loss(model, {"labels": labels}, torch.tensor([1.0, 3.0]))[0].item(), 4)
        0.2667
    """
    labels = inputs["labels"]
    outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    loss = F.cross_entropy(
        logits.float(), labels, weight=weights.to(logits.device, torch.float32), label_smoothing=label_smoothing
    )
    return loss, outputs


class BalancedSampler(WeightedRandomSampler):
    """Draws `len(labels)` training indices with replacement, each class with the same probability (example i with
    weight 1 / count(label_i)); each epoch's draw comes from `seed + epoch`.

    A draw that depends only on (seed, epoch) makes a resumed run skip exactly the batches it already trained on, and
    gives every process the same order, which accelerate then splits into per-process batches.

    Args:
        labels: (N,) class ids of the training examples.
        seed: `--data_seed`, else `--seed`.

    Example:
        >>> labels = [0] * 90 + [1] * 10
        >>> np.bincount([labels[i] for i in BalancedSampler(labels, seed=0)]).tolist()
        [53, 47]
    """

    def __init__(self, labels, seed: int):
        labels = np.asarray(labels, dtype=np.int64)
        counts = np.bincount(labels)
        super().__init__(torch.as_tensor(1.0 / counts[labels], dtype=torch.double), len(labels), replacement=True)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()
