"""Multi-task learning (`--tasks`): the task sampler's counts, uncertainty weighting's maths, and the text recipe
end to end: two tasks with different label sets give two plain classifiers whose pipelines predict exactly what the
run's own evaluation predicted, a killed run resumes to the same weights, freeze and LoRA train, and what multi-task
training does not support is refused before any model loads."""

import csv
import json
import logging
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from helpers import (
    FILLER,
    ROOT,
    WORDS_BY_LABEL,
    assert_same_weights,
    make_texts,
    recipe_defaults,
    run_python,
    write_csv,
)
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification, pipeline

from hftl.modalities import ImageModality, TextModality
from hftl.multi_task import MultiTaskArguments, TaskBatchSampler, UncertaintyWeighting, task_order
from hftl.multi_task.sampling import TaskMixture
from hftl.pipeline import run_classification
from hftl.recipes import main

DEFAULTS = recipe_defaults("text_classification")
RECIPE = os.path.join(ROOT, "recipes", "text_classification.py")
# sentiment: 64 training texts (8 batches of 8), trend: 30 (4 batches): 12 steps per epoch, 24 in all
FLAGS = [
    "--num_train_epochs", "2",
    "--per_device_train_batch_size", "8",
    "--learning_rate", "5e-3",
    "--save_strategy", "steps",
    "--save_steps", "4",
    "--eval_strategy", "no",
    "--logging_steps", "4",
    "--disable_tqdm", "true",
    "--report_to", "none",
    "--seed", "3",
]  # fmt: skip


