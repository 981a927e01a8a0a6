"""Fault cases of the battery (see `battery.py`): runs killed by a signal while training or saving, full and
read-only disks, corrupted or deleted checkpoints, reruns into a folder that holds another run's checkpoints.

Each case runs real recipe processes itself (forked from the battery's server, so a signal really ends a process)
and returns the `Result` of the run its expectation is about. A case that resumes checks that the rerun ends with
weights bit-identical to an uninterrupted run of the same flags (made once per session, beside the case folders).
A process kills itself at a chosen step (`_fault`), so that no case races a timer. Full and read-only disks are small
tmpfs mounts: a case that cannot mount one (not root) is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from battery import Case, Error, Handled, Result, image_run, log_says, run_recipe, text_rows, text_run
from helpers import assert_same_weights, resumed_step, write_csv

# 32 training rows, batch 8: 4 steps an epoch, 8 in all, a checkpoint every 2 (the recipe keeps the last 2)
RESUME = [
    "--num_train_epochs", "2", "--save_strategy", "steps", "--save_steps", "2", "--do_eval", "false",
    "--learning_rate", "5e-3", "--seed", "7", "--logging_steps", "2",
]  # fmt: skip
# 12 training images, batch 4: 3 steps an epoch, 9 in all, a checkpoint every 2. Without random crops and flips: the
# loader fetches one batch ahead, so the first resumed batch's augmentation was drawn before the checkpoint's RNG
# state was saved, and no resume can replay it (augmentation drawn per example from (seed, epoch, index) would)
IMAGE_RESUME = [
    "--num_train_epochs", "3", "--per_device_train_batch_size", "4", "--save_strategy", "steps", "--save_steps", "2",
    "--do_eval", "false", "--do_predict", "false", "--seed", "7", "--logging_steps", "2", "--augment", "false",
]  # fmt: skip
BUILDERS = {"text": text_run, "image": image_run}
TIMEOUT = 300


# ---- faults the process brings on itself, at a chosen step --------------------------------------------------------


def _fault(actions: tuple[str, ...], where: str, step: int) -> None:
    """Make the run do `actions` once, when `global_step == step`: `where` "training" at the start of the next
    training step, "save" while saving `checkpoint-<step>` (model, optimizer and scheduler written, RNG states and
    trainer_state.json not yet). An action is a signal name ("SIGKILL") or "delete:<name>" (a folder of output_dir).

    Runs in the battery's child, before the recipe (`run_recipe(before=...)`)."""
    import signal

    from hftl.trainer import HftlTrainer

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, as in a shell (the fork server ignores it)
    name = "training_step" if where == "training" else "_save_rng_state"
    original = getattr(HftlTrainer, name)
    done = []

    def faulty(self, *args, **kwargs):
        if self.state.global_step == step and not done:
            done.append(step)
            for action in actions:
                if action.startswith("delete:"):
                    shutil.rmtree(os.path.join(self.args.output_dir, action.removeprefix("delete:")))
                else:
                    os.kill(os.getpid(), getattr(signal, action))
        return original(self, *args, **kwargs)

    setattr(HftlTrainer, name, faulty)


def _run(argv: list[str], folder: Path, fault=None, recipe: str = "text") -> Result:
    """Run `recipe` with `argv`, its logs in `folder` (made); `fault`: `(actions, where, step)`."""
    folder.mkdir(parents=True, exist_ok=True)
    before = functools.partial(_fault, *fault) if fault else None
    return run_recipe(recipe, argv, folder, TIMEOUT, {}, before=before)


def _reference(folder: Path, assets: dict, *flags: str, recipe: str = "text") -> Path:
    """Output folder of an uninterrupted `recipe` run with `flags`, made once per session beside the case folders."""
    where = folder.parent / f"fault_reference_{hashlib.sha1(repr((recipe, flags)).encode()).hexdigest()[:10]}"
    if not (where / "out" / "model.safetensors").is_file():
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir()
        Handled().verify(_run(BUILDERS[recipe](where, assets, *flags), where, recipe=recipe))
    return where / "out"


