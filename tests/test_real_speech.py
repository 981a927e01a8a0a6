"""The packaged Whisper-base (converted from CTranslate2) and the built-in spoken-language data, for real."""

import os

import pytest
import torch
from helpers import recipe_defaults

from hftl.assets import packaged_speech_model
from hftl.data import load_builtin
from hftl.data.speech import data_dir
from hftl.modalities import AudioModality
from hftl.modalities.audio import decode, resample
from hftl.pipeline import run_classification

pytestmark = pytest.mark.slow
DEFAULTS = recipe_defaults("speech_classification")


def _transcribe(model, extractor, tokenizer, path: str) -> str:
    samples, rate = decode({"path": path, "bytes": None})
    features = extractor(resample(samples, rate, 16_000), sampling_rate=16_000, return_tensors="pt").input_features
    ids = [50258, 50259, 50359, 50363]  # start of transcript, English, transcribe, no timestamps
    with torch.no_grad():
        encoded = model.model.encoder(features).last_hidden_state
        for _ in range(30):
            token = int(model(encoder_outputs=(encoded,), decoder_input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if token == 50257:  # end of text
                break
            ids.append(token)
    return tokenizer.decode(ids[4:]).strip().lower()


def test_converted_whisper_transcribes_real_speech():
    from transformers import PreTrainedTokenizerFast, WhisperFeatureExtractor, WhisperForConditionalGeneration

    folder = packaged_speech_model()
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"))
    load_builtin("spoken_language_id_real")  # prepares the Asterisk prompts
    english = os.path.join(data_dir("real"), "en")
    assert "cancel" in _transcribe(model, extractor, tokenizer, os.path.join(english, "cancelled.wav"))
    assert "area code" in _transcribe(model, extractor, tokenizer, os.path.join(english, "privacy-prompt.wav"))


def test_builtin_spoken_language_id():
    real, synthetic = load_builtin("spoken_language_id_real"), load_builtin("spoken_language_id_synthetic")
    assert {name: len(split) for name, split in real.items()} == {"train": 2143, "validation": 260, "test": 319}
    assert {name: len(split) for name, split in synthetic.items()} == {"train": 920, "validation": 125, "test": 155}
    assert real["train"].features["label"].names == ["en", "es", "fr", "it", "ru"]
    train_prompts = {os.path.basename(p) for p in real["train"]["audio"]}
    test_prompts = {os.path.basename(p) for p in real["test"]["audio"]}
    assert not train_prompts & test_prompts  # a prompt never crosses splits, in any language


def test_language_id_with_cached_whisper_features(tmp_path):
    metrics = run_classification(
        AudioModality(),
        DEFAULTS,
        [
            "--output_dir",
            str(tmp_path / "lid"),
            "--max_train_samples",
            "300",
            "--max_eval_samples",
            "100",
            "--max_predict_samples",
            "100",
            "--max_length_seconds",
            "4",
            "--disable_tqdm",
            "true",
        ],
    )
    assert metrics["trainable_parameters"] == 512 * 256 + 256 + 256 * 5 + 5  # projector + classifier
    assert metrics["test_accuracy"] >= 0.6, metrics  # chance is 0.2
