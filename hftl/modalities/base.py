"""The interface every modality implements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datasets import DatasetDict
from transformers import TrainingArguments

from hftl.arguments import ModelArguments
from hftl.data.loading import RawData


class Modality:
    """How one kind of data (text, image, audio) turns into model inputs.

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

    def default_model(self) -> str:
        """Local folder of the packaged default model."""
        raise NotImplementedError

    def input_columns(self, args, raw: RawData) -> list[str]:
        """The input columns the model reads, resolved from the flags and the train split's columns."""
        raise NotImplementedError

    def prepare_raw(self, raw: RawData, columns: list[str], args) -> None:
        """Make input cells checkable (e.g. resolve file paths); runs before the checks. Default: nothing."""

    def is_valid_input(self, value: object) -> bool:
        """True for a usable input cell."""
        raise NotImplementedError

    def load_processor(self, model_args: ModelArguments, model_path: str):
        """Tokenizer, image processor or feature extractor of the model."""
        raise NotImplementedError

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
        raise NotImplementedError

    def data_collator(self, processor, args) -> Callable | None:
        """Batches model-ready examples (None: transformers' default collator)."""
        return None
