"""Multi-label data (`--problem_type multi_label_classification`): label sets read from lists or delimiter-separated
strings, checked before any model loads, and encoded as multi-hot float rows.

A label cell is a list (JSON, JSON Lines, parquet, a Hub dataset's `Sequence`) or a string whose labels are separated
by `--label_delimiter` ("sports|politics"); surrounding spaces and empty parts are ignored, repeats count once. An
empty set (an empty list or string, an empty CSV cell) is an invalid row unless `--allow_empty_labels`. The label
names are the sorted union of the training labels; a label of another split that train lacks is refused. The encoded
`labels` column holds, per example, C floats: 1.0 for each label it has, 0.0 for the others (what
`BCEWithLogitsLoss` takes).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from datasets import ClassLabel, DatasetDict, LargeList, List, Sequence, Value

from hftl.data.checks import (
    SOURCE_ROW,
    LabelInfo,
    _check_columns,
    _check_label_is_no_input,
    _check_rows,
    _without_source_rows,
)
from hftl.data.labels import LABELS, _sort_key, column_values, merge_variants
from hftl.data.loading import RawData
from hftl.errors import InputError

logger = logging.getLogger(__name__)

OTHER_DELIMITERS = (",", ";", "|", "/")  # what a warning suggests when no cell holds the chosen delimiter


def _element(value, where: str, label_column: str) -> str:
    """One label of a list cell as a string (integers and integral floats as their integer)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputError(
            f"{where}: column '{label_column}' holds a list with {value!r} ({type(value).__name__}); a label set "
            f"lists class names (strings) or integer class ids."
        )
    return str(value).strip()


