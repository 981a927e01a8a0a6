#!/usr/bin/env python
"""Domain adaptation on real source -> target pairs: target accuracy of every method, over seeds.

Prints one table (and writes it with every run's figures to --output_dir/results.{md,json}): for each pair, the
target-domain test accuracy and balanced accuracy (mean and spread over --seeds) of source-only training,
DANN, MMD and their label-shift-corrected forms (IWDAN, IW-MMD, with the target class prior estimated without
target labels), plus an oracle trained on labelled target data, and the mean wall time of a run. Every method of
a pair runs the same recipe command with the same budget and hyper-parameters (fixed in advance, never chosen on
target labels); only --adaptation changes. Target labels are read only to score the target test split.

Each run is the recipe command a user types, in a fresh process:

    accelerate launch recipes/<modality>_classification.py --dataset_name SOURCE --target_dataset_name TARGET \
        --adaptation METHOD --seed S ...

Pairs (built-in data, see `hftl datasets`):
- text: spam_assassin_easy (17% spam) -> spam_assassin_hard (85% spam), frozen all-MiniLM-L6-v2 features and a
  trained bottleneck (strong label shift).
- image: mnist -> optdigits, EfficientNet-Lite0 fine-tuned at 32 x 32 pixels for 4 epochs (2 underfit the source:
  source validation accuracy 0.91 against 0.98).
- speech: spoken_language_id_synthetic (espeak-ng) -> spoken_language_id_real (Asterisk prompts), frozen
  Whisper-base features from a fixed encoder layer (--feature_layer).
- label_shift / covariate_shift: constructed pairs with a known answer (hftl/data/shifted.py): half of MNIST ->
  the other half resampled to a skewed prior / inverted, frozen EfficientNet-Lite0 features at 32 x 32 pixels.

    HF_HUB_OFFLINE=1 python benchmarks/domain_adaptation.py [--pairs text speech image] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from hftl.adaptation.methods import method_names  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# every registered method, plain and importance-weighted ("iw" + name: --importance_weighting)
METHODS = ("none", *method_names(), *(f"iw{name}" for name in method_names()), "auto")
METHOD_NAMES = {
    "none": "source only",
    **{name: name.upper() for name in method_names()},
    **{f"iw{name}": f"IW-{name.upper()} (label-shift corrected)" for name in method_names()},
    "oracle": "oracle (trained on labelled target)",
    "auto": "auto (chosen without target labels)",
    "hindsight": "best single method in hindsight (chosen per seed on target labels; comparison only)",
}

COMMON = ["--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no", "--overwrite_output_dir"]
PAIRS = {
    "text": {
        "recipe": "text_classification",
        "source": "spam_assassin_easy",
        "target": "spam_assassin_hard",
        "flags": ["--strategy", "feature_extraction", "--num_train_epochs", "10"],
    },
    "speech": {
        "recipe": "speech_classification",
        "source": "spoken_language_id_synthetic",
        "target": "spoken_language_id_real",
        "flags": ["--strategy", "feature_extraction", "--num_train_epochs", "30", "--feature_layer", "3"],
    },
    "image": {
        "recipe": "image_classification",
        "source": "mnist",
        "target": "optdigits",
        "flags": ["--strategy", "full", "--image_size", "32", "--num_train_epochs", "4"],
    },
    "label_shift": {
        "recipe": "image_classification",
        "source": "mnist_source_half",
        "target": "mnist_label_shifted",
        "flags": ["--strategy", "feature_extraction", "--image_size", "32", "--num_train_epochs", "10"],
    },
    "covariate_shift": {
        "recipe": "image_classification",
        "source": "mnist_source_half",
        "target": "mnist_inverted",
        "flags": ["--strategy", "feature_extraction", "--image_size", "32", "--num_train_epochs", "10"],
    },
}


def run(pair: dict, method: str, seed: int, output_dir: str, cache_dir: str, extra: list[str]) -> dict:
    """One recipe run in a fresh process; returns its target figures and wall seconds. `extra` (more recipe flags)
    comes last, so that it overrides the pair's flags."""
    command = [sys.executable, os.path.join(ROOT, "recipes", f"{pair['recipe']}.py")]
    if method == "oracle":  # trained on the target's own labelled train split, scored on the same target test split
        command += ["--dataset_name", pair["target"], "--target_dataset_name", pair["target"]]
    else:
        command += ["--dataset_name", pair["source"], "--target_dataset_name", pair["target"]]
        weighted = method.startswith("iw") and method[2:] in method_names()
        command += ["--adaptation", method[2:] if weighted else method] + (
            ["--importance_weighting"] if weighted else []
        )
    command += [*pair["flags"], *COMMON, "--seed", str(seed), "--output_dir", output_dir]
    command += ["--feature_cache_dir", cache_dir, *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    with open(os.path.join(output_dir, "all_results.json"), encoding="utf-8") as handle:
        results = json.load(handle)
    return {
        "target_accuracy": results["target_accuracy"],
        "target_balanced_accuracy": results["target_balanced_accuracy"],
        "source_eval_accuracy": results.get("eval_accuracy"),
        "label_shift_total_variation": results.get("label_shift_total_variation"),
        "seconds": round(seconds, 1),
        **_selection(output_dir),
    }


def _selection(output_dir: str) -> dict:
    """An auto run's kept candidate and every candidate's target accuracy (never used for its choice); {} otherwise."""
    path = os.path.join(output_dir, "adaptation_selection.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        record = json.load(handle)
    truth = {c["name"]: c.get("target_test_never_used_for_choice", {}).get("accuracy") for c in record["candidates"]}
    return {"kept": record["chosen"]["name"], "reason": record["reason"], "candidates_target_accuracy": truth}


def hindsight(by_method: dict) -> list[dict]:
    """Per seed, the run of the single method (source only and every method, plain or importance-weighted) with the
    best target accuracy: an upper bound that reads target labels, for comparison only."""
    single = [runs for method, runs in by_method.items() if method in METHODS and method != "auto"]
    seeds = sorted({r["seed"] for runs in single for r in runs})
    return [
        max((r for runs in single for r in runs if r["seed"] == s), key=lambda r: r["target_accuracy"]) for s in seeds
    ]


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(results: dict) -> str:
    lines = [
        "| pair | method | target accuracy | target balanced accuracy | source val. accuracy | wall s / run | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for pair, by_method in results.items():
        for method, runs in {**by_method, "hindsight": hindsight(by_method)}.items():
            if not runs:
                continue
            lines.append(
                f"| {pair} | {METHOD_NAMES[method]} | {_cell([r['target_accuracy'] for r in runs])} | "
                f"{_cell([r['target_balanced_accuracy'] for r in runs])} | "
                f"{_cell([r['source_eval_accuracy'] for r in runs])} | "
                f"{statistics.mean(r['seconds'] for r in runs):.0f} | {len(runs)} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--methods", nargs="+", default=[*METHODS, "oracle"], choices=[*METHODS, "oracle"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "benchmarks", "runs", "domain_adaptation"))
    parser.add_argument(
        "--auto_trade_offs",
        nargs="+",
        default=None,
        help="--auto_trade_offs for the auto runs (default: the recipe's); 1.0 gives auto the same grid as the "
        "single methods it is compared with (each at --trade_off 1.0).",
    )
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="More recipe flags for every run.")
    args = parser.parse_args()
    auto_flags = ["--auto_trade_offs", *args.auto_trade_offs] if args.auto_trade_offs else []

    cache_dir = os.path.join(args.output_dir, "feature_cache")
    results_path = os.path.join(args.output_dir, "results.json")
    results: dict = {}
    if os.path.isfile(results_path):  # a rerun adds to (and reuses) the runs already done
        with open(results_path, encoding="utf-8") as handle:
            results = json.load(handle)
    for name in args.pairs:
        by_method = results.setdefault(name, {})
        for method in args.methods:
            runs = by_method.setdefault(method, [])
            done_seeds = {r["seed"] for r in runs}
            for seed in args.seeds:
                if seed in done_seeds:
                    continue
                output_dir = os.path.join(args.output_dir, name, method, f"seed{seed}")
                extra = [*args.extra, *(auto_flags if method == "auto" else [])]
                figures = run(PAIRS[name], method, seed, output_dir, cache_dir, extra)
                runs.append({"seed": seed, **figures, **({"extra_flags": extra} if extra else {})})
                print(f"{name} {method} seed {seed}: {figures}", flush=True)
                os.makedirs(args.output_dir, exist_ok=True)
                with open(results_path, "w", encoding="utf-8") as handle:
                    json.dump(results, handle, indent=2)
    text = table({name: results[name] for name in args.pairs if name in results})
    print(text)
    with open(os.path.join(args.output_dir, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


if __name__ == "__main__":
    main()
