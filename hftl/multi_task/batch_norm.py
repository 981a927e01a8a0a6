"""Each task's own BatchNorm statistics.

A backbone with BatchNorm layers (EfficientNet, ResNet) keeps one running mean and variance per layer. Trained on
batches of several tasks whose inputs differ (MNIST beside upscaled 8x8 optdigits scans), they settle on a mixture
that fits none of them, and a task evaluated with it loses most of what it learnt: in `benchmarks/multi_task.py` the
optdigits task fell to 0.47-0.73 test accuracy, and recomputing the statistics on its own training images, with no
weight changed, gave 0.95-0.98. So after training the statistics are recomputed for each task on its training data
(the weights untouched: AdaBN's re-estimation, Li et al., "Revisiting Batch Normalization For Practical Domain
Adaptation", 2016, applied per task), and each task is evaluated and exported with its own. Models without
BatchNorm (BERT, ViT, Whisper: LayerNorm only) are unchanged.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

logger = logging.getLogger("hftl")

MAX_EXAMPLES = 2000  # per task, drawn at random from its training split: enough for a mean and variance per channel
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
Statistics = list[tuple[torch.Tensor, ...]]  # one (running_mean, running_var, num_batches_tracked) per layer


def batch_norm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of `module` that keep running statistics, in module order (the same order in a copy of
    the module and in a merged LoRA model: the untrained `original_module` peft keeps beside a module it trains in
    full is left out, as merging drops it)."""
    return [
        m
        for name, m in module.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and "original_module" not in name
    ]


def _snapshot(layers) -> Statistics:
    return [tuple(getattr(layer, name).detach().clone() for name in BUFFERS) for layer in layers]


def _load(layers, statistics: Statistics) -> None:
    if len(layers) != len(statistics):
        raise ValueError(f"{len(statistics)} sets of BatchNorm statistics for {len(layers)} layers")
    for layer, values in zip(layers, statistics, strict=True):
        for name, value in zip(BUFFERS, values, strict=True):
            getattr(layer, name).copy_(value)


def task_statistics(classifier: nn.Module, datasets: list, collator, batch_size: int) -> list[Statistics] | None:
    """Each task's BatchNorm statistics: a forward pass (no gradient, every other layer in eval mode) over
    `MAX_EXAMPLES` rows of its training data drawn at random (seed 0), with the running averages reset and
    cumulative (momentum None).

    Args:
        classifier: the shared classifier (`MultiTaskModel.classifier`); its weights and statistics are unchanged
            on return.
        datasets: each task's preprocessed training split, in task order; collator: the modality's (or None).

    Returns:
        One `Statistics` per task, or None when the classifier has no BatchNorm layer. Every process computes the
        same ones (the same rows, unsharded), so evaluation on several processes agrees.
    """
    layers = batch_norm_layers(classifier)
    if not layers:
        return None
    parameter, mixed, was_training = next(classifier.parameters()), _snapshot(layers), classifier.training
    momenta = [layer.momentum for layer in layers]
    found = []
    try:
        classifier.eval()
        for layer in layers:
            layer.train()
            layer.momentum = None
        for dataset in datasets:
            for layer in layers:
                layer.reset_running_stats()
            _forward(classifier, dataset, collator, batch_size, parameter)
            found.append(_snapshot(layers))
    finally:
        _load(layers, mixed)
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        classifier.train(was_training)
    logger.info("Recomputed %d BatchNorm layers' statistics for each of %d tasks.", len(layers), len(datasets))
    return found


def _forward(classifier: nn.Module, dataset, collator, batch_size: int, parameter: torch.Tensor) -> None:
    """One pass over `MAX_EXAMPLES` rows in a seeded random order (the same on every process; files sorted by class
    would otherwise give one-class batches), without a last batch smaller than `batch_size` when there is a full one
    (a one-row batch fails in BatchNorm1d, and with momentum None every batch weighs the same); float inputs take the
    parameters' device and dtype."""
    from transformers import default_data_collator

    order = np.random.default_rng(0).permutation(len(dataset))[:MAX_EXAMPLES]
    rows = Subset(dataset, order.tolist())
    # its own generator, as `hftl.features` extracts: iterating must not draw from the global random stream
    loader = DataLoader(rows, batch_size=batch_size, drop_last=len(rows) > batch_size,
                        collate_fn=collator or default_data_collator, generator=torch.Generator())  # fmt: skip
    with torch.no_grad():
        for batch in loader:
            tensors = {k: v for k, v in batch.items() if k != "labels" and torch.is_tensor(v)}
            classifier(**{k: v.to(parameter.device, parameter.dtype if v.is_floating_point() else v.dtype)
                          for k, v in tensors.items()})  # fmt: skip


@contextlib.contextmanager
def using_statistics(module: nn.Module, statistics: Statistics | None):
    """Within the block, `module`'s BatchNorm layers hold `statistics` (None: unchanged); restored after."""
    if statistics is None:
        yield module
        return
    layers = batch_norm_layers(module)
    before = _snapshot(layers)
    _load(layers, statistics)
    try:
        yield module
    finally:
        _load(layers, before)