def _interrupted(actions: tuple[str, ...], where: str, step: int, between=None, flags=RESUME, recipe="text"):
    """A case's run: `recipe` meets `actions` at `step`; when one is a signal, `between(output_dir)` changes what it
    left and the same command runs again (its Result returned; else the first run's)."""

    def run(folder: Path, assets: dict) -> Result:
        _reference(folder, assets, *flags, recipe=recipe)
        argv = BUILDERS[recipe](folder, assets, *flags)
        if not any(action.startswith("SIG") for action in actions):
            return _run(argv, folder, (actions, where, step), recipe)  # nothing stops it
        first = _run(argv, folder / "interrupted", (actions, where, step), recipe)
        assert first.returncode != 0, f"not interrupted:\n{first.stderr[-2000:]}"
        assert not (folder / "out" / "all_results.json").exists()
        if between is not None:
            between(folder / "out")
        return _run(argv, folder, recipe=recipe)

    return run


def _as_uninterrupted(resumed: int | None, says: str | None = None, flags=RESUME, recipe="text"):
    """A `Handled` check: the run resumed from checkpoint-`resumed` (None: did not resume) and saved the weights of
    the uninterrupted run, no unfinished save is left, and (`says`) its log matches that pattern."""

    def check(result: Result) -> None:
        log = result.stdout + result.stderr
        if says is not None:
            log_says(says)(result)
        if resumed is None:
            assert "Resuming from" not in log, log[-2000:]
        else:
            assert resumed_step(log) == resumed
        assert_same_weights(result.output_dir, _reference(result.folder, {}, *flags, recipe=recipe))
        assert not [name for name in os.listdir(result.output_dir) if name.endswith(".partial")]

    return check


# ---- damaged checkpoints ---------------------------------------------------------------------------------------


def _truncate(name: str, checkpoint: str = "checkpoint-6"):
    def damage(output_dir: Path) -> None:
        path = output_dir / checkpoint / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return damage


def _nan_tensors(output_dir: Path, checkpoint: str = "checkpoint-6") -> None:
    """Overwrite every tensor byte of `checkpoint/model.safetensors` with float32 NaNs: the same size, other content."""
    path = output_dir / checkpoint / "model.safetensors"
    content = path.read_bytes()
    start = 8 + struct.unpack("<Q", content[:8])[0]  # an 8-byte header length, the JSON header, then the tensors
    count = (len(content) - start) // 4
    path.write_bytes(content[:start] + struct.pack("<f", float("nan")) * count + content[start + 4 * count :])


# ---- disks ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(path: Path, size_kib: int, read_only: bool = False):
    """A tmpfs of `size_kib` KiB mounted at `path` (skips the case if mounting is not permitted); unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kib}k" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {path} (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def _full_disk(size_kib: int, flags=RESUME, then_resumed: int | None = None):
    """A case's run: the recipe writes its output into a tmpfs of `size_kib` KiB and fills it (the Result returned);
    then, with space added, the same command completes (resuming from checkpoint-`then_resumed`) with the weights
    of an uninterrupted run, and no partial file is left."""

    def run(folder: Path, assets: dict) -> Result:
        reference = _reference(folder, assets, *flags)
        disk = folder / "disk"
        with _tmpfs(disk, size_kib):
            argv = text_run(folder, assets, *flags, "--output_dir", str(disk / "out"))
            full = _run(argv, folder / "full")
            left = sorted(p.name for p in (disk / "out").iterdir()) if (disk / "out").is_dir() else []
            assert not [name for name in left if name.endswith(".partial")], left
            if then_resumed is not None:
                from hftl.trainer import checkpoint_problem

                assert checkpoint_problem(str(disk / "out" / f"checkpoint-{then_resumed}")) is None, left
            else:
                assert "model.safetensors" not in left, left  # a partial model is removed
            _remount(disk, "size=16m")
            rerun = _run(argv, folder / "rerun")
            Handled().verify(rerun)
            if then_resumed is not None:
                assert resumed_step(rerun.stdout + rerun.stderr) == then_resumed
            assert_same_weights(disk / "out", reference)
        return full

    return run


def _read_only(existing: bool):
    """A case's run: --output_dir is on a read-only tmpfs (`existing`: the folder itself, else a folder to create)."""

    def run(folder: Path, assets: dict) -> Result:
        disk = folder / "disk"
        with _tmpfs(disk, 64):
            (disk / "out").mkdir()
            _remount(disk, "ro")
            output_dir = disk / "out" if existing else disk / "new" / "out"
            return _run(text_run(folder, assets, "--output_dir", str(output_dir)), folder)

    return run


