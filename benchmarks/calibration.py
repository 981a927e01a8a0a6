#!/usr/bin/env python
"""Temperature scaling on real text: the expected calibration error (ECE) of the test split before and after.

Runs the text recipe twice on the same slice of the built-in rotten_tomatoes_critics data (fresh vs rotten) with the
same seed, the packaged all-MiniLM-L6-v2 unless --model_name_or_path: once plain, once with `--temperature_scaling
true` (T fitted on the validation split, folded into the saved model). Both runs train the same model, so the second
differs from the first only by T. Prints one table: test accuracy, test NLL, test ECE (15 bins) and T.

Temperature scaling changes nothing else, so the unscaled figures can also be recovered from the scaled run alone
(softmax(T * log p)); `--skip_plain_run` does that, and otherwise it is printed as a check.

    HF_HUB_OFFLINE=1 python benchmarks/calibration.py [--max_train_samples 1000 --num_train_epochs 4]
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


def _unscaled(output_dir: str, temperature: float) -> dict[str, float]:
    """The test figures of the scaled run's model before scaling: its test probabilities p were softmax(z / T), so
    softmax(T * log p) = softmax(z) (exact up to the CSV's 7 digits)."""
    labels, probabilities = _test_labels_and_probabilities(output_dir)
    before = class_probabilities(temperature * np.log(probabilities))
    return {
        "test_accuracy": float((before.argmax(-1) == labels).mean()),
        "test_loss": float(-np.log(before[np.arange(len(labels)), labels]).mean()),
        "test_ece": expected_calibration_error(before, labels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_name_or_path", default=None)
    parser.add_argument("--max_train_samples", type=int, default=1000)
    parser.add_argument("--num_train_epochs", type=float, default=4)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument(
        "--skip_plain_run", action="store_true", help="Recover the unscaled figures from the scaled run."
    )
    parser.add_argument("--output_root", default=os.path.join(ROOT, "runs", "calibration"))
    args = parser.parse_args()
    transformers.utils.logging.set_verbosity_error()
    plain_dir, scaled_dir = os.path.join(args.output_root, "plain"), os.path.join(args.output_root, "scaled")
    scaled = run(args, scaled_dir, "--temperature_scaling", "true")
    t = scaled["temperature"]
    recovered = _unscaled(scaled_dir, t)
    plain = recovered if args.skip_plain_run else run(args, plain_dir)

    print(
        f"\nrotten_tomatoes_critics, {args.max_train_samples} training examples, {args.num_train_epochs:g} epoch(s), "
        f"validation {scaled['eval_samples']} (T fitted there), test {scaled['test_samples']}\n"
    )
    print("| run | T | test accuracy | test NLL | test ECE | validation ECE |")
    print("|---|---|---|---|---|---|")
    first = "plain (recovered from the scaled run)" if args.skip_plain_run else "plain"
    plain_eval = scaled["eval_ece_before_scaling"] if args.skip_plain_run else plain["eval_ece"]
    for name, m, temperature, ece in ((first, plain, 1.0, plain_eval), ("--temperature_scaling", scaled, t, None)):
        ece = scaled["eval_ece"] if ece is None else ece
        print(
            f"| {name} | {temperature:.3f} | {m['test_accuracy']:.4f} | {m['test_loss']:.4f} | {m['test_ece']:.4f} "
            f"| {ece:.4f} |"
        )
    verdict = "lower" if scaled["test_ece"] < plain["test_ece"] else "NOT lower"
    print(f"\ntest ECE {plain['test_ece']:.4f} -> {scaled['test_ece']:.4f} ({verdict}) at T = {t:.4f}")
    if not args.skip_plain_run:
        print(f"check: the scaled run's test probabilities unscaled give ECE {recovered['test_ece']:.4f}")


if __name__ == "__main__":
    main()
