"""Early stopping (`--early_stopping_patience`, `--early_stopping_threshold`): the flags resolve what transformers'
callback needs, bad combinations are refused before anything loads, and through the text recipe a run stops early,
says so, records it and keeps the best model, for every Trainer hftl builds and under resume."""

import json
import logging
import os
import shutil

import pytest
import torch
from helpers import assert_same_weights, recipe_args, recipe_defaults
from safetensors.torch import load_file

from hftl.config import resolve_config
from hftl.errors import InputError
from hftl.modalities import TextModality
from hftl.pipeline import run_classification
from hftl.recipes import main

DEFAULTS = recipe_defaults("text_classification")
# 64 training examples, batches of 16: 4 steps an epoch, 12 in all; an evaluation every 2 steps
FAST = (
    "--num_train_epochs 3 --per_device_train_batch_size 16 --learning_rate 5e-3 --logging_steps 2 "
    "--disable_tqdm true --eval_strategy steps --eval_steps 2 --save_total_limit 10"
).split()
MAX_STEPS = 12
# every evaluation after the first falls short of an improvement of 10 in eval_loss: patience P stops at step 2(P+1)
NEVER_IMPROVES = ["--early_stopping_threshold", "10"]


def _run(model_dir, files, output_dir, *flags):
    return run_classification(TextModality(), DEFAULTS, recipe_args(model_dir, files, output_dir, *FAST, *flags))


def _stop_message(caplog) -> str:
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Early stopping at step")]
    assert len(messages) == 1, messages
    return messages[0]


