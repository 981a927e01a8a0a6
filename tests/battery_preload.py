"""Imported once by the battery's fork server, so that each forked case starts with hftl and its models loaded."""

import helpers  # noqa: F401
import transformers  # noqa: F401
from transformers import (  # noqa: F401  (their modules load lazily; importing them here is the point)
    BertForSequenceClassification,
    ResNetForImageClassification,
    ViTForImageClassification,
    Wav2Vec2ForSequenceClassification,
    WhisperForAudioClassification,
)

import hftl.modalities  # noqa: F401
import hftl.pipeline  # noqa: F401
import hftl.recipes  # noqa: F401
