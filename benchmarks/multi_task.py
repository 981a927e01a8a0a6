#!/usr/bin/env python
"""Multi-task learning on real data: a data-poor task learnt beside a data-rich related one, against each trained
alone with the same budget (the same number of optimizer steps).

Task sets (built-in data, packaged models; the first rows of each fixed train split, whole validation / test splits):
- digits (image recipe, EfficientNet-Lite0 at 32x32): optdigits (UCI, 8x8 scans; poor: --poor_samples) beside MNIST
  (rich: --rich_samples).
- spam (text recipe, all-MiniLM-L6-v2): SpamAssassin hard ham + spam 2 (poor) beside easy ham + spam 1 (rich).

For each set and seed: one multi-task run (`--tasks`, `--task_sampling`, fixed weights 1) for --num_train_epochs, then
each task alone with `--max_steps` = the multi-task run's step count (the same budget), and the poor task alone for
the steps it had inside the multi-task run (the same exposure to its data: what sharing the backbone alone changes).
The table gives test accuracy; the targets: the poor task gains, the rich task loses at most 1 point. A finished (set,
seed) is saved in its folder's `row.json`, so an interrupted benchmark resumes where it stopped when rerun with the
same flags; a column a saved row lacks is trained and added.

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
    """Test accuracies of one seed of one task set: poor / rich, alone / multi-task, and the step budgets. Columns a
    saved row lacks (an older version of this script) are trained and added."""
    recipe, poor, rich, recipe_flags = TASK_SETS[name]
    folder = os.path.join(args.output_dir, name, f"seed{seed}")
    os.makedirs(folder, exist_ok=True)
    row = _saved_row(folder, args)
    tasks = [
        {"name": "poor", "dataset_name": poor, "max_train_samples": args.poor_samples},
        {"name": "rich", "dataset_name": rich, "max_train_samples": args.rich_samples},
    ]
    common = _common(args, seed, recipe_flags, recipe)
    if "steps" not in row:
        config = os.path.join(folder, "tasks.yaml")
        with open(config, "w", encoding="utf-8") as handle:
            yaml.safe_dump({"tasks": tasks}, handle)
        multi_flags = ["--config", config, "--task_sampling", args.task_sampling, "--num_train_epochs",
                       str(args.num_train_epochs), *common]  # fmt: skip
        multi, state = _run(recipe, os.path.join(folder, "multi"), multi_flags)
        row.update(steps=state["global_step"], poor_multi=multi["test_poor_accuracy"])
        row["rich_multi"] = multi["test_rich_accuracy"]
    if "poor_steps" not in row:
        row["poor_steps"] = _poor_steps(os.path.join(folder, "multi"), args)
    budgets = {"poor_alone": ("poor", row["steps"]), "rich_alone": ("rich", row["steps"]),
               "poor_alone_exposure": ("poor", row["poor_steps"])}  # fmt: skip
    for column, (task_name, steps) in budgets.items():
        if column in row:
            continue
        task = next(t for t in tasks if t["name"] == task_name)
        alone_flags = ["--dataset_name", task["dataset_name"], "--max_train_samples", str(task["max_train_samples"]),
                       "--max_steps", str(steps), *common]  # fmt: skip
        row[column] = _run(recipe, os.path.join(folder, column), alone_flags)[0]["test_accuracy"]
    with open(os.path.join(folder, "row.json"), "w", encoding="utf-8") as handle:
        json.dump({"flags": _row_flags(args), "row": row}, handle, indent=2)
    return row


def _saved_row(folder: str, args) -> dict:
    """The (set, seed) row saved under the same flags (resume), or {}."""
    path = os.path.join(folder, "row.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        saved = json.load(handle)
    return dict(saved["row"]) if saved["flags"] == _row_flags(args) else {}


def _poor_steps(multi_dir: str, args) -> int:
    """How many of the multi-task run's steps trained the poor task: its share of an epoch's batches
    (`task_order`) times the run's steps."""
    from hftl.multi_task.sampling import task_order

    with open(os.path.join(multi_dir, "all_results.json"), encoding="utf-8") as handle:
        multi = json.load(handle)
    with open(os.path.join(multi_dir, "trainer_state.json"), encoding="utf-8") as handle:
        state = json.load(handle)
    sizes = [int(multi["train_poor_samples"]), int(multi["train_rich_samples"])]
    order = task_order(sizes, args.batch_size, args.task_sampling, seed=0)
    return round(state["global_step"] * order.count(0) / len(order))


def _row_flags(args) -> dict:
    """The flags a (set, seed) row depends on: a row saved under other flags is trained again."""
    return {key: value for key, value in vars(args).items() if key not in ("sets", "seeds", "output_dir")}


COLUMNS = ("poor_alone", "poor_alone_exposure", "poor_multi", "rich_alone", "rich_multi")


def _cells(r: dict) -> str:
    """One row's cells after the set and seed: budgets, accuracies, and the multi-task run's changes."""
    accuracies = " | ".join(f"{r[c]:.4f}" for c in COLUMNS)
    gain = 100 * (r["poor_multi"] - r["poor_alone"])
    exposure_gain = 100 * (r["poor_multi"] - r["poor_alone_exposure"])
    change = 100 * (r["rich_multi"] - r["rich_alone"])
    steps = f"{r['steps']:.0f} ({r['poor_steps']:.0f})"
    return f"{steps} | {accuracies} | {gain:+.1f} / {exposure_gain:+.1f} pt | {change:+.1f} pt"


def table(rows: dict[tuple[str, int], dict]) -> str:
    """Test accuracy per (set, seed) and the mean per set. "alone" trains for the multi-task run's total steps;
    "alone, same exposure" for the steps the poor task had inside it."""
    lines = [
        "| set | seed | steps (poor task's) | poor alone | poor alone, same exposure | poor multi-task | rich alone | "
        "rich multi-task | poor: gain vs alone / vs same exposure | rich: change |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {name} | {seed} | {_cells(r)} |" for (name, seed), r in rows.items()]
    for name in sorted({n for n, _ in rows}):
        mine = [r for (n, _), r in rows.items() if n == name]
        mean = {key: sum(r[key] for r in mine) / len(mine) for key in (*COLUMNS, "steps", "poor_steps")}
        lines.append(f"| {name} | mean of {len(mine)} | {_cells(mean)} |")
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
