"""Speech / audio classification: a feature extractor turns each clip into `input_values` or `input_features`.

Every clip is decoded with soundfile (no FFmpeg needed), down-mixed to mono by averaging its channels, and resampled
with soxr to the feature extractor's sampling rate. Clips longer than `--max_length_seconds` are cropped: a random
window in training, the first seconds in evaluation. Whisper models run on the clip's own frames
(`CroppedWhisperForAudioClassification`) instead of a 30 s window.
"""

from __future__ import annotations

import io
import logging
import random

import numpy as np
import torch
from datasets import Audio, DatasetDict
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, TrainingArguments

from hftl.arguments import AudioArguments, ModelArguments
from hftl.assets import packaged_speech_model
from hftl.data.checks import LABELS
from hftl.data.loading import RawData
from hftl.errors import InputError
from hftl.modalities.base import Modality, cast_file_column, describe_file_cell, file_cell_problem

logger = logging.getLogger(__name__)

DEFAULT_AUDIO_COLUMNS = ("audio", "file", "path", "audio_path", "filename")
FEATURE_ENCODER_PARTS = (".feature_extractor.", ".feature_encoder.", "encoder.conv1.", "encoder.conv2.")


def decode(cell) -> tuple[np.ndarray, int]:
    """Decode an audio cell (a `datasets` Audio dict with `bytes` or `path`, or {"array", "sampling_rate"}).

    Returns:
        (samples, sampling rate): mono float32 samples, the mean of the channels when there are several.
    """
    import soundfile

    if isinstance(cell, dict) and cell.get("array") is not None:
        samples, rate = np.asarray(cell["array"], dtype=np.float32), int(cell["sampling_rate"])
    elif isinstance(cell, dict) and (cell.get("bytes") or cell.get("path")):
        source = io.BytesIO(cell["bytes"]) if cell.get("bytes") else cell["path"]
        samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
        samples = samples.mean(axis=1)
    else:
        raise ValueError(f"not an audio clip: {type(cell).__name__}")
    if samples.ndim > 1:
        samples = samples.mean(axis=-1)
    return samples, rate


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample with soxr (high quality); unchanged when the rates agree."""
    if rate == target:
        return samples
    import soxr

    return soxr.resample(samples, rate, target).astype(np.float32)


class AudioModality(Modality):
    name = "audio"
    arguments_class = AudioArguments
    auto_model_class = AutoModelForAudioClassification
    pipeline_task = "audio-classification"
    peft_task_type = None
    default_dataset = "spoken_language_id_real"
    folder_builder = "audiofolder"
    input_problem = "unreadable, empty, NaN or too short"
    training_overrides = {"remove_unused_columns": False}

    def default_model(self) -> str:
        return packaged_speech_model()

    def input_columns(self, args: AudioArguments, raw: RawData) -> list[str]:
        available = raw.splits["train"].column_names
        column = args.audio_column_name or next((c for c in DEFAULT_AUDIO_COLUMNS if c in available), None)
        if column is None:
            raise InputError(
                f"{raw.where('train')}: no audio column found among {available}. Name it with --audio_column_name."
            )
        return [column]

    def prepare_raw(self, raw: RawData, columns: list[str], args: AudioArguments) -> None:
        """Cast the audio column to undecoded `Audio` cells; paths in files resolve against the file's folder."""
        cast_file_column(raw, columns[0], Audio(decode=False), "audio")

    def is_valid_input(self, value: object, args: AudioArguments) -> bool:
        if file_cell_problem(value):  # a FIFO or device is never opened (it would block the check)
            return False
        try:
            samples, rate = decode(value)
        except Exception:
            return False
        return len(samples) >= max(1, args.min_length_seconds * rate) and bool(np.isfinite(samples).all())

    def describe_input(self, value: object) -> str:
        return describe_file_cell(value, "audio")

    def load_processor(self, model_args: ModelArguments, model_path: str):
        return AutoFeatureExtractor.from_pretrained(
            model_args.tokenizer_name or model_path,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            token=model_args.token,
            trust_remote_code=model_args.trust_remote_code,
        )

    def prepare_model(self, model, args: AudioArguments, processor=None):
        """Whisper classifiers become `CroppedWhisperForAudioClassification` (same weights, clip-length compute)."""
        from transformers import WhisperForAudioClassification

        from hftl.models import CroppedWhisperConfig, CroppedWhisperForAudioClassification

        if args.crop_whisper_input and type(model) is WhisperForAudioClassification:
            cropped = CroppedWhisperForAudioClassification(CroppedWhisperConfig(**model.config.to_dict()))
            cropped.load_state_dict(model.state_dict())
            model = cropped
            if processor is not None:
                processor.return_attention_mask = True  # the saved extractor hands the frame mask to the model
        return model

    def after_strategy(self, model, args: AudioArguments) -> None:
        """Freeze the convolutional feature encoder (`--freeze_feature_encoder`), whatever the strategy."""
        if not args.freeze_feature_encoder:
            return
        frozen = [n for n, p in model.named_parameters() if any(part in n for part in FEATURE_ENCODER_PARTS)]
        for name, parameter in model.named_parameters():
            if name in frozen:
                parameter.requires_grad = False
        if frozen:
            logger.info("Froze the feature encoder (%d tensors).", len(frozen))

    def preprocess(
        self,
        splits: DatasetDict,
        processor,
        columns: list[str],
        args: AudioArguments,
        training_args: TrainingArguments,
        augment: bool = True,
    ) -> DatasetDict:
        (column,) = columns
        rate = processor.sampling_rate
        window = int(args.max_length_seconds * rate)

        def transform(batch, train: bool):
            clips = []
            for cell in batch[column]:
                samples, source_rate = decode(cell)
                samples = resample(samples, source_rate, rate)
                if len(samples) > window:
                    start = random.randint(0, len(samples) - window) if train else 0
                    samples = samples[start : start + window]
                clips.append(samples)
            output = {"audio_samples": clips}
            if LABELS in batch:
                output[LABELS] = batch[LABELS]
            return output

        ready = DatasetDict()
        for split, dataset in splits.items():
            train = augment and split == "train"
            ready[split] = dataset.with_transform(lambda batch, train=train: transform(batch, train))
        return ready

    def example_lengths(self, split, columns: list[str]) -> list[float]:
        """Seconds of each clip, read from the file headers (no decoding)."""
        import soundfile

        (column,) = columns
        lengths = []
        for cell in split.with_format(None)[column]:
            try:
                source = io.BytesIO(cell["bytes"]) if cell.get("bytes") else cell["path"]
                info = soundfile.info(source)
                lengths.append(info.frames / info.samplerate)
            except Exception:
                lengths.append(0.0)
        return lengths

    def data_collator(self, processor, args: AudioArguments):
        return AudioCollator(processor)


class AudioCollator:
    """Batch clips through the feature extractor (padding as the model expects, with the mask it returns)."""

    def __init__(self, feature_extractor):
        self.feature_extractor = feature_extractor

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        clips = [np.asarray(example["audio_samples"], dtype=np.float32) for example in examples]
        kwargs = {"sampling_rate": self.feature_extractor.sampling_rate, "return_tensors": "pt"}
        if getattr(self.feature_extractor, "return_attention_mask", False):
            kwargs["return_attention_mask"] = True
        if type(self.feature_extractor).__name__ != "WhisperFeatureExtractor":
            kwargs["padding"] = True  # Whisper pads to its 30 s window itself
        batch = dict(self.feature_extractor(clips, **kwargs))
        if LABELS in examples[0]:
            batch[LABELS] = torch.tensor([example[LABELS] for example in examples])
        return batch