def test_flags_resolve_what_the_callback_needs():
    config = resolve_config(
        TextModality(),
        DEFAULTS,
        ["--early_stopping_patience", "3", "--eval_strategy", "steps", "--eval_steps", "5", "--output_dir", "x"],
    )
    training = config.training
    assert training.load_best_model_at_end and training.save_strategy == "steps" and training.save_steps == 5
    assert training.metric_for_best_model == "loss" and training.greater_is_better is False
    assert config.as_dict()["early_stopping_patience"] == 3 and config.as_dict()["load_best_model_at_end"] is True
    named = resolve_config(
        TextModality(), DEFAULTS, ["--early_stopping_patience", "1", "--metric_for_best_model", "balanced_accuracy"]
    )
    assert named.training.greater_is_better is True and named.training.save_strategy == "epoch"
    plain = resolve_config(TextModality(), DEFAULTS, [])
    assert not plain.training.load_best_model_at_end and plain.control.early_stopping_patience is None


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--early_stopping_patience", "2", "--metric_for_best_model", "acuracy"],
            r"--metric_for_best_model acuracy: not a metric the evaluations report \(did you mean accuracy\?\); "
            r"choose from loss, accuracy, balanced_accuracy",
        ),
        (["--early_stopping_patience", "2", "--eval_strategy", "no"], r"--eval_strategy no turns them off"),
        (["--early_stopping_patience", "2", "--do_eval", "false"], r"--do_eval false turns them off"),
        (["--early_stopping_patience", "0"], r"--early_stopping_patience must be >= 1"),
        (["--early_stopping_threshold", "0.1"], r"--early_stopping_threshold needs --early_stopping_patience"),
        (["--early_stopping_patience", "1", "--early_stopping_threshold", "-1"], r"must be >= 0, got -1"),
    ],
)
def test_bad_early_stopping_flags_are_refused_before_anything_loads(tmp_path, capsys, flags, message):
    output_dir = tmp_path / "out"
    args = recipe_args(str(tmp_path / "no_model_here"), {"train_file": "missing.csv"}, output_dir, *flags)
    assert main(TextModality(), DEFAULTS, args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    with pytest.raises(InputError, match=message):
        resolve_config(TextModality(), DEFAULTS, args)
    assert not output_dir.exists()


@pytest.mark.parametrize("kind", ["full", "feature_extraction", "adaptation"])
def test_a_run_stops_early_says_so_and_keeps_the_best_model(tiny_bert_dir, text_files, tmp_path, caplog, kind):
    """classifier_trainer with checkpoints (full), the cached-head trainer (no checkpoints: best kept in memory) and
    the adaptation task's trainer."""
    output_dir = tmp_path / kind
    flags = ["--early_stopping_patience", "1", *NEVER_IMPROVES]
    if kind == "feature_extraction":
        flags += ["--strategy", "feature_extraction", "--learning_rate", "0.05"]
    if kind == "adaptation":
        flags += ["--adaptation", "mmd", "--target_train_file", text_files["test_file"]]
    with caplog.at_level(logging.INFO, logger="hftl"):
        metrics = _run(tiny_bert_dir, text_files, output_dir, *flags)
    results = json.load(open(output_dir / "all_results.json"))
    assert results["early_stopped"] is True and metrics["early_stopped"] is True
    assert results["stopped_step"] == 4 < MAX_STEPS
    assert json.load(open(output_dir / "trainer_state.json"))["global_step"] == 4
    assert results["best_step"] in (2, 4)
    evaluations = [e for e in json.load(open(output_dir / "trainer_state.json"))["log_history"] if "eval_loss" in e]
    assert [e["step"] for e in evaluations] == [2, 4]
    assert results["best_metric"] == pytest.approx(min(e["eval_loss"] for e in evaluations))
    message = _stop_message(caplog)
    assert "at step 4 of 12" in message and "(--early_stopping_patience 1)" in message
    assert f"Best eval_loss {results['best_metric']:.6g}, at step {results['best_step']}" in message
    best = output_dir / f"checkpoint-{results['best_step']}"
    if kind == "feature_extraction":
        assert f"Restored the weights of the best evaluation (step {results['best_step']}" in caplog.text
    elif kind == "full":  # the best checkpoint is the saved model
        assert_same_weights(output_dir, best)
    else:  # the checkpoint holds the training task: the classifier's weights under `classifier.`
        task = {k.removeprefix("classifier."): v for k, v in load_file(best / "model.safetensors").items()}
        saved = load_file(output_dir / "model.safetensors")
        assert saved and all(torch.equal(value, task[key]) for key, value in saved.items())


def test_a_resumed_run_stops_where_an_uninterrupted_one_does(tiny_bert_dir, text_files, tmp_path, caplog):
    """Patience 2: evaluations at steps 2 (best), 4, 6 (stop). Resumed from step 4, the run recounts the evaluation
    at step 4 from the checkpoint's log and stops at 6 (a fresh count would go on to 8)."""
    output_dir = tmp_path / "out"
    flags = ["--early_stopping_patience", "2", *NEVER_IMPROVES]
    first = _run(tiny_bert_dir, text_files, output_dir, *flags)
    assert first["early_stopped"] is True and first["stopped_step"] == 6
    shutil.rmtree(output_dir / "checkpoint-6")
    os.remove(output_dir / "all_results.json")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hftl"):
        resumed = _run(tiny_bert_dir, text_files, output_dir, *flags)
    assert "Resuming from" in caplog.text and "checkpoint-4" in caplog.text
    assert resumed["stopped_step"] == 6 and resumed["best_step"] == first["best_step"]
    assert "1 evaluation(s) since without improvement" in caplog.text
    assert resumed["best_metric"] == pytest.approx(first["best_metric"])
    assert "at step 6 of 12" in _stop_message(caplog)


def test_a_patience_longer_than_the_run_never_stops_it(tiny_bert_dir, text_files, tmp_path, caplog):
    """6 evaluations can hold at most 5 without improvement: patience 6 trains to the end, and the log says so."""
    with caplog.at_level(logging.INFO, logger="hftl"):
        metrics = _run(
            tiny_bert_dir,
            text_files,
            tmp_path / "out",
            "--early_stopping_patience",
            "6",
            "--strategy",
            "feature_extraction",
        )
    assert metrics["early_stopped"] is False and metrics["stopped_step"] == MAX_STEPS
    assert "Early stopping did not trigger: trained all 12 steps" in caplog.text
