"""The bad-input and fault battery: one table of cases (input, command, expected outcome), run like a user would.

A case writes its inputs into a fresh folder, names a recipe and its flags, and says what must happen:

- `Error(pattern)`: the run ends with one `error: ...` line matching `pattern` (a regular expression, case
  insensitive), exit code 2, and no traceback: the user is told what is wrong and what would fix it.
- `Handled(check)`: the run succeeds (exit 0); `check(result)` asserts what it did (a warning, a metric, a file).

Cases run in a child forked from a server that imported hftl once (1 s a case instead of 8 for a fresh
interpreter), with a timeout, so that a hang fails its case instead of the suite. A case with its own `run` (the
faults: kills, full disks, corrupted checkpoints) runs real processes itself and returns a `Result`.

The tables live in `battery_<area>.py` files; `test_battery.py` runs them all.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
RECIPES = {"text": "text_classification", "image": "image_classification", "speech": "speech_classification"}


@dataclasses.dataclass
class Result:
    """What a case's run did: exit code (None after a timeout), its stderr and stdout, and its folder."""

    returncode: int | None
    stderr: str
    stdout: str
    folder: Path

    @property
    def output_dir(self) -> Path:
        return self.folder / "out"

    def error_line(self) -> str | None:
        """The last line that starts with `error:`, or None."""
        lines = [line for line in self.stderr.splitlines() if line.startswith("error:")]
        return lines[-1] if lines else None


@dataclasses.dataclass(frozen=True)
class Error:
    """Expect one clear `error:` line matching `pattern`, exit code 2, no traceback."""

    pattern: str

    def verify(self, result: Result) -> None:
        tail = result.stderr[-3000:]
        assert result.returncode is not None, f"hang (no exit within the timeout)\n{tail}"
        assert "Traceback (most recent call last)" not in result.stderr, f"raw traceback:\n{tail}"
        assert result.returncode == 2, f"exit code {result.returncode}, expected 2\n{tail}"
        line = result.error_line()
        assert line is not None, f"no `error:` line\n{tail}"
        assert re.search(self.pattern, line, re.IGNORECASE), f"{line!r} does not match {self.pattern!r}"


