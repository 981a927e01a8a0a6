"""Whisper's encoder for audio classification, cropped to the clip length (see `modeling_whisper_crop`)."""

from transformers import AutoConfig, AutoModelForAudioClassification

from hftl.models.whisper_crop.configuration_whisper_crop import CroppedWhisperConfig
from hftl.models.whisper_crop.modeling_whisper_crop import CroppedWhisperForAudioClassification

AutoConfig.register(CroppedWhisperConfig.model_type, CroppedWhisperConfig, exist_ok=True)
AutoModelForAudioClassification.register(CroppedWhisperConfig, CroppedWhisperForAudioClassification, exist_ok=True)
CroppedWhisperConfig.register_for_auto_class()
CroppedWhisperForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")

__all__ = ["CroppedWhisperConfig", "CroppedWhisperForAudioClassification"]
