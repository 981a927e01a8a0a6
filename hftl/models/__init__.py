"""Architectures transformers lacks (EfficientNet-Lite, cropped Whisper, text classification on a pooled sentence
embedding), written as standard `PreTrainedModel`s and registered with the Auto classes.

Importing this package registers them, so `AutoConfig` / `AutoModelForImageClassification` load their folders.
Saved folders also carry the modeling code (`auto_map`), so a process without hftl loads them with
`trust_remote_code=True`.
"""

from hftl.models.efficientnet_lite import (
    EfficientNetLiteConfig,
    EfficientNetLiteForImageClassification,
    EfficientNetLiteModel,
)
from hftl.models.sentence_pooling import SentencePoolingConfig, SentencePoolingForSequenceClassification
from hftl.models.whisper_crop import CroppedWhisperConfig, CroppedWhisperForAudioClassification

__all__ = [
    "CroppedWhisperConfig",
    "CroppedWhisperForAudioClassification",
    "EfficientNetLiteConfig",
    "EfficientNetLiteForImageClassification",
    "EfficientNetLiteModel",
    "SentencePoolingConfig",
    "SentencePoolingForSequenceClassification",
]
