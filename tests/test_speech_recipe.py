"""The speech recipe on tiny models built from configs: strategies, decoding rules, bad audio, cropped Whisper."""

import json
import os

import numpy as np
import pytest
import soundfile
import torch
from helpers import make_tone, recipe_args, recipe_defaults, run_python
from transformers import AutoFeatureExtractor, WhisperFeatureExtractor, WhisperForAudioClassification, pipeline

from hftl.modalities import AudioModality
from hftl.modalities.audio import decode, resample
from hftl.models import CroppedWhisperForAudioClassification
from hftl.pipeline import run_classification
from hftl.recipes import main

DEFAULTS = recipe_defaults("speech_classification")
FAST = (
    "--num_train_epochs 2 --per_device_train_batch_size 8 --per_device_eval_batch_size 8 "
    "--learning_rate 1e-3 --logging_steps 5 --disable_tqdm true --max_length_seconds 2"
).split()


def _args(model_dir, data, output_dir, *extra):
    return recipe_args(model_dir, data, output_dir, *FAST, *extra)


def _pipeline_predictions(output_dir, folder, **kwargs):
    """Labels that `pipeline("audio-classification")` gives to the files of `folder`, in the recipe's order."""
    from datasets import Audio

    from hftl.data.loading import _scan_audio_folder

    rows = _scan_audio_folder(folder).cast_column("audio", Audio(decode=False))
    classifier = pipeline("audio-classification", model=str(output_dir), **kwargs)
    rate = classifier.feature_extractor.sampling_rate
    predictions = []
    for cell in rows["audio"]:
        samples, source_rate = decode(cell)
        samples = resample(samples, source_rate, rate)[: 2 * rate]
        predictions.append(classifier({"raw": samples, "sampling_rate": rate}, top_k=1)[0]["label"])
    return predictions


def _saved_predictions(output_dir):
    import csv

    with open(os.path.join(output_dir, "eval_predictions.csv"), encoding="utf-8") as handle:
        return [row["prediction"] for row in csv.DictReader(handle)]


@pytest.mark.parametrize("strategy", ["full", "feature_extraction", "freeze", "two_stage", "lora"])
def test_every_strategy_on_wav2vec2(tiny_wav2vec2_dir, audio_folders, tmp_path, strategy):
    output_dir = tmp_path / strategy
    metrics = run_classification(
        AudioModality(), DEFAULTS, _args(tiny_wav2vec2_dir, audio_folders, output_dir, "--strategy", strategy)
    )
    assert metrics["train_samples"] == 24 and metrics["eval_samples"] == 8
    assert json.load(open(output_dir / "config.json"))["id2label"] == {"0": "high", "1": "low"}
    assert _pipeline_predictions(output_dir, audio_folders["validation_dir"]) == _saved_predictions(output_dir)


def test_feature_encoder_is_frozen_by_default(tiny_wav2vec2_dir, audio_folders, tmp_path):
    counts = {}
    for freeze in ("true", "false"):
        metrics = run_classification(
            AudioModality(),
            DEFAULTS,
            _args(
                tiny_wav2vec2_dir,
                audio_folders,
                tmp_path / freeze,
                "--freeze_feature_encoder",
                freeze,
                "--strategy",
                "full",
                "--num_train_epochs",
                "1",
                "--do_eval",
                "false",
                "--do_predict",
                "false",
            ),
        )
        counts[freeze] = metrics["trainable_parameters"]
    from transformers import Wav2Vec2ForSequenceClassification

    model = Wav2Vec2ForSequenceClassification.from_pretrained(tmp_path / "true")
    cnn = sum(p.numel() for p in model.wav2vec2.feature_extractor.parameters())
    assert counts["false"] - counts["true"] == cnn > 0


