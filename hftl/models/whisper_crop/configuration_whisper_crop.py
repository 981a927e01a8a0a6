"""Configuration of the cropped Whisper audio classifier. Self-contained: this file is copied beside saved weights."""

from transformers import WhisperConfig


class CroppedWhisperConfig(WhisperConfig):
    """`WhisperConfig` of a `CroppedWhisperForAudioClassification`: same fields, its own model type."""

    model_type = "hftl_whisper_crop"
