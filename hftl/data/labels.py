"""Labels: read as class names, checked (blank, variant spellings, classes unseen in train), counted, and the
validation split carved from train so that every class keeps a training example.

Every pass here is linear in the number of rows (a run with 10,000 classes checks as fast as one with two).
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict

from hftl.data.loading import RawData
from hftl.errors import InputError

logger = logging.getLogger(__name__)

LABELS = "labels"  # the encoded label column every model-ready split carries


def column_values(dataset: Dataset, column: str) -> list:
    """One column's cells as a list, read in one batch (`dataset[column]` is a lazy `Column` read row by row)."""
    return dataset.select_columns([column])[:][column]


def is_blank(value) -> bool:
    """A missing cell: None, NaN, or a string of spaces only (a label " " is no class)."""
    if isinstance(value, str):
        return value.strip() == ""
    return value is None or (isinstance(value, float) and math.isnan(value))


def label_values(raw: RawData, label_column: str, split: str) -> list:
    """The labels of a split as strings (ClassLabel ids become their names; integral floats become ints).

    Raises:
        InputError: lists or mappings as labels; fractional numbers (rows named).
    """
    dataset = raw.splits[split]
    feature = dataset.features[label_column]
    values = column_values(dataset, label_column)
    if isinstance(feature, ClassLabel):
        return [feature.int2str(v) if v >= 0 else None for v in values]
    if any(isinstance(v, list | dict) for v in values[:100]):
        raise InputError(
            f"{raw.where(split)}: column '{label_column}' holds lists or mappings, and a single-label classifier "
            f"takes one label per row. For a set of labels per row, pass --problem_type multi_label_classification."
        )
    if any(isinstance(v, float) for v in values):
        fractional = [i for i, v in enumerate(values) if isinstance(v, float) and not float(v).is_integer()]
        if fractional:
            raise InputError(
                f"{raw.where(split, fractional)}: column '{label_column}' holds fractional numbers; hftl trains "
                f"classifiers, and needs class names or integer class ids."
            )
        values = [int(v) if isinstance(v, float) else v for v in values]
    return [v if isinstance(v, str) or v is None else str(v) for v in values]


def _spelling_key(label: str) -> str:
    """What spellings of one class share: case and surrounding spaces aside, and '1' / '1.0' / '01' alike."""
    key = label.strip().casefold()
    try:
        number = float(key)
    except ValueError:
        return key
    return str(int(number)) if number.is_integer() else repr(number)


def merge_variants(values_by_split: dict[str, list[str]], merge: bool, label_column: str) -> None:
    """Labels that differ only by case, surrounding spaces or number format ('1' / '1.0'): refuse them, or (with
    `merge`) rewrite each to its most frequent spelling in place.

    Raises:
        InputError: such labels without `merge` (the groups named).
    """
    spellings: dict[str, Counter] = defaultdict(Counter)
    for values in values_by_split.values():
        for v in values:
            if v is not None:
                spellings[_spelling_key(v)][v] += 1
    variants = {key: counter for key, counter in spellings.items() if len(counter) > 1}
    if not variants:
        return
    groups = "; ".join(" / ".join(repr(s) for s in counter) for counter in variants.values())
    if not merge:
        raise InputError(
            f"Column '{label_column}' has labels that differ only by case or surrounding spaces (or number format): "
            f"{groups}. They would become separate classes. Fix the data, or pass --merge_label_variants to merge "
            f"each group into its most frequent spelling."
        )
    canonical = {spelling: counter.most_common(1)[0][0] for counter in variants.values() for spelling in counter}
    logger.warning("Merged label variants into their most frequent spelling: %s", canonical)
    for split, values in values_by_split.items():
        values_by_split[split] = [canonical.get(v, v) for v in values]


def _sort_key(name: str):
    try:
        return (0, int(name), name)
    except ValueError:
        return (1, 0, name)


