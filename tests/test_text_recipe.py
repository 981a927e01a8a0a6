"""The text recipe end to end on a tiny BERT: every strategy trains, saves, reloads and serves real labels."""

import csv
import json
import os

import pytest
import torch
import yaml
from helpers import ROOT, recipe_args, recipe_defaults, run_python
from torch.nn import functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from hftl.modalities import TextModality
from hftl.pipeline import run_classification
from hftl.recipes import main

DEFAULTS = recipe_defaults("text_classification")
FAST = (
    "--num_train_epochs 3 --per_device_train_batch_size 16 --learning_rate 5e-3 --logging_steps 5 "
    "--disable_tqdm true --eval_strategy epoch --save_strategy epoch"
).split()


def _args(model_dir, data, output_dir, *extra):
    return recipe_args(model_dir, data, output_dir, *FAST, *extra)


LABELS = dict(num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})


def _reload(path, adapter: bool):
    if adapter:
        from peft import AutoPeftModelForSequenceClassification

        return AutoPeftModelForSequenceClassification.from_pretrained(path, **LABELS)
    return AutoModelForSequenceClassification.from_pretrained(path)


def _assert_reload_matches(output_dir, files, adapter=False, model_dir=None):
    """The model saved in `model_dir` (default: `output_dir`) reproduces the run's validation loss and predictions."""
    model = _reload(model_dir or output_dir, adapter).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir or output_dir)
    with open(files["validation_file"], encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    with torch.no_grad():
        batch = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
        logits = model(**batch).logits
    config = model.config
    labels = torch.tensor([config.label2id[r["label"]] for r in rows])
    results = json.load(open(os.path.join(output_dir, "all_results.json")))
    assert F.cross_entropy(logits, labels).item() == pytest.approx(results["eval_loss"], abs=1e-4)
    with open(os.path.join(output_dir, "eval_predictions.csv"), encoding="utf-8") as handle:
        saved = [r["prediction"] for r in csv.DictReader(handle)]
    assert saved == [config.id2label[i] for i in logits.argmax(-1).tolist()]


@pytest.mark.parametrize("strategy", ["full", "feature_extraction", "freeze", "two_stage", "lora"])
def test_every_strategy_end_to_end(tiny_bert_dir, text_files, tmp_path, strategy):
    output_dir = tmp_path / strategy
    metrics = run_classification(
        TextModality(), DEFAULTS, _args(tiny_bert_dir, text_files, output_dir, "--strategy", strategy)
    )
    results = json.load(open(output_dir / "all_results.json"))
    assert results == pytest.approx(metrics, nan_ok=True)
    for key in (
        "train_samples_per_second",
        "train_runtime",
        "eval_accuracy",
        "eval_f1",
        "eval_precision",
        "eval_recall",
        "test_accuracy",
        "test_f1",
        "test_f1_positive",
        "trainable_parameters",
    ):
        assert key in results, key
    assert results["train_samples"] == 64 and results["eval_samples"] == 16 and results["test_samples"] == 16
    for name in (
        "README.md",
        "hftl_config.yaml",
        "eval_confusion_matrix.png",
        "test_report.json",
        "tokenizer.json",
        "config.json",
    ):
        assert (output_dir / name).exists(), name
    config = json.load(open(output_dir / "config.json"))
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    card = (output_dir / "README.md").read_text()
    assert f"strategy: `{strategy}`" in card and "| 1 | positive | 32 |" in card and "test" in card
    snapshot = yaml.safe_load((output_dir / "hftl_config.yaml").read_text())  # what the run used, resolved
    expected = {"freeze": ("num_frozen_layers", 2), "two_stage": ("stage2_learning_rate", 5e-4)}.get(strategy)
    if expected:
        assert snapshot[expected[0]] == pytest.approx(expected[1])
    _assert_reload_matches(str(output_dir), text_files)
    if strategy == "lora":
        _assert_reload_matches(str(output_dir), text_files, adapter=True, model_dir=str(output_dir / "adapter"))
    classifier = pipeline("text-classification", model=str(output_dir))
    assert classifier("good great film")[0]["label"] in {"negative", "positive"}


def test_trainable_parameters_reported_per_strategy(tiny_bert_dir, text_files, tmp_path):
    counts = {}
    for strategy in ("full", "feature_extraction"):
        metrics = run_classification(
            TextModality(),
            DEFAULTS,
            _args(
                tiny_bert_dir,
                text_files,
                tmp_path / strategy,
                "--strategy",
                strategy,
                "--do_eval",
                "false",
                "--do_predict",
                "false",
                "--num_train_epochs",
                "1",
            ),
        )
        counts[strategy] = metrics["trainable_parameters"]
    assert counts["feature_extraction"] == 32 * 2 + 2
    assert counts["full"] == metrics["total_parameters"]


def test_learns_the_toy_task(tiny_bert_dir, text_files, tmp_path):
    metrics = run_classification(
        TextModality(),
        DEFAULTS,
        _args(tiny_bert_dir, text_files, tmp_path / "out", "--num_train_epochs", "15", "--learning_rate", "1e-3"),
    )
    assert metrics["eval_accuracy"] >= 0.9  # sentiment words decide the label; chance is 0.5


def test_lora_adapter_only(tiny_bert_dir, text_files, tmp_path):
    output_dir = tmp_path / "lora"
    run_classification(
        TextModality(),
        DEFAULTS,
        _args(
            tiny_bert_dir,
            text_files,
            output_dir,
            "--strategy",
            "lora",
            "--merge_adapter",
            "false",
            "--do_predict",
            "false",
        ),
    )
    assert (output_dir / "adapter_config.json").exists() and not (output_dir / "model.safetensors").exists()
    adapter_files = json.load(open(output_dir / "adapter_config.json"))
    assert "classifier" in adapter_files["modules_to_save"]
    _assert_reload_matches(str(output_dir), text_files, adapter=True)
    assert "id2label={0: 'negative', 1: 'positive'}" in (output_dir / "README.md").read_text()


def test_config_file_and_resolved_config(tiny_bert_dir, text_files, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "strategy": "freeze",
                "num_frozen_layers": 3,
                "num_train_epochs": 1,
                "learning_rate": 1e-3,
                "do_predict": False,
            }
        )
    )
    output_dir = tmp_path / "out"
    run_classification(
        TextModality(),
        DEFAULTS,
        [
            "--config",
            str(config),
            "--learning_rate",
            "2e-3",
            "--model_name_or_path",
            tiny_bert_dir,
            "--output_dir",
            str(output_dir),
            "--train_file",
            text_files["train_file"],
            "--disable_tqdm",
            "true",
        ],
    )
    resolved = yaml.safe_load((output_dir / "hftl_config.yaml").read_text())
    assert resolved["strategy"] == "freeze" and resolved["num_frozen_layers"] == 3
    assert resolved["learning_rate"] == 2e-3  # the command line overrides the file
    assert resolved["num_train_epochs"] == 1
    assert "hub_token" not in resolved and "token" not in resolved
    # the resolved config is itself a valid --config
    rerun = tmp_path / "rerun"
    run_classification(
        TextModality(),
        DEFAULTS,
        ["--config", str(output_dir / "hftl_config.yaml"), "--output_dir", str(rerun), "--do_train", "false"],
    )
    assert (rerun / "eval_results.json").exists()


