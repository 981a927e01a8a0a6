"""Every modality x strategy x alignment method through its recipe, on tiny models: the alignment really ran (its
loss part is logged and non-zero) and the domain discriminator is in the checkpoints, never in the saved model."""

import json
import os

import pytest
from helpers import recipe_args, recipe_defaults
from safetensors.torch import load_file

from hftl.modalities import AudioModality, ImageModality, TextModality
from hftl.pipeline import run_classification
from hftl.strategies import strategy_names
from hftl.trainer import last_complete_checkpoint

FAST = (
    "--num_train_epochs 1 --per_device_train_batch_size 8 --learning_rate 5e-3 --logging_steps 1 --disable_tqdm true "
    "--report_to none --discriminator_hidden_size 16 --save_strategy epoch --unfreeze_top_k 1 --num_frozen_layers 1 "
    "--stage1_num_train_epochs 1"
).split()

MODALITIES = {
    "text": (TextModality, "tiny_bert_dir", "text_files", "text_classification"),
    "image": (ImageModality, "tiny_vit_dir", "image_folders", "image_classification"),
    "speech": (AudioModality, "tiny_whisper_dir", "audio_folders", "speech_classification"),
}


def _target(modality: str, data: dict[str, str]) -> dict[str, str]:
    if modality == "text":
        return {"target_train_file": data["validation_file"], "target_test_file": data["test_file"]}
    return {"target_train_dir": data["validation_dir"], "target_test_dir": data["test_dir"]}


def _run(request, tmp_path, modality: str, *flags: str):
    cls, model_fixture, data_fixture, recipe = MODALITIES[modality]
    data = request.getfixturevalue(data_fixture)
    output_dir = tmp_path / "run"
    extra = (
        ["--ignore_mismatched_sizes"] if modality == "image" else ["--max_length_seconds", "2"] * (modality == "speech")
    )
    args = recipe_args(request.getfixturevalue(model_fixture), {**data, **_target(modality, data)}, output_dir, *FAST)
    metrics = run_classification(cls(), recipe_defaults(recipe), args + extra + list(flags))
    return output_dir, metrics


@pytest.mark.parametrize("method", ["dann", "mmd"])
@pytest.mark.parametrize("strategy", strategy_names())
@pytest.mark.parametrize("modality", list(MODALITIES))
def test_alignment_runs(request, tmp_path, modality, strategy, method):
    output_dir, metrics = _run(request, tmp_path, modality, "--strategy", strategy, "--adaptation", method)
    history = json.load(open(output_dir / "trainer_state.json"))["log_history"]
    logged = [entry for entry in history if "align_loss" in entry]
    assert logged and all("cls_loss" in entry and "grl_lambda" in entry for entry in logged)
    assert any(abs(entry["align_loss"]) > 0 for entry in logged)
    assert "target_accuracy" in metrics
    assert not any("alignment" in key for key in load_file(output_dir / "model.safetensors"))
    checkpoint = last_complete_checkpoint(str(output_dir))
    if strategy == "feature_extraction":  # the cached head trains without checkpoints
        return
    if strategy == "lora" and not os.path.isfile(os.path.join(checkpoint, "model.safetensors")):
        pytest.skip("peft checkpoints hold the adapter only")
    state = load_file(os.path.join(checkpoint, "model.safetensors"))
    if method == "dann":
        assert any(key.startswith("alignment.adversarial.discriminator.") for key in state)


def test_gap_report_compares_the_same_layer(request, tmp_path):
    """Before and after training, the report reads the input of the classification layer (Whisper's classifier,
    8 wide here, behind its projector), not the head's input before and the classifier's after."""
    output_dir, metrics = _run(
        request, tmp_path, "speech", "--strategy", "feature_extraction", "--adaptation", "dann", "--domain_gap_report"
    )
    report = json.load(open(output_dir / "domain_gap.json"))
    assert report["feature_layer"] == "classifier"
    assert report["before"]["feature_size"] == report["after"]["feature_size"] == 8
    assert "domain_gap_after_mmd" in metrics
