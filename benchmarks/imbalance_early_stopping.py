#!/usr/bin/env python
"""Early stopping and class imbalance on real text: the packaged all-MiniLM-L6-v2 on Rotten Tomatoes critics.

Prints two tables (the slices are CSV files written under benchmarks/runs/imbalance_early_stopping/):

(a) early stopping: `--early_stopping_patience` on a balanced slice, evaluated every `--eval_steps` steps: the
    per-evaluation validation curve, where the run stopped (the log's own sentence) and how much the metric still
    moved over the last evaluations before the stop, against the gain of the first ones;
(b) a 10:1 imbalanced slice (`--majority` fresh, `--minority` rotten training snippets; validation in the same
    ratio), trained unweighted, with `--class_weights balanced`, and with `--balanced_sampling true`: minority
    (rotten) recall, balanced accuracy and accuracy on a balanced test slice.

Both parts use `--strategy feature_extraction` by default (features extracted once, cached in --feature_cache_dir
and shared by every run, so the whole script takes a few minutes on 2 cores); `--strategy full` fine-tunes MiniLM.

    HF_HUB_OFFLINE=1 python benchmarks/imbalance_early_stopping.py [--strategy full] [--parts a b]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import shutil
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import transformers

from hftl.assets import packaged_text_model
from hftl.data import load_builtin
from hftl.modalities import TextModality
from hftl.pipeline import run_classification

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs", "imbalance_early_stopping")
NAMES = ["fresh", "rotten"]  # the built-in dataset's ClassLabel order


def _rows(split, label: str, count: int, seed: int) -> list[dict]:
    """`count` examples of class `label` from `split`, drawn at random (seeded)."""
    ids = np.flatnonzero(np.asarray(split["label"]) == NAMES.index(label))
    if len(ids) < count:
        raise SystemExit(f"only {len(ids)} '{label}' examples in the split, {count} asked")
    chosen = np.random.default_rng(seed).choice(ids, size=count, replace=False)
    return [{"text": split[int(i)]["text"], "label": label} for i in chosen]


def _write(path: str, rows: list[dict]) -> str:
    rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def build_slices(args) -> dict[str, dict[str, str]]:
    """The CSV files of both parts: (a) balanced train / validation; (b) 10:1 train / validation, balanced test."""
    data = load_builtin("rotten_tomatoes_critics")
    os.makedirs(ROOT, exist_ok=True)
    half, val = args.es_train // 2, args.es_validation // 2
    ratio = args.majority // args.minority
    files = {
        "a": {
            "train_file": _write(
                f"{ROOT}/es_train.csv", _rows(data["train"], "fresh", half, 1) + _rows(data["train"], "rotten", half, 2)
            ),
            "validation_file": _write(
                f"{ROOT}/es_validation.csv",
                _rows(data["validation"], "fresh", val, 3) + _rows(data["validation"], "rotten", val, 4),
            ),
        },
        "b": {
            "train_file": _write(
                f"{ROOT}/imbalanced_train.csv",
                _rows(data["train"], "fresh", args.majority, 5) + _rows(data["train"], "rotten", args.minority, 6),
            ),
            "validation_file": _write(
                f"{ROOT}/imbalanced_validation.csv",
                _rows(data["validation"], "fresh", 10 * 20, 7) + _rows(data["validation"], "rotten", 20, 8),
            ),
            "test_file": _write(
                f"{ROOT}/balanced_test.csv",
                _rows(data["test"], "fresh", args.test_per_class, 9)
                + _rows(data["test"], "rotten", args.test_per_class, 10),
            ),
        },
    }
    print(f"slices in {ROOT}: (a) {args.es_train} train / {args.es_validation} validation, balanced; (b) train "
          f"{args.majority} fresh / {args.minority} rotten ({ratio}:1), validation 200 / 20, test "
          f"{args.test_per_class} / {args.test_per_class}")  # fmt: skip
    return files


def _strategy_flags(args) -> list[str]:
    if args.strategy == "feature_extraction":
        return ["--strategy", "feature_extraction", "--feature_cache_dir", f"{ROOT}/feature_cache"]
    return ["--strategy", args.strategy, "--learning_rate", str(args.full_learning_rate)]


def run(name: str, files: dict[str, str], args, *flags: str) -> tuple[dict, list[str], float]:
    """One recipe run into benchmarks/runs/.../<name> (its log in <name>.log); (all_results, the hftl log's lines on
    early stopping and class balance, seconds)."""
    output_dir = f"{ROOT}/{name}"
    shutil.rmtree(output_dir, ignore_errors=True)
    command = ["--model_name_or_path", args.model, "--output_dir", output_dir, "--seed", str(args.seed)]
    for key, value in files.items():
        command += [f"--{key}", value]
    command += ["--max_seq_length", "64", "--per_device_train_batch_size", "32", "--disable_tqdm", "true"]
    command += ["--report_to", "none", "--logging_steps", "10", "--save_total_limit", "1"]
    command += ["--do_train", "true", "--do_eval", "true", "--do_predict", "true"]
    lines: list[str] = []
    os.makedirs(ROOT, exist_ok=True)
    with open(f"{output_dir}.log", "w", encoding="utf-8") as log:
        handlers = [_Collect(lines), logging.StreamHandler(log)]
        for handler in handlers:
            logging.getLogger("hftl").addHandler(handler)
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                results = run_classification(TextModality(), {}, command + _strategy_flags(args) + list(flags))
        finally:
            for handler in handlers:
                logging.getLogger("hftl").removeHandler(handler)
    return results, lines, time.perf_counter() - start


class _Collect(logging.Handler):
    """Keeps the hftl log lines about early stopping and class balance."""

    def __init__(self, lines: list[str]):
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record):
        message = record.getMessage()
        starts = (
            "Early stopping",
            "The training labels are strongly",
            "Class weights",
            "Restored",
            "Balanced sampling",
        )
        if message.startswith(starts):
            self.lines.append(message)


def early_stopping(files, args) -> None:
    """(a): the validation curve, the stop, and how flat the curve was when it stopped."""
    epochs = "60" if args.strategy == "feature_extraction" else "4"
    flags = ["--num_train_epochs", epochs, "--eval_strategy", "steps", "--eval_steps", str(args.eval_steps)]
    flags += ["--early_stopping_patience", str(args.patience), "--do_predict", "false"]
    results, lines, seconds = run("early_stopping", files, args, *flags)
    state = json.load(open(f"{ROOT}/early_stopping/trainer_state.json"))
    curve = [
        (e["step"], e["epoch"], e["eval_loss"], e["eval_accuracy"]) for e in state["log_history"] if "eval_loss" in e
    ]
    print(f"\n(a) early stopping, --strategy {args.strategy}, --early_stopping_patience {args.patience} on eval_loss, "
          f"an evaluation every {args.eval_steps} steps ({seconds:.0f} s)")  # fmt: skip
    print(f"{'step':>6} {'epoch':>6} {'eval_loss':>10} {'eval_accuracy':>14}")
    for step, epoch, loss, accuracy in curve:
        mark = (
            " <- best" if step == results["best_step"] else (" <- stopped" if step == results["stopped_step"] else "")
        )
        print(f"{step:>6} {epoch:>6.2f} {loss:>10.4f} {accuracy:>14.4f}{mark}")
    for line in lines:
        print("log:", line)
    losses = [c[2] for c in curve]
    window = args.patience + 1
    if len(losses) > 2 * window:
        first, last = losses[0] - losses[window - 1], losses[-window] - losses[-1]
        print(f"eval_loss fell {first:.4f} over the first {window} evaluations and {last:.4f} over the last {window} "
              f"(negative: it rose)")  # fmt: skip
    print(f"all_results.json: early_stopped={results['early_stopped']} stopped_step={results['stopped_step']} "
          f"best_step={results['best_step']} best_metric={results['best_metric']:.4f} "
          f"(max steps {state['max_steps']}); final eval_accuracy {results['eval_accuracy']:.4f}")  # fmt: skip


def imbalance(files, args) -> None:
    """(b): unweighted vs --class_weights balanced vs --balanced_sampling, on the balanced test slice."""
    epochs = "10" if args.strategy == "feature_extraction" else "2"
    common = ["--num_train_epochs", epochs, "--eval_strategy", "epoch", "--save_strategy", "no"]
    variants = [
        ("unweighted", []),
        ("--class_weights balanced", ["--class_weights", "balanced"]),
        ("--balanced_sampling true", ["--balanced_sampling", "true"]),
    ]
    print(f"\n(b) {args.majority}:{args.minority} imbalanced training slice, --strategy {args.strategy}, "
          f"{epochs} epochs; test: {args.test_per_class} fresh + {args.test_per_class} rotten")  # fmt: skip
    print(f"{'run':<28} {'rotten recall':>14} {'fresh recall':>13} {'balanced acc':>13} {'accuracy':>9} {'s':>5}")
    for name, flags in variants:
        slug = name.strip("-").split()[0]
        results, lines, seconds = run(f"imbalance_{slug}", files, args, *common, *flags)
        figures = [results[f"test_{k}"] for k in ("recall_rotten", "recall_fresh", "balanced_accuracy", "accuracy")]
        print(
            f"{name:<28} {figures[0]:>14.4f} {figures[1]:>13.4f} {figures[2]:>13.4f} {figures[3]:>9.4f} {seconds:>5.0f}"
        )
        for line in lines:
            print("    log:", line[:160] + ("..." if len(line) > 160 else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--strategy", default="feature_extraction", choices=["feature_extraction", "full", "lora"])
    parser.add_argument("--full_learning_rate", type=float, default=1e-4)
    parser.add_argument("--parts", nargs="+", default=["a", "b"], choices=["a", "b"])
    parser.add_argument("--es_train", type=int, default=1000)
    parser.add_argument("--es_validation", type=int, default=200)
    parser.add_argument("--eval_steps", type=int, default=20)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--majority", type=int, default=1000)
    parser.add_argument("--minority", type=int, default=100)
    parser.add_argument("--test_per_class", type=int, default=500)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    args.model = args.model or packaged_text_model()
    logging.getLogger().addHandler(logging.NullHandler())  # the runs' logs go to benchmarks/runs/.../<run>.log
    transformers.utils.logging.set_verbosity_error()
    files = build_slices(args)
    if "a" in args.parts:
        early_stopping(files["a"], args)
    if "b" in args.parts:
        imbalance(files["b"], args)


if __name__ == "__main__":
    main()