def trend_texts(n: int, seed: int) -> list[dict]:
    """`n` rows {sentence, y}: 'up' texts hold positive words, 'down' negative ones, 'flat' neither."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ("up", "down", "flat")[i % 3]
        words = {"up": WORDS_BY_LABEL["positive"], "down": WORDS_BY_LABEL["negative"], "flat": FILLER}[label]
        picked = rng.sample(FILLER, 4) + rng.sample(words, 2)
        rng.shuffle(picked)
        rows.append({"sentence": " ".join(picked), "y": label})
    return rows


@pytest.fixture(scope="module")
def tasks_config(tmp_path_factory) -> str:
    """A --config file whose `tasks:` list names two CSV tasks: sentiment (2 classes) and trend (3, other columns)."""
    folder = tmp_path_factory.mktemp("multi_task_data")
    files = {}
    for split, n, seed in (("train", 64, 1), ("validation", 16, 2), ("test", 16, 3)):
        files[f"sentiment_{split}"] = write_csv(folder / f"sentiment_{split}.csv", make_texts(n, seed=seed))
        files[f"trend_{split}"] = write_csv(folder / f"trend_{split}.csv", trend_texts(n // 2 - 2, seed=seed + 10))
    tasks = [
        {"name": name, **{f"{split}_file": files[f"{name}_{split}"] for split in ("train", "validation", "test")}}
        for name in ("sentiment", "trend")
    ]
    tasks[1].update(label_column_name="y", text_column_name="sentence", weight=0.5)
    path = folder / "tasks.yaml"
    path.write_text(yaml.safe_dump({"tasks": tasks}))
    return str(path)


def _args(model_dir, config, output_dir, *extra):
    return ["--config", config, "--model_name_or_path", model_dir, "--output_dir", str(output_dir), *FLAGS, *extra]


@pytest.fixture(scope="module")
def two_task_run(tiny_bert_dir, tasks_config, tmp_path_factory):
    """(output folder, metrics) of an uninterrupted two-task run, full fine-tuning."""
    output_dir = tmp_path_factory.mktemp("two_tasks")
    metrics = run_classification(TextModality(), DEFAULTS, _args(tiny_bert_dir, tasks_config, output_dir))
    return output_dir, metrics


# ---- pieces -------------------------------------------------------------------------------------------------------


def test_proportional_and_round_robin_task_counts():
    sizes, batch = [40, 10], 5  # 8 and 2 batches
    proportional = task_order(sizes, batch, "proportional", seed=0)
    assert len(proportional) == 10 and proportional.count(0) == 8 and proportional.count(1) == 2
    assert proportional != sorted(proportional)  # shuffled
    round_robin = task_order(sizes, batch, "round_robin", seed=0)
    assert round_robin == [0, 1] * 5  # same number of batches, tasks in turn (the small task repeats)

    sampler = TaskBatchSampler([7, 3], 4, "proportional", seed=1)  # 2 + 1 batches, short ones filled in-task
    indices = list(sampler)
    assert len(indices) == len(sampler) == 12
    batches = [indices[i : i + 4] for i in range(0, 12, 4)]
    assert sorted(all(j < 7 for j in b) for b in batches) == [False, True, True]  # each batch from one task
    assert all(all(j < 7 for j in b) or all(j >= 7 for j in b) for b in batches)
    assert set(indices) == set(range(10))  # every example once per epoch
    again = TaskBatchSampler([7, 3], 4, "proportional", seed=1)
    assert list(again) == indices  # a function of (seed, epoch): a resumed run replays it
    again.set_epoch(1)
    assert list(again) != indices
    mixture = TaskMixture([[{"x": 0}] * 7, [{"x": 1}] * 3])
    assert [mixture[i]["task_ids"] for i in (0, 6, 7, 9)] == [0, 0, 1, 1]


def test_checkpoints_record_every_task_s_data():
    from datasets import Dataset

    from hftl.trainer.fingerprint import dataset_sha256

    a, b, c = (Dataset.from_dict({"input_ids": [[i], [i + 1]], "labels": [0, 1]}) for i in (1, 5, 9))
    assert dataset_sha256(TaskMixture([a, b])) == dataset_sha256(TaskMixture([a, b]))
    assert dataset_sha256(TaskMixture([a, b])) != dataset_sha256(TaskMixture([a, c]))  # another second task's data


def test_uncertainty_weighting_on_known_values_and_its_gradient():
    weighting = UncertaintyWeighting(3)
    with torch.no_grad():
        weighting.log_variances.copy_(torch.tensor([0.0, np.log(2.0), 1.0]))
    losses, present = torch.tensor([1.0, 2.0, 5.0]), torch.tensor([True, True, False])
    loss = weighting(losses, present)
    assert loss.item() == pytest.approx(1.0 + (2.0 / 2 + np.log(2.0)))  # exp(-s) L + s, absent task left out
    loss.backward()
    # d/ds_t = 1 - exp(-s_t) L_t: 0 for task 0, 1 - 1 = 0 for task 1 (at their optimum s = log L), 0 when absent
    assert torch.allclose(weighting.log_variances.grad, torch.tensor([0.0, 0.0, 0.0]), atol=1e-6)
    weighting.zero_grad()
    weighting(torch.tensor([4.0, 0.5, 1.0]), torch.tensor([True, True, True])).backward()
    grad = weighting.log_variances.grad
    assert grad[0] < 0 and grad[1] > 0  # a larger loss raises s_t (a smaller weight), a smaller one lowers it


def test_a_task_list_is_checked_before_anything_loads(tmp_path):
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps([{"name": "a", "train_file": "x.csv"}, {"name": "a", "train_file": "y.csv"}]))
    with pytest.raises(Exception, match="given twice"):
        MultiTaskArguments(tasks=str(path))
    with pytest.raises(Exception, match="at least two tasks"):
        MultiTaskArguments(tasks='[{"name": "a", "train_file": "x.csv"}]')
    with pytest.raises(Exception, match="weight"):
        MultiTaskArguments(tasks='[{"name": "a", "weight": -1}, {"name": "b"}]')
    assert [t.name for t in MultiTaskArguments(tasks='[{"name": "a"}, {"name": "b", "weight": 2}]').task_specs()] == [
        "a",
        "b",
    ]


# ---- the recipe ---------------------------------------------------------------------------------------------------


def _predictions(path) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [row["prediction"] for row in csv.DictReader(handle)]


def test_two_tasks_give_two_classifiers_that_predict_as_the_run_evaluated(two_task_run, tasks_config):
    output_dir, metrics = two_task_run
    results = json.load(open(output_dir / "all_results.json"))
    for name in ("sentiment", "trend"):
        for key in (f"eval_{name}_accuracy", f"test_{name}_f1", f"test_{name}_accuracy"):
            assert key in results and results[key] == pytest.approx(metrics[key])
    assert results["test_sentiment_accuracy"] >= 0.75  # the easy task is learnt (chance: 0.5)
    tasks = {t["name"]: t for t in yaml.safe_load(open(tasks_config))["tasks"]}
    for name, labels in (("sentiment", {"negative", "positive"}), ("trend", {"down", "flat", "up"})):
        folder = output_dir / "tasks" / name
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        assert set(model.config.id2label.values()) == labels
        classifier = pipeline("text-classification", model=str(folder), device="cpu")
        column = "sentence" if name == "trend" else "text"
        texts = [row[column] for row in csv.DictReader(open(tasks[name]["test_file"], encoding="utf-8"))]
        assert [p["label"] for p in classifier(texts)] == _predictions(folder / "test_predictions.csv")
        card = (folder / "README.md").read_text()
        assert "## Multi-task training" in card and "sentiment" in card and "trend" in card and "multi-task" in card
    # the shared backbone is the same in both, the heads differ in size
    a, b = (load_file(output_dir / "tasks" / n / "model.safetensors") for n in ("sentiment", "trend"))
    assert torch.equal(a["bert.encoder.layer.3.output.dense.weight"], b["bert.encoder.layer.3.output.dense.weight"])
    assert a["classifier.weight"].shape == (2, 32) and b["classifier.weight"].shape == (3, 32)


KILLED_AFTER_SAVE = """
import os, runpy, signal, sys
from hftl.multi_task.trainer import MultiTaskTrainer
save = MultiTaskTrainer._save_checkpoint
def save_then_die(self, model, trial):
    save(self, model, trial)
    if self.state.global_step == 16:  # epoch 2, after 4 of its 12 batches
        os.kill(os.getpid(), signal.SIGKILL)
