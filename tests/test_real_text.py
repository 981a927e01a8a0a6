"""The real text recipe on the packaged all-MiniLM-L6-v2 and slices of the built-in Rotten Tomatoes data."""

import csv
import json
import os

import pytest
from helpers import ROOT, recipe_defaults, run_python
from transformers import pipeline

from hftl.data import load_builtin
from hftl.modalities import TextModality
from hftl.pipeline import run_classification

pytestmark = pytest.mark.slow
RECIPE = os.path.join(ROOT, "recipes", "text_classification.py")
DEFAULTS = recipe_defaults("text_classification")

SLICE = [
    "--max_train_samples",
    "1000",
    "--max_eval_samples",
    "300",
    "--max_predict_samples",
    "400",
    "--disable_tqdm",
    "true",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
    "--logging_steps",
    "20",
]
MAJORITY = 0.57  # share of 'fresh' in the test split: what predicting one class scores


def test_builtin_split_is_fixed():
    splits = load_builtin("rotten_tomatoes_critics")
    assert {name: len(split) for name, split in splits.items()} == {"train": 10176, "validation": 1266, "test": 1310}
    assert splits["train"].features["label"].names == ["fresh", "rotten"]
    texts = [set(split["text"]) for split in splits.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])


def test_full_fine_tuning_with_accelerate_launch(tmp_path):
    output_dir = tmp_path / "full"
    command = [
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--cpu",
        RECIPE,
        "--output_dir",
        str(output_dir),
        "--num_train_epochs",
        "2",
        *SLICE,
        "--max_train_samples",
        "2000",
    ]
    done = run_python(command)
    assert "22,713,986 trainable of 22,713,986 parameters" in done.stdout + done.stderr
    results = json.load(open(output_dir / "all_results.json"))
    assert results["test_accuracy"] >= 0.72, results
    assert results["test_f1"] >= 0.70, results

    classifier = pipeline("text-classification", model=str(output_dir))
    with open(output_dir / "test_predictions.csv", encoding="utf-8") as handle:
        saved = [row["prediction"] for row in csv.DictReader(handle)][:20]
    texts = load_builtin("rotten_tomatoes_critics")["test"]["text"][:20]
    assert [p["label"] for p in classifier(texts)] == saved
    card = (output_dir / "README.md").read_text()
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card and "| 1 | rotten |" in card


def test_cached_feature_extraction(tmp_path):
    metrics = run_classification(
        TextModality(),
        DEFAULTS,
        ["--output_dir", str(tmp_path / "fe"), "--strategy", "feature_extraction", "--num_train_epochs", "30", *SLICE],
    )
    assert metrics["trainable_parameters"] == 384 * 2 + 2
    assert metrics["feature_extraction_runtime"] > 0
    # MiniLM declares mean pooling: --sentence_pooling auto gives feature_extraction the mean of its token states
    assert metrics["test_accuracy"] >= MAJORITY + 0.03, metrics


def test_lora_and_two_stage(tmp_path):
    for strategy, expected_trainable in (("lora", 6 * 2 * (8 * 384 * 2) + 384 * 2 + 2), ("two_stage", None)):
        output_dir = tmp_path / strategy
        metrics = run_classification(
            TextModality(),
            DEFAULTS,
            ["--output_dir", str(output_dir), "--strategy", strategy, "--num_train_epochs", "2", *SLICE],
        )
        if expected_trainable:
            assert metrics["trainable_parameters"] == expected_trainable
        assert metrics["test_accuracy"] >= MAJORITY + 0.08, (strategy, metrics)
        prediction = pipeline("text-classification", model=str(output_dir))("An utterly charming film.")
        assert prediction[0]["label"] in {"fresh", "rotten"}
    assert (tmp_path / "lora" / "adapter" / "adapter_model.safetensors").exists()
