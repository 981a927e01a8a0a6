"""Crash-safe resume: kill the text recipe mid-run or mid-save, rerun the same command, get the same weights.

The comparison with an uninterrupted run is exact (`torch.equal` on every tensor of `model.safetensors`, and of the
adapter for LoRA), with no tolerance. On CPU with a fixed seed nothing differs between the two: the checkpoint
holds the model (or adapter and head), optimizer, scheduler and every RNG state; transformers skips the batches the
resumed epoch already trained on and restores the RNG state before the next one; `HftlTrainer` seeds the text recipe's
length-grouped shuffle per epoch (transformers' draws it from the global RNG, which a resumed run has not restored
when the epoch starts: without the seeding, runs resumed in epoch 2 or later ended up to 9e-3 away); and the same
kernels run on the same number of threads in the same order. Dropout stays on (the RNG states cover it).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import ROOT, assert_same_weights, make_texts, recipe_args, resumed_step, run_python, write_csv
from transformers import TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from hftl.errors import InputError
from hftl.trainer import CHECKPOINT_MANIFEST, HftlTrainer, commit_checkpoint, last_complete_checkpoint

RECIPE = os.path.join(ROOT, "recipes", "text_classification.py")
# 58 training examples (10% of 64 carved out for validation), batch 8: 8 steps per epoch, 24 in all; a checkpoint
# every 4 steps, every other one in the middle of an epoch (step 12: epoch 2, after 4 of its 8 batches)
FLAGS = [
    "--num_train_epochs", "3",
    "--per_device_train_batch_size", "8",
    "--learning_rate", "5e-3",
    "--save_strategy", "steps",
    "--save_steps", "4",
    "--eval_strategy", "no",
    "--do_eval", "false",
    "--do_predict", "false",
    "--logging_steps", "4",
    "--disable_tqdm", "true",
    "--report_to", "none",
    "--seed", "7",
]  # fmt: skip

# The recipe, run as `python -c SLOW_RECIPE recipes/text_classification.py FLAGS...`: each training step sleeps, so
# that the test can kill the process from outside between two checkpoints.
SLOW_RECIPE = """
import runpy, sys, time
from hftl.trainer import HftlTrainer
training_step = HftlTrainer.training_step
def slow_training_step(self, *args, **kwargs):
    time.sleep(0.15)
    return training_step(self, *args, **kwargs)