def class_names(raw: RawData, values: dict[str, list], label_column: str) -> list[str]:
    """The class names (a `ClassLabel`'s own, else the sorted training labels; integers in numeric order).

    Raises:
        InputError: fewer than two classes in train, or labels of another split never seen in train.
    """
    train_feature = raw.splits["train"].features[label_column]
    seen = set(values["train"]) - {None}
    names = list(train_feature.names) if isinstance(train_feature, ClassLabel) else sorted(seen, key=_sort_key)
    if len(seen) < 2:
        raise InputError(f"{raw.where('train')}: only one class ({sorted(seen)}); a classifier needs at least two.")
    for split in values:
        unseen = sorted(set(values[split]) - seen - {None})
        if unseen:
            shown = unseen[:20] + ([f"... {len(unseen) - 20} more"] if len(unseen) > 20 else [])
            raise InputError(
                f"{raw.where(split)}: label(s) {shown} never occur in train ({raw.where('train')}). "
                f"Add training examples of them, or remove those rows."
            )
    return names


def class_counts(dataset: Dataset, num_classes: int) -> list[int]:
    """Examples per class id of a split's `labels` column (one pass; unlabelled examples, id -1, not counted)."""
    ids = _label_ids(dataset)
    return np.bincount(ids[ids >= 0], minlength=num_classes).tolist()


def _label_ids(dataset: Dataset) -> np.ndarray:
    """The `labels` column as one int64 array (read in one batch, not row by row)."""
    return np.asarray(dataset.select_columns([LABELS]).with_format("numpy")[:][LABELS], dtype=np.int64)


def _quotas(counts: np.ndarray, fraction: float) -> np.ndarray:
    """Validation examples per class: `ceil(fraction * total)` in all (as `Dataset.train_test_split`), shared in
    proportion to the class sizes (largest remainders first), and never a class's last example."""
    exact = fraction * counts
    capacity = np.maximum(counts - 1, 0)
    quotas = np.minimum(np.floor(exact).astype(np.int64), capacity)
    short = min(math.ceil(fraction * counts.sum()), int(capacity.sum())) - int(quotas.sum())
    while short > 0:
        room = np.flatnonzero(quotas < capacity)
        chosen = room[np.argsort(-(exact[room] - quotas[room]), kind="stable")[:short]]
        quotas[chosen] += 1
        short -= len(chosen)
    return quotas


def carve_validation(splits: DatasetDict, percentage: float, seed: int, where: str) -> None:
    """Carve `percentage` of train out as the validation split: stratified by class, seeded, and every class keeps
    at least one training example (a class with a single example stays in train only, with a warning). Both parts
    come out in a seeded random order.

    Raises:
        InputError: nothing can be carved (every class has a single example); `where` names the training data.
    """
    train = splits["train"]
    ids = _label_ids(train)
    counts = np.bincount(ids, minlength=len(train.features[LABELS].names))
    quotas = _quotas(counts, percentage / 100)
    if quotas.sum() == 0:
        raise InputError(
            f"{where}: no validation example can be carved ({percentage}% of {len(train)}) without taking a class's "
            f"only example: each class has a single example. Give a validation file (--validation_file), or more "
            f"examples per class."
        )
    order = np.random.default_rng(seed).permutation(len(train))
    by_class = order[np.argsort(ids[order], kind="stable")]  # grouped by class, random within each class
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(by_class)) - starts[ids[by_class]]  # position of each example within its class
    taken = np.zeros(len(train), dtype=bool)
    taken[by_class[rank < quotas[ids[by_class]]]] = True
    splits["train"], splits["validation"] = train.select(order[~taken[order]]), train.select(order[taken[order]])
    singles = [train.features[LABELS].names[i] for i in np.flatnonzero(counts == 1)]
    if singles:
        logger.warning(
            "%d class(es) have a single example, kept in train (none in the carved validation split): %s",
            len(singles),
            singles[:20],
        )
    logger.info(
        "No validation split given: carved %d of %d training examples (%.1f%% asked; stratified, every class keeps "
        "a training example; seed %d).",
        int(taken.sum()),
        len(train),
        percentage,
        seed,
    )
