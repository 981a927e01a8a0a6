"""Step 3 of a run: the source and target domains' data, loaded and checked through the same code before any model
loads, with the labels encoded once (from the source's training split)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import partial

from datasets import DatasetDict

from hftl.data.checks import LabelInfo, check_and_encode, check_and_encode_target
from hftl.data.loading import RawData, load_raw_data
from hftl.data.multi_labels import check_and_encode_multi_label
from hftl.errors import InputError

logger = logging.getLogger("hftl")


@dataclass(frozen=True)
class DomainData:
    """One domain's checked splits.

    Attributes:
        splits: "train" / "validation" / "test" with inputs and encoded `labels` (target "train": no labels).
        rows: split -> each example's 0-based row in the file or split it came from.
        description: one line for logs and the model card.
        hub_dataset: the Hub dataset id, when the data came from the Hub.
        labelled_test: the "test" split has labels (metrics are reported on it).
    """

    splits: DatasetDict
    rows: dict[str, list[int]]
    description: str
    hub_dataset: str | None
    labelled_test: bool


@dataclass(frozen=True)
class RunData:
    """The data of a run: the source domain, the target domain if any, the classes and the input columns."""

    source: DomainData
    target: DomainData | None
    labels: LabelInfo
    columns: list[str]


def _load_raw(modality, config, target: bool, columns: list[str] | None) -> tuple[RawData, list[str]]:
    """Raw splits of one domain, their input columns found (source) or given (target), input cells made checkable."""
    data, adaptation, model = config.data, config.adaptation, config.model
    if target and adaptation.target_folders() and modality.folder_builder is None:
        raise InputError(
            f"--target_train_dir / --target_test_dir are for folder data (image, speech); the {modality.name} recipe "
            f"takes --target_train_file / --target_test_file or --target_dataset_name."
        )
    raw = load_raw_data(
        adaptation.target_dataset_name if target else data.dataset_name,
        adaptation.target_dataset_config_name if target else data.dataset_config_name,
        adaptation.target_train_file if target else data.train_file,
        None if target else data.validation_file,
        adaptation.target_test_file if target else data.test_file,
        default_dataset=None if target else modality.default_dataset,
        cache_dir=model.cache_dir,
        token=model.token,
        folders=adaptation.target_folders() if target else getattr(config.inputs, "folders", dict)(),
        folder_builder=modality.folder_builder,
        delimiter=data.delimiter,
        encoding=data.encoding,
        unlabelled_folders=("train",) if target else (),
    )
    if target:
        raw.sources = {split: _target_flags(where) for split, where in raw.sources.items()}
    columns = columns or modality.input_columns(config.inputs, raw)
    modality.prepare_raw(raw, columns, config.inputs)
    return raw, columns


def _target_flags(text: str) -> str:
    """Messages of the shared loaders name the source flags (`--train_file`); for target data, name the target ones."""
    return re.sub(
        r"--(dataset_name|dataset_config_name|train_file|test_file|train_dir|test_dir)\b", r"--target_\1", text
    )


def _load_source(modality, config) -> tuple[DomainData, LabelInfo, list[str]]:
    raw, columns = _load_raw(modality, config, target=False, columns=None)
    data, problem = config.data, config.problem
    encode = partial(check_and_encode_multi_label, problem=problem) if problem.multi_label else check_and_encode
    splits, labels = encode(
        raw,
        columns,
        data.label_column_name,
        lambda value: modality.is_valid_input(value, config.inputs),
        modality.input_problem,
        drop_invalid_examples=data.drop_invalid_examples,
        merge_label_variants=data.merge_label_variants,
        validation_split_percentage=data.validation_split_percentage,
        seed=config.training.seed,
        max_train_samples=data.max_train_samples,
        max_eval_samples=data.max_eval_samples,
        max_predict_samples=data.max_predict_samples,
        describe_input=modality.describe_input,
    )
    labelled = "test" in splits and "labels" in splits["test"].column_names
    logger.info("Data: %s", raw.description)
    names = labels.names if len(labels.names) <= 20 else [*labels.names[:10], f"... {len(labels.names) - 10} more"]
    kind = "labels" if problem.multi_label else "classes"
    logger.info("Splits: %s; %d %s: %s", {s: len(d) for s, d in splits.items()}, len(labels.names), kind, names)
    return DomainData(splits, labels.source_rows, raw.description, raw.hub_dataset, labelled), labels, columns


def _load_target(modality, config, labels: LabelInfo, columns: list[str]) -> DomainData:
    """Raises: InputError naming the `--target_*` flags (missing files or columns, invalid rows, unknown labels)."""
    try:
        raw, _ = _load_raw(modality, config, target=True, columns=columns)
        splits, rows = check_and_encode_target(
            raw,
            columns,
            config.data.label_column_name,
            labels,
            lambda value: modality.is_valid_input(value, config.inputs),
            modality.input_problem,
            drop_invalid_examples=config.data.drop_invalid_examples,
            max_train_samples=config.adaptation.max_target_train_samples,
            max_eval_samples=config.adaptation.max_target_eval_samples,
            describe_input=modality.describe_input,
        )
    except InputError as error:
        raise InputError(_target_flags(str(error))) from None
    _check_target_size(len(splits["train"]), raw.sources.get("train", "target train data"), config)
    labelled = "test" in splits and "labels" in splits["test"].column_names
    if "test" in splits and not labelled:
        logger.warning(
            "The target test data (%s) has no labels in column '%s': no target_* metrics. Name its label column "
            "with --label_column_name (the same as the source's).",
            raw.sources.get("test", "test"),
            config.data.label_column_name,
        )
    logger.info("Target data: %s; %s", raw.description, {s: len(d) for s, d in splits.items()} | {"labelled": labelled})
    return DomainData(splits, rows, raw.description, raw.hub_dataset, labelled)


MIN_TARGET_EXAMPLES = 2  # alignment losses compare batch statistics; below this they see a single point
FEW_TARGET_EXAMPLES = 32


def _check_target_size(count: int, where: str, config) -> None:
    """Raises: InputError when an adapting run has fewer than 2 unlabelled target examples; warns under 32."""
    if not config.adaptation.adapts:
        return
    if count < MIN_TARGET_EXAMPLES:
        raise InputError(
            f"{where}: {count} unlabelled target example(s); --adaptation and --importance_weighting need at least "
            f"{MIN_TARGET_EXAMPLES} (alignment compares source and target batch statistics, the prior estimate "
            f"averages predictions). Give more target data, or raise --max_target_train_samples."
        )
    if count < FEW_TARGET_EXAMPLES:
        logger.warning(
            "Only %d unlabelled target examples (%s): the alignment loss and the label-shift estimate will be noisy.",
            count,
            where,
        )


def load_data(modality, config) -> RunData:
    """Load and check the source data and, when `--target_*` flags are given, the target data.

    Raises:
        InputError: bad data, before any model loads (the message names the file, rows or columns and the fix).
    """
    source, labels, columns = _load_source(modality, config)
    target = _load_target(modality, config, labels, columns) if config.adaptation.has_target else None
    return RunData(source, target, labels, columns)
