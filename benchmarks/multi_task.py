#!/usr/bin/env python
"""Multi-task learning on real data: a data-poor task learnt beside a data-rich related one, against each trained
alone with the same budget (the same number of optimizer steps).

Task sets (built-in data, packaged models; the first rows of each fixed train split, whole validation / test splits):
- digits (image recipe, EfficientNet-Lite0 at 32x32): optdigits (UCI, 8x8 scans; poor: --poor_samples) beside MNIST
  (rich: --rich_samples).
- spam (text recipe, all-MiniLM-L6-v2): SpamAssassin hard ham + spam 2 (poor) beside easy ham + spam 1 (rich).

For each set and seed: one multi-task run (`--tasks`, `--task_sampling`, fixed weights 1) for --num_train_epochs, then
each task alone with `--max_steps` = the multi-task run's step count. The table gives test accuracy; the targets: the
poor task gains, the rich task loses at most 1 point. A finished (set, seed) is saved in its folder's `row.json`, so
an interrupted benchmark resumes where it stopped when rerun with the same flags.

    HF_HUB_OFFLINE=1 python benchmarks/multi_task.py                       # the full run: 3 seeds, both sets
    HF_HUB_OFFLINE=1 python benchmarks/multi_task.py --seeds 1 --rich_samples 800 --poor_samples 200 \\
        --max_seq_length 64 --num_train_epochs 1                            # a quick slice
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# set -> (recipe, poor dataset, rich dataset, recipe flags)
TASK_SETS = {
    "digits": ("image_classification", "optdigits", "mnist", ["--image_size", "32"]),
    "spam": ("text_classification", "spam_assassin_hard", "spam_assassin_easy", []),
}


def _run(recipe: str, output_dir: str, flags: list[str]) -> tuple[dict, dict]:
    """One recipe run in a fresh process: (all_results.json, trainer_state.json)."""
    command = [sys.executable, os.path.join(ROOT, "recipes", f"{recipe}.py"), "--output_dir", output_dir, *flags]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    with open(os.path.join(output_dir, "all_results.json"), encoding="utf-8") as handle:
        results = json.load(handle)
    with open(os.path.join(output_dir, "trainer_state.json"), encoding="utf-8") as handle:
        return results, json.load(handle)


def _common(args, seed: int, recipe_flags: list[str], recipe: str) -> list[str]:
    flags = [
        "--per_device_train_batch_size", str(args.batch_size), "--eval_strategy", "no", "--save_strategy", "no",
        "--do_eval", "false", "--report_to", "none", "--disable_tqdm", "true", "--overwrite_output_dir", "true",
        "--seed", str(seed), "--logging_steps", "20", *recipe_flags,
    ]  # fmt: skip
    return flags + (["--max_seq_length", str(args.max_seq_length)] if recipe == "text_classification" else [])


def run_set(name: str, args, seed: int) -> dict[str, float]:
    """Test accuracies of one seed of one task set: poor / rich, alone / multi-task, and the step budget."""
    recipe, poor, rich, recipe_flags = TASK_SETS[name]
    folder = os.path.join(args.output_dir, name, f"seed{seed}")
    os.makedirs(folder, exist_ok=True)
    done = os.path.join(folder, "row.json")
    if os.path.exists(done):  # resume: a finished (set, seed) under the same flags is not trained again
        with open(done, encoding="utf-8") as handle:
            saved = json.load(handle)
        if saved["flags"] == _row_flags(args):
            return saved["row"]
    tasks = [
        {"name": "poor", "dataset_name": poor, "max_train_samples": args.poor_samples},
        {"name": "rich", "dataset_name": rich, "max_train_samples": args.rich_samples},
    ]
    config = os.path.join(folder, "tasks.yaml")
    with open(config, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"tasks": tasks}, handle)
    common = _common(args, seed, recipe_flags, recipe)
    multi_flags = ["--config", config, "--task_sampling", args.task_sampling, "--num_train_epochs",
                   str(args.num_train_epochs), *common]  # fmt: skip
    multi, state = _run(recipe, os.path.join(folder, "multi"), multi_flags)
    steps = state["global_step"]
    row = {"steps": steps, "poor_multi": multi["test_poor_accuracy"], "rich_multi": multi["test_rich_accuracy"]}
    for task in tasks:
        alone_flags = ["--dataset_name", task["dataset_name"], "--max_train_samples", str(task["max_train_samples"]),
                       "--max_steps", str(steps), *common]  # fmt: skip
        alone, _ = _run(recipe, os.path.join(folder, f"{task['name']}_alone"), alone_flags)
        row[f"{task['name']}_alone"] = alone["test_accuracy"]
    with open(done, "w", encoding="utf-8") as handle:
        json.dump({"flags": _row_flags(args), "row": row}, handle, indent=2)
    return row


def _row_flags(args) -> dict:
    """The flags a (set, seed) row depends on: a row saved under other flags is trained again."""
    return {key: value for key, value in vars(args).items() if key not in ("sets", "seeds", "output_dir")}


def table(rows: dict[tuple[str, int], dict]) -> str:
    lines = [
        "| set | seed | steps | poor alone | poor multi-task | gain | rich alone | rich multi-task | change |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, seed), r in rows.items():
        lines.append(
            f"| {name} | {seed} | {r['steps']} | {r['poor_alone']:.4f} | {r['poor_multi']:.4f} | "
            f"{100 * (r['poor_multi'] - r['poor_alone']):+.1f} pt | {r['rich_alone']:.4f} | {r['rich_multi']:.4f} | "
            f"{100 * (r['rich_multi'] - r['rich_alone']):+.1f} pt |"
        )
    for name in sorted({n for n, _ in rows}):
        mine = [r for (n, _), r in rows.items() if n == name]

        def mean(key, mine=mine):
            return sum(r[key] for r in mine) / len(mine)

        lines.append(
            f"| {name} | mean of {len(mine)} | | {mean('poor_alone'):.4f} | {mean('poor_multi'):.4f} | "
            f"{100 * (mean('poor_multi') - mean('poor_alone')):+.1f} pt | {mean('rich_alone'):.4f} | "
            f"{mean('rich_multi'):.4f} | {100 * (mean('rich_multi') - mean('rich_alone')):+.1f} pt |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(TASK_SETS), choices=list(TASK_SETS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1")
    parser.add_argument("--poor_samples", type=int, default=300)
    parser.add_argument("--rich_samples", type=int, default=4000)
    parser.add_argument("--num_train_epochs", type=float, default=3)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--task_sampling", default="proportional", choices=["proportional", "round_robin"])
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "benchmarks", "runs", "multi_task"))
    args = parser.parse_args()
    rows, start = {}, time.perf_counter()
    for name in args.sets:
        for seed in range(args.seeds):
            rows[(name, seed)] = run_set(name, args, seed)
            print(f"{name} seed {seed}: {rows[(name, seed)]} ({time.perf_counter() - start:.0f} s)", flush=True)
    text = table(rows) + f"\n\nFlags: {vars(args)}; {time.perf_counter() - start:.0f} s in all."
    print(text)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    with open(os.path.join(args.output_dir, "results.json"), "w", encoding="utf-8") as handle:
        json.dump({"flags": vars(args), "rows": {f"{n}/{s}": r for (n, s), r in rows.items()}}, handle, indent=2)


if __name__ == "__main__":
    main()
