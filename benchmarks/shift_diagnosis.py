#!/usr/bin/env python
"""The shift diagnosis on real pairs: does `hftl diagnose` name each shift as it is?

For each pair it runs the command a user types, in a fresh process,

    hftl diagnose --dataset_name SOURCE --target_dataset_name TARGET [pair flags] --output_dir DIR

reads DIR/shift_diagnosis.json and prints one table: the expected answer, the verdict, the gap test (MMD permutation
p-value, proxy A-distance and its interval), the class-prior change by EM-BCTS with its interval, the distance of
each estimator's target prior from the TRUE target prior (read from the target train split's labels, which the
diagnosis never sees; reported only to compare BBSE, EM and EM-BCTS), the confusion matrix's condition number, the
share of the gap closed by class re-weighting, and the wall time.

Pairs: the two constructed shifts with a known answer (mnist_source_half -> mnist_label_shifted: pure label shift;
mnist_source_half -> mnist_inverted: pure covariate shift), and the three pairs of `domain_adaptation.py` (MNIST ->
optdigits and synthetic -> real speech: covariate shifts with near-uniform priors on both sides; SpamAssassin
easy -> hard: 16% -> 86% spam, a label shift beside other senders and years).

    HF_HUB_OFFLINE=1 python benchmarks/shift_diagnosis.py [--pairs label covariate digits text speech] [--max N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRS = {
    "label": ("mnist_source_half", "mnist_label_shifted", "label", ["--image_size", "32"]),
    "covariate": ("mnist_source_half", "mnist_inverted", "covariate", ["--image_size", "32"]),
    "digits": ("mnist", "optdigits", "covariate", ["--image_size", "32"]),
    "text": ("spam_assassin_easy", "spam_assassin_hard", "label or both", []),
    "speech": ("spoken_language_id_synthetic", "spoken_language_id_real", "covariate", ["--feature_layer", "3"]),
}


def true_prior(target: str, limit: int | None, num_classes: int) -> np.ndarray:
    from hftl.data.builtin import load_builtin

    labels = load_builtin(target)["train"]["label"][:limit]
    return np.bincount(labels, minlength=num_classes) / len(labels)


def run(name: str, output_dir: str, limit: int | None) -> dict:
    source, target, expected, flags = PAIRS[name]
    out = os.path.join(output_dir, name)
    command = [sys.executable, "-m", "hftl.cli", "diagnose", "--dataset_name", source, "--target_dataset_name", target]
    command += [*flags, "--output_dir", out, "--feature_cache_dir", os.path.join(output_dir, "feature_cache")]
    if limit:
        command += ["--max_train_samples", str(limit), "--max_target_train_samples", str(limit)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    with open(os.path.join(out, "shift_diagnosis.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    prior = report["prior"]
    names = list(prior["source_prior"])
    truth = true_prior(target, limit, len(names))
    errors = {
        est: 0.5 * float(np.abs(np.array([prior[f"target_prior_{est}"][n] for n in names]) - truth).sum())
        for est in ("bbse", "em", "em_bcts")
    }
    source_prior = np.array(list(prior["source_prior"].values()))
    return {
        "pair": f"{source} -> {target}",
        "expected": expected,
        "verdict": report["shift_kind"],
        "credible": report["label_shift_credible"],
        "p": report["gap_p_value"],
        "pad": report["proxy_a_distance"],
        "change": prior["prior_change"],
        "interval": prior["prior_change_interval"],
        "true_change": 0.5 * float(np.abs(truth - source_prior).sum()),
        "errors": errors,
        "disagreement": prior["bbse_em_bcts_disagreement"],
        "condition": prior["confusion_condition_number"],
        "closed": (report["reweighting"] or {}).get("closed"),
        "seconds": round(time.perf_counter() - start, 1),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| pair | expected | verdict | gap p | PAD [90%] | prior change EM-BCTS [90%] | true change | "
        "error BBSE / EM / EM-BCTS | BBSE vs EM-BCTS | cond. | gap closed | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pad, (low, high), e = r["pad"], r["interval"], r["errors"]
        closed = "n/a" if r["closed"] is None else f"{r['closed']:.0%}"
        condition = "inf" if r["condition"] is None else f"{r['condition']:.1f}"
        lines.append(
            f"| {r['pair']} | {r['expected']} | **{r['verdict']}** | {r['p']:.3f} | "
            f"{pad['value']:.2f} [{pad['low']:.2f}, {pad['high']:.2f}] | {r['change']:.2f} [{low:.2f}, {high:.2f}] | "
            f"{r['true_change']:.2f} | {e['bbse']:.2f} / {e['em']:.2f} / {e['em_bcts']:.2f} | "
            f"{r['disagreement']:.2f} | {condition} | {closed} | "
            f"{r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--max", type=int, default=None, help="First N source train and target train examples.")
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "benchmarks", "runs", "shift_diagnosis"))
    args = parser.parse_args()
    rows = []
    for name in args.pairs:
        rows.append(run(name, args.output_dir, args.max))
        print(json.dumps(rows[-1]), flush=True)
    text = table(rows)
    print(text)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


if __name__ == "__main__":
    main()
