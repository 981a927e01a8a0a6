"""A saved speech model served by `pipeline("audio-classification")` sees what training saw: the documented call
(`hftl.load_audio`) gives, on files at any rate, mono or stereo, WAV or FLAC, the probabilities of hftl's own
evaluation-time preprocessing and the saved model's forward. Clip reading itself: cut before resampling, bounded."""

import numpy as np
import pytest
import soundfile
import torch
from helpers import make_tone, recipe_defaults
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, Wav2Vec2Config, pipeline

import hftl
from hftl.arguments import AudioArguments
from hftl.modalities import AudioModality
from hftl.modalities.audio import AudioCollator, min_input_samples
from hftl.modalities.audio_io import decode, read_clip, resample
from hftl.pipeline import run_classification

MAX_SECONDS = 2.0
# (rate, channels, format, seconds): every clip is served; the longer ones are cut to MAX_SECONDS as in evaluation
CLIPS = [
    (8_000, 1, "wav", 1.0),
    (8_000, 2, "flac", 2.5),
    (16_000, 1, "flac", 1.5),
    (16_000, 2, "wav", 3.0),
    (22_050, 1, "wav", 2.5),
    (22_050, 2, "flac", 1.0),
    (44_100, 1, "flac", 3.0),
    (44_100, 2, "wav", 1.5),
]


def _clips(folder) -> list[str]:
    """The CLIPS of both classes ('low', 'high') as an audiofolder under `folder`; their paths."""
    paths = []
    for i, (rate, channels, ext, seconds) in enumerate(CLIPS):
        for label in ("low", "high"):
            (folder / label).mkdir(parents=True, exist_ok=True)
            path = folder / label / f"{i}-{rate}-{channels}ch.{ext}"
            soundfile.write(path, make_tone(label, i, rate, seconds, stereo=channels == 2), rate)
            paths.append(str(path))
    return paths


@pytest.fixture(scope="module", params=["tiny_wav2vec2_dir", "tiny_whisper_dir"])
def trained(request, tmp_path_factory):
    """(saved model folder, clip paths) of a short speech run on the CLIPS."""
    folder = tmp_path_factory.mktemp(f"serving-{request.param}")
    paths = _clips(folder / "train")
    flags = (
        f"--model_name_or_path {request.getfixturevalue(request.param)} --train_dir {folder / 'train'} "
        f"--validation_dir {folder / 'train'} --output_dir {folder / 'out'} --num_train_epochs 2 --learning_rate 1e-3 "
        f"--per_device_train_batch_size 8 --max_length_seconds {MAX_SECONDS} --strategy full --report_to none "
        "--eval_strategy no --save_strategy no --do_predict false"
    )
    run_classification(AudioModality(), recipe_defaults("speech_classification"), flags.split())
    return str(folder / "out"), paths


def _evaluation_probabilities(output_dir: str, paths: list[str]) -> list[dict[str, float]]:
    """Label -> probability of each clip, through hftl's evaluation preprocessing, collator and the saved model."""
    from datasets import Dataset, DatasetDict

    from hftl.data.loading import RawData

    modality, args = AudioModality(), AudioArguments(max_length_seconds=MAX_SECONDS)
    raw = RawData(DatasetDict(validation=Dataset.from_dict({"audio": paths})), {}, "")
    modality.prepare_raw(raw, ["audio"], args)
    extractor = AutoFeatureExtractor.from_pretrained(output_dir)
    ready = modality.preprocess(raw.splits, extractor, ["audio"], args, None, augment=False)["validation"]
    model = AutoModelForAudioClassification.from_pretrained(output_dir).eval()
    results = []
    for example in ready:
        with torch.no_grad():
            probabilities = model(**AudioCollator(extractor)([example])).logits.softmax(-1)[0]
        results.append({model.config.id2label[i]: float(p) for i, p in enumerate(probabilities)})
    return results


