"""Hyper-parameter search through the text recipe on a tiny BERT: trials, records, the best config rerun, resuming,
a failing trial, and spaces refused before anything loads."""

import json
import os

import pytest
import yaml
from helpers import recipe_args, recipe_defaults

from hftl.config import resolve_config
from hftl.errors import InputError
from hftl.modalities import TextModality
from hftl.pipeline import run_classification, run_config
from hftl.search.space import default_space
from hftl.search.study import run_search

DEFAULTS = recipe_defaults("text_classification")
FAST = (
    "--max_steps 4 --per_device_train_batch_size 8 --logging_steps 1 --disable_tqdm true --report_to none "
    "--eval_strategy no --save_strategy steps --save_steps 2 --do_predict true"
).split()
SPACE = {
    "learning_rate": {"low": 1e-3, "high": 5e-2, "log": True},
    "per_device_train_batch_size": [4, 16],
    "lora_r": [2, 4],
}


def _args(model_dir, files, output_dir, *flags):
    return recipe_args(model_dir, files, output_dir, *FAST, *flags)


def _search(model_dir, files, output_dir, *flags):
    return run_classification(TextModality(), DEFAULTS, _args(model_dir, files, output_dir, *flags))


def _space_file(tmp_path, space, name="space.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(space))
    return str(path)


def _record(output_dir) -> dict:
    return json.load(open(os.path.join(output_dir, "hp_search.json")))


def test_search_records_every_trial_and_its_best_config_reruns_the_best(tiny_bert_dir, text_files, tmp_path):
    output_dir = tmp_path / "search"
    space = _space_file(tmp_path, SPACE)
    flags = ["--strategy", "lora", "--metric_for_best_model", "loss", "--hp_space", space, "--hp_search_trials"]
    metrics = _search(tiny_bert_dir, text_files, output_dir, *flags, "2")

    record = _record(output_dir)
    assert record["metric"] == "eval_loss" and record["direction"] == "minimize" and set(record["space"]) == set(SPACE)
    assert [t["number"] for t in record["trials"]] == [0, 1]
    assert all(t["state"] == "COMPLETE" for t in record["trials"])
    assert record["trials"][0]["params"] != record["trials"][1]["params"]
    best = min(record["trials"], key=lambda t: t["objective"])
    assert record["best_trial"] == best["number"] == metrics["hp_search_best_trial"]
    assert record["best_objective"] == best["objective"] == metrics["eval_loss"]
    for trial in record["trials"]:
        assert set(trial["params"]) == set(SPACE) and trial["metrics"]["eval_loss"] == trial["objective"]
        folder = output_dir / f"trial-{trial['number']}"
        config = yaml.safe_load(open(folder / "hftl_config.yaml"))
        assert {k: config[k] for k in SPACE} == trial["params"]
        # trials never evaluate the test split; checkpoints are deleted, only the best trial keeps its model
        assert not (folder / "test_results.json").exists() and (folder / "eval_results.json").exists()
        assert not list(folder.glob("checkpoint-*"))
        assert (folder / "model.safetensors").exists() == (trial is best)

    # best_config.yaml: the best trial's flags as a plain run (test split back on) that reproduces its validation loss
    best_config = yaml.safe_load(open(output_dir / "best_config.yaml"))
    assert best_config["hp_search_trials"] == 0 and best_config["do_predict"] is True
    assert best_config["output_dir"] == str(output_dir / "best")
    rerun = run_classification(TextModality(), DEFAULTS, ["--config", str(output_dir / "best_config.yaml")])
    assert rerun["eval_loss"] == pytest.approx(best["objective"], abs=1e-6)
    assert "test_accuracy" in rerun

    # the same search with --hp_search_trials 3 resumes the study: two trials kept, one new with new values
    _search(tiny_bert_dir, text_files, output_dir, *flags, "3")
    trials = _record(output_dir)["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2]
    assert [t["params"] for t in trials[:2]] == [t["params"] for t in record["trials"]]
    assert trials[2]["params"]["learning_rate"] not in [t["params"]["learning_rate"] for t in trials[:2]]

    # another metric is another search: refused unless started afresh
    with pytest.raises(InputError, match="holds a search with other settings.*objective"):
        _search(tiny_bert_dir, text_files, output_dir, *flags[:2], *flags[4:], "3")


def test_a_failed_trial_is_recorded_and_a_stopped_search_resumes_its_running_trial(
    tiny_bert_dir, text_files, tmp_path, caplog
):
    output_dir = tmp_path / "search"
    args = _args(tiny_bert_dir, text_files, output_dir, "--hp_search_trials", "3")
    args += ["--hp_space", _space_file(tmp_path, {"learning_rate": {"low": 1e-3, "high": 1e-2}})]

    def failing_then_killed(modality, config, data):
        if config.training.output_dir.endswith("trial-0"):
            raise RuntimeError("out of memory (simulated)")
        run_config(modality, config, data)
        raise KeyboardInterrupt  # killed after trial 1 checkpointed, before the study heard of it

    with pytest.raises(KeyboardInterrupt):
        run_search(TextModality(), resolve_config(TextModality(), DEFAULTS, args), failing_then_killed)
    record = _record(output_dir)
    assert [t["state"] for t in record["trials"]] == ["FAIL"]
    assert "out of memory (simulated)" in record["trials"][0]["error"]
    assert record["best_trial"] is None and not (output_dir / "best_config.yaml").exists()

    caplog.set_level("INFO", logger="hftl")
    metrics = run_classification(TextModality(), DEFAULTS, args)
    assert "Trial 1 was stopped before it finished: resuming it." in caplog.text
    assert f"Resuming from {output_dir / 'trial-1' / 'checkpoint-4'}" in caplog.text
    record = _record(output_dir)
    assert [t["state"] for t in record["trials"]] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert metrics["hp_search_best_trial"] == record["best_trial"] in (1, 2)
    assert metrics["eval_accuracy"] == record["best_objective"]
    assert (output_dir / "best_config.yaml").exists()


@pytest.mark.parametrize(
    "space, message",
    [
        ({"learning_rat": {"low": 1e-4, "high": 1e-2}}, "learning_rat is not a flag \\(did you mean --learning_rate"),
        ({"seed": [1, 2]}, "--seed cannot be searched"),
        ({"train_file": ["a.csv"]}, "--train_file cannot be searched"),
        ({"lora_r": [2, 4]}, "--lora_r has no effect in this run \\(it needs lora\\)"),
        ({"trade_off": {"low": 0.1, "high": 1}}, "--trade_off has no effect in this run \\(it needs --adaptation\\)"),
        ({"learning_rate": {"low": 1e-2, "high": 1e-4}}, "learning_rate .*low must not exceed high"),
        ({"learning_rate": {"low": 0, "high": 1e-2, "log": True}}, "learning_rate .*"),
        ({"learning_rate": {"low": -1e-3, "high": 1e-2}}, "learning_rate = -0.001 is refused: --learning_rate"),
        ({"learning_rate": {"low": 1e-4}}, "a range needs both low and high"),
        ({"learning_rate": "fast"}, "give a list of choices or a mapping"),
        ({"per_device_train_batch_size": [8, 0]}, "per_device_train_batch_size = 0 is refused"),
        ({"per_device_train_batch_size": []}, "choices must be a non-empty list"),
        ({"per_device_train_batch_size": {"low": 4.5, "high": 16}}, "an integer flag takes integer low"),
        ({"num_train_epochs": {"low": 1, "high": 3}}, "--num_train_epochs has no effect with --max_steps 4"),
        ([1, 2], "must map flag names to a range or a list of choices"),
    ],
)
def test_bad_spaces_are_refused_before_anything_loads(tiny_bert_dir, tmp_path, space, message):
    files = {"train_file": str(tmp_path / "missing.csv")}  # never read: the space is checked first
    args = _args(tiny_bert_dir, files, tmp_path / "out", "--hp_search_trials", "2")
    args += ["--hp_space", _space_file(tmp_path, space)]
    with pytest.raises(InputError, match=message):
        run_classification(TextModality(), DEFAULTS, args)
    assert not (tmp_path / "out" / "hp_search.db").exists()


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--strategy", "full"], {"learning_rate": (5e-6, 5e-4), "per_device_train_batch_size": [4, 8, 16]}),
        (["--strategy", "freeze"], {"num_frozen_layers": (0, 3)}),
        (["--strategy", "two_stage"], {"unfreeze_top_k": (1, 4), "stage2_learning_rate": (5e-7, 5e-5)}),
        (["--strategy", "lora", "--lora_r", "8"], {"lora_r": [4, 8, 16], "lora_alpha": [8.0, 16.0, 32.0]}),
        (["--adaptation", "dann", "--trade_off", "0.5"], {"trade_off": (0.05, 5.0)}),
        (["--max_steps", "-1", "--num_train_epochs", "3"], {"num_train_epochs": (1, 6)}),
    ],
)
def test_the_default_space_covers_the_strategy_and_method_knobs(tiny_bert_dir, text_files, tmp_path, flags, expected):
    from hftl.search.space import check_space

    files = {**text_files, "target_train_file": text_files["test_file"]}
    args = _args(tiny_bert_dir, files, tmp_path / "out", "--learning_rate", "5e-5", *flags)
    config = resolve_config(TextModality(), DEFAULTS, args)
    space = default_space(TextModality(), config)
    for name, value in expected.items():
        entry = space[name]
        assert (entry["choices"] if "choices" in entry else (entry["low"], entry["high"])) == pytest.approx(value)
    assert ("num_train_epochs" in space) == ("--max_steps" in flags)
    from hftl.config import write_config

    write_config(config, str(tmp_path))
    distributions = check_space(space, TextModality(), config, str(tmp_path / "hftl_config.yaml"), "default")
    assert set(distributions) == set(space)


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], ("eval_accuracy", "maximize")),
        (["--metric_for_best_model", "eval_loss"], ("eval_loss", "minimize")),
        (["--metric_for_best_model", "f1"], ("eval_f1", "maximize")),
        (["--metric_for_best_model", "f1", "--greater_is_better", "false"], ("eval_f1", "minimize")),
        (["--metric_for_best_model", "loss", "--hp_search_direction", "maximize"], ("eval_loss", "maximize")),
        # early stopping makes transformers fill --metric_for_best_model with loss: the search keeps its default
        (["--early_stopping_patience", "2", "--eval_strategy", "epoch"], ("eval_accuracy", "maximize")),
        (
            ["--load_best_model_at_end", "--eval_strategy", "epoch", "--save_strategy", "epoch"],
            ("eval_accuracy", "maximize"),
        ),
    ],
)
def test_the_objective_is_a_validation_metric_in_its_direction(tiny_bert_dir, text_files, tmp_path, flags, expected):
    from hftl.search.study import _objective

    config = resolve_config(TextModality(), DEFAULTS, _args(tiny_bert_dir, text_files, tmp_path, *flags))
    objective = _objective(config.training, config.search)
    assert (objective.metric, objective.direction) == expected
