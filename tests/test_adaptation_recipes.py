"""Domain adaptation through the recipes on tiny models: every modality, strategies x methods, resume, errors."""

import csv
import json
import os

import pytest
import torch
from helpers import make_texts, recipe_args, recipe_defaults, write_csv
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hftl.errors import InputError
from hftl.modalities import TextModality
from hftl.pipeline import run_classification

FAST = (
    "--num_train_epochs 2 --per_device_train_batch_size 8 --learning_rate 5e-3 --logging_steps 1 "
    "--disable_tqdm true --report_to none --discriminator_hidden_size 16"
).split()


@pytest.fixture
def target_files(tmp_path) -> dict[str, str]:
    """Unlabelled target training texts (a label column the run must ignore) and labelled target test texts."""
    unlabelled = [{"text": row["text"], "label": "positive"} for row in make_texts(40, seed=7)]
    return {
        "target_train_file": write_csv(tmp_path / "target_train.csv", unlabelled),
        "target_test_file": write_csv(tmp_path / "target_test.csv", make_texts(18, seed=8)),
    }


def _text_run(model_dir, text_files, target_files, output_dir, *flags):
    args = recipe_args(model_dir, {**text_files, **target_files}, output_dir, *FAST, *flags)
    return run_classification(TextModality(), recipe_defaults("text_classification"), args)


def _history(output_dir):
    """The training log of a run, from its last checkpoint."""
    from transformers.trainer_utils import get_last_checkpoint

    return json.load(open(os.path.join(get_last_checkpoint(output_dir), "trainer_state.json")))["log_history"]