def test_unknown_config_key(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("learning_rat: 0.1\n")
    assert main(TextModality(), DEFAULTS, ["--config", str(config)]) == 2
    assert "unknown flag(s) learning_rat (did you mean learning_rate" in capsys.readouterr().err


def test_bad_data_fails_before_the_model_loads(tiny_bert_dir, tmp_path, capsys):
    import shutil

    path = tmp_path / "train.csv"
    path.write_text("body,label\ngood,pos\nbad,neg\n")
    model = tmp_path / "model"  # passes the early checks of the folder, but its weights would not load
    shutil.copytree(tiny_bert_dir, model)
    (model / "model.safetensors").write_bytes(b"not safetensors")
    code = main(
        TextModality(),
        DEFAULTS,
        ["--train_file", str(path), "--model_name_or_path", str(model), "--output_dir", str(tmp_path / "out")],
    )
    assert code == 2
    assert "no text column found among ['body', 'label']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_accelerate_launch_runs_the_recipe(tiny_bert_dir, text_files, tmp_path):
    output_dir = tmp_path / "launched"
    command = [
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--cpu",
        os.path.join(ROOT, "recipes", "text_classification.py"),
        *_args(tiny_bert_dir, text_files, output_dir, "--num_train_epochs", "1"),
    ]
    run_python(command)
    assert json.load(open(output_dir / "all_results.json"))["eval_samples"] == 16


def test_resume_from_last_checkpoint(tiny_bert_dir, text_files, tmp_path, caplog):
    output_dir = tmp_path / "resume"
    args = _args(tiny_bert_dir, text_files, output_dir, "--num_train_epochs", "2", "--do_predict", "false")
    run_classification(TextModality(), DEFAULTS, args)
    assert (output_dir / "checkpoint-8").is_dir()
    metrics = run_classification(TextModality(), DEFAULTS, args[:] + ["--num_train_epochs", "3"])
    assert "Resuming from" in caplog.text and metrics["epoch"] == 3.0


def test_predictions_keep_row_order_with_length_grouping(tiny_bert_dir, tmp_path):
    from conftest import make_texts, write_csv

    rows = make_texts(64)
    for i, row in enumerate(rows):  # very different lengths, so that grouping by length would reorder
        row["text"] += " the" * (3 * (i % 7))
    files = {"train_file": write_csv(tmp_path / "train.csv", rows), "test_file": write_csv(tmp_path / "test.csv", rows)}
    output_dir = tmp_path / "out"
    run_classification(
        TextModality(),
        DEFAULTS,
        _args(
            tiny_bert_dir,
            files,
            output_dir,
            "--train_sampling_strategy",
            "group_by_length",
            "--per_device_eval_batch_size",
            "4",
            "--num_train_epochs",
            "20",
            "--learning_rate",
            "1e-3",
        ),
    )
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    with torch.no_grad():
        logits = model(**tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")).logits
    with open(output_dir / "test_predictions.csv", encoding="utf-8") as handle:
        saved = [r["prediction"] for r in csv.DictReader(handle)]
    assert saved == [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    assert len(set(saved)) == 2  # a model that predicts one class would not test the order


def test_rerun_with_other_strategy_is_refused_before_training(tiny_bert_dir, text_files, tmp_path, capsys):
    output_dir = tmp_path / "same"
    run_classification(
        TextModality(), DEFAULTS, _args(tiny_bert_dir, text_files, output_dir, "--num_train_epochs", "1")
    )
    code = main(TextModality(), DEFAULTS, _args(tiny_bert_dir, text_files, output_dir, "--strategy", "lora"))
    assert code == 2
    assert "strategy: 'full' then, 'lora' now" in capsys.readouterr().err
    metrics = run_classification(
        TextModality(),
        DEFAULTS,
        _args(tiny_bert_dir, text_files, output_dir, "--strategy", "lora", "--overwrite_output_dir", "true"),
    )
    assert metrics["trainable_parameters"] < metrics["total_parameters"]


def test_predictions_name_source_rows_after_drops(tiny_bert_dir, tmp_path):
    from conftest import make_texts, write_csv

    test_rows = make_texts(6, seed=9)
    test_rows[1]["text"] = ""
    for row in test_rows:
        row["label"] = ""  # an empty label column: predicted, not scored
    files = {
        "train_file": write_csv(tmp_path / "train.csv", make_texts(40)),
        "test_file": write_csv(tmp_path / "test.csv", test_rows),
    }
    output_dir = tmp_path / "out"
    metrics = run_classification(
        TextModality(),
        DEFAULTS,
        _args(tiny_bert_dir, files, output_dir, "--drop_invalid_examples", "true", "--num_train_epochs", "1"),
    )
    assert "test_accuracy" not in metrics and metrics["test_samples"] == 5
    with open(output_dir / "test_predictions.csv", encoding="utf-8") as handle:
        rows = [int(r["source_row"]) for r in csv.DictReader(handle)]
    assert rows == [0, 2, 3, 4, 5]
