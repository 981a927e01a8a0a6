"""Source examples paired with target examples, batched apart, and the callback that feeds training progress.

A pairing that depends only on the example's index and the epoch makes a resumed run pair exactly as an
uninterrupted one; the progress p = global_step / max_steps comes from the Trainer's state, restored on resume.
"""

from __future__ import annotations

import math

import numpy as np
from torch.utils.data import Dataset
from transformers import TrainerCallback, default_data_collator

from hftl.adaptation.task import TARGET_PREFIX


class PairedDomainDataset(Dataset):
    """Source examples, each paired with a target example (its inputs under `target_` keys, labels dropped).

    Example i of epoch e is paired with target example `order[(e * len(source) + i) % len(target)]`, `order` a
    seeded permutation: the pairing depends only on the index and the epoch (set by `AdaptationCallback`), so a
    resumed run pairs exactly as an uninterrupted one, and over the epochs every target example is used. An epoch
    is one pass over the source.

    Raises:
        ValueError: the target dataset is empty.
    """

    def __init__(self, source, target, seed: int = 0):
        if len(target) == 0:
            raise ValueError("the target dataset is empty")
        self.source = source
        self.target = target
        self.order = np.random.default_rng(seed).permutation(len(target))
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        example = dict(self.source[index])
        target_index = int(self.order[(self.epoch * len(self.source) + index) % len(self.target)])
        paired = self.target[target_index]
        example.update({TARGET_PREFIX + k: v for k, v in paired.items() if k != "labels"})
        return example


class DomainPairCollator:
    """Collates the source and the `target_` parts of paired examples separately with the same collator (each
    padded to its own lengths)."""

    def __init__(self, collator=None):
        self.collator = collator or default_data_collator

    def __call__(self, features: list[dict]) -> dict:
        source = [{k: v for k, v in f.items() if not k.startswith(TARGET_PREFIX)} for f in features]
        target = [{k[len(TARGET_PREFIX) :]: v for k, v in f.items() if k.startswith(TARGET_PREFIX)} for f in features]
        batch = dict(self.collator(source))
        if target and target[0]:
            batch.update({TARGET_PREFIX + k: v for k, v in self.collator(target).items()})
        return batch


class AdaptationCallback(TrainerCallback):
    """Sets the task's training progress (global_step / max_steps) before every optimizer step and the paired
    dataset's epoch before every epoch, both from the Trainer's state (restored on resume)."""

    def __init__(self, task, dataset: PairedDomainDataset | None = None):
        self.task = task
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.dataset is not None:
            self.dataset.epoch = int(math.floor(state.epoch + 1e-6)) if state.epoch else 0

    def on_step_begin(self, args, state, control, **kwargs):
        self.task.training_progress = state.global_step / max(state.max_steps, 1)