# ---- reruns into a folder with another run's checkpoints --------------------------------------------------------


def _other_files(folder: Path, kind: str) -> list[str]:
    """Flags of other training data: other "texts", other "classes" (a third one), or the same texts with "labels"
    renamed (in the validation file too)."""
    rows = text_rows(32, 1)
    if kind == "texts":
        rows = text_rows(32, 5)
    elif kind == "classes":
        rows = [dict(row, label="neutral") if i % 4 == 3 else row for i, row in enumerate(rows)]
    elif kind == "labels":
        names = {"positive": "good", "negative": "bad"}
        validation = [dict(row, label=names[row["label"]]) for row in text_rows(16, 2)]
        rows = [dict(row, label=names[row["label"]]) for row in rows]
        return [
            "--train_file",
            write_csv(folder / "other.csv", rows),
            "--validation_file",
            write_csv(folder / "v.csv", validation),
        ]
    return ["--train_file", write_csv(folder / "other.csv", rows)]


def _rerun_with(kind: str, *flags: str, swap: bool = False):
    """A case's run: a complete run, then the same command with `flags` on other training data (`_other_files(kind)`).
    `swap`: the first run trains on the other data, the rerun on the usual."""

    def run(folder: Path, assets: dict) -> Result:
        _reference(folder, assets, *RESUME)
        usual = text_run(folder, assets, *RESUME)
        other = [*usual, *_other_files(folder, kind)]
        first, second = (other, usual) if swap else (usual, other)
        Handled().verify(_run(first, folder / "first"))
        return _run([*second, *flags], folder)

    return run


def _killed_then_moved(folder: Path, assets: dict) -> Result:
    """The same data under another path: killed at step 5, the rerun reads a copy of train.csv elsewhere."""
    _reference(folder, assets, *RESUME)
    argv = text_run(folder, assets, *RESUME)
    first = _run(argv, folder / "interrupted", (("SIGKILL",), "training", 5))
    assert first.returncode != 0
    moved = folder / "moved"
    moved.mkdir()
    shutil.move(folder / "train.csv", moved / "train.csv")
    return _run([*argv, "--train_file", str(moved / "train.csv")], folder)


def _resume_from(target: str, damage=None):
    """A case's run: killed at step 5 (checkpoints 2 and 4 left, `damage(output_dir)` applied), then rerun with
    `--resume_from_checkpoint <folder>/<target>`."""

    def run(folder: Path, assets: dict) -> Result:
        argv = text_run(folder, assets, *RESUME)
        assert _run(argv, folder / "interrupted", (("SIGKILL",), "training", 5)).returncode != 0
        if damage is not None:
            damage(folder / "out")
        return _run([*argv, "--resume_from_checkpoint", str(folder / target)], folder)

    return run


def _output_dir_flag(value: str):
    def build(folder: Path, assets: dict) -> list[str]:
        (folder / "file.txt").write_text("not a folder")
        return text_run(folder, assets, "--output_dir", str(folder / value))

    return build


def _case(id: str, expect, run=None, build=None) -> Case:
    return Case(f"fault-{id}", "faults", build, expect, run=run, timeout=900)


def _killed_at_7(between=None, *actions: str):
    """Killed at step 7 (checkpoints 4 and 6 left), after `actions`; `between` damages what it left."""
    return _interrupted((*actions, "SIGKILL"), "training", 7, between)


