#!/usr/bin/env python
"""Frozen text features from the pooler (`--sentence_pooling pooler`, hftl before this flag) against the pooling
the packaged all-MiniLM-L6-v2 declares (`auto`: mean over non-padding tokens).

Prints one table (and writes it with every run's figures to --output_dir/results.{md,json}):
- the SpamAssassin easy -> hard pair, flags as `benchmarks/domain_adaptation.py`'s "text" pair
  (`--strategy feature_extraction --num_train_epochs 10`), source only and `--adaptation mmd`: target accuracy and
  balanced accuracy;
- the main text job (`recipes/text_classification.py` defaults, built-in rotten_tomatoes_critics) with
  `--strategy feature_extraction` on the first --max_train_samples examples: test accuracy.

Each run is the recipe command a user types, in a fresh process; features are cached per pooling
(`--feature_cache_dir`), so a rerun costs the head training only.

    HF_HUB_OFFLINE=1 python benchmarks/sentence_pooling.py [--seeds 0 1 2] [--max_train_samples 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no", "--overwrite_output_dir"]
POOLINGS = ("pooler", "auto")


def jobs(max_train_samples: int) -> dict[str, list[str]]:
    """Job name -> recipe flags (the pooling and seed are added per run)."""
    spam = ["--dataset_name", "spam_assassin_easy", "--target_dataset_name", "spam_assassin_hard"]
    spam += ["--strategy", "feature_extraction", "--num_train_epochs", "10"]
    reviews = ["--dataset_name", "rotten_tomatoes_critics", "--strategy", "feature_extraction"]
    reviews += ["--max_train_samples", str(max_train_samples), "--max_eval_samples", str(max_train_samples // 2)]
    reviews += ["--max_predict_samples", str(max_train_samples)]
    return {"spam source only": spam, "spam MMD": [*spam, "--adaptation", "mmd"], "rotten_tomatoes_critics": reviews}


def run(flags: list[str], output_dir: str) -> dict:
    """One recipe run in a fresh process; its figures and wall seconds."""
    command = [sys.executable, os.path.join(ROOT, "recipes", "text_classification.py"), *flags, *COMMON]
    command += ["--output_dir", output_dir]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    with open(os.path.join(output_dir, "all_results.json"), encoding="utf-8") as handle:
        results = json.load(handle)
    keys = ("target_accuracy", "target_balanced_accuracy", "test_accuracy", "eval_accuracy")
    return {key: results[key] for key in keys if key in results} | {"seconds": round(time.perf_counter() - start, 1)}


def _cell(runs: list[dict], key: str) -> str:
    values = [r[key] for r in runs if key in r]
    if not values:
        return ""
    return f"{values[0]:.3f}" if len(values) == 1 else f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(results: dict) -> str:
    lines = [
        "| job | --sentence_pooling | target accuracy | target balanced acc. | test accuracy | source val. accuracy | "
        "wall s / run | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for job, by_pooling in results.items():
        for pooling, runs in by_pooling.items():
            cells = [_cell(runs, k) for k in ("target_accuracy", "target_balanced_accuracy", "test_accuracy")]
            lines.append(
                f"| {job} | {pooling} | {' | '.join(cells)} | {_cell(runs, 'eval_accuracy')} | "
                f"{statistics.mean(r['seconds'] for r in runs):.0f} | {len(runs)} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--max_train_samples", type=int, default=400, help="Rotten Tomatoes training examples.")
    parser.add_argument("--jobs", nargs="+", default=None, help="Job names to run (default: all).")
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "benchmarks", "runs", "sentence_pooling"))
    args = parser.parse_args()

    results_path = os.path.join(args.output_dir, "results.json")
    results: dict = {}
    if os.path.isfile(results_path):  # a rerun adds to (and reuses) the runs already done
        with open(results_path, encoding="utf-8") as handle:
            results = json.load(handle)
    for job, flags in jobs(args.max_train_samples).items():
        if args.jobs and job not in args.jobs:
            continue
        for pooling in POOLINGS:
            runs = results.setdefault(job, {}).setdefault(pooling, [])
            for seed in sorted(set(args.seeds) - {r["seed"] for r in runs}):
                output_dir = os.path.join(args.output_dir, job.replace(" ", "_"), pooling, f"seed{seed}")
                cache = os.path.join(args.output_dir, "feature_cache")
                extra = ["--sentence_pooling", pooling, "--seed", str(seed), "--feature_cache_dir", cache]
                figures = run([*flags, *extra], output_dir)
                runs.append({"seed": seed, **figures})
                print(f"{job} {pooling} seed {seed}: {figures}", flush=True)
                os.makedirs(args.output_dir, exist_ok=True)
                with open(results_path, "w", encoding="utf-8") as handle:
                    json.dump(results, handle, indent=2)
    text = table({job: results[job] for job in results if not args.jobs or job in args.jobs})
    print(text)
    with open(os.path.join(args.output_dir, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


if __name__ == "__main__":
    main()
