"""Batches that mix the tasks: the tasks' training sets side by side, and a sampler whose every batch holds one task.

Each batch of `batch_size` consecutive indices comes from one task (a task's short last batch is filled from the
start of its own shuffled order), so the model runs one task's head per step, as in the usual multi-task setups
(Liu et al., "Multi-Task Deep Neural Networks for Natural Language Understanding", ACL 2019). The order is a
function of (seed, epoch) alone, so a run resumed in the middle of an epoch skips exactly the batches it trained.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

TASK_IDS = "task_ids"  # the batch key naming each example's task (an index into the task list)


class TaskMixture(Dataset):
    """The tasks' datasets one after another; example i of task t carries `task_ids = t`.

    Args:
        datasets: one dataset per task (model inputs and `labels`), in task order.
    """

    def __init__(self, datasets: list):
        self.datasets = list(datasets)
        self.offsets = np.cumsum([0, *(len(d) for d in self.datasets)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _task_of(self, index: int) -> int:
        return int(np.searchsorted(self.offsets, index, side="right") - 1)

    def __getitem__(self, index: int) -> dict:
        task = self._task_of(index)
        example = dict(self.datasets[task][int(index - self.offsets[task])])
        example[TASK_IDS] = task
        return example

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """A batch read at once (the DataLoader's fast path; a `datasets.Dataset` transforms the batch in one call)
        when its examples share a task, as `TaskBatchSampler`'s do; one by one otherwise."""
        tasks = {self._task_of(i) for i in indices}
        task = tasks.pop()
        dataset = self.datasets[task]
        if tasks or not hasattr(dataset, "__getitems__"):
            return [self[i] for i in indices]
        rows = dataset.__getitems__([int(i - self.offsets[task]) for i in indices])
        return [{**row, TASK_IDS: task} for row in rows]


class TaskCollator:
    """Collate a batch's inputs with the modality's collator (or stack them), and add `task_ids` (B,)."""

    def __init__(self, collator=None):
        from transformers import default_data_collator

        self.collator = collator or default_data_collator

    def __call__(self, features: list[dict]) -> dict:
        tasks = torch.tensor([f[TASK_IDS] for f in features], dtype=torch.long)
        batch = dict(self.collator([{k: v for k, v in f.items() if k != TASK_IDS} for f in features]))
        batch[TASK_IDS] = tasks
        return batch


def _task_batches(size: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A shuffled order of range(size) cut into batches; the last one filled from the order's start."""
    order = rng.permutation(size)
    count = math.ceil(size / batch_size)
    padded = np.resize(order, count * batch_size)  # np.resize repeats the order from its start
    return [padded[i * batch_size : (i + 1) * batch_size] for i in range(count)]


def task_order(sizes: list[int], batch_size: int, sampling: str, seed: int) -> list[int]:
    """The tasks of one epoch's batches, in order, for `sizes` examples per task.

    Both modes give an epoch sum_t ceil(n_t / B) batches. proportional: each task's batches once, shuffled together.
    round_robin: tasks in turn, t = 0, 1, ..., T-1, 0, ...

    Example:
        >>> task_order([4, 2], 2, "round_robin", 0)
        [0, 1, 0]
    """
    counts = [math.ceil(n / batch_size) for n in sizes]
    total = sum(counts)
    if sampling == "round_robin":
        return [i % len(sizes) for i in range(total)]
    tasks = np.repeat(np.arange(len(sizes)), counts)
    return np.random.default_rng(seed).permutation(tasks).tolist()


class TaskBatchSampler(Sampler[int]):
    """Indices into a `TaskMixture` such that every `batch_size` consecutive ones belong to one task.

    Args:
        sizes: each task's number of training examples, in task order.
        batch_size: the per-device training batch size.
        sampling: "proportional" or "round_robin" (see `task_order`).
        seed: with the epoch (`set_epoch`), the whole order.
    """

    def __init__(self, sizes: list[int], batch_size: int, sampling: str, seed: int):
        self.sizes, self.batch_size, self.sampling, self.seed = list(sizes), batch_size, sampling, seed
        self.offsets = np.cumsum([0, *self.sizes])
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(math.ceil(n / self.batch_size) for n in self.sizes) * self.batch_size

    def batches(self) -> list[tuple[int, np.ndarray]]:
        """This epoch's batches as (task, indices into the mixture)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        per_task = [_task_batches(n, self.batch_size, rng) for n in self.sizes]
        used = [0] * len(self.sizes)
        out = []
        for task in task_order(self.sizes, self.batch_size, self.sampling, self.seed * 1_000_003 + self.epoch):
            batch = per_task[task][used[task] % len(per_task[task])]  # round_robin: a small task repeats
            used[task] += 1
            out.append((task, batch + self.offsets[task]))
        return out

    def __iter__(self):
        for _, batch in self.batches():
            yield from (int(i) for i in batch)


class TaskSplit(Dataset):
    """One task's dataset (validation, test) with `task_ids = task` on every example."""

    def __init__(self, dataset, task: int):
        self.dataset, self.task = dataset, task

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], TASK_IDS: self.task}

    def __getitems__(self, indices: list[int]) -> list[dict]:
        if not hasattr(self.dataset, "__getitems__"):
            return [self[i] for i in indices]
        return [{**row, TASK_IDS: self.task} for row in self.dataset.__getitems__(list(indices))]
