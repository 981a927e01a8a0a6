"""Export for serving: a recipe's saved classifier becomes an ONNX graph whose logits match PyTorch's (text, image,
speech, hftl's own EfficientNet-Lite and cropped Whisper included), an int8 graph that runs, and a folder that
serves with onnxruntime and the saved processor alone; bad folders are one-line errors."""

import json
import os

import numpy as np
import onnxruntime
import pytest
import soundfile
import torch
from helpers import make_tone, recipe_args, recipe_defaults
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoTokenizer,
)

from hftl.cli import main as cli
from hftl.export.parity import compare
from hftl.modalities import AudioModality, TextModality
from hftl.pipeline import run_classification
from hftl.recipes import main as recipe

FAST = "--num_train_epochs 1 --per_device_train_batch_size 16 --learning_rate 1e-3 --report_to none".split()
QUICK = "--eval_strategy no --save_strategy no --disable_tqdm true".split()


def _report(folder) -> dict:
    with open(os.path.join(folder, "export_report.json")) as handle:
        return json.load(handle)


def _assert_exported(folder, examples: int, int8: bool) -> dict:
    """The export folder holds the graphs, config (with id2label) and report; the float graph passed parity."""
    report = _report(folder)
    assert report["onnx"]["passed"] and report["onnx"]["max_abs_diff"] <= 1e-4, report
    assert report["onnx"]["examples"] == examples and report["onnx"]["argmax_agreement"] == 1.0
    assert os.path.isfile(os.path.join(folder, "model.onnx")) and os.path.isfile(os.path.join(folder, "config.json"))
    assert AutoConfig.from_pretrained(folder).id2label
    assert ("int8" in report) == int8 == os.path.isfile(os.path.join(folder, "model_int8.onnx"))
    if int8:
        assert report["int8"]["examples"] == examples and 0 <= report["int8"]["argmax_agreement"] <= 1
        assert report["int8"]["size_mb"] <= report["onnx"]["size_mb"]
    return report


def _serve(folder, inputs: dict, graph: str = "model.onnx") -> np.ndarray:
    """The README's serving lines: the saved processor's numpy output straight into an onnxruntime session."""
    session = onnxruntime.InferenceSession(os.path.join(folder, graph))
    return session.run(["logits"], dict(inputs))[0]


def test_text_recipe_exports_onnx_checked_on_its_test_split(tiny_bert_dir, text_files, tmp_path):
    output_dir = tmp_path / "text"
    args = recipe_args(tiny_bert_dir, text_files, output_dir, *FAST, "--export_onnx", "true", "--export_quantize")
    run_classification(TextModality(), recipe_defaults("text_classification"), [*args, "int8", *QUICK])
    folder = output_dir / "onnx"
    report = _assert_exported(folder, examples=8, int8=True)  # the first 8 rows of the 16-row test file
    assert report["inputs"] == ["input_ids", "token_type_ids", "attention_mask"]
    texts = ["a great film", "the plot was very dull and the story was boring and weak", "good"]
    tokenizer = AutoTokenizer.from_pretrained(folder)  # serving needs the export folder only
    model = TextModality.auto_model_class.from_pretrained(output_dir).eval()
    with torch.no_grad():
        expected = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()
    served = _serve(folder, tokenizer(texts, padding=True, return_tensors="np"))
    assert np.abs(served - expected).max() <= 1e-4  # batch 3 and its own length: axes are dynamic
    int8 = _serve(folder, tokenizer(texts, padding=True, return_tensors="np"), "model_int8.onnx")
    assert int8.shape == expected.shape and np.isfinite(int8).all()


def _clips(folder, seconds: list[float]) -> list[str]:
    paths = []
    for i, length in enumerate(seconds):
        path = os.path.join(folder, f"clip{i}.wav")
        soundfile.write(path, make_tone(("low", "high")[i % 2], i, 16_000, length), 16_000)
        paths.append(path)
    return paths


def test_speech_recipe_exports_cropped_whisper_for_any_clip_length(tiny_whisper_dir, audio_folders, tmp_path):
    output_dir = tmp_path / "speech"
    flags = [*FAST, "--max_length_seconds", "2", "--export_onnx", "true", *QUICK]
    assert (
        recipe(
            AudioModality(),
            recipe_defaults("speech_classification"),
            recipe_args(tiny_whisper_dir, audio_folders, output_dir, *flags),
        )
        == 0
    )
    folder = output_dir / "onnx"
    report = _assert_exported(folder, examples=8, int8=False)
    assert report["model_type"] == "hftl_whisper_crop" and report["inputs"] == ["input_features", "attention_mask"]
    # the crop to the longest clip is computed in the graph, not fixed at the traced length
    extractor = AutoFeatureExtractor.from_pretrained(folder)
    clips = [soundfile.read(p, dtype="float32")[0] for p in _clips(tmp_path, [0.3, 1.7, 0.9])]
    model = AudioModality.auto_model_class.from_pretrained(output_dir).eval()
    # the extractor's mask over samples (its own setting) or over frames (asked for, as hftl's collator does)
    for batch, kwargs in (([clips[0]], {}), (clips, {}), (clips, {"return_attention_mask": True})):
        with torch.no_grad():
            expected = model(**extractor(batch, sampling_rate=16_000, return_tensors="pt", **kwargs)).logits.numpy()
        served = _serve(folder, extractor(batch, sampling_rate=16_000, return_tensors="np", **kwargs))
        assert np.abs(served - expected).max() <= 1e-4


