"""Checks on the raw splits, run before any model is loaded, and label encoding.

Every problem is reported with the file or split, the column and the rows, and what would fix it.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from datasets import ClassLabel, DatasetDict

from hftl.data.loading import RawData
from hftl.errors import InputError

logger = logging.getLogger(__name__)

LABELS = "labels"  # the encoded label column every model-ready split carries
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
                    f"{raw.where(split)}: no column '{column}'. Available columns: {available}. "
                    f"Choose one with --text_column_name / --label_column_name (or the recipe's column flags)."
                )
        if label_column not in available or (
            split == "test" and all(_is_missing(v) or v == "" for v in dataset[label_column])
        ):
            if split == "test":  # a test split without labels (or with an empty label column) is predicted only
                unlabelled.add(split)
                continue
            raise InputError(
                f"{raw.where(split)}: no label column '{label_column}'. Available columns: {available}. "
                f"Name it with --label_column_name."
            )
        if len(dataset) == 0:
            raise InputError(f"{raw.where(split)} is empty: it needs at least one example.")
    return unlabelled


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


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
            values = dataset[column]
            rows = [i for i, value in enumerate(values) if not is_valid_input(value)]
            if rows:
                shown = f" e.g. {', '.join(describe_input(values[i]) for i in rows[:5])}" if describe_input else ""
                bad[f"column '{column}' ({input_problem}{shown})"] = rows
        if split not in unlabelled:
            label_feature = dataset.features[label_column]
            missing = [i for i, value in enumerate(dataset[label_column]) if _is_missing(value)]
            if isinstance(label_feature, ClassLabel) and split != "test":
                missing += [i for i, value in enumerate(dataset[label_column]) if value == -1]
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


def _label_values(raw: RawData, label_column: str, split: str) -> list:
    """The labels of a split as strings (ClassLabel ids become their names; integral floats become ints)."""
    dataset = raw.splits[split]
    feature = dataset.features[label_column]
    values = dataset[label_column]
    if isinstance(feature, ClassLabel):
        return [feature.int2str(v) if v >= 0 else None for v in values]
    if any(isinstance(v, list | dict) for v in values[:100]):
        raise InputError(
            f"{raw.where(split)}: column '{label_column}' holds lists or mappings; hftl trains single-label "
            f"classifiers, one label per row."
        )
    if any(isinstance(v, float) for v in values):
        fractional = [i for i, v in enumerate(values) if isinstance(v, float) and not float(v).is_integer()]
        if fractional:
            raise InputError(
                f"{raw.where(split, fractional)}: column '{label_column}' holds fractional numbers; hftl trains "
                f"classifiers, and needs class names or integer class ids."
            )
        values = [int(v) for v in values]
    return [v if isinstance(v, str) else str(v) for v in values]


def _merge_variants(values_by_split: dict[str, list[str]], merge: bool, raw: RawData, label_column: str) -> None:
    """Labels that differ only by case or surrounding spaces: refuse, or merge into the most frequent spelling."""
    spellings: dict[str, Counter] = defaultdict(Counter)
    for values in values_by_split.values():
        for v in values:
            if v is not None:
                spellings[v.strip().casefold()][v] += 1
    variants = {key: counter for key, counter in spellings.items() if len(counter) > 1}
    if not variants:
        return
    groups = "; ".join(" / ".join(repr(s) for s in counter) for counter in variants.values())
    if not merge:
        raise InputError(
            f"Column '{label_column}' has labels that differ only by case or surrounding spaces: {groups}. "
            f"They would become separate classes. Fix the data, or pass --merge_label_variants to merge each group "
            f"into its most frequent spelling."
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
    unlabelled = _check_columns(raw, input_columns, label_column)
    for split in raw.splits:  # remember each example's source row through drops, carving and truncation
        raw.splits[split] = raw.splits[split].add_column(SOURCE_ROW, list(range(len(raw.splits[split]))))
    checks = (is_valid_input, input_problem, drop_invalid_examples, describe_input)
    _check_rows(raw, input_columns, label_column, checks[0], checks[1], checks[2], unlabelled, checks[3])
    values = {split: _label_values(raw, label_column, split) for split in raw.splits if split not in unlabelled}
    if "test" in values and all(v is None for v in values["test"]):  # e.g. GLUE test sets, labelled -1
        del values["test"]
    _merge_variants(values, merge_label_variants, raw, label_column)
    names = _class_names(raw, values, label_column)
    splits = _encode(raw, values, ClassLabel(names=names), input_columns)
    if "validation" not in splits:
        _carve_validation(splits, validation_split_percentage, seed)
    _truncate(splits, {"train": max_train_samples, "validation": max_eval_samples, "test": max_predict_samples})
    counts = {s: [d[LABELS].count(i) for i in range(len(names))] for s, d in splits.items() if LABELS in d.column_names}
    splits, source_rows = _without_source_rows(splits)
    return splits, LabelInfo(names=names, counts=counts, source_rows=source_rows)


def _class_names(raw: RawData, values: dict[str, list], label_column: str) -> list[str]:
    """The class names (a `ClassLabel`'s own, else the sorted training labels).

    Raises:
        InputError: fewer than two classes in train, or labels of another split never seen in train.
    """
    train_feature = raw.splits["train"].features[label_column]
    names = (
        list(train_feature.names)
        if isinstance(train_feature, ClassLabel)
        else sorted(set(values["train"]), key=_sort_key)
    )
    if len(set(values["train"])) < 2:
        raise InputError(f"{raw.where('train')}: only one class ({names}); a classifier needs at least two.")
    seen = set(values["train"])
    for split in values:
        unseen = sorted(set(values[split]) - seen - {None})
        if unseen:
            raise InputError(
                f"{raw.where(split)}: label(s) {unseen} never occur in train ({raw.where('train')}). "
                f"Add training examples of them, or remove those rows."
            )
    return names


def _encode(raw: RawData, values: dict[str, list], class_label: ClassLabel, input_columns: list[str]) -> DatasetDict:
    """Each split with its input columns (and source rows) only, plus a `labels` column for the labelled ones."""
    label2id = {name: i for i, name in enumerate(class_label.names)}
    splits = DatasetDict()
    for split, dataset in raw.splits.items():
        dataset = dataset.remove_columns([c for c in dataset.column_names if c not in input_columns + [SOURCE_ROW]])
        if split in values:
            ids = [label2id[v] if v is not None else -1 for v in values[split]]
            dataset = dataset.add_column(LABELS, ids).cast_column(LABELS, class_label)
        splits[split] = dataset
    return splits


def _carve_validation(splits: DatasetDict, percentage: float, seed: int) -> None:
    """Carve `percentage` of train out as the validation split (stratified by label when possible, seeded)."""
    fraction = percentage / 100
    try:
        carved = splits["train"].train_test_split(test_size=fraction, seed=seed, stratify_by_column=LABELS)
    except ValueError as error:
        logger.warning("Stratified validation split impossible (%s); splitting at random.", error)
        carved = splits["train"].train_test_split(test_size=fraction, seed=seed)
    splits["train"], splits["validation"] = carved["train"], carved["test"]
    logger.info(
        "No validation split given: carved %d of %d training examples (%.1f%%, stratified, seed %d).",
        len(carved["test"]),
        len(carved["train"]) + len(carved["test"]),
        percentage,
        seed,
    )


def _truncate(splits: DatasetDict, limits: dict[str, int | None]) -> None:
    """Keep the first N examples of each split with a limit (`--max_*_samples`)."""
    for split, limit in limits.items():
        if limit is not None and split in splits and len(splits[split]) > limit:
            splits[split] = splits[split].select(range(limit))


def _without_source_rows(splits: DatasetDict) -> tuple[DatasetDict, dict[str, list[int]]]:
    """The splits without their source-row column, and that column (split -> rows)."""
    rows = {split: dataset[SOURCE_ROW] for split, dataset in splits.items()}
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
        raw.splits["test"][label_column]
        if "test" in raw.splits and label_column in raw.splits["test"].column_names
        else []
    )
    labelled = {"test"} if not all(_is_missing(v) or v == "" for v in test_labels) else set()
    checks = (is_valid_input, input_problem, drop_invalid_examples, describe_input)
    _check_rows(
        raw, input_columns, label_column, checks[0], checks[1], checks[2], set(raw.splits) - labelled, checks[3]
    )
    values = {split: _label_values(raw, label_column, split) for split in labelled}
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