def _signal_cases() -> list[Case]:
    cases = []
    for sig in ("SIGKILL", "SIGTERM", "SIGINT"):
        name = sig.lower()
        cases += [
            _case(f"{name}-in-training", Handled(_as_uninterrupted(4)), _interrupted((sig,), "training", 5)),
            _case(f"{name}-in-checkpoint-save", Handled(_as_uninterrupted(4)), _interrupted((sig,), "save", 6)),
        ]
    return cases


NO_SPACE = r"no space left.*--output_dir"
OTHER_DATA = r"other data.*--overwrite_output_dir"
READ_ONLY = r"--output_dir .*read-only"
A_FILE = r"--output_dir .*file\.txt.*(is a file|a file, not a folder)"  # whichever check sees it first
RESUMES_AT_4 = Handled(_as_uninterrupted(4))
NOT_RESUMED = Handled(_as_uninterrupted(None))


def _skipped(file_problem: str) -> Handled:
    """Resumed from checkpoint-4, after a log line saying that checkpoint-6 was skipped, and why."""
    return Handled(_as_uninterrupted(4, says=r"Not resuming from \S*checkpoint-6\b.*" + file_problem))


NO_CHECKPOINTS = [*RESUME, "--save_strategy", "no"]
CASES = [
    *_signal_cases(),
    _case("disk-full-in-checkpoint-save", Error(NO_SPACE), _full_disk(1400, then_resumed=4)),
    _case("disk-full-in-final-save", Error(NO_SPACE), _full_disk(120, flags=NO_CHECKPOINTS)),
    _case(
        "truncated-model-file",
        _skipped(r"model\.safetensors has \d+ bytes"),
        _killed_at_7(_truncate("model.safetensors")),
    ),
    _case("truncated-optimizer-file", _skipped(r"optimizer\.pt has \d+"), _killed_at_7(_truncate("optimizer.pt"))),
    _case("nan-overwritten-model-file", _skipped(r"model\.safetensors .*sha256"), _killed_at_7(_nan_tensors)),
    _case("checkpoint-deleted-then-killed", RESUMES_AT_4, _killed_at_7(None, "delete:checkpoint-6")),
    _case("checkpoint-deleted-while-training", NOT_RESUMED, _interrupted(("delete:checkpoint-4",), "training", 5)),
    _case("output-dir-read-only", Error(READ_ONLY), _read_only(existing=True)),
    _case("output-dir-in-read-only-folder", Error(READ_ONLY), _read_only(existing=False)),
    _case("output-dir-is-a-file", Error(A_FILE), build=_output_dir_flag("file.txt")),
    _case("output-dir-under-a-file", Error(A_FILE), build=_output_dir_flag("file.txt/out")),
    _case("rerun-other-texts", Error(OTHER_DATA), _rerun_with("texts")),
    _case("rerun-other-classes", Error(OTHER_DATA), _rerun_with("classes")),
    _case("rerun-renamed-labels", Error(OTHER_DATA), _rerun_with("labels")),
    _case("rerun-overwrite-output-dir", NOT_RESUMED, _rerun_with("texts", "--overwrite_output_dir", "true", swap=True)),
    _case("rerun-same-data-moved", RESUMES_AT_4, _killed_then_moved),
    _case(
        "image-sigkill-in-training",
        Handled(_as_uninterrupted(4, flags=IMAGE_RESUME, recipe="image")),
        _interrupted(("SIGKILL",), "training", 5, flags=IMAGE_RESUME, recipe="image"),
    ),
    _case("resume-from-missing-folder", Error(r"--resume_from_checkpoint .*no such folder"), _resume_from("out/x")),
    _case(
        "resume-from-a-file", Error(r"--resume_from_checkpoint .*train\.csv.*not a folder"), _resume_from("train.csv")
    ),
    _case(
        "resume-from-nan-checkpoint",
        Error(r"--resume_from_checkpoint .*checkpoint-4.*sha256"),
        _resume_from("out/checkpoint-4", functools.partial(_nan_tensors, checkpoint="checkpoint-4")),
    ),
]