def _predictions(path):
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    "strategy, method",
    [
        ("full", "dann"),
        ("freeze", "mmd"),
        ("two_stage", "iwmmd"),
        ("lora", "iwdann"),
        ("feature_extraction", "dann"),
        ("feature_extraction", "iwmmd"),
    ],
)
def test_text_strategy_with_adaptation(tiny_bert_dir, text_files, target_files, tmp_path, strategy, method):
    output_dir = tmp_path / f"{strategy}-{method}"
    metrics = _text_run(
        tiny_bert_dir, text_files, target_files, output_dir, "--strategy", strategy, "--adaptation", method
    )
    results = json.load(open(output_dir / "all_results.json"))
    for key in ("target_accuracy", "target_f1", "target_balanced_accuracy", "eval_accuracy", "test_accuracy"):
        assert key in results and 0 <= results[key] <= 1
    assert results["target_samples"] == 18
    assert 0 <= metrics["label_shift_total_variation"] <= 1
    shift = json.load(open(output_dir / "label_shift.json"))
    assert set(shift["classes"]) == {"negative", "positive"}

    # the saved model is a plain classifier (no discriminator), and it reproduces the target predictions
    state = load_file(output_dir / "model.safetensors")
    assert not any("discriminator" in key or "alignment" in key for key in state)
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    rows = list(csv.DictReader(open(target_files["target_test_file"], encoding="utf-8")))
    with torch.no_grad():
        logits = model(**tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")).logits
    saved = [row["prediction"] for row in _predictions(output_dir / "target_predictions.csv")]
    assert saved == [model.config.id2label[i] for i in logits.argmax(-1).tolist()]

    # the training log carries the schedule: lambda_p rises from ~0 with the steps
    if strategy != "feature_extraction":  # (the cached head trains without checkpoints)
        lambdas = [entry["grl_lambda"] for entry in _history(output_dir) if "grl_lambda" in entry]
        assert lambdas[0] < 0.5 and lambdas == sorted(lambdas) and lambdas[-1] > 0.9


def test_discriminator_lives_in_checkpoints_only(tiny_bert_dir, text_files, target_files, tmp_path):
    output_dir = tmp_path / "run"
    _text_run(tiny_bert_dir, text_files, target_files, output_dir, "--adaptation", "dann", "--save_strategy", "epoch")
    checkpoint = output_dir / "checkpoint-16"
    keys = load_file(checkpoint / "model.safetensors")
    assert any(key.startswith("alignment.adversarial.discriminator.") for key in keys)
    assert not any("discriminator" in key for key in load_file(output_dir / "model.safetensors"))


def test_lambda_schedule_continues_across_a_resume(tiny_bert_dir, text_files, target_files, tmp_path):
    import shutil

    flags = ("--adaptation", "dann", "--save_strategy", "steps", "--save_steps", "6", "--save_total_limit", "5")
    whole = tmp_path / "whole"
    _text_run(tiny_bert_dir, text_files, target_files, whole, *flags, "--seed", "3")
    resumed = tmp_path / "resumed"  # a run that stopped after its step-6 checkpoint, then resumed
    shutil.copytree(whole / "checkpoint-6", resumed / "checkpoint-6")
    _text_run(
        tiny_bert_dir,
        text_files,
        target_files,
        resumed,
        *flags,
        "--seed",
        "3",
        "--resume_from_checkpoint",
        str(resumed / "checkpoint-6"),
    )

    def lambdas(path):
        return {entry["step"]: entry["grl_lambda"] for entry in _history(path) if "grl_lambda" in entry}

    expected, got = lambdas(whole), lambdas(resumed)
    assert set(expected) == set(range(1, 17))
    for step in range(7, 17):
        assert got[step] == pytest.approx(expected[step], abs=1e-6), step
    first, second = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    for key, value in first.items():
        torch.testing.assert_close(second[key], value, atol=1e-5, rtol=1e-4)


def test_source_only_run_reports_the_target(tiny_bert_dir, text_files, target_files, tmp_path):
    output_dir = tmp_path / "none"
    metrics = _text_run(tiny_bert_dir, text_files, target_files, output_dir, "--domain_gap_report")
    assert "target_accuracy" in metrics
    report = json.load(open(output_dir / "domain_gap.json"))
    assert {"mmd", "proxy_a_distance"} <= set(report["before"]) and "after" in report
    assert metrics["domain_gap_before_mmd"] == report["before"]["mmd"]
    assert os.path.getsize(output_dir / "domain_gap.png") > 10_000


def test_feature_layer_truncates_the_saved_model(tiny_bert_dir, text_files, target_files, tmp_path):
    output_dir = tmp_path / "layer2"
    _text_run(
        tiny_bert_dir, text_files, target_files, output_dir, "--feature_layer", "2", "--strategy", "feature_extraction"
    )
    model = AutoModelForSequenceClassification.from_pretrained(output_dir)
    assert model.config.num_hidden_layers == 2 and len(model.bert.encoder.layer) == 2


def test_adaptation_needs_target_data(tiny_bert_dir, text_files, tmp_path):
    with pytest.raises(InputError, match="--target_dataset_name"):
        run_classification(
            TextModality(), {}, recipe_args(tiny_bert_dir, text_files, tmp_path / "x", "--adaptation", "dann")
        )


def test_target_labels_must_be_source_classes(tiny_bert_dir, text_files, tmp_path):
    rows = [{"text": "good film", "label": "neutral"}, {"text": "bad film", "label": "positive"}]
    target = {"target_train_file": write_csv(tmp_path / "t.csv", rows), "target_test_file": str(tmp_path / "t.csv")}
    with pytest.raises(InputError, match=r"\['neutral'\] are not classes of the source"):
        _text_run(tiny_bert_dir, text_files, target, tmp_path / "x", "--adaptation", "mmd")


def test_feature_cache_dir_reuses_features_across_runs(tiny_bert_dir, text_files, target_files, tmp_path, caplog):
    import logging

    cache = tmp_path / "cache"
    flags = ("--strategy", "feature_extraction", "--adaptation", "iwdann", "--feature_cache_dir", str(cache))
    first = _text_run(tiny_bert_dir, text_files, target_files, tmp_path / "a", *flags)
    stored = sorted(os.listdir(cache))
    assert len(stored) == 5  # source train, validation, test; target train, test
    with caplog.at_level(logging.INFO, logger="hftl"):
        second = _text_run(tiny_bert_dir, text_files, target_files, tmp_path / "b", *flags)
    assert sorted(os.listdir(cache)) == stored
    assert sum("Features read from the cache" in r.message for r in caplog.records) == 5
    for key in ("target_accuracy", "eval_loss", "label_shift_total_variation"):
        assert second[key] == pytest.approx(first[key], abs=1e-6)
    # other data (a shorter train split) is another key
    _text_run(tiny_bert_dir, text_files, target_files, tmp_path / "c", *flags, "--max_train_samples", "32")
    assert len(os.listdir(cache)) == 6


def test_a_single_target_example_is_refused(tiny_bert_dir, text_files, target_files, tmp_path):
    with pytest.raises(InputError, match="1 unlabelled target example.*need at least 2"):
        _text_run(
            tiny_bert_dir,
            text_files,
            target_files,
            tmp_path / "x",
            "--adaptation",
            "coral",
            "--max_target_train_samples",
            "1",
        )


def test_target_errors_name_the_target_flags(tiny_bert_dir, text_files, tmp_path):
    missing = {"target_train_file": str(tmp_path / "nope.csv")}
    with pytest.raises(InputError, match="--target_train_file .*nope.csv"):
        _text_run(tiny_bert_dir, text_files, missing, tmp_path / "x", "--adaptation", "dann")
    with pytest.raises(InputError, match="--target_train_dir / --target_test_dir are for folder data"):
        _text_run(
            tiny_bert_dir, text_files, {"target_train_dir": str(tmp_path)}, tmp_path / "x", "--adaptation", "dann"
        )
    with pytest.raises(InputError, match="--grl_gamma"):
        _text_run(tiny_bert_dir, text_files, missing, tmp_path / "x", "--adaptation", "dann", "--grl_gamma", "-1")


def test_a_rerun_does_not_keep_earlier_results(tiny_bert_dir, text_files, target_files, tmp_path):
    output_dir = tmp_path / "run"
    _text_run(tiny_bert_dir, text_files, target_files, output_dir, "--adaptation", "dann", "--domain_gap_report")
    assert (output_dir / "target_predictions.csv").exists() and (output_dir / "domain_gap.json").exists()
    args = recipe_args(tiny_bert_dir, text_files, output_dir, *FAST, "--overwrite_output_dir")
    run_classification(TextModality(), recipe_defaults("text_classification"), args)
    results = json.load(open(output_dir / "all_results.json"))
    assert not [key for key in results if key.startswith(("target_", "domain_gap", "label_shift"))]
    assert not (output_dir / "target_predictions.csv").exists() and not (output_dir / "domain_gap.json").exists()