def test_whisper_is_cropped_cached_and_loads_without_hftl(tiny_whisper_dir, audio_folders, tmp_path):
    output_dir = tmp_path / "whisper"
    metrics = run_classification(
        AudioModality(),
        DEFAULTS,
        _args(
            tiny_whisper_dir,
            audio_folders,
            output_dir,
            "--strategy",
            "feature_extraction",
            "--num_train_epochs",
            "60",
            "--learning_rate",
            "1e-2",
        ),
    )
    assert "feature_extraction_runtime" in metrics  # pooled encoder states were cached: projector + classifier train
    config = json.load(open(output_dir / "config.json"))
    assert config["model_type"] == "hftl_whisper_crop" and "AutoModelForAudioClassification" in config["auto_map"]
    assert json.load(open(output_dir / "preprocessor_config.json"))["return_attention_mask"] is True
    assert _pipeline_predictions(output_dir, audio_folders["validation_dir"]) == _saved_predictions(output_dir)
    probe = tmp_path / "probe.wav"
    soundfile.write(probe, make_tone("low", 1), 16_000)
    script = (
        "import sys, soundfile; from transformers import pipeline; "
        f"p = pipeline('audio-classification', model={str(output_dir)!r}, trust_remote_code=True); "
        f"x, r = soundfile.read({str(probe)!r}, dtype='float32'); "
        "print(sorted(o['label'] for o in p({'raw': x, 'sampling_rate': r}))); "
        "assert 'hftl' not in sys.modules and type(p.model).__name__ == 'CroppedWhisperForAudioClassification'"
    )
    done = run_python(["-c", script], cwd=str(tmp_path))
    assert "['high', 'low']" in done.stdout


def test_cropped_whisper_equals_whisper_on_full_windows_and_ignores_padding(tiny_whisper_dir):
    full = WhisperForAudioClassification.from_pretrained(tiny_whisper_dir, num_labels=3).eval()
    cropped = CroppedWhisperForAudioClassification.from_pretrained(tiny_whisper_dir, num_labels=3).eval()
    cropped.load_state_dict(full.state_dict())
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper_dir)
    short, long = make_tone("low", 0, seconds=1.0), make_tone("high", 1, seconds=3.0)
    batch = extractor([short, long], sampling_rate=16_000, return_tensors="pt", return_attention_mask=True)
    alone = extractor([short], sampling_rate=16_000, return_tensors="pt", return_attention_mask=True)
    with torch.no_grad():
        torch.testing.assert_close(
            cropped(input_features=batch.input_features).logits,
            full(input_features=batch.input_features).logits,
            atol=1e-5,
            rtol=1e-5,
        )
        together = cropped(**batch).logits[0]
        by_itself = cropped(**alone).logits[0]
    torch.testing.assert_close(together, by_itself, atol=1e-4, rtol=1e-4)  # padding to the longer clip changes nothing
    hidden, mask = cropped.encode(alone.input_features, alone.attention_mask)
    assert hidden.shape[1] == 50 and mask.shape == (1, 50)  # 1 s = 100 mel frames = 50 encoder positions, not 1,500