@dataclasses.dataclass(frozen=True)
class Handled:
    """Expect success (exit 0), then `check(result)` (which asserts) when given."""

    check: Callable[[Result], None] | None = None

    def verify(self, result: Result) -> None:
        tail = result.stderr[-3000:]
        assert result.returncode is not None, f"hang (no exit within the timeout)\n{tail}"
        assert result.returncode == 0, f"exit code {result.returncode}, expected 0\n{tail}"
        if self.check is not None:
            self.check(result)


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of the battery.

    Args:
        id: short unique name (the pytest id), e.g. "text-csv-semicolon".
        area: "text", "image", "speech", "adaptation", "config", "flags", "paths" or "faults".
        build: `build(folder, assets) -> argv` writes the inputs under `folder` and returns the recipe's flags.
            `assets` maps fixture names ("tiny_bert_dir", ...) to their values.
        expect: `Error(...)` or `Handled(...)`.
        recipe: "text", "image" or "speech".
        run: replaces the default run (a fault case): `run(folder, assets) -> Result`.
        timeout: seconds before the case counts as a hang.
        env: extra environment variables for the run.
    """

    id: str
    area: str
    build: Callable[[Path, dict], list[str]] | None
    expect: Error | Handled
    recipe: str = "text"
    run: Callable[[Path, dict], Result] | None = None
    timeout: float = 180.0
    env: dict[str, str] = dataclasses.field(default_factory=dict)


def _child(recipe: str, argv: list[str], folder: str, env: dict[str, str], before: Callable | None = None) -> None:
    """Run one recipe in this (forked) process; stdout / stderr go to files in `folder`; `before()` runs first (a
    fault case's way to make the run kill itself at a chosen step)."""
    out = os.open(os.path.join(folder, "stdout.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err = os.open(os.path.join(folder, "stderr.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.environ.update(env)
    os.chdir(folder)
    code = 1
    try:
        import traceback

        from helpers import recipe_defaults

        import hftl.modalities as modalities
        from hftl.recipes import main

        if before is not None:
            before()
        kinds = {"text": modalities.TextModality, "image": modalities.ImageModality, "speech": modalities.AudioModality}
        modality = kinds[recipe]()
        code = main(modality, recipe_defaults(RECIPES[recipe]), argv)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


_CONTEXT = None


def _context():
    """A forkserver that imported hftl, the recipes' models and the datasets library once."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["battery_preload"])
    return _CONTEXT


def run_recipe(
    recipe: str, argv: list[str], folder: Path, timeout: float, env: dict[str, str], before: Callable | None = None
) -> Result:
    """Run `recipes/<recipe>` with `argv` in a forked child, in `folder`; kill it after `timeout` seconds.

    `before`: a picklable callable the child runs before the recipe (e.g. `functools.partial` of a module function).
    """
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", **env}
    process = _context().Process(target=_child, args=(recipe, argv, str(folder), env, before))
    process.start()
    process.join(timeout)
    code = process.exitcode
    if code is None:
        process.kill()
        process.join()
    stderr = (folder / "stderr.txt").read_text(errors="replace") if (folder / "stderr.txt").exists() else ""
    stdout = (folder / "stdout.txt").read_text(errors="replace") if (folder / "stdout.txt").exists() else ""
    return Result(code, stderr, stdout, folder)


def run_case(case: Case, folder: Path, assets: dict) -> Result:
    """Build and run `case` in `folder` (its own run for a fault case)."""
    if case.run is not None:
        return case.run(folder, assets)
    argv = case.build(folder, assets)
    return run_recipe(case.recipe, argv, folder, case.timeout, case.env)


# ---- shared builders: a small run that works, which cases then break --------------------------------------------

QUICK = [
    "--do_train", "true", "--do_eval", "true", "--num_train_epochs", "1", "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "8", "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
    "--logging_steps", "1",
]  # fmt: skip


def text_rows(n: int = 32, seed: int = 0) -> list[dict]:
    from helpers import make_texts

    return make_texts(n, seed)


def text_run(folder: Path, assets: dict, *flags: str, train=None, validation=None) -> list[str]:
    """Flags of a small text run on CSV files (written here unless given) with the tiny BERT."""
    from helpers import write_csv

    train = train or write_csv(folder / "train.csv", text_rows(32, 1))
    validation = validation or write_csv(folder / "validation.csv", text_rows(16, 2))
    return [
        "--model_name_or_path", assets["tiny_bert_dir"], "--train_file", str(train),
        "--validation_file", str(validation), "--output_dir", str(folder / "out"), *QUICK, *flags,
    ]  # fmt: skip


def image_folder(folder: Path, split: str = "train", count: int = 12, mode: str = "RGB", size=(20, 16)) -> str:
    """An imagefolder split of `count` synthetic images (two classes, 'stripes' and 'dots')."""
    from helpers import make_image, seed_of

    for i in range(count):
        label = ("stripes", "dots")[i % 2]
        (folder / split / label).mkdir(parents=True, exist_ok=True)
        make_image(label, seed_of(split, i), mode, size=size).save(folder / split / label / f"{i}.png")
    return str(folder / split)


def image_run(folder: Path, assets: dict, *flags: str, model: str = "tiny_vit_dir", train=None) -> list[str]:
    """Flags of a small image run on image folders with a tiny model (ViT by default)."""
    train = train or image_folder(folder, "train", 12)
    validation = image_folder(folder, "validation", 6)
    return [
        "--model_name_or_path", assets[model], "--train_dir", train, "--validation_dir", validation,
        "--output_dir", str(folder / "out"), *QUICK, *flags,
    ]  # fmt: skip


def audio_folder(folder: Path, split: str = "train", count: int = 12, rate: int = 16_000) -> str:
    """An audiofolder split of `count` one-second noisy tones (two classes, 'low' and 'high')."""
    import soundfile
    from helpers import make_tone, seed_of

    for i in range(count):
        label = ("low", "high")[i % 2]
        (folder / split / label).mkdir(parents=True, exist_ok=True)
        soundfile.write(folder / split / label / f"{i}.wav", make_tone(label, seed_of(split, i), rate), rate)
    return str(folder / split)


def speech_run(folder: Path, assets: dict, *flags: str, model: str = "tiny_wav2vec2_dir", train=None) -> list[str]:
    """Flags of a small speech run on audio folders with a tiny model (wav2vec2 by default)."""
    train = train or audio_folder(folder, "train", 12)
    validation = audio_folder(folder, "validation", 6)
    return [
        "--model_name_or_path", assets[model], "--train_dir", train, "--validation_dir", validation,
        "--output_dir", str(folder / "out"), *QUICK, *flags,
    ]  # fmt: skip


def log_says(pattern: str) -> Callable[[Result], None]:
    """A `Handled` check: the run's output (stdout and stderr) matches `pattern`."""

    def check(result: Result) -> None:
        log = result.stdout + result.stderr
        assert re.search(pattern, log, re.IGNORECASE), f"log lacks {pattern!r}:\n{log[-2000:]}"

    return check
