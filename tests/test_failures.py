"""Failures found by trying hftl as a user would (issue 13) that are not bad inputs: finished training is saved
before evaluation, and every trainable parameter gets a gradient under reentrant checkpointing."""

from pathlib import Path

import pytest
import torch
from battery import QUICK, audio_folder, image_folder, text_rows
from helpers import recipe_defaults, write_csv
from safetensors.torch import load_file

from hftl import modalities
from hftl.pipeline import run_classification

CHECKPOINTING = ["--gradient_checkpointing", "true", "--gradient_checkpointing_kwargs", '{"use_reentrant": true}']
RUNS = {  # model fixture -> (modality, recipe, the first layer left trainable by --num_frozen_layers 1)
    "tiny_vit_dir": (modalities.ImageModality, "image_classification", "vit.encoder.layer.1."),
    "tiny_bert_dir": (modalities.TextModality, "text_classification", "bert.encoder.layer.1."),
    "tiny_whisper_dir": (modalities.AudioModality, "speech_classification", "encoder.layers.1."),
    "tiny_wav2vec2_dir": (modalities.AudioModality, "speech_classification", "wav2vec2.encoder.layers.1."),
}


def _data(modality, folder) -> list[str]:
    if modality is modalities.TextModality:
        return ["--train_file", write_csv(folder / "train.csv", text_rows(16, 1))]
    if modality is modalities.ImageModality:
        return ["--train_dir", image_folder(folder, "train", 12)]
    return ["--train_dir", audio_folder(folder, "train", 12)]


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _original(before: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """The tensor `name` of the classifier in the base model's file (saved without the head's prefix, or with
    Whisper's `model.` one)."""
    for candidate in (name, name.split(".", 1)[1], f"model.{name}"):
        if candidate in before:
            return before[candidate]
    raise KeyError(name)


@pytest.mark.parametrize("fixture", list(RUNS))
def test_reentrant_checkpointing_updates_the_first_trainable_layer(fixture, tmp_path, request):
    """`--strategy freeze --num_frozen_layers 1` with reentrant checkpointing: layer 1 trains (on ViT its 16 tensors
    once never changed; torch warned "None of the inputs have requires_grad")."""
    modality, recipe, prefix = RUNS[fixture]
    model_dir = request.getfixturevalue(fixture)
    args = ["--model_name_or_path", model_dir, "--output_dir", str(tmp_path / "out"), *QUICK, "--do_eval", "false"]
    args += [*_data(modality, tmp_path), "--strategy", "freeze", "--num_frozen_layers", "1", *CHECKPOINTING]
    args += ["--learning_rate", "1e-2"]
    run_classification(modality(), recipe_defaults(recipe), args)
    before = _weights(Path(model_dir))
    after = _weights(tmp_path / "out")
    layer = {name: tensor for name, tensor in after.items() if prefix in name}
    assert layer, f"no parameter named {prefix}* in {sorted(after)[:5]}"
    unchanged = [name for name, tensor in layer.items() if torch.equal(tensor, _original(before, name))]
    assert not unchanged, f"{len(unchanged)} of {len(layer)} trainable tensors never updated: {unchanged[:4]}"


def test_the_model_is_saved_before_evaluation(tiny_bert_dir, tmp_path, monkeypatch):
    """An error in evaluation (once: eval images of another shape than training's) loses no training: the model
    was saved before (it was saved after, so such runs ended with nothing)."""
    import hftl.pipeline

    def failing_evaluation(trained, run):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(hftl.pipeline, "evaluate", failing_evaluation)
    out = tmp_path / "out"
    args = ["--model_name_or_path", tiny_bert_dir, "--output_dir", str(out), *QUICK]
    args += ["--train_file", write_csv(tmp_path / "train.csv", text_rows(16, 1))]
    with pytest.raises(RuntimeError, match="evaluation failed"):
        run_classification(modalities.TextModality(), recipe_defaults("text_classification"), args)
    from transformers import pipeline

    classifier = pipeline("text-classification", model=str(out))
    assert {score["label"] for score in classifier("a good film", top_k=None)} == {"negative", "positive"}
    assert "Not evaluated" in (out / "README.md").read_text()
