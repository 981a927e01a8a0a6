"""Checks on the raw splits, run before any model is loaded, and label encoding.

Every problem is reported with the file or split, the column and the rows, and what would fix it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from datasets import ClassLabel, DatasetDict

from hftl.data.labels import (
    LABELS,
    carve_validation,
    class_counts,
    class_names,
    column_values,
    is_blank,
    label_values,
    merge_variants,
)
from hftl.data.loading import RawData
from hftl.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["LABELS", "LabelInfo", "check_and_encode", "check_and_encode_target"]
SOURCE_ROW = "__hftl_source_row__"


@dataclass
class LabelInfo:
    """The classes of a run.

    Attributes:
        names: class names; the id of a class is its index.
        counts: split name -> number of examples per class id (unlabelled splits absent).
        source_rows: split name -> for each example, its 0-based row in the data it came from (the file or split;
            rows of a validation split carved from train are rows of train), after invalid rows were dropped.
    """

    names: list[str]
    counts: dict[str, list[int]]
    source_rows: dict[str, list[int]] = field(default_factory=dict)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}


def _check_columns(raw: RawData, columns: list[str], label_column: str) -> set[str]:
    """Raise if a column is missing; return the splits that carry no labels (a test split may lack them)."""
    unlabelled = set()
    for split, dataset in raw.splits.items():
        available = dataset.column_names
        for column in columns:
            if column not in available:
                raise InputError(
                    f"{raw.where(split)}: no column '{column}'. Available columns: {available}."
                    f"{raw.header_hint(split)} Choose one with --text_column_name / --label_column_name (or the "
                    f"recipe's column flags)."
                )
        if label_column not in available or (
            split == "test" and all(is_blank(v) for v in column_values(dataset, label_column))
        ):
            if split == "test":  # a test split without labels (or with an empty label column) is predicted only
                unlabelled.add(split)
                continue
            raise InputError(
                f"{raw.where(split)}: no label column '{label_column}'. Available columns: {available}."
                f"{raw.header_hint(split)} Name it with --label_column_name."
            )
        if len(dataset) == 0:
            raise InputError(f"{raw.where(split)} is empty: it needs at least one example.")
    return unlabelled


def _check_rows(
    raw: RawData,
    input_columns: list[str],
    label_column: str,
    is_valid_input: Callable[[object], bool],
    input_problem: str,
    drop_invalid_examples: bool,
    unlabelled: set[str],
    describe_input: Callable[[object], str] | None,
) -> None:
    """Find rows with invalid inputs or missing labels; drop them (counted) or raise with their row numbers."""
    for split in list(raw.splits):
        dataset = raw.splits[split]
        bad: dict[str, list[int]] = {}
        for column in input_columns:
            values = column_values(dataset, column)
            rows = [i for i, value in enumerate(values) if not is_valid_input(value)]
            if rows:
                shown = f" e.g. {', '.join(describe_input(values[i]) for i in rows[:5])}" if describe_input else ""
                bad[f"column '{column}' ({input_problem}{shown})"] = rows
        if split not in unlabelled:
            labels = column_values(dataset, label_column)
            missing = [i for i, value in enumerate(labels) if is_blank(value)]
            if isinstance(dataset.features[label_column], ClassLabel) and split != "test":
                missing += [i for i, value in enumerate(labels) if value == -1]
            if missing:
                bad[f"column '{label_column}' (missing label)"] = sorted(missing)
        if not bad:
            continue
        all_rows = sorted({i for rows in bad.values() for i in rows})
        if not drop_invalid_examples:
            details = "; ".join(f"{problem}: {raw.where(split, rows)}" for problem, rows in bad.items())
            raise InputError(
                f"{raw.where(split)}: {len(all_rows)} invalid row(s). {details}. Fix them, or pass "
                f"--drop_invalid_examples to drop them."
            )
        keep = sorted(set(range(len(dataset))) - set(all_rows))
        if not keep:
            raise InputError(f"{raw.where(split)}: every row is invalid ({', '.join(bad)}).")
        logger.warning("Dropped %d invalid row(s) of %s (%s).", len(all_rows), raw.where(split), ", ".join(bad))
        raw.splits[split] = dataset.select(keep)


def check_and_encode(
    raw: RawData,
    input_columns: list[str],
    label_column: str,
    is_valid_input: Callable[[object], bool],
    input_problem: str,
    drop_invalid_examples: bool = False,
    merge_label_variants: bool = False,
    validation_split_percentage: float = 10.0,
    seed: int = 42,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    max_predict_samples: int | None = None,
    describe_input: Callable[[object], str] | None = None,
) -> tuple[DatasetDict, LabelInfo]:
    """Validate the raw splits and encode their labels.

    Args:
        raw: the loaded splits (see `load_raw_data`).
        input_columns: the columns the model reads (text, image path, audio ...).
        label_column: the column holding class names or integer ids.
        is_valid_input: True for a usable input cell.
        input_problem: what an invalid input cell is, for the message ("empty or not a string").
        drop_invalid_examples: drop invalid rows with a count instead of raising.
        merge_label_variants: merge labels that differ only by case or spaces instead of raising.
        validation_split_percentage: share of train carved out (stratified, seeded) if there is no validation split.
        seed: seed of that split.
        max_train_samples / max_eval_samples / max_predict_samples: keep the first N rows of each split.
        describe_input: shows an invalid input cell in messages (e.g. an image's path).

    Returns:
        The splits with the labels in a `ClassLabel` column named `labels` (test may lack it), and the `LabelInfo`.

    Raises:
        InputError: a missing column (the available ones are listed), an empty split, invalid rows (their row
            numbers), labels in validation / test never seen in train (named), case / space label variants,
            fractional or nested labels.
    """
    if "train" not in raw.splits:
        raise InputError(f"The data has no 'train' split (it has {sorted(raw.splits)}).")
    _check_label_is_no_input(input_columns, label_column)
    unlabelled = _check_columns(raw, input_columns, label_column)
    for split in raw.splits:  # remember each example's source row through drops, carving and truncation
        raw.splits[split] = raw.splits[split].add_column(SOURCE_ROW, list(range(len(raw.splits[split]))))
    checks = (is_valid_input, input_problem, drop_invalid_examples, describe_input)
    _check_rows(raw, input_columns, label_column, checks[0], checks[1], checks[2], unlabelled, checks[3])
    values = {split: label_values(raw, label_column, split) for split in raw.splits if split not in unlabelled}
    if "test" in values and all(v is None for v in values["test"]):  # e.g. GLUE test sets, labelled -1
        del values["test"]
    merge_variants(values, merge_label_variants, label_column)
    names = class_names(raw, values, label_column)
    splits = _encode(raw, values, ClassLabel(names=names), input_columns)
    if "validation" not in splits:
        carve_validation(splits, validation_split_percentage, seed, raw.where("train"))
    limits = {"train": max_train_samples, "validation": max_eval_samples, "test": max_predict_samples}
    counts = _limit_source(splits, limits, names, raw.where("train"))
    splits, source_rows = _without_source_rows(splits)
    return splits, LabelInfo(names=names, counts=counts, source_rows=source_rows)


def _check_label_is_no_input(input_columns: list[str], label_column: str) -> None:
    """Raises: InputError when the label column is also an input column (the model would read its answer)."""
    if label_column in input_columns:
        raise InputError(
            f"Column '{label_column}' is both an input column ({input_columns}) and the label column "
            f"(--label_column_name {label_column}): the model would read the answer it must predict. Name another "
            f"input column (--text_column_name / --text_pair_column_name, --image_column_name, --audio_column_name) "
            f"or another --label_column_name."
        )


LIMIT_FLAGS = {"train": "--max_train_samples", "validation": "--max_eval_samples", "test": "--max_predict_samples"}


def _limit_source(splits: DatasetDict, limits: dict[str, int | None], names: list[str], where: str) -> dict:
    """Keep the first N examples of each split with a limit (`--max_*_samples`); the labelled splits' class counts.

    Raises:
        InputError: `--max_train_samples` keeps no example of a training class (named); a validation or test limit
            that drops a class only warns (evaluating on a subset is a choice).
    """
    counts = {}
    for split, dataset in list(splits.items()):
        limit = limits.get(split)
        if limit is not None and len(dataset) > limit:
            splits[split] = dataset.select(range(limit))
        if LABELS not in dataset.column_names:
            continue
        counts[split] = class_counts(splits[split], len(names))
        if len(splits[split]) == len(dataset):
            continue
        before = class_counts(dataset, len(names))
        lost = [names[i] for i, (b, a) in enumerate(zip(before, counts[split], strict=True)) if b and not a]
        if lost and split == "train":
            raise InputError(
                f"--max_train_samples {limit} keeps the first {limit} of {len(dataset)} training examples ({where}), "
                f"and they hold no example of class(es) {lost[:20]}{' ...' if len(lost) > 20 else ''}: the model "
                f"would have outputs it never learns. Raise --max_train_samples, shuffle the file (it may be sorted "
                f"by label), or remove those classes."
            )
        if lost:
            logger.warning("%s %d keeps no %s example of class(es) %s.", LIMIT_FLAGS[split], limit, split, lost[:20])
    return counts


def _encode(raw: RawData, values: dict[str, list], class_label: ClassLabel, input_columns: list[str]) -> DatasetDict:
    """Each split with its input columns (and source rows) only, plus a `labels` column for the labelled ones."""
    label2id = {name: i for i, name in enumerate(class_label.names)}
    splits = DatasetDict()
    for split, dataset in raw.splits.items():
        dataset = dataset.remove_columns([c for c in dataset.column_names if c not in input_columns + [SOURCE_ROW]])
        if split in values:
            ids = [label2id[v] if v is not None else -1 for v in values[split]]
            dataset = dataset.add_column(LABELS, ids, feature=class_label)
        splits[split] = dataset
    return splits


def _truncate(splits: DatasetDict, limits: dict[str, int | None]) -> None:
    """Keep the first N examples of each split with a limit (`--max_*_samples`)."""
    for split, limit in limits.items():
        if limit is not None and split in splits and len(splits[split]) > limit:
            splits[split] = splits[split].select(range(limit))


def _without_source_rows(splits: DatasetDict) -> tuple[DatasetDict, dict[str, list[int]]]:
    """The splits without their source-row column, and that column (split -> rows)."""
    rows = {split: column_values(dataset, SOURCE_ROW) for split, dataset in splits.items()}
    return DatasetDict({split: dataset.remove_columns(SOURCE_ROW) for split, dataset in splits.items()}), rows


def check_and_encode_target(
    raw: RawData,
    input_columns: list[str],
    label_column: str,
    labels: LabelInfo,
    is_valid_input: Callable[[object], bool],
    input_problem: str,
    drop_invalid_examples: bool = False,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    describe_input: Callable[[object], str] | None = None,
) -> tuple[DatasetDict, dict[str, list[int]]]:
    """Validate target-domain splits and encode the labels of the evaluation split with the source's classes.

    The `train` split is the unlabelled target data: its labels, if any, are dropped. The evaluation split (`test`,
    else `validation`) keeps its labels, encoded with the source's `labels`, when it has them.

    Returns:
        (splits "train" and, when given, "test" (labelled or not), each example's source row per split).

    Raises:
        InputError: no target train split, a missing input column, invalid rows, or target labels that are not
            source classes (named).
    """
    _select_target_splits(raw, input_columns)
    test_labels = (
        column_values(raw.splits["test"], label_column)
        if "test" in raw.splits and label_column in raw.splits["test"].column_names
        else []
    )
    labelled = {"test"} if not all(is_blank(v) for v in test_labels) else set()
    checks = (is_valid_input, input_problem, drop_invalid_examples, describe_input)
    _check_rows(
        raw, input_columns, label_column, checks[0], checks[1], checks[2], set(raw.splits) - labelled, checks[3]
    )
    values = {split: label_values(raw, label_column, split) for split in labelled}
    for split, split_values in values.items():
        unknown = sorted({v for v in split_values if v is not None} - set(labels.names))
        if unknown:
            raise InputError(
                f"{raw.where(split)}: label(s) {unknown} are not classes of the source data ({labels.names}). "
                f"Target labels must name source classes."
            )
    splits = _encode(raw, values, ClassLabel(names=labels.names), input_columns)
    _truncate(splits, {"train": max_train_samples, "test": max_eval_samples})
    return _without_source_rows(splits)


def _select_target_splits(raw: RawData, input_columns: list[str]) -> None:
    """Keep "train" and the evaluation split (`test`, else `validation`, named "test"); check their columns and size.

    Raises:
        InputError: no train split, a missing input column, an empty split.
    """
    if "train" not in raw.splits:
        raise InputError(f"The target data has no 'train' split (it has {sorted(raw.splits)}).")
    evaluation = "test" if "test" in raw.splits else "validation" if "validation" in raw.splits else None
    raw.splits = DatasetDict({"train": raw.splits["train"], **({"test": raw.splits[evaluation]} if evaluation else {})})
    if evaluation:
        raw.sources["test"] = raw.sources.get(evaluation, evaluation)
    for split, dataset in raw.splits.items():
        missing = [c for c in input_columns if c not in dataset.column_names]
        if missing:
            raise InputError(
                f"{raw.where(split)}: no column {missing}. Available columns: {dataset.column_names}. Target data "
                f"needs the same input columns as the source data."
            )
        if len(dataset) == 0:
            raise InputError(f"{raw.where(split)} is empty: it needs at least one example.")
        raw.splits[split] = dataset.add_column(SOURCE_ROW, list(range(len(dataset))))
