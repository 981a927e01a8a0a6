"""`--report_to` through the text recipe on a tiny BERT, offline: TensorBoard event files and trackio's local store
hold the training loss and, for a DANN run, its parts, with the values the Trainer logged."""

import glob
import json
import os
import subprocess
import sys

import pytest
import yaml
from helpers import ROOT, make_texts, recipe_args, recipe_defaults, write_csv

from hftl.config import resolve_config, write_config
from hftl.errors import InputError
from hftl.modalities import TextModality
from hftl.pipeline import run_classification

DEFAULTS = recipe_defaults("text_classification")
FAST = (
    "--max_steps 4 --per_device_train_batch_size 8 --logging_steps 1 --disable_tqdm true --eval_strategy steps "
    "--eval_steps 2 --save_strategy no"
).split()
LOSS_PARTS = ("loss", "cls_loss", "align_loss", "grl_lambda")


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of the TensorBoard event files under `folder`, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = glob.glob(os.path.join(folder, "runs", "*"))
    events = EventAccumulator(run)
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _logged(output_dir) -> dict[str, list[tuple[int, float]]]:
    """name -> [(step, value)] of what the Trainer logged during training (trainer_state.json's log history)."""
    history = json.load(open(os.path.join(output_dir, "trainer_state.json")))["log_history"]
    logged: dict[str, list] = {}
    for entry in history:
        for key, value in entry.items():
            if key not in ("step", "epoch") and isinstance(value, float):
                logged.setdefault(key, []).append((entry["step"], value))
    return logged


def _same_curve(tracked, logged) -> bool:
    """The same steps, and the same values up to float32 rounding (TensorBoard stores float32)."""
    steps = [step for step, _ in tracked] == [step for step, _ in logged]
    return steps and [value for _, value in tracked] == pytest.approx([value for _, value in logged], rel=1e-6)


def test_report_to_takes_several_trackers_and_the_config_file_reads_them_back(tiny_bert_dir, text_files, tmp_path):
    args = recipe_args(tiny_bert_dir, text_files, tmp_path / "out", "--report_to", "tensorboard,trackio")
    config = resolve_config(TextModality(), DEFAULTS, args)
    assert config.training.report_to == ["tensorboard", "trackio"]
    assert config.training.run_name == str(tmp_path / "out")  # trackio files the final evaluations under it
    write_config(config, str(tmp_path))
    assert yaml.safe_load(open(tmp_path / "hftl_config.yaml"))["report_to"] == "tensorboard,trackio"
    again = resolve_config(TextModality(), DEFAULTS, ["--config", str(tmp_path / "hftl_config.yaml")])
    assert again.training.report_to == ["tensorboard", "trackio"]
    with pytest.raises(InputError, match="--report_to tensorbord: not a tracker .*did you mean tensorboard"):
        resolve_config(TextModality(), DEFAULTS, [*args[:-2], "--report_to", "trackio,tensorbord"])


def test_two_stage_run_logs_both_stages_to_tensorboard(tiny_bert_dir, text_files, tmp_path):
    output_dir = tmp_path / "out"
    args = recipe_args(tiny_bert_dir, text_files, output_dir, *FAST, "--report_to", "tensorboard")
    run_classification(TextModality(), DEFAULTS, [*args, "--strategy", "two_stage", "--stage1_num_train_epochs", "1"])
    stage2, stage1 = _scalars(output_dir), _scalars(output_dir / "stage1")
    assert [step for step, _ in stage2["train/loss"]] == [1, 2, 3, 4]
    assert _same_curve(stage2["train/loss"], _logged(output_dir)["loss"])
    assert {"eval/accuracy", "eval/loss", "train/learning_rate"} <= set(stage2)
    assert stage1["train/loss"] and "train/align_loss" not in stage2


def test_dann_loss_parts_reach_tensorboard_and_trackio_offline(tiny_bert_dir, text_files, tmp_path):
    """The recipe in a fresh process (trackio reads TRACKIO_DIR when imported), with no network and no Space."""
    output_dir, store = tmp_path / "dann", tmp_path / "trackio"
    unlabelled = [{"text": row["text"], "label": "positive"} for row in make_texts(40, seed=7)]
    files = {**text_files, "target_train_file": write_csv(tmp_path / "target.csv", unlabelled)}
    files["target_test_file"] = write_csv(tmp_path / "target_test.csv", make_texts(18, seed=8))
    args = recipe_args(tiny_bert_dir, files, output_dir, *FAST, "--adaptation", "dann")
    args += ["--discriminator_hidden_size", "16", "--report_to", "tensorboard,trackio", "--project", "hftl-test"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKIO_")}
    env.update(HF_HUB_OFFLINE="1", TRACKIO_DIR=str(store))
    script = os.path.join(ROOT, "recipes", "text_classification.py")
    done = subprocess.run([sys.executable, script, *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    logged = _logged(output_dir)

    scalars = _scalars(output_dir)
    for part in LOSS_PARTS:
        assert _same_curve(scalars[f"train/{part}"], logged[part]), part
        assert [step for step, _ in scalars[f"train/{part}"]] == [1, 2, 3, 4]

    reader = (
        "import json; from trackio.sqlite_storage import SQLiteStorage as S; "
        "print(json.dumps({r: S.get_logs('hftl-test', r) for r in S.get_runs('hftl-test')}))"
    )
    read = subprocess.run([sys.executable, "-c", reader], env=env, capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr[-3000:]
    runs = json.loads(read.stdout.strip().splitlines()[-1])
    assert list(runs) == [str(output_dir)]  # one run, named after --output_dir, that the final evaluations join
    rows = runs[str(output_dir)]
    for part in LOSS_PARTS:
        tracked = [(row["train/global_step"], row[f"train/{part}"]) for row in rows if f"train/{part}" in row]
        assert _same_curve(tracked, logged[part]), part
    assert any("eval/accuracy" in row for row in rows) and any("test/accuracy" in row for row in rows)
    assert sorted(os.listdir(store)) == ["hftl-test.db", "hftl-test.lock"]
