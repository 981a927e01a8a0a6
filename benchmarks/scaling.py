#!/usr/bin/env python
"""Multi-process scaling of the text recipe: training samples/s on 1 and 2 CPU processes (and a GPU when there is
one), and what checkpointing every N steps costs.

Prints one table. Every row runs `recipes/text_classification.py` in a fresh process with the packaged
all-MiniLM-L6-v2 on the first --train_samples examples of the built-in rotten_tomatoes_critics, --max_seq_length
128, random sampling, the same per-device batch and a fixed number of optimizer steps (--steps), and reads the
Trainer's `train_samples_per_second` (all processes together) from `all_results.json`:

1. 1 CPU process (`python recipes/...`) with torch's default threads and with one thread, vs 2 CPU processes on the
   same cores (`accelerate launch --config_file accelerate_configs/two_cpu_processes.yaml`, one thread each),
   alternating --repeats times; with the per-device batch fixed, 2 processes train on twice the examples per step;
2. 1 GPU (`accelerate_configs/single_gpu.yaml`), only when CUDA is available;
3. 1 CPU process (one thread) and 2 CPU processes with a checkpoint every --save_steps steps (model, optimizer
   state, ...; the recipe's `save_total_limit` 2) against the same run without saving, alternating --repeats times.

    HF_HUB_OFFLINE=1 python benchmarks/scaling.py [--train_samples 512 --steps 16 --batch_size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "text_classification.py")
CONFIGS = os.path.join(ROOT, "accelerate_configs")


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _launcher(kind: str) -> tuple[list[str], dict[str, str]]:
    """The command that starts the recipe, and its environment: one CPU process (torch's default threads, or one
    thread), two CPU processes (torchrun gives each one thread), or one GPU."""
    if kind == "cpu1":
        return [sys.executable, RECIPE, "--use_cpu", "true"], {}
    if kind == "cpu1_thread1":
        return [sys.executable, RECIPE, "--use_cpu", "true"], {"OMP_NUM_THREADS": "1"}
    config = {"cpu2": "two_cpu_processes.yaml", "gpu1": "single_gpu.yaml"}[kind]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", os.path.join(CONFIGS, config)]
    return command + ["--main_process_port", _free_port(), RECIPE], {}


def recipe_run(kind: str, args, output_dir: str, *flags: str) -> dict:
    """Run the text recipe under launcher `kind`; return its `all_results.json`."""
    command, env = _launcher(kind)
    command += [
        "--output_dir",
        output_dir,
        "--overwrite_output_dir",
        "true",
        "--max_train_samples",
        str(args.train_samples),
        "--max_seq_length",
        str(args.max_seq_length),
        "--per_device_train_batch_size",
        str(args.batch_size),
        "--max_steps",
        str(args.steps),
        "--train_sampling_strategy",
        "random",
        "--do_eval",
        "false",
        "--do_predict",
        "false",
        "--eval_strategy",
        "no",
        "--logging_steps",
        "10000",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--seed",
        "42",
        *flags,
    ]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    if kind == "cpu2" and "World size 2 (distributed)" not in done.stdout + done.stderr:
        sys.exit("the two-process run did not run as one job of 2 processes:\n" + done.stdout[-2000:])
    with open(os.path.join(output_dir, "all_results.json"), encoding="utf-8") as handle:
        return json.load(handle)


def _load() -> str:
    """The machine's load averages (1, 5, 15 min): other jobs on the cores change every figure below."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train_samples", type=int, default=512)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=16, help="per process (per device)")
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps of every run")
    parser.add_argument("--save_steps", type=int, default=4, help="checkpoint interval of the checkpointing rows")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of 1 and 2 CPU processes")
    args = parser.parse_args()
    import torch

    rows = []
    loads = [_load()]
    with tempfile.TemporaryDirectory() as tmp:
        speeds = {"cpu1": [], "cpu1_thread1": [], "cpu2": []}
        for repeat in range(args.repeats):  # alternate, so that drift of the machine hits both alike
            for kind in speeds:
                result = recipe_run(kind, args, os.path.join(tmp, f"{kind}_{repeat}"), "--save_strategy", "no")
                speeds[kind].append(result["train_samples_per_second"])
        loads.append(_load())
        base = statistics.mean(speeds["cpu1"])

        def runs(values):
            return f"{statistics.mean(values):.1f}" + (
                f" ({', '.join(f'{v:.1f}' for v in values)})" if len(values) > 1 else ""
            )

        for kind, name, processes in (
            ("cpu1", f"1 CPU process, {torch.get_num_threads()} threads", 1),
            ("cpu1_thread1", "1 CPU process, 1 thread", 1),
            ("cpu2", "2 CPU processes (gloo), 1 thread each", 2),
        ):
            batch = processes * args.batch_size
            ratio = statistics.mean(speeds[kind]) / base
            rows.append((name, str(batch), runs(speeds[kind]), f"{ratio:.2f}x"))
        if torch.cuda.is_available():
            result = recipe_run("gpu1", args, os.path.join(tmp, "gpu1"), "--save_strategy", "no")
            speed = result["train_samples_per_second"]
            rows.append((f"1 GPU ({torch.cuda.get_device_name(0)})", str(args.batch_size), f"{speed:.1f}", ""))
        else:
            rows.append(("1 GPU", str(args.batch_size), "skipped: no GPU", ""))

        saving = ["--save_strategy", "steps", "--save_steps", str(args.save_steps)]
        checkpoints = args.steps // args.save_steps
        for kind, name, processes in (("cpu1_thread1", "1 CPU process, 1 thread", 1), ("cpu2", "2 CPU processes", 2)):
            runtimes = {"no": [], "steps": []}
            samples = {"no": [], "steps": []}
            for repeat in range(args.repeats):  # alternate with and without saving
                for strategy, flags in (("no", ["--save_strategy", "no"]), ("steps", saving)):
                    result = recipe_run(kind, args, os.path.join(tmp, f"{kind}_{strategy}_{repeat}"), *flags)
                    runtimes[strategy].append(result["train_runtime"])
                    samples[strategy].append(result["train_samples_per_second"])
            extra = statistics.mean(runtimes["steps"]) - statistics.mean(runtimes["no"])
            rows.append(
                (
                    f"{name}, checkpoint every {args.save_steps} steps ({checkpoints} checkpoints) vs none",
                    str(processes * args.batch_size),
                    f"{runs(samples['steps'])} vs {runs(samples['no'])}",
                    f"{extra / checkpoints:+.2f} s per checkpoint ({extra / statistics.mean(runtimes['no']):+.0%})",
                )
            )
        loads.append(_load())

    print(
        f"\nText recipe scaling: all-MiniLM-L6-v2, first {args.train_samples} examples of rotten_tomatoes_critics, "
        f"max_seq_length {args.max_seq_length}, {args.batch_size} per process, {args.steps} steps, random sampling; "
        f"{os.cpu_count()} CPU cores; load averages (1, 5, 15 min) at start / after the scaling rows / at the end: "
        + " / ".join(loads)
    )
    header = ("run", "global batch", "train samples/s", "vs 1 process / cost")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(4)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


if __name__ == "__main__":
    sys.exit(main())
