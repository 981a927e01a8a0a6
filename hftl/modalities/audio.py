"""Speech / audio classification: a feature extractor turns each clip into `input_values` or `input_features`.

Every clip is read by `audio_io.read_clip`: decoded with soundfile (no FFmpeg needed), down-mixed to mono by averaging
its channels, cut to `--max_length_seconds` (a random window in training, the first seconds in evaluation), then
resampled with soxr to the feature extractor's sampling rate. `hftl.load_audio` reads clips the same way for
`pipeline("audio-classification")`. Whisper models run on the clip's own frames
(`CroppedWhisperForAudioClassification`) instead of a 30 s window.
"""

from __future__ import annotations

import io
import logging
import math

import numpy as np
import torch
from datasets import Audio, DatasetDict
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, TrainingArguments

from hftl.arguments import AudioArguments, ModelArguments
from hftl.assets import packaged_speech_model
from hftl.data.checks import LABELS
from hftl.data.loading import RawData
from hftl.errors import InputError
from hftl.modalities.audio_io import clip_problem, decode, load_audio, read_clip, resample
from hftl.modalities.base import Modality, cast_file_column, describe_file_cell, file_cell_problem

logger = logging.getLogger(__name__)

DEFAULT_AUDIO_COLUMNS = ("audio", "file", "path", "audio_path", "filename")
_PATH_TYPES = ("string", "large_string", "null")  # `datasets` dtypes of a column of paths (null: all empty)
FEATURE_ENCODER_PARTS = (".feature_extractor.", ".feature_encoder.", "encoder.conv1.", "encoder.conv2.")
__all__ = ["AudioCollator", "AudioModality", "decode", "load_audio", "min_input_samples", "read_clip", "resample"]


def min_input_samples(config) -> int:
    """The fewest samples a model's convolutional feature encoder turns into one frame; 1 when it has none.

    wav2vec2-style encoders (wav2vec2, HuBERT, WavLM, data2vec-audio ...) stack 1-D convolutions of kernels
    `config.conv_kernel` and strides `config.conv_stride`; a clip shorter than their receptive field
    1 + sum_i (k_i - 1) * prod_{j<i} s_j gives no frame (400 samples, 25 ms at 16 kHz, for wav2vec2-base).
    """
    kernels, strides = getattr(config, "conv_kernel", None), getattr(config, "conv_stride", None)
    size, jump = 1, 1
    for kernel, stride in zip(kernels or (), strides or (), strict=False):
        size, jump = size + (kernel - 1) * jump, jump * stride
    return size


def _check_length_flags(model, args: AudioArguments, sampling_rate: int) -> None:
    """Raises: InputError when --min_length_seconds / --max_length_seconds let through clips the model's
    convolutional feature encoder cannot read."""
    fewest = min_input_samples(model.config)
    if fewest <= 1:
        return
    need = math.ceil((fewest + 1) / sampling_rate * 1000) / 1000  # seconds, rounded up to the millisecond
    for flag, value in (
        ("--min_length_seconds", args.min_length_seconds),
        ("--max_length_seconds", args.max_length_seconds),
    ):
        if value < need:
            raise InputError(
                f"{flag} {value}: the {model.config.model_type} model's convolutional feature encoder reads clips of "
                f"{fewest} samples or more ({need} s at {sampling_rate} Hz); shorter ones give it no frame. Set "
                f"{flag} to {need} or more."
            )