HftlTrainer.training_step = slow_training_step
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# The recipe, killed (SIGKILL, by itself) in the middle of saving the checkpoint of step KILL_STEP on process
# KILL_RANK: after the model, optimizer and scheduler are written, before the RNG states and trainer_state.json.
KILLED_IN_SAVE = """
import os, runpy, signal, sys
from hftl.trainer import HftlTrainer
save_rng_state = HftlTrainer._save_rng_state
def killed_mid_save(self, output_dir):
    step, rank = int(os.environ["KILL_STEP"]), int(os.environ["KILL_RANK"])
    if self.state.global_step == step and self.args.process_index == rank:
        os.kill(os.getpid(), signal.SIGKILL)
    return save_rng_state(self, output_dir)
HftlTrainer._save_rng_state = killed_mid_save
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> str:
    rows = make_texts(64, seed=1)
    for i, row in enumerate(rows):  # several lengths, so that the recipe's length-grouped batches are really grouped
        row["text"] += " the" * (i % 5)
    return write_csv(tmp_path_factory.mktemp("resume_data") / "train.csv", rows)


def _args(model_dir, train_file, output_dir, strategy, *extra):
    return recipe_args(model_dir, {"train_file": train_file}, output_dir, *FLAGS, "--strategy", strategy, *extra)


def _checkpoints(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith("checkpoint-") or ".partial" in name)


@pytest.fixture(scope="module")
def uninterrupted(tiny_bert_dir, train_file, tmp_path_factory):
    """strategy -> output folder of the same run, never interrupted (made once per strategy)."""
    made = {}

    def run(strategy: str) -> str:
        if strategy not in made:
            output_dir = tmp_path_factory.mktemp(f"uninterrupted_{strategy}")
            run_python([RECIPE, *_args(tiny_bert_dir, train_file, output_dir, strategy)])
            made[strategy] = str(output_dir)
        return made[strategy]

    return run


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_sigkill_mid_run_then_the_same_command_ends_with_the_uninterrupted_weights(
    tiny_bert_dir, train_file, tmp_path, uninterrupted, strategy
):
    output_dir = tmp_path / "run"
    args = _args(tiny_bert_dir, train_file, output_dir, strategy)
    log = tmp_path / "killed.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-c", SLOW_RECIPE, RECIPE, *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        deadline = time.monotonic() + 600
        while not (output_dir / "checkpoint-12").is_dir():  # renamed into place only once complete
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        assert process.wait(60) == -signal.SIGKILL
    assert not (output_dir / "all_results.json").exists()  # killed before the end

    done = run_python([RECIPE, *args])  # the same command, without the slowdown: resumes by itself
    assert resumed_step(done.stdout + done.stderr) >= 12
    assert_same_weights(output_dir, uninterrupted(strategy))
    assert json.load(open(output_dir / "all_results.json"))["epoch"] == 3.0
    assert _checkpoints(output_dir) == ["checkpoint-20", "checkpoint-24"]  # the recipe's save_total_limit 2


def test_kill_during_a_save_resumes_from_the_previous_checkpoint(tiny_bert_dir, train_file, tmp_path, uninterrupted):
    output_dir = tmp_path / "run"
    args = _args(tiny_bert_dir, train_file, output_dir, "full", "--save_total_limit", "1")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_IN_SAVE, RECIPE, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "KILL_STEP": "16", "KILL_RANK": "0"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-3000:]
    staged = output_dir / ".checkpoint-16.partial" / "checkpoint-16"
    assert (staged / "model.safetensors").exists() and (staged / "optimizer.pt").exists()  # killed mid-save
    assert not (staged / "trainer_state.json").exists()
    # the previous checkpoint (the only one, with save_total_limit 1) was not rotated away before the new one was in
    # place, and is the one to resume from
    assert _checkpoints(output_dir) == [".checkpoint-16.partial", "checkpoint-12"]
    assert last_complete_checkpoint(str(output_dir)) == str(output_dir / "checkpoint-12")
    # later-numbered checkpoints that miss files, as a killed plain transformers save (or a partial copy) leaves them
    shutil.copytree(output_dir / "checkpoint-12", output_dir / "checkpoint-99")
    os.remove(output_dir / "checkpoint-99" / "optimizer.pt")  # listed in its manifest
    shutil.copytree(staged, output_dir / "checkpoint-98")  # no manifest, no trainer_state.json
    assert get_last_checkpoint(str(output_dir)).endswith("checkpoint-99")  # what transformers would resume

    done = run_python([RECIPE, *args])
    output = done.stdout + done.stderr
    assert resumed_step(output) == 12  # in the middle of epoch 2
    assert "Not resuming from" in output and "Removing" in output
    assert_same_weights(output_dir, uninterrupted("full"))
    assert _checkpoints(output_dir) == ["checkpoint-24"]


def _write_checkpoint(folder, step: int, files: dict[str, bytes], hftl: bool = True) -> str:
    """A checkpoint folder holding `files`; `hftl`: committed as HftlTrainer does (manifest, rename), else plain."""
    name = f"checkpoint-{step}"
    staged = folder / f".{name}.partial" / name if hftl else folder / name
    staged.mkdir(parents=True)
    for file, content in files.items():
        (staged / file).write_bytes(content)
    if hftl:
        commit_checkpoint(str(staged), str(folder / name), step)
        shutil.rmtree(folder / f".{name}.partial")
    return str(folder / name)


def test_last_complete_checkpoint_skips_what_a_killed_save_left(tmp_path):
    state = b'{"global_step": 1}'
    full = {"model.safetensors": b"m" * 100, "optimizer.pt": b"o" * 50, "trainer_state.json": state}
    plain = _write_checkpoint(tmp_path, 2, full, hftl=False)  # plain transformers, complete: accepted
    assert last_complete_checkpoint(str(tmp_path)) == plain
    complete = _write_checkpoint(tmp_path, 4, full)
    manifest = json.load(open(os.path.join(complete, CHECKPOINT_MANIFEST)))
    assert manifest["files"] == {"model.safetensors": 100, "optimizer.pt": 50, "trainer_state.json": len(state)}
    truncated = _write_checkpoint(tmp_path, 6, full)
    with open(os.path.join(truncated, "model.safetensors"), "wb") as handle:
        handle.write(b"m" * 10)
    missing = _write_checkpoint(tmp_path, 8, full)
    os.remove(os.path.join(missing, "optimizer.pt"))
    _write_checkpoint(tmp_path, 10, {"model.safetensors": b"m"}, hftl=False)  # plain, killed before trainer_state
    (tmp_path / ".checkpoint-12.partial" / "checkpoint-12").mkdir(parents=True)  # an HftlTrainer save killed
    (tmp_path / "checkpoint-14").write_text("a file, not a folder")
    assert get_last_checkpoint(str(tmp_path)).endswith("checkpoint-10")  # transformers takes the highest number
    assert last_complete_checkpoint(str(tmp_path)) == complete
    assert last_complete_checkpoint(str(tmp_path / "nothing_here")) is None


def test_explicit_incomplete_checkpoint_is_refused(tmp_path):
    incomplete = _write_checkpoint(tmp_path, 10, {"model.safetensors": b"m"}, hftl=False)
    complete = _write_checkpoint(tmp_path, 4, {"trainer_state.json": b"{}"})
    (tmp_path / ".checkpoint-12.partial").mkdir()
    trainer = HftlTrainer(
        model=torch.nn.Linear(2, 2), args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    )
    expected = rf"trainer_state.json missing.*last complete one beside it: {re.escape(complete)}"
    with pytest.raises(InputError, match=expected):
        trainer.train(resume_from_checkpoint=incomplete)
    assert not (tmp_path / ".checkpoint-12.partial").exists()  # unfinished saves are removed when training starts


@pytest.mark.distributed
def test_two_processes_killed_in_a_save_resume_exactly(tiny_bert_dir, train_file, tmp_path):
    """torchrun, 2 CPU processes (gloo): process 1 is killed while saving step 16's checkpoint (its RNG state not yet
    written); the rerun resumes from checkpoint-12, in the middle of epoch 2, and ends with the weights of an
    uninterrupted 2-process run. Every checkpoint holds both processes' RNG states."""
    script = tmp_path / "killed_in_save.py"
    script.write_text(KILLED_IN_SAVE)

    def launch(output_dir, *command, check=True, **env):
        flags = _args(tiny_bert_dir, train_file, output_dir, "full", "--per_device_train_batch_size", "4")
        launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        full = [sys.executable, *launcher, *command, RECIPE, *flags, "--use_cpu", "true"]
        done = subprocess.run(
            full, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1", **env}
        )
        assert not check or done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout + done.stderr

    reference = tmp_path / "uninterrupted"
    launch(reference)
    output_dir = tmp_path / "run"
    launch(output_dir, str(script), check=False, KILL_STEP="16", KILL_RANK="1")
    assert not (output_dir / "all_results.json").exists()
    # process 0 may or may not have begun the save when it was stopped: the staging folder may be there or not
    assert [name for name in _checkpoints(output_dir) if ".partial" not in name] == ["checkpoint-12", "checkpoint-8"]
    files = json.load(open(output_dir / "checkpoint-12" / CHECKPOINT_MANIFEST))["files"]
    assert {"rng_state_0.pth", "rng_state_1.pth", "optimizer.pt", "model.safetensors"} <= files.keys()

    assert resumed_step(launch(output_dir)) == 12
    assert_same_weights(output_dir, reference)
    assert _checkpoints(output_dir) == ["checkpoint-20", "checkpoint-24"]
