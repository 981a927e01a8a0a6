"""The interface every modality implements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datasets import DatasetDict
from transformers import TrainingArguments

from hftl.arguments import DataTrainingArguments, ModelArguments
from hftl.data.loading import RawData


class Modality:
    """How one kind of data (text, image, audio) turns into model inputs.

    Attributes:
        name: "text", "image" or "audio".
        auto_model_class: the `AutoModelFor...Classification` class that loads models.
        pipeline_task: the `transformers.pipeline` task that loads the saved model.
        peft_task_type: the peft `TaskType` of a LoRA adapter, or None.
        default_dataset: built-in dataset used when no data is given.
        input_problem: what makes an input cell invalid, for error messages.
    """

    name: str
    auto_model_class: Any
    pipeline_task: str
    peft_task_type: str | None = None
    default_dataset: str
    input_problem: str

    def default_model(self) -> str:
        """Local folder of the packaged default model."""
        raise NotImplementedError

    def input_columns(self, data_args: DataTrainingArguments, raw: RawData) -> list[str]:
        """The input columns the model reads, resolved from the flags and the train split's columns."""
        raise NotImplementedError

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
        input_columns: list[str],
        data_args: DataTrainingArguments,
        training_args: TrainingArguments,
    ) -> DatasetDict:
        """Model-ready splits (model input columns plus `labels`)."""
        raise NotImplementedError

    def data_collator(self, processor, data_args: DataTrainingArguments) -> Callable | None:
        """Batches model-ready examples (None: transformers' default collator)."""
        return None