@pytest.mark.parametrize("fixture", ["tiny_efficientnet_lite_dir", "tiny_wav2vec2_dir"])
def test_export_command_on_saved_classifiers(fixture, request, tmp_path, capsys):
    model_dir = request.getfixturevalue(fixture)
    if fixture == "tiny_wav2vec2_dir":  # its user's own clips as the check's inputs
        samples = ["--samples", *_clips(tmp_path, [0.5, 1.25, 0.75, 2.0, 0.4])]
    else:
        samples = []
    assert cli(["export", model_dir, "--output_dir", str(tmp_path / "onnx"), "--quantize", "int8", *samples]) == 0
    printed = capsys.readouterr().out
    assert "model.onnx" in printed and "model_int8.onnx" in printed and "export_report.json" in printed
    report = _assert_exported(tmp_path / "onnx", examples=5 if samples else 8, int8=True)
    if fixture == "tiny_wav2vec2_dir":
        assert report["inputs"] == ["input_values", "attention_mask"]
    else:
        processor = AutoImageProcessor.from_pretrained(tmp_path / "onnx")
        images = [np.full((20 + 9 * i, 30, 3), 40 * i, dtype=np.uint8) for i in range(3)]
        assert _serve(tmp_path / "onnx", processor(images, return_tensors="np"), "model_int8.onnx").shape[0] == 3


def test_failed_parity_writes_the_report_and_exits_1(tiny_vit_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("hftl.export.run.TOLERANCE", -1.0)  # no graph can be that close
    assert cli(["export", tiny_vit_dir, "--output_dir", str(tmp_path), "--num_samples", "2"]) == 1
    assert "differ from PyTorch's" in capsys.readouterr().err
    report = _report(tmp_path)
    assert report["onnx"]["passed"] is False and report["onnx"]["examples"] == 2


def _adapter_only(tmp_path) -> str:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    return str(folder)


def _unknown_type(tmp_path) -> str:
    folder = tmp_path / "unknown"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "no_such_model"}')
    (folder / "model.safetensors").write_bytes(b"")
    return str(folder)


@pytest.mark.parametrize(
    "make, flags, message",
    [
        (lambda tmp, bert: str(tmp / "missing"), [], "does not exist"),
        (lambda tmp, bert: bert, [], "holds a bert model (BertModel), not a text, image or audio classifier"),
        (lambda tmp, bert: _adapter_only(tmp), [], "holds a LoRA adapter only"),
        (lambda tmp, bert: _unknown_type(tmp), [], "cannot be read by transformers or hftl"),
        (lambda tmp, bert: str(tmp), [], "has no config.json"),
        (lambda tmp, bert: None, ["--output_dir", "{file}"], "is a file, not a folder"),
        (lambda tmp, bert: None, ["--num_samples", "1"], "--num_samples 1"),
    ],
)
def test_bad_folders_and_flags_are_one_line_errors(make, flags, message, tiny_bert_dir, tiny_vit_dir, tmp_path, capsys):
    model_dir = make(tmp_path, tiny_bert_dir) or tiny_vit_dir
    (tmp_path / "file").write_text("x")
    flags = [flag.format(file=tmp_path / "file") for flag in flags]
    assert cli(["export", model_dir, *flags]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1, error


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--export_quantize", "int8"], "--export_quantize int8 needs --export_onnx true"),
        (["--export_onnx", "true", "--export_quantize", "int4"], "the one quantisation offered is int8"),
        (["--export_onnx", "true", "--strategy", "lora", "--merge_adapter", "false"], "saves the adapter alone"),
    ],
)
def test_recipe_export_flags_are_checked_before_loading(flags, message, text_files, tmp_path, capsys):
    args = recipe_args(str(tmp_path / "no-model-needed"), text_files, tmp_path / "out", *flags)
    assert recipe(TextModality(), recipe_defaults("text_classification"), args) == 2
    assert message in capsys.readouterr().err


def test_compare_known_values():
    reference = [np.array([[0.0, 1.0]]), np.array([[2.0, 0.0], [0.5, 0.4]])]
    candidate = [np.array([[0.0, 1.5]]), np.array([[0.0, 0.1], [0.5, 0.4]])]
    assert compare(reference, candidate) == {
        "examples": 3,
        "max_abs_diff": 2.0,
        "argmax_agreement": pytest.approx(2 / 3),
    }
    with pytest.raises(ValueError):
        compare(reference, [np.zeros((3, 3))])


def test_export_traces_an_eager_attention_copy_and_leaves_the_model_as_loaded(tiny_vit_dir):
    from hftl.export.graph import _eager_copy

    model = AutoModelForImageClassification.from_pretrained(tiny_vit_dir).eval()
    before = model.config._attn_implementation
    assert _eager_copy(model).config._attn_implementation == "eager" and before != "eager"
    assert model.config._attn_implementation == before


def test_samples_are_read_as_training_reads_them(tmp_path):
    from hftl.errors import InputError
    from hftl.export.samples import read_examples

    (tmp_path / "reviews.csv").write_text('id,review\n1,"good, very good"\n2,\n3,dull\n')
    (tmp_path / "more.txt").write_text("fine\n\n  superb  \n")
    texts = read_examples("text", [str(tmp_path / "reviews.csv"), str(tmp_path / "more.txt")], 10)
    assert texts == ["good, very good", "dull", "fine", "superb"]
    assert read_examples("text", [str(tmp_path / "more.txt")], 1) == ["fine"]
    with pytest.raises(InputError, match="not readable as image input"):
        read_examples("image", [str(tmp_path)], 4)  # a folder of text files
    with pytest.raises(InputError, match="no such file or folder"):
        read_examples("audio", [str(tmp_path / "missing.wav")], 4, 16_000)