MultiTaskTrainer._save_checkpoint = save_then_die
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_killed_multi_task_run_resumes_to_the_uninterrupted_weights(
    tiny_bert_dir, tasks_config, two_task_run, tmp_path, caplog
):
    output_dir = tmp_path / "run"
    args = _args(tiny_bert_dir, tasks_config, output_dir)
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_SAVE, RECIPE, *args], capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (output_dir / "checkpoint-16").is_dir() and not (output_dir / "tasks").exists()
    with caplog.at_level("WARNING", logger="hftl"):
        run_classification(TextModality(), DEFAULTS, args)  # the same command: resumes by itself
    assert "Resuming from " + str(output_dir / "checkpoint-16") in caplog.text
    assert json.load(open(output_dir / "trainer_state.json"))["global_step"] == 24
    for name in ("sentiment", "trend"):
        assert_same_weights(output_dir / "tasks" / name, two_task_run[0] / "tasks" / name)


def test_freeze_with_uncertainty_weights_and_lora_with_round_robin(tiny_bert_dir, tasks_config, tmp_path, caplog):
    frozen = tmp_path / "freeze"
    quick = ["--num_train_epochs", "1", "--save_strategy", "no", "--do_predict", "false"]
    args = _args(tiny_bert_dir, tasks_config, frozen, *quick, "--strategy", "freeze", "--num_frozen_layers", "2")
    with caplog.at_level(logging.WARNING, logger="hftl"):
        run_classification(TextModality(), DEFAULTS, [*args, "--task_weighting", "uncertainty"])
    assert "the tasks' `weight` keys are ignored" in caplog.text  # the fixture's second task sets weight 0.5
    before = load_file(os.path.join(tiny_bert_dir, "model.safetensors"))
    after = load_file(frozen / "tasks" / "trend" / "model.safetensors")
    key = next(k for k in before if "layer.0.attention" in k and k.endswith("weight"))
    assert torch.equal(before[key], after["bert." + key.removeprefix("bert.")])  # frozen layer kept
    log = json.load(open(frozen / "trainer_state.json"))["log_history"]
    weights = [entry["task_weight_1"] for entry in log if "task_weight_1" in entry]
    assert weights and weights[-1] != 1.0  # exp(-s_t) moved from its start at 1: the s_t train

    lora = tmp_path / "lora"
    args = _args(tiny_bert_dir, tasks_config, lora, *quick, "--strategy", "lora", "--task_sampling", "round_robin")
    metrics = run_classification(TextModality(), DEFAULTS, args)
    folder = lora / "tasks" / "trend"
    assert not any("lora" in k for k in load_file(folder / "model.safetensors"))  # merged: a plain model
    classifier = pipeline("text-classification", model=str(folder), device="cpu")
    tasks = yaml.safe_load(open(tasks_config))["tasks"]
    texts = [row["sentence"] for row in csv.DictReader(open(tasks[1]["validation_file"], encoding="utf-8"))]
    assert [p["label"] for p in classifier(texts)] == _predictions(folder / "eval_predictions.csv")
    assert "eval_trend_accuracy" in metrics


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--strategy", "two_stage"], "--strategy two_stage is not supported with --tasks"),
        (["--adaptation", "dann", "--target_train_file", "t.csv"], "--adaptation is not supported"),
        (["--problem_type", "multi_label_classification"], "--problem_type is not supported"),
        (["--hp_search_trials", "2"], "--hp_search_trials is not supported"),
        (["--train_file", "x.csv"], "--train_file is given beside --tasks"),
        (["--feature_layer", "auto"], "--feature_layer auto is not supported with --tasks"),
        (["--load_best_model_at_end", "true", "--save_strategy", "epoch", "--eval_strategy", "epoch"], "best"),
    ],
)
def test_unsupported_combinations_are_refused(tiny_bert_dir, tasks_config, tmp_path, capsys, extra, message):
    args = ["--config", tasks_config, "--model_name_or_path", tiny_bert_dir, "--output_dir", str(tmp_path), *extra]
    assert main(TextModality(), DEFAULTS, args) == 2
    assert message in capsys.readouterr().err


