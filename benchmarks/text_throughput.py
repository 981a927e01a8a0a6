#!/usr/bin/env python
"""Text training throughput: hftl against the plain transformers Trainer, and cached feature extraction.

Prints one table. Same model (the packaged all-MiniLM-L6-v2 unless --model_name_or_path), same data (the first
--train_samples examples of the built-in rotten_tomatoes_critics train split), same batch size and sequence length
in every row:

1. plain `Trainer` (what a run_glue.py user gets, with dynamic padding) vs hftl `--strategy full`, same
   `TrainingArguments`: samples/s of training;
2. hftl `--strategy feature_extraction` over --fe_epochs epochs, with the backbone recomputed at every step
   (`--cache_features false`) vs cached: wall seconds of the whole training phase (extraction included).

    HF_HUB_OFFLINE=1 python benchmarks/text_throughput.py [--train_samples 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import transformers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from hftl.assets import hub_id_of, packaged_text_model
from hftl.data import load_builtin
from hftl.modalities import TextModality
from hftl.pipeline import run_classification


def plain_trainer(model_path, train, args, output_dir) -> float:
    """run_glue.py's path: tokenizer, AutoModelForSequenceClassification, Trainer. Returns samples/s."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    tokenized = train.map(
        lambda b: tokenizer(b["text"], max_length=args.max_seq_length, truncation=True),
        batched=True,
        remove_columns=["text"],
    )
    training_args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=1,
        learning_rate=1e-4,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        logging_steps=10_000,
        seed=42,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=tokenized,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    return trainer.train().metrics["train_samples_per_second"]


def hftl_run(model_path, args, output_dir, *flags) -> dict:
    common = [
        "--model_name_or_path",
        model_path,
        "--output_dir",
        output_dir,
        "--max_train_samples",
        str(args.train_samples),
        "--per_device_train_batch_size",
        str(args.batch_size),
        "--max_seq_length",
        str(args.max_seq_length),
        "--learning_rate",
        "1e-4",
        "--save_strategy",
        "no",
        "--eval_strategy",
        "no",
        "--do_eval",
        "false",
        "--do_predict",
        "false",
        "--do_train",
        "true",
        "--disable_tqdm",
        "true",
        "--logging_steps",
        "10000",
        "--report_to",
        "none",
        "--seed",
        "42",
        "--train_sampling_strategy",
        "random",
    ]
    return run_classification(TextModality(), {}, common + list(flags))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_name_or_path", default=None)
    parser.add_argument("--train_samples", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--fe_epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of plain Trainer and hftl full")
    args = parser.parse_args()
    transformers.utils.logging.set_verbosity_error()
    model_path = args.model_name_or_path or packaged_text_model()
    train = (
        load_builtin("rotten_tomatoes_critics")["train"]
        .select(range(args.train_samples))
        .rename_column("label", "labels")
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plain, full = [], []
        for repeat in range(args.repeats):  # alternate, so that drift of the machine hits both alike
            plain.append(plain_trainer(model_path, train, args, os.path.join(tmp, f"plain{repeat}")))
            full.append(
                hftl_run(
                    model_path,
                    args,
                    os.path.join(tmp, f"full{repeat}"),
                    "--strategy",
                    "full",
                    "--num_train_epochs",
                    "1",
                )["train_samples_per_second"]
            )
        grouped = hftl_run(
            model_path,
            args,
            os.path.join(tmp, "grouped"),
            "--strategy",
            "full",
            "--num_train_epochs",
            "1",
            "--train_sampling_strategy",
            "group_by_length",
        )
        plain_mean, full_mean = statistics.mean(plain), statistics.mean(full)

        def runs(values):
            return f"{statistics.mean(values):.1f} samples/s" + (
                f" ({', '.join(f'{v:.1f}' for v in values)})" if len(values) > 1 else ""
            )

        rows.append(("plain transformers Trainer, full", runs(plain), "1.00x"))
        rows.append(("hftl --strategy full", runs(full), f"{full_mean / plain_mean:.2f}x"))
        rows.append(
            (
                "hftl --strategy full, group_by_length (recipe default)",
                f"{grouped['train_samples_per_second']:.1f} samples/s",
                f"{grouped['train_samples_per_second'] / plain_mean:.2f}x",
            )
        )

        start = time.perf_counter()
        hftl_run(
            model_path,
            args,
            os.path.join(tmp, "fe_recompute"),
            "--strategy",
            "feature_extraction",
            "--num_train_epochs",
            str(args.fe_epochs),
            "--cache_features",
            "false",
        )
        recompute = time.perf_counter() - start
        start = time.perf_counter()
        cached_metrics = hftl_run(
            model_path,
            args,
            os.path.join(tmp, "fe_cached"),
            "--strategy",
            "feature_extraction",
            "--num_train_epochs",
            str(args.fe_epochs),
        )
        cached = time.perf_counter() - start
        rows.append(
            (
                f"feature_extraction, {args.fe_epochs} epochs, backbone recomputed each step",
                f"{recompute:.1f} s run",
                "1.00x",
            )
        )
        rows.append(
            (
                f"feature_extraction, {args.fe_epochs} epochs, cached features "
                f"(extraction {cached_metrics['feature_extraction_runtime']:.1f} s)",
                f"{cached:.1f} s run",
                f"{recompute / cached:.2f}x faster",
            )
        )

    print(
        f"\nText training throughput: {hub_id_of(model_path) or model_path}, {args.train_samples} examples, "
        f"batch {args.batch_size}, max_seq_length {args.max_seq_length}, torch threads "
        f"{__import__('torch').get_num_threads()}"
    )
    width = max(len(r[0]) for r in rows)
    speed_width = max(len(r[1]) for r in rows)
    print(f"| {'run'.ljust(width)} | {'speed'.rjust(speed_width)} | {'ratio':>12} |")
    print(f"|{'-' * (width + 2)}|{'-' * (speed_width + 2)}|{'-' * 14}|")
    for name, speed, ratio in rows:
        print(f"| {name.ljust(width)} | {speed.rjust(speed_width)} | {ratio:>12} |")


if __name__ == "__main__":
    sys.exit(main())
