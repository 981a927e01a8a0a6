#!/usr/bin/env python
"""Multi-label classification on real data: hftl against a one-vs-rest logistic regression on the same features.

Data: the built-in `spam_assassin_headers` (SpamAssassin public corpus, 6,046 emails): the subject and body text of
each email, labelled with what its headers say (attachment, html, mailing_list, non_latin_charset, reply, spam; 11%
have none), which the text no longer shows. Slices of its fixed train / validation / test splits (the first rows).

Features: the frozen packaged all-MiniLM-L6-v2, the input of its classification layer (the BERT pooler output, 384
values), extracted once by hftl's `--strategy feature_extraction` and cached (`--feature_cache_dir`). The baseline
reads the very same cached arrays (one `.npy` per split, told apart by their row counts, which the slices make
distinct).

Rows of the table (test split):
- hftl: the recipe a user types, `--problem_type multi_label_classification --strategy feature_extraction`, a linear
  head trained with binary cross-entropy, each label's threshold tuned on the validation split (F1) and folded into
  the bias; and the same run with `--tune_thresholds false` (every threshold 0.5).
- scikit-learn: `OneVsRestClassifier(LogisticRegression())` on the same features, at 0.5, and with thresholds tuned on
  the validation split by the same rule (`hftl.multi_label.thresholds.best_cuts`).

    HF_HUB_OFFLINE=1 python benchmarks/multi_label.py [--max_train_samples 1000] [--max_seq_length 128]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLITS = {"train": "max_train_samples", "validation": "max_eval_samples", "test": "max_predict_samples"}
SHOWN = ("f1_micro", "f1_macro", "f1_samples", "subset_accuracy", "hamming_loss")


def hftl_run(args, output_dir: str, cache_dir: str, *extra: str) -> tuple[dict, float]:
    """One recipe run in a fresh process; returns its all_results.json and wall seconds."""
    command = [
        sys.executable, os.path.join(ROOT, "recipes", "text_classification.py"),
        "--dataset_name", "spam_assassin_headers", "--problem_type", "multi_label_classification",
        "--allow_empty_labels", "--strategy", "feature_extraction", "--feature_cache_dir", cache_dir,
        "--num_train_epochs", str(args.num_train_epochs), "--max_seq_length", str(args.max_seq_length),
        "--max_train_samples", str(args.max_train_samples), "--max_eval_samples", str(args.max_eval_samples),
        "--max_predict_samples", str(args.max_predict_samples), "--eval_strategy", "no", "--save_strategy", "no",
        "--report_to", "none", "--disable_tqdm", "true", "--overwrite_output_dir", "--seed", str(args.seed),
        "--output_dir", output_dir, *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    with open(os.path.join(output_dir, "all_results.json"), encoding="utf-8") as handle:
        return json.load(handle), time.perf_counter() - start


def cached_features(cache_dir: str, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """split -> the (N, F) features hftl cached for it, found by its row count."""
    arrays = [np.load(path) for path in glob.glob(os.path.join(cache_dir, "*.npy"))]
    by_rows = {len(array): array for array in arrays}
    if len(by_rows) != len(arrays) or sorted(by_rows) != sorted(sizes.values()):
        raise RuntimeError(f"expected one cached array per split with {sizes} rows, found {sorted(by_rows)}")
    return {split: by_rows[rows] for split, rows in sizes.items()}


def split_labels(sizes: dict[str, int]) -> tuple[list[str], dict[str, np.ndarray]]:
    """The label names (sorted union of the training slice's) and each slice's (N, C) multi-hot labels, in the
    order hftl reads them (the first rows of each built-in split)."""
    from hftl.data.builtin import load_builtin

    data = load_builtin("spam_assassin_headers")
    sets = {split: data[split].select(range(rows))["label"] for split, rows in sizes.items()}
    names = sorted({label for labels in sets["train"] for label in labels})
    hot = {split: np.array([[name in labels for name in names] for labels in rows]) for split, rows in sets.items()}
    return names, hot


def logistic_regression(features: dict, labels: dict, seed: int) -> dict[str, dict]:
    """Test metrics of a one-vs-rest logistic regression, at 0.5 and with thresholds tuned on validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from hftl.multi_label.metrics import multi_label_summary
    from hftl.multi_label.thresholds import best_cuts

    model = OneVsRestClassifier(LogisticRegression(max_iter=2000, random_state=seed))
    model.fit(features["train"], labels["train"])
    cuts = best_cuts(model.decision_function(features["validation"]), labels["validation"])
    scores = model.decision_function(features["test"])
    return {
        "scikit-learn one-vs-rest logistic regression, 0.5": multi_label_summary(scores > 0, labels["test"]),
        "scikit-learn one-vs-rest logistic regression, tuned thresholds": multi_label_summary(
            scores > cuts, labels["test"]
        ),
    }


def table(rows: dict[str, dict], names: list[str], seconds: dict[str, float]) -> str:
    lines = [
        "| system (test split) | " + " | ".join(SHOWN) + " | wall s |",
        "|---|" + "---|" * (len(SHOWN) + 1),
    ]
    for system, metrics in rows.items():
        cells = " | ".join(f"{metrics[key]:.3f}" for key in SHOWN)
        lines.append(f"| {system} | {cells} | {seconds.get(system, float('nan')):.0f} |")
    return "\n".join(lines) + f"\n\nLabels: {', '.join(names)}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_train_samples", type=int, default=1000)
    parser.add_argument("--max_eval_samples", type=int, default=250)
    parser.add_argument("--max_predict_samples", type=int, default=598)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--num_train_epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "benchmarks", "runs", "multi_label"))
    args = parser.parse_args()
    sizes = {split: getattr(args, flag) for split, flag in SPLITS.items()}
    slices = "-".join(str(rows) for rows in sizes.values())
    cache_dir = os.path.join(args.output_dir, "feature_cache", f"seq{args.max_seq_length}-{slices}")
    rows, seconds = {}, {}
    for system, extra in (("hftl, tuned thresholds", ()), ("hftl, 0.5", ("--tune_thresholds", "false"))):
        folder = os.path.join(args.output_dir, "tuned" if not extra else "fixed")
        results, seconds[system] = hftl_run(args, folder, cache_dir, *extra)
        rows[system] = {key: results[f"test_{key}"] for key in SHOWN}
    names, labels = split_labels(sizes)
    start = time.perf_counter()
    baseline = logistic_regression(cached_features(cache_dir, sizes), labels, args.seed)
    for system, metrics in baseline.items():
        rows[system], seconds[system] = metrics, time.perf_counter() - start
    text = table(rows, names, seconds)
    print(text)
    with open(os.path.join(args.output_dir, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    with open(os.path.join(args.output_dir, "results.json"), "w", encoding="utf-8") as handle:
        json.dump({"flags": vars(args), "rows": rows, "seconds": seconds}, handle, indent=2)


if __name__ == "__main__":
    main()
