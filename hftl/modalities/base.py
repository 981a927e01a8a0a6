"""The interface every modality implements."""

from __future__ import annotations

import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from datasets import DatasetDict
from transformers import TrainingArguments

from hftl.arguments import ModelArguments
from hftl.data.loading import RawData


def cast_file_column(raw: RawData, column: str, feature, what: str) -> None:
    """Cast `column` of every split to an undecoded `datasets` `Image` / `Audio` feature.

    Cells that are paths (from CSV / JSON files) are made absolute first, relative to the data file's folder (or the
    working directory); cells already of that feature type are only made undecoded.
    """
    from datasets import Value

    for split, dataset in raw.splits.items():
        if column not in dataset.column_names:
            continue  # reported by the column checks
        if not isinstance(dataset.features[column], type(feature)):
            folder = os.path.dirname(os.path.abspath(raw.files[split])) if split in raw.files else os.getcwd()

            def resolve(batch, folder=folder):
                return {
                    column: [
                        os.path.join(folder, p) if isinstance(p, str) and p.strip() and not os.path.isabs(p) else p
                        for p in batch[column]
                    ]
                }

            dataset = dataset.map(resolve, batched=True, desc=f"Resolving {what} paths")
            if getattr(dataset.features[column], "dtype", None) == "large_string":  # CSV columns; casts need string
                dataset = dataset.cast_column(column, Value("string"))
        raw.splits[split] = dataset.cast_column(column, feature)


def file_cell_problem(value: object) -> str | None:
    """Why an undecoded Image / Audio cell's path cannot be read, found without opening it; None when it can.

    A path that is not a regular file is never opened: a FIFO blocks `open()` until a writer appears (forever, in a
    data check), a device streams without end, a directory fails with an unhelpful `IsADirectoryError`. Cells holding
    bytes (or anything but a path) are left to the decoder.

    Returns:
        "no such file", "not readable: <reason>", "a FIFO, not a regular file" (directory, character / block device,
        socket), or None.
    """
    if not isinstance(value, dict) or value.get("bytes") or not isinstance(value.get("path"), str):
        return None
    try:
        mode = os.stat(value["path"]).st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as error:
        return f"not readable: {error.strerror or error}"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    kinds += ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    kind = next((name for test, name in kinds if test(mode)), "not a file")
    return f"{kind}, not a regular file"


def describe_file_cell(value: object, what: str, problem: str | None = None) -> str:
    """An undecoded Image / Audio cell, for messages: its path (or what it is), then `problem` in parentheses
    (default: `file_cell_problem`, e.g. "(a FIFO, not a regular file)")."""
    problem = problem or file_cell_problem(value)
    if isinstance(value, dict) and value.get("path"):
        text = value["path"]
    else:
        text = f"({what} bytes)" if value else "(empty cell)"
    return f"{text} ({problem})" if problem else text


class Modality(ABC):
    """How one kind of data (text, image, audio) turns into model inputs.

    A modality holds no state between calls: everything a method needs comes from its arguments (the resolved flags
    included), so loading a second dataset (the target domain) cannot change how the first is processed.

    Attributes:
        name: "text", "image" or "audio".
        arguments_class: the dataclass of the modality's own flags (column names, lengths, augmentation ...).
        auto_model_class: the `AutoModelFor...Classification` class that loads models.
        pipeline_task: the `transformers.pipeline` task that loads the saved model.
        peft_task_type: the peft `TaskType` of a LoRA adapter, or None.
        default_dataset: built-in dataset used when no data is given.
        folder_builder: the `datasets` builder of `--train_dir` folders ("imagefolder"), if the modality has one.
        input_problem: what makes an input cell invalid, for error messages.
        training_overrides: `TrainingArguments` values the modality needs (e.g. keep raw columns for transforms).
        default_model_flags: flag values used with the packaged default model, unless the user sets them.
        augments: `preprocess(augment=True)` differs from `augment=False` (random crops, windows ...).
    """

    name: str
    arguments_class: type
    auto_model_class: Any
    pipeline_task: str
    peft_task_type: str | None = None
    default_dataset: str
    folder_builder: str | None = None
    input_problem: str
    training_overrides: dict[str, Any] = {}
    default_model_flags: dict[str, Any] = {}
    augments: bool = True

    @abstractmethod
    def default_model(self) -> str:
        """Local folder of the packaged default model."""

    @abstractmethod
    def input_columns(self, args, raw: RawData) -> list[str]:
        """The input columns the model reads, resolved from the flags and the train split's columns."""

    def resolve_arguments(self, args, data_args, model_args: ModelArguments | None = None):
        """The modality's flags with their data-dependent defaults filled in (a new object), checked against the
        model's config where they depend on it (before any data or weights load). Default: unchanged."""
        return args

    def prepare_raw(self, raw: RawData, columns: list[str], args) -> None:
        """Make input cells checkable (e.g. resolve file paths); runs before the checks. Default: nothing."""
        return None

    @abstractmethod
    def is_valid_input(self, value: object, args) -> bool:
        """True for a usable input cell under the modality's flags `args`."""

    def describe_input(self, value: object) -> str:
        """How an invalid input cell is shown in error messages (e.g. an image's path)."""
        return repr(value)[:60]

    @abstractmethod
    def load_processor(self, model_args: ModelArguments, model_path: str):
        """Tokenizer, image processor or feature extractor of the model."""

    def configure_processor(self, processor, args):
        """Apply the modality's flags to the processor before it is used and saved. Default: unchanged."""
        return processor

    def prepare_model(self, model, args, processor=None):
        """Adjust a loaded model for this modality's inputs (e.g. memory layout). Default: unchanged."""
        return model

    def after_strategy(self, model, args) -> None:
        """Freeze what the modality's flags freeze whatever the strategy (e.g. a feature encoder). Default: none."""
        return None

    @abstractmethod
    def preprocess(
        self,
        splits: DatasetDict,
        processor,
        columns: list[str],
        args,
        training_args: TrainingArguments,
        augment: bool = True,
    ) -> DatasetDict:
        """Model-ready splits (model inputs plus `labels`); `augment=False` turns training augmentation off."""

    def example_lengths(self, split, columns: list[str]) -> list[float] | None:
        """Size of each raw example (e.g. seconds of audio), for length-sorted batches; None if not known."""
        return None

    def data_collator(self, processor, args) -> Callable | None:
        """Batches model-ready examples (None: transformers' default collator)."""
        return None

    def pipeline_usage(self, processor, args) -> str | None:
        """Model-card text: how to hand raw inputs to `pipeline(...)` so that it sees what training saw; None when
        the plain call does."""
        return None
