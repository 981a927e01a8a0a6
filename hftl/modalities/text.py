"""Text classification: a tokenizer turns one text (or a text pair) into `input_ids` and `attention_mask`."""

from __future__ import annotations

import logging

from datasets import DatasetDict
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    TrainingArguments,
    default_data_collator,
)

from hftl.arguments import ModelArguments, TextArguments
from hftl.assets import packaged_text_model
from hftl.data.checks import LABELS
from hftl.data.loading import RawData
from hftl.errors import InputError
from hftl.modalities.base import Modality

logger = logging.getLogger(__name__)

DEFAULT_TEXT_COLUMNS = ("text", "sentence", "sentence1", "review", "content")


class TextModality(Modality):
    name = "text"
    arguments_class = TextArguments
    auto_model_class = AutoModelForSequenceClassification
    pipeline_task = "text-classification"
    peft_task_type = "SEQ_CLS"
    default_dataset = "rotten_tomatoes_critics"
    input_problem = "empty or not a string"
    augments = False

    def default_model(self) -> str:
        return packaged_text_model()

    def input_columns(self, args: TextArguments, raw: RawData) -> list[str]:
        available = raw.splits["train"].column_names
        text = args.text_column_name
        pair = args.text_pair_column_name
        if text is None:
            text = next((c for c in DEFAULT_TEXT_COLUMNS if c in available), None)
            if text is None:
                raise InputError(
                    f"{raw.where('train')}: no text column found among {available}.{raw.header_hint('train')} "
                    f"Name it with --text_column_name."
                )
            if text == "sentence1" and pair is None and "sentence2" in available:
                pair = "sentence2"
        if pair == text:
            raise InputError(
                f"--text_pair_column_name '{pair}' is the same column as the text column: a text pair needs a second "
                f"column (e.g. sentence1 and sentence2); leave --text_pair_column_name out for single texts."
            )
        if pair:
            logger.info("Text pairs: column '%s' with column '%s'.", text, pair)
        return [text] + ([pair] if pair else [])

    def is_valid_input(self, value: object, args=None) -> bool:
        return isinstance(value, str) and value.strip() != ""

    def load_processor(self, model_args: ModelArguments, model_path: str):
        return AutoTokenizer.from_pretrained(
            model_args.tokenizer_name or model_path,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            token=model_args.token,
            trust_remote_code=model_args.trust_remote_code,
        )

    def configure_processor(self, processor, args: TextArguments):
        """The saved tokenizer's `model_max_length` becomes the length training truncated to (`--max_seq_length`,
        capped by the model's), so that `pipeline(...)(text, truncation=True)` sees what training saw."""
        processor.model_max_length = min(args.max_seq_length, processor.model_max_length)
        return processor

    def pipeline_usage(self, processor, args: TextArguments) -> str:
        """The call that truncates texts where training did (the pipeline does not truncate unless asked)."""
        return (
            f"Pass `truncation=True`: texts are then cut at {processor.model_max_length} tokens, as in training "
            '(the tokenizer\'s `model_max_length`):\n```python\nclassifier(["first text", "second text"], '
            "truncation=True, top_k=None)\n```"
        )

    def preprocess(
        self,
        splits: DatasetDict,
        processor,
        input_columns: list[str],
        args: TextArguments,
        training_args: TrainingArguments,
        augment: bool = True,
    ) -> DatasetDict:
        max_length = min(args.max_seq_length, processor.model_max_length)
        padding = "max_length" if args.pad_to_max_length else False

        def tokenize(batch):
            texts = [batch[column] for column in input_columns]
            return processor(*texts, padding=padding, max_length=max_length, truncation=True)

        with training_args.main_process_first(desc="tokenisation"):  # model inputs and labels only remain
            return DatasetDict(
                {
                    split: dataset.map(
                        tokenize,
                        batched=True,
                        remove_columns=[c for c in dataset.column_names if c != LABELS],
                        desc="Tokenising",
                    )
                    for split, dataset in splits.items()
                }
            )

    def data_collator(self, processor, args: TextArguments):
        if args.pad_to_max_length:
            return default_data_collator
        return DataCollatorWithPadding(processor)