def _split_cell(value, delimiter: str, names: list[str] | None, where: str, label_column: str) -> list[str]:
    """One cell's labels, sorted and without repeats ([] for an empty cell)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(delimiter)]
    elif isinstance(value, list):
        parts = [names[v] if names is not None else _element(v, where, label_column) for v in value]
    else:
        raise InputError(
            f"{where}: column '{label_column}' holds {value!r} ({type(value).__name__}); a multi-label cell is a list "
            f"or a string of labels separated by --label_delimiter."
        )
    return sorted({part for part in parts if part})


def _check_feature(feature, where: str, label_column: str) -> list[str] | None:
    """The class names of a `Sequence(ClassLabel)` column (None for other columns).

    Raises:
        InputError: a column of single classes or numbers, or of nested structures.
    """
    inner = getattr(feature, "feature", None) if isinstance(feature, List | LargeList | Sequence) else None
    if isinstance(inner, ClassLabel):
        return list(inner.names)
    if inner is not None and isinstance(inner, Value) and inner.dtype in ("string", "large_string", "null"):
        return None
    if inner is not None and isinstance(inner, Value) and ("int" in inner.dtype or "float" in inner.dtype):
        return None
    if isinstance(feature, Value) and feature.dtype in ("string", "large_string", "null"):
        return None
    kind = f"values of type {feature}"
    if isinstance(feature, ClassLabel):
        kind = "one class per row (ClassLabel)"
    elif isinstance(feature, Value):
        kind = f"single {feature.dtype} values"
    raise InputError(
        f"{where}: column '{label_column}' holds {kind}, not label sets. A multi-label column holds lists "
        f"(JSON, JSON Lines, parquet) or strings of labels separated by --label_delimiter (CSV), e.g. 'a|b'. For one "
        f"class per example, drop --problem_type multi_label_classification."
    )


def label_sets(raw: RawData, label_column: str, split: str, delimiter: str) -> list[list[str]]:
    """The label set of each row of a split (see the module docstring).

    Raises:
        InputError: a column of single classes or numbers; list elements that are not names or integer ids.
    """
    dataset, where = raw.splits[split], raw.where(split)
    names = _check_feature(dataset.features[label_column], where, label_column)
    return [_split_cell(v, delimiter, names, where, label_column) for v in column_values(dataset, label_column)]


def _warn_delimiter(values: dict[str, list[list[str]]], delimiter: str, label_column: str) -> None:
    """Warn when no cell was split by `delimiter` but its labels hold another common delimiter."""
    rows = [labels for split_values in values.values() for labels in split_values]
    if any(len(labels) > 1 for labels in rows):
        return
    for other in (d for d in OTHER_DELIMITERS if d != delimiter):
        if any(other in label for labels in rows for label in labels):
            logger.warning(
                "Column '%s': no row has more than one label with --label_delimiter '%s', but labels hold '%s'. "
                "If '%s' separates the labels, pass --label_delimiter '%s'.",
                label_column, delimiter, other, other, other,
            )  # fmt: skip
            return


def _empty_rows(raw: RawData, values: dict[str, list[list[str]]], label_column: str, drop: bool) -> None:
    """Rows without a label (when empty sets are not allowed): dropped (with `drop`) or refused.

    Raises:
        InputError: such rows without `drop` (named by split and row), or a split left without rows.
    """
    for split, split_values in values.items():
        empty = [i for i, labels in enumerate(split_values) if not labels]
        if not empty:
            continue
        if not drop:
            raise InputError(
                f"{raw.where(split, empty)}: {len(empty)} row(s) with no label in column '{label_column}'. Give each "
                f"row at least one label, pass --allow_empty_labels if an example may have none, or "
                f"--drop_invalid_examples to drop those rows."
            )
        keep = sorted(set(range(len(split_values))) - set(empty))
        if not keep:
            raise InputError(f"{raw.where(split)}: no row has a label in column '{label_column}'.")
        logger.warning("Dropped %d row(s) of %s with no label.", len(empty), raw.where(split))
        raw.splits[split] = raw.splits[split].select(keep)
        values[split] = [split_values[i] for i in keep]


def _merge_variants(values: dict[str, list[list[str]]], merge: bool, label_column: str) -> None:
    """`merge_variants` over the labels of every set, the sets rebuilt after."""
    flat = {split: [label for labels in rows for label in labels] for split, rows in values.items()}
    merge_variants(flat, merge, label_column)
    for split, rows in values.items():
        labels = iter(flat[split])
        values[split] = [sorted({next(labels) for _ in row}) for row in rows]


def label_names(raw: RawData, values: dict[str, list[list[str]]]) -> list[str]:
    """The sorted union of the training labels (integers in numeric order).

    Raises:
        InputError: fewer than two labels in train, or labels of another split that train lacks.
    """
    seen = {label for labels in values["train"] for label in labels}
    if len(seen) < 2:
        raise InputError(
            f"{raw.where('train')}: only {len(seen)} label ({sorted(seen)}); multi-label classification needs at "
            f"least two. For one yes / no label, train a single-label classifier."
        )
    for split, rows in values.items():
        unseen = sorted({label for labels in rows for label in labels} - seen)
        if unseen:
            shown = unseen[:20] + ([f"... {len(unseen) - 20} more"] if len(unseen) > 20 else [])
            raise InputError(
                f"{raw.where(split)}: label(s) {shown} never occur in train ({raw.where('train')}). Add training "
                f"examples of them, or remove them from those rows."
            )
    names = sorted(seen, key=_sort_key)
    everywhere = [name for name in names if all(name in labels for labels in values["train"])]
    if everywhere:
        logger.warning("Label(s) %s are in every training example: the model learns to always predict them.",
                       everywhere)  # fmt: skip
    return names


def _encode(raw: RawData, values: dict, names: list[str], input_columns: list[str]) -> DatasetDict:
    """Each split with its input columns (and source rows), plus the multi-hot `labels` of the labelled ones."""
    index = {name: i for i, name in enumerate(names)}
    splits = DatasetDict()
    for split, dataset in raw.splits.items():
        dataset = dataset.remove_columns([c for c in dataset.column_names if c not in input_columns + [SOURCE_ROW]])
        if split in values:
            hot = np.zeros((len(values[split]), len(names)), dtype=np.float32)
            for row, labels in enumerate(values[split]):
                hot[row, [index[label] for label in labels]] = 1.0
            dataset = dataset.add_column(LABELS, hot.tolist(), feature=List(Value("float32")))
        splits[split] = dataset
    return splits


def multi_hot(dataset) -> np.ndarray:
    """The (N, C) multi-hot `labels` of an encoded split."""
    return np.asarray(column_values(dataset, LABELS), dtype=np.float32)


def carve_validation(splits: DatasetDict, percentage: float, seed: int, where: str) -> None:
    """Carve `percentage` of train out as the validation split, seeded, every label keeping a training example.

    `ceil(percentage / 100 * N)` random examples are taken; then, for each label that would have no training example
    left, its first taken example goes back to train. Both parts come out in a seeded random order.

    Raises:
        InputError: nothing can be carved without taking a label's only example (`where` names the training data).
    """
    train = splits["train"]
    hot = multi_hot(train)
    order = np.random.default_rng(seed).permutation(len(train))
    taken = np.zeros(len(train), dtype=bool)
    taken[order[: min(math.ceil(percentage / 100 * len(train)), len(train) - 1)]] = True
    for label in range(hot.shape[1]):
        if hot[~taken, label].sum() == 0 and hot[:, label].sum() > 0:
            back = next(i for i in order if taken[i] and hot[i, label])
            taken[back] = False
    if not taken.any():
        raise InputError(
            f"{where}: no validation example can be carved ({percentage}% of {len(train)}) without taking a label's "
            f"only training example. Give a validation file (--validation_file), or more examples."
        )
    splits["train"], splits["validation"] = train.select(order[~taken[order]]), train.select(order[taken[order]])
    logger.info(
        "No validation split given: carved %d of %d training examples (%.1f%% asked; every label keeps a training "
        "example; seed %d).",
        int(taken.sum()), len(train), percentage, seed,
    )  # fmt: skip


LIMIT_FLAGS = {"train": "--max_train_samples", "validation": "--max_eval_samples", "test": "--max_predict_samples"}


def _limit(splits: DatasetDict, limits: dict[str, int | None], names: list[str], where: str) -> dict[str, list[int]]:
    """Keep the first N examples of each split with a limit; return each labelled split's examples per label.

    Raises:
        InputError: `--max_train_samples` keeps no training example of a label (named); other splits only warn.
    """
    counts = {}
    for split, dataset in list(splits.items()):
        limit = limits.get(split)
        if limit is not None and len(dataset) > limit:
            splits[split] = dataset.select(range(limit))
        if LABELS not in dataset.column_names:
            continue
        before, after = multi_hot(dataset).sum(0), multi_hot(splits[split]).sum(0)
        counts[split] = after.astype(int).tolist()
        lost = [names[i] for i in np.flatnonzero((before > 0) & (after == 0))]
        if lost and split == "train":
            raise InputError(
                f"--max_train_samples {limit} keeps the first {limit} of {len(dataset)} training examples ({where}), "
                f"and they hold no example of label(s) {lost[:20]}: the model would have outputs it never learns. "
                f"Raise --max_train_samples, shuffle the file, or remove those labels."
            )
        if lost:
            logger.warning("%s %d keeps no %s example of label(s) %s.", LIMIT_FLAGS[split], limit, split, lost[:20])
    return counts


def check_and_encode_multi_label(
    raw: RawData,
    input_columns: list[str],
    label_column: str,
    is_valid_input,
    input_problem: str,
    problem,
    drop_invalid_examples: bool = False,
    merge_label_variants: bool = False,
    validation_split_percentage: float = 10.0,
    seed: int = 42,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    max_predict_samples: int | None = None,
    describe_input=None,
) -> tuple[DatasetDict, LabelInfo]:
    """Validate the raw splits and encode their label sets (multi-hot), as `check_and_encode` does for classes.

    Args:
        problem: the `ProblemArguments` (`label_delimiter`, `allow_empty_labels`); the other arguments as for
            `hftl.data.checks.check_and_encode`.

    Returns:
        (splits with inputs and multi-hot `labels` (N, C) float32, a `LabelInfo` whose counts are examples per label).

    Raises:
        InputError: what `check_and_encode` refuses (columns, invalid inputs, variants), and a column of single
            classes or numbers, empty label sets (unless allowed), fewer than two labels, a label only outside train.
    """
    if "train" not in raw.splits:
        raise InputError(f"The data has no 'train' split (it has {sorted(raw.splits)}).")
    _check_label_is_no_input(input_columns, label_column)
    unlabelled = _check_columns(raw, input_columns, label_column)
    for split in raw.splits:
        raw.splits[split] = raw.splits[split].add_column(SOURCE_ROW, list(range(len(raw.splits[split]))))
    _check_rows(raw, input_columns, label_column, is_valid_input, input_problem, drop_invalid_examples,
                set(raw.splits), describe_input)  # fmt: skip
    labelled = [split for split in raw.splits if split not in unlabelled]
    values = {split: label_sets(raw, label_column, split, problem.label_delimiter) for split in labelled}
    _warn_delimiter(values, problem.label_delimiter, label_column)
    if not problem.allow_empty_labels:
        _empty_rows(raw, values, label_column, drop_invalid_examples)
    _merge_variants(values, merge_label_variants, label_column)
    names = label_names(raw, values)
    splits = _encode(raw, values, names, input_columns)
    if "validation" not in splits:
        carve_validation(splits, validation_split_percentage, seed, raw.where("train"))
    limits = {"train": max_train_samples, "validation": max_eval_samples, "test": max_predict_samples}
    counts = _limit(splits, limits, names, raw.where("train"))
    splits, source_rows = _without_source_rows(splits)
    return splits, LabelInfo(names=names, counts=counts, source_rows=source_rows)
