#!/usr/bin/env python
"""Temperature scaling on real text: the expected calibration error (ECE) of the test split before and after.

Runs the text recipe twice on the same slice of the built-in rotten_tomatoes_critics data (fresh vs rotten) with the
same seed, the packaged all-MiniLM-L6-v2 unless --model_name_or_path: once plain, once with `--temperature_scaling
true` (T fitted on the validation split, folded into the saved model). Both runs train the same model, so the second
differs from the first only by T. Prints one table: test accuracy, test NLL, test ECE (15 bins) and T.

As a check, the plain run's test probabilities divided by T (in log space) must give the scaled run's test ECE.

    HF_HUB_OFFLINE=1 python benchmarks/calibration.py [--max_train_samples 2000 --num_train_epochs 1]
"""

from __future__ import annotations

import argparse
import csv
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import transformers

from hftl.calibration import class_probabilities, expected_calibration_error
from hftl.data import load_builtin
from hftl.modalities import TextModality
from hftl.pipeline import run_classification

ROOT = os.path.dirname(os.path.abspath(__file__))


def run(args, output_dir: str, *flags: str) -> dict:
    """One text recipe run on the slice; its metrics."""
    common = [
        "--output_dir", output_dir, "--overwrite_output_dir", "true",
        "--max_train_samples", str(args.max_train_samples), "--num_train_epochs", str(args.num_train_epochs),
        "--learning_rate", str(args.learning_rate), "--per_device_train_batch_size", "32",
        "--per_device_eval_batch_size", "128", "--max_seq_length", "128", "--do_train", "true", "--do_eval", "true",
        "--do_predict", "true", "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "1000",
        "--disable_tqdm", "true", "--report_to", "none", "--seed", "42",
    ]  # fmt: skip
    if args.model_name_or_path:
        common += ["--model_name_or_path", args.model_name_or_path]
    return run_classification(TextModality(), {}, common + list(flags))


def _test_labels_and_probabilities(output_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """The test split's labels (built-in order) and the run's `test_predictions.csv` probabilities, row by row."""
    test = load_builtin("rotten_tomatoes_critics")["test"]
    names = test.features["label"].names
    with open(os.path.join(output_dir, "test_predictions.csv"), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    probabilities = np.array([[float(r[f"prob_{n}"]) for n in names] for r in rows])
    labels = np.array([test[int(r["source_row"])]["label"] for r in rows])
    return labels, probabilities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_name_or_path", default=None)
    parser.add_argument("--max_train_samples", type=int, default=2000)
    parser.add_argument("--num_train_epochs", type=float, default=1)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--output_root", default=os.path.join(ROOT, "runs", "calibration"))
    args = parser.parse_args()
    transformers.utils.logging.set_verbosity_error()
    plain_dir, scaled_dir = os.path.join(args.output_root, "plain"), os.path.join(args.output_root, "scaled")
    plain = run(args, plain_dir)
    scaled = run(args, scaled_dir, "--temperature_scaling", "true")
    t = scaled["temperature"]
    labels, probabilities = _test_labels_and_probabilities(plain_dir)
    check = expected_calibration_error(class_probabilities(np.log(probabilities) / t), labels)

    print(
        f"\nrotten_tomatoes_critics, {args.max_train_samples} training examples, {args.num_train_epochs:g} epoch(s), "
        f"validation {plain['eval_samples']} (T fitted there), test {plain['test_samples']}\n"
    )
    print("| run | T | test accuracy | test NLL | test ECE | validation ECE |")
    print("|---|---|---|---|---|---|")
    for name, m, temperature in (("plain", plain, 1.0), ("--temperature_scaling true", scaled, t)):
        print(
            f"| {name} | {temperature:.3f} | {m['test_accuracy']:.4f} | {m['test_loss']:.4f} | {m['test_ece']:.4f} "
            f"| {m['eval_ece']:.4f} |"
        )
    verdict = "lower" if scaled["test_ece"] < plain["test_ece"] else "NOT lower"
    print(
        f"\ntest ECE {plain['test_ece']:.4f} -> {scaled['test_ece']:.4f} ({verdict}); "
        f"validation ECE before scaling (scaled run) {scaled['eval_ece_before_scaling']:.4f}; check: the plain run's "
        f"test probabilities at T give ECE {check:.4f}"
    )


if __name__ == "__main__":
    main()