def test_bad_task_data_is_named_before_any_model_loads(tiny_bert_dir, tasks_config, tmp_path, capsys):
    tasks = yaml.safe_load(open(tasks_config))["tasks"]
    tasks[1]["text_colum_name"] = "sentence"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"tasks": tasks}))
    args = ["--tasks", str(bad), "--model_name_or_path", tiny_bert_dir, "--output_dir", str(tmp_path / "o")]
    assert main(TextModality(), DEFAULTS, args) == 2
    err = capsys.readouterr().err
    assert "task 'trend': unknown data flag(s) text_colum_name (did you mean text_column_name" in err
    assert "Generating" not in err  # no task's data was read
    del tasks[1]["text_colum_name"]
    tasks[1]["label_column_name"] = "nope"
    bad.write_text(yaml.safe_dump({"tasks": tasks}))
    assert main(TextModality(), DEFAULTS, args) == 2
    err = capsys.readouterr().err
    assert "task 'trend'" in err and "nope" in err


@pytest.mark.distributed
def test_two_processes_count_every_example_once(tiny_bert_dir, tasks_config, tmp_path):
    """torchrun, 2 CPU processes (gloo), uncertainty weights (every head and s_t takes part in every step, so DDP
    needs no unused-parameter search): each task's metrics are those of its predictions file, every example once."""
    output_dir = tmp_path / "ddp"
    args = _args(tiny_bert_dir, tasks_config, output_dir, "--num_train_epochs", "1", "--save_strategy", "no")
    run_python(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()), RECIPE,
                *args, "--task_weighting", "uncertainty", "--per_device_eval_batch_size", "5"])  # fmt: skip
    results = json.load(open(output_dir / "all_results.json"))
    tasks = {t["name"]: t for t in yaml.safe_load(open(tasks_config))["tasks"]}
    for name, column in (("sentiment", "label"), ("trend", "y")):
        truth = [row[column] for row in csv.DictReader(open(tasks[name]["test_file"], encoding="utf-8"))]
        predicted = _predictions(output_dir / "tasks" / name / "test_predictions.csv")
        assert len(predicted) == len(truth) == results[f"test_{name}_samples"]
        accuracy = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)
        assert results[f"test_{name}_accuracy"] == pytest.approx(accuracy)
        assert AutoModelForSequenceClassification.from_pretrained(output_dir / "tasks" / name).num_labels == len(
            set(truth)
        )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_image_tasks_from_folders_and_a_csv(tiny_vit_dir, image_folders, tmp_path):
    """The image recipe: a folder task (stripes / dots) beside a CSV task of the same pictures with 3 other labels."""
    files = {}
    for split in ("train", "validation", "test"):
        paths = sorted(str(p) for p in (tmp_path / split).rglob("*.png"))
        rows = [{"image": path, "size": ("small", "medium", "large")[i % 3]} for i, path in enumerate(paths)]
        files[split] = write_csv(tmp_path / f"sizes_{split}.csv", rows)
    tasks = [
        {"name": "pattern", **image_folders},
        {"name": "size", **{f"{s}_file": files[s] for s in files}, "label_column_name": "size"},
    ]
    config = tmp_path / "tasks.yaml"
    config.write_text(yaml.safe_dump({"tasks": tasks}))
    output_dir = tmp_path / "out"
    args = ["--config", str(config), "--model_name_or_path", tiny_vit_dir, "--output_dir", str(output_dir),
            "--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--save_strategy", "no",
            "--eval_strategy", "no", "--report_to", "none", "--disable_tqdm", "true"]  # fmt: skip
    metrics = run_classification(ImageModality(), recipe_defaults("image_classification"), args)
    assert {"test_pattern_accuracy", "test_size_accuracy"} <= set(metrics)
    loaded = AutoModelForImageClassification.from_pretrained(output_dir / "tasks" / "pattern")
    assert set(loaded.config.id2label.values()) == {"stripes", "dots"}
    classifier = pipeline("image-classification", model=str(output_dir / "tasks" / "size"), device="cpu")
    images = [row["image"] for row in csv.DictReader(open(files["test"], encoding="utf-8"))]
    predicted = [max(p, key=lambda x: x["score"])["label"] for p in classifier(images)]
    assert predicted == _predictions(output_dir / "tasks" / "size" / "test_predictions.csv")