def _bad_audio_csv(tmp_path):
    import csv

    (tmp_path / "clips").mkdir()
    rows = []
    for i in range(10):
        label = ("low", "high")[i % 2]
        soundfile.write(tmp_path / "clips" / f"{i}.wav", make_tone(label, i), 16_000)
        rows.append({"path": f"clips/{i}.wav", "label": label})
    (tmp_path / "clips" / "1.wav").write_bytes(b"RIFF garbage")
    soundfile.write(tmp_path / "clips" / "2.wav", np.zeros(0, dtype=np.float32), 16_000)
    nan = make_tone("low", 3)
    nan[100] = np.nan
    soundfile.write(tmp_path / "clips" / "3.wav", nan, 16_000, subtype="FLOAT")
    soundfile.write(tmp_path / "clips" / "4.wav", make_tone("low", 4, seconds=0.02), 16_000)
    path = tmp_path / "train.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def test_bad_audio_is_reported_by_path_or_skipped(tiny_wav2vec2_dir, tmp_path, capsys, caplog):
    train = _bad_audio_csv(tmp_path)
    code = main(AudioModality(), DEFAULTS, _args(tiny_wav2vec2_dir, {"train_file": train}, tmp_path / "out"))
    error = capsys.readouterr().err
    assert code == 2 and "4 invalid row(s)" in error and "rows [1, 2, 3, 4]" in error
    assert "unreadable, empty, NaN, too short or at an implausible sampling rate" in error
    assert f"{tmp_path}/clips/1.wav (unreadable by soundfile" in error and f"{tmp_path}/clips/2.wav (empty" in error
    assert f"{tmp_path}/clips/3.wav (NaN" in error and f"{tmp_path}/clips/4.wav (0.020 s" in error
    metrics = run_classification(
        AudioModality(),
        DEFAULTS,
        _args(
            tiny_wav2vec2_dir,
            {"train_file": train},
            tmp_path / "out",
            "--drop_invalid_examples",
            "true",
            "--num_train_epochs",
            "1",
            "--validation_split_percentage",
            "34",
        ),
    )
    assert "Dropped 4 invalid row(s)" in caplog.text
    assert metrics["train_samples"] + metrics["eval_samples"] == 6


def test_decoding_rules(tmp_path):
    stereo = make_tone("low", 0, rate=8_000, seconds=1.0, stereo=True)
    soundfile.write(tmp_path / "s.wav", stereo, 8_000, subtype="FLOAT")
    samples, rate = decode({"path": str(tmp_path / "s.wav"), "bytes": None})
    assert rate == 8_000 and samples.ndim == 1
    np.testing.assert_allclose(samples, stereo.mean(axis=1), atol=1e-6)  # mono = mean of the channels
    assert len(resample(samples, 8_000, 16_000)) == 16_000


def test_crops_random_in_training_first_seconds_in_evaluation(tiny_wav2vec2_dir, tmp_path):
    from datasets import Dataset, DatasetDict
    from transformers import TrainingArguments

    from hftl.arguments import AudioArguments

    clip = np.arange(16_000 * 3, dtype=np.float32) / 48_000
    soundfile.write(tmp_path / "c.wav", clip, 16_000, subtype="FLOAT")
    modality = AudioModality()
    split = Dataset.from_dict({"audio": [str(tmp_path / "c.wav")] * 4, "labels": [0] * 4})
    from hftl.data.loading import RawData

    raw = RawData(DatasetDict(train=split, validation=split), {}, "")
    modality.prepare_raw(raw, ["audio"], AudioArguments())
    extractor = AutoFeatureExtractor.from_pretrained(tiny_wav2vec2_dir)
    ready = modality.preprocess(
        raw.splits, extractor, ["audio"], AudioArguments(max_length_seconds=1.0), TrainingArguments("x")
    )
    train = [ready["train"][i]["audio_samples"] for i in range(4)]
    evaluation = [ready["validation"][i]["audio_samples"] for i in range(4)]
    assert all(len(c) == 16_000 for c in train + evaluation)
    assert len({float(c[0]) for c in train}) > 1  # random windows
    assert all(float(c[0]) == 0.0 for c in evaluation)  # the first second


@pytest.mark.parametrize("strategy", ["full", "freeze", "two_stage", "lora"])
def test_whisper_strategies(tiny_whisper_dir, audio_folders, tmp_path, strategy):
    output_dir = tmp_path / strategy
    metrics = run_classification(
        AudioModality(),
        DEFAULTS,
        _args(tiny_whisper_dir, audio_folders, output_dir, "--strategy", strategy, "--num_train_epochs", "3"),
    )
    assert 0 < metrics["trainable_parameters"] < metrics["total_parameters"]  # the convolutions stay frozen
    assert json.load(open(output_dir / "config.json"))["model_type"] == "hftl_whisper_crop"
    assert _pipeline_predictions(output_dir, audio_folders["validation_dir"]) == _saved_predictions(output_dir)