class AudioModality(Modality):
    name = "audio"
    arguments_class = AudioArguments
    auto_model_class = AutoModelForAudioClassification
    pipeline_task = "audio-classification"
    peft_task_type = None
    default_dataset = "spoken_language_id_real"
    folder_builder = "audiofolder"
    input_problem = "unreadable, empty, NaN, too short or at an implausible sampling rate"
    training_overrides = {"remove_unused_columns": False}

    def default_model(self) -> str:
        return packaged_speech_model()

    def input_columns(self, args: AudioArguments, raw: RawData) -> list[str]:
        available = raw.splits["train"].column_names
        if args.audio_column_name is not None and args.audio_column_name not in available:
            raise InputError(
                f"{raw.where('train')}: --audio_column_name '{args.audio_column_name}' is not a column; the columns "
                f"are {available}. Name the one holding the audio (or its paths)."
            )
        column = args.audio_column_name or next((c for c in DEFAULT_AUDIO_COLUMNS if c in available), None)
        if column is None:
            raise InputError(
                f"{raw.where('train')}: no audio column found among {available}. Name it with --audio_column_name."
            )
        return [column]

    def prepare_raw(self, raw: RawData, columns: list[str], args: AudioArguments) -> None:
        """Cast the audio column to undecoded `Audio` cells; paths in files resolve against the file's folder.

        Raises:
            InputError: the column holds numbers (or other non-path values) in some split.
        """
        for split, dataset in raw.splits.items():
            feature = dataset.features.get(columns[0])
            kind = getattr(feature, "dtype", None) or type(feature).__name__
            if feature is not None and not isinstance(feature, Audio | dict) and kind not in _PATH_TYPES:
                raise InputError(
                    f"{raw.where(split)}: column '{columns[0]}' holds {kind} values, not audio file paths. Name the "
                    f"column of paths with --audio_column_name."
                )
        cast_file_column(raw, columns[0], Audio(decode=False), "audio")

    def is_valid_input(self, value: object, args: AudioArguments) -> bool:
        if file_cell_problem(value):  # a FIFO or device is never opened (it would block the check)
            return False
        return clip_problem(value, args.min_length_seconds) is None

    def describe_input(self, value: object) -> str:
        """The clip's path and what is wrong with it (called on invalid cells only)."""
        if file_cell_problem(value):
            return describe_file_cell(value, "audio")  # names the problem (a FIFO ...) without opening the path
        shown = describe_file_cell(value, "audio")
        problem = clip_problem(value, math.inf)
        return shown if problem == "empty cell" else f"{shown} ({problem})"

    def load_processor(self, model_args: ModelArguments, model_path: str):
        return AutoFeatureExtractor.from_pretrained(
            model_args.tokenizer_name or model_path,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            token=model_args.token,
            trust_remote_code=model_args.trust_remote_code,
        )

    def configure_processor(self, processor, args: AudioArguments):
        """Warn when --max_length_seconds exceeds what the feature extractor reads (Whisper: 30 s)."""
        limit = getattr(processor, "n_samples", None)
        if limit and args.max_length_seconds * processor.sampling_rate > limit:
            logger.warning(
                "The feature extractor reads at most %.0f s of a clip: clips are cut there, not at "
                "--max_length_seconds %s.",
                limit / processor.sampling_rate,
                args.max_length_seconds,
            )
        return processor

    def prepare_model(self, model, args: AudioArguments, processor=None):
        """Whisper classifiers become `CroppedWhisperForAudioClassification` (same weights, clip-length compute).

        Raises:
            InputError: --min_length_seconds / --max_length_seconds below what a convolutional encoder reads.
        """
        from transformers import WhisperForAudioClassification

        from hftl.models import CroppedWhisperConfig, CroppedWhisperForAudioClassification

        if processor is not None:
            _check_length_flags(model, args, processor.sampling_rate)
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
            output = {"audio_samples": [read_clip(cell, rate, window, random_start=train) for cell in batch[column]]}
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

    def pipeline_usage(self, processor, args: AudioArguments) -> str:
        """The `hftl.load_audio` call that reads a clip as evaluation did (rate, mono mix, resampler, first seconds)."""
        return (
            "Read clips with `hftl.load_audio`, as training read them (soundfile, channels averaged, soxr resampling, "
            f"the first {args.max_length_seconds:g} s); transformers' own file reading needs FFmpeg and its "
            "resampling torchaudio, and both give other samples:\n```python\nimport hftl\n"
            f'classifier(hftl.load_audio("clip.wav", sampling_rate={processor.sampling_rate}, '
            f"max_length_seconds={args.max_length_seconds:g}), top_k=None)\n```"
        )


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