def test_documented_pipeline_call_gives_the_evaluation_probabilities(trained):
    output_dir, paths = trained
    classifier = pipeline("audio-classification", model=output_dir)
    rate = classifier.feature_extractor.sampling_rate
    expected = _evaluation_probabilities(output_dir, paths)
    for path, wanted in zip(paths, expected, strict=True):
        served = classifier(hftl.load_audio(path, sampling_rate=rate, max_length_seconds=MAX_SECONDS), top_k=None)
        got = {entry["label"]: entry["score"] for entry in served}
        assert got.keys() == wanted.keys()
        np.testing.assert_allclose([got[k] for k in wanted], list(wanted.values()), atol=1e-5, err_msg=path)
    card = open(f"{output_dir}/README.md", encoding="utf-8").read()
    assert f'hftl.load_audio("clip.wav", sampling_rate={rate}, max_length_seconds={MAX_SECONDS:g})' in card


@pytest.mark.parametrize("rate", [8_000, 11_025, 22_050, 44_100, 48_000, 1_000])
def test_cutting_before_resampling_equals_resampling_the_whole_clip(tmp_path, rate):
    clip = np.random.default_rng(rate).standard_normal((rate * 3, 2)).astype(np.float32) * 0.3
    soundfile.write(tmp_path / "c.wav", clip, rate, subtype="FLOAT")
    cell = {"path": str(tmp_path / "c.wav"), "bytes": None}
    whole = resample(decode(cell)[0], rate, 16_000)
    for window in (8_000, 16_000, 10**6):
        np.testing.assert_allclose(read_clip(cell, 16_000, window), whole[:window], atol=1e-6)
    assert len(read_clip(cell, 16_000, 8_000, random_start=True)) == 8_000


def test_a_header_claiming_1_hz_is_refused_by_name_before_any_resampling(tmp_path):
    path = tmp_path / "one-hertz.wav"  # 200 kB: resampled whole to 16 kHz it would be 1.6e9 samples (6.4 GB)
    soundfile.write(path, np.zeros(100_000, dtype=np.int16), 1, subtype="PCM_16")
    with pytest.raises(ValueError, match=r"one-hertz\.wav: its header says 1 Hz.*re-encode"):
        hftl.load_audio(path, sampling_rate=16_000)
    with pytest.raises(ValueError, match="1 Hz"):
        read_clip({"path": str(path), "bytes": None}, 16_000, 16_000)


def test_a_long_file_is_read_only_up_to_the_window(tmp_path):
    path = tmp_path / "long.wav"  # 10 minutes at 44.1 kHz
    soundfile.write(path, np.tile(make_tone("low", 0, 44_100, 1.0), 600), 44_100, subtype="PCM_16")
    assert len(hftl.load_audio(path, 16_000, max_length_seconds=2)["raw"]) == 32_000
    assert len(read_clip({"path": str(path), "bytes": None}, 16_000, 32_000, random_start=True)) == 32_000


def test_load_audio_reads_paths_bytes_and_arrays_alike(tmp_path):
    stereo = make_tone("high", 3, 22_050, 1.0, stereo=True)
    soundfile.write(tmp_path / "s.flac", stereo, 22_050, subtype="PCM_24")
    from_path = hftl.load_audio(str(tmp_path / "s.flac"), 16_000)
    assert from_path["sampling_rate"] == 16_000 and from_path["raw"].shape == (16_000,)
    decoded, _ = soundfile.read(tmp_path / "s.flac", dtype="float32")
    for other in (
        tmp_path / "s.flac",
        (tmp_path / "s.flac").read_bytes(),
        {"array": decoded, "sampling_rate": 22_050},
        {"raw": torch.from_numpy(decoded), "sampling_rate": 22_050},
    ):
        np.testing.assert_array_equal(hftl.load_audio(other, 16_000)["raw"], from_path["raw"])
    with pytest.raises(ValueError, match="transpose"):
        hftl.load_audio({"array": decoded.T, "sampling_rate": 22_050}, 16_000)
    nan = make_tone("low", 0)
    nan[10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        hftl.load_audio({"array": nan, "sampling_rate": 16_000}, 16_000)


def test_min_input_samples_is_the_receptive_field_of_the_conv_stack():
    from transformers import WhisperConfig

    assert min_input_samples(Wav2Vec2Config()) == 400  # wav2vec2-base: 25 ms at 16 kHz
    assert min_input_samples(Wav2Vec2Config(conv_kernel=(10, 4), conv_stride=(5, 4), conv_dim=(8, 8))) == 25
    assert min_input_samples(WhisperConfig()) == 1
