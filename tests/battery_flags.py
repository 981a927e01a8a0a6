"""Battery cases: flag values a user mistypes, refused before any model loads with one `error:` line that names the
flag, what it accepts and the fix (see battery.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from battery import ROOT, Case, Error, Handled, Result, speech_run, text_run


def _cpu_only() -> bool:
    import torch

    return not torch.cuda.is_available()


def _case(name: str, flags: list[str], expect, recipe: str = "text", **kwargs) -> Case:
    """A text (or image / speech) run with `flags` appended: the last value of a flag given twice wins."""
    runs = {"text": text_run, "speech": speech_run}
    return Case(f"flags-{name}", "flags", lambda f, a: runs[recipe](f, a, *flags), expect, recipe=recipe, **kwargs)


def _trained_steps(steps: int):
    """A `Handled` check: the run trained exactly `steps` optimizer steps and saved the model."""

    def check(result: Result) -> None:
        state = json.loads((result.output_dir / "trainer_state.json").read_text())
        assert state["global_step"] == steps, state["global_step"]
        assert (result.output_dir / "model.safetensors").is_file()

    return check


def _push_without_token(folder, assets) -> Result:
    """`--push_to_hub` with no token anywhere: a fresh process (huggingface_hub reads HF_HOME when it is imported)
    with an empty HF_HOME and no HF_TOKEN."""
    argv = text_run(folder, assets, "--push_to_hub", "true", "--hub_model_id", "alice/tiny")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(folder / "hf_home"), PYTHONPATH=ROOT)
    recipe = os.path.join(ROOT, "recipes", "text_classification.py")
    done = subprocess.run(
        [sys.executable, recipe, *argv], capture_output=True, text=True, env=env, cwd=folder, timeout=300
    )
    return Result(done.returncode, done.stderr, done.stdout, folder)


def _evaluated_untrained(result: Result) -> None:
    """Evaluation only: metrics written, nothing trained."""
    results = json.loads((result.output_dir / "all_results.json").read_text())
    assert "eval_accuracy" in results and "train_samples" not in results, results
    assert not (result.output_dir / "trainer_state.json").exists()


CASES = [
    # unknown flags and values that do not parse
    _case("unknown-flag", ["--learnign_rate", "1e-3"], Error(r"unknown flag.*--learnign_rate.*--learning_rate")),
    _case("abbreviated-flag", ["--learning_rat", "1e-3"], Error(r"--learning_rat\b.*--learning_rate")),
    _case("renamed-flag-v4", ["--evaluation_strategy", "epoch"], Error(r"--evaluation_strategy.*--eval_strategy")),
    _case("warmup-ratio-v4", ["--warmup_ratio", "0.1"], Error(r"--warmup_ratio.*--warmup_steps")),
    _case("learning-rate-not-a-number", ["--learning_rate", "abc"], Error(r"--learning_rate.*abc.*number")),
    _case("boolean-maybe", ["--do_train", "maybe"], Error(r"--do_train.*maybe.*true.*false")),
    _case(
        "batch-size-not-int",
        ["--per_device_train_batch_size", "8.5"],
        Error(r"--per_device_train_batch_size.*8\.5.*integer"),
    ),
    _case("strategy-unknown", ["--strategy", "fulll"], Error(r"--strategy.*fulll.*full.*lora")),
    _case("adaptation-unknown", ["--adaptation", "dan"], Error(r"--adaptation.*dan\b.*dann.*mmd")),
    _case("scheduler-unknown", ["--lr_scheduler_type", "cosin"], Error(r"--lr_scheduler_type.*cosin\b.*cosine")),
    _case("eval-strategy-unknown", ["--eval_strategy", "epochs"], Error(r"--eval_strategy.*epochs.*\bepoch\b")),
    _case("flag-without-value", ["--learning_rate"], Error(r"--learning_rate.*expected one argument")),
    # data flags that do not go together
    Case(
        "flags-validation-without-train",
        "flags",
        lambda f, a: text_run(f, a)[:2] + ["--validation_file", str(f / "v.csv"), "--output_dir", str(f / "out")],
        Error(r"--validation_file / --test_file need --train_file"),
    ),
    _case("dataset-and-train-file", ["--dataset_name", "spam"], Error(r"either --dataset_name or --train_file")),
    # values out of range
    _case("learning-rate-negative", ["--learning_rate", "-1"], Error(r"--learning_rate.*-1.*> 0")),
    _case("batch-size-zero", ["--per_device_train_batch_size", "0"], Error(r"--per_device_train_batch_size.*>= 1")),
    _case("eval-batch-size-zero", ["--per_device_eval_batch_size", "0"], Error(r"--per_device_eval_batch_size.*>= 1")),
    _case("accumulation-zero", ["--gradient_accumulation_steps", "0"], Error(r"--gradient_accumulation_steps.*>= 1")),
    _case("epochs-zero", ["--num_train_epochs", "0"], Error(r"--num_train_epochs 0.*--max_steps")),
    _case("epochs-zero-max-steps", ["--num_train_epochs", "0", "--max_steps", "2"], Handled(_trained_steps(2))),
    _case("epochs-zero-eval-only", ["--num_train_epochs", "0", "--do_train", "false"], Handled(_evaluated_untrained)),
    _case("max-steps-negative", ["--max_steps", "-5"], Error(r"--max_steps.*-5.*-1")),
    _case("weight-decay-negative", ["--weight_decay", "-0.1"], Error(r"--weight_decay.*>= 0")),
    _case(
        "warmup-negative", ["--warmup_steps", "-3"], Error(r"warmup_steps = -3.*warmup_steps >= 0.*TrainingArguments")
    ),
    _case("max-grad-norm-negative", ["--max_grad_norm", "-1"], Error(r"--max_grad_norm.*>= 0")),
    _case(
        "logging-steps-zero", ["--logging_strategy", "steps", "--logging_steps", "0"], Error(r"--logging_steps.*> 0")
    ),
    _case(
        "eval-steps-zero",
        ["--eval_strategy", "steps", "--eval_steps", "0", "--logging_steps", "0", "--logging_strategy", "epoch"],
        Error(r"--eval_steps.*> 0"),
    ),
    _case("save-total-limit-zero", ["--save_total_limit", "0"], Error(r"--save_total_limit.*>= 1")),
    _case("seed-negative", ["--seed", "-1"], Error(r"--seed.*-1.*2\*\*32|--seed.*-1.*4294967295")),
    _case("workers-negative", ["--dataloader_num_workers", "-2"], Error(r"--dataloader_num_workers.*>= 0")),
    _case(
        "label-smoothing-over-one", ["--label_smoothing_factor", "1.5"], Error(r"--label_smoothing_factor.*\[0, 1\)")
    ),
    _case("lora-alpha-zero", ["--strategy", "lora", "--lora_alpha", "0"], Error(r"--lora_alpha.*> 0")),
    _case("lora-dropout-one", ["--strategy", "lora", "--lora_dropout", "1"], Error(r"--lora_dropout.*\[0, 1\)")),
    _case("lora-r-zero", ["--strategy", "lora", "--lora_r", "0"], Error(r"--lora_r.*>= 1")),
    _case("max-seq-length-zero", ["--max_seq_length", "0"], Error(r"--max_seq_length.*positive")),
    _case("validation-split-100", ["--validation_split_percentage", "100"], Error(r"--validation_split_percentage")),
    _case("max-train-samples-zero", ["--max_train_samples", "0"], Error(r"--max_train_samples.*positive")),
    _case(
        "trade-off-negative",
        ["--adaptation", "dann", "--target_train_file", "t.csv", "--trade_off", "-1"],
        Error(r"--trade_off.*>= 0"),
    ),
    _case(
        "unfreeze-top-k-too-many",
        ["--strategy", "two_stage", "--unfreeze_top_k", "100"],
        Error(r"--unfreeze_top_k 100 exceeds the model's 4"),
    ),
    _case(
        "unfreeze-top-k-speech",
        ["--strategy", "two_stage", "--unfreeze_top_k", "100"],
        Error(r"--unfreeze_top_k 100 exceeds the model's \d+"),
        recipe="speech",
    ),
    _case(
        "num-frozen-layers-too-many",
        ["--strategy", "freeze", "--num_frozen_layers", "9"],
        Error(r"--num_frozen_layers 9 exceeds"),
    ),
    # combinations
    _case(
        "best-model-unknown-metric",
        [
            "--load_best_model_at_end",
            "true",
            "--eval_strategy",
            "epoch",
            "--save_strategy",
            "epoch",
            "--metric_for_best_model",
            "acuracy",
        ],
        Error(r"--metric_for_best_model.*acuracy.*accuracy"),
    ),
    _case(
        "best-model-strategies-differ",
        ["--load_best_model_at_end", "true", "--eval_strategy", "epoch", "--save_strategy", "no"],
        Error(r"--load_best_model_at_end.*--save_strategy"),
    ),
    _case(
        "best-model-metric-f1",
        [
            "--load_best_model_at_end",
            "true",
            "--eval_strategy",
            "epoch",
            "--save_strategy",
            "epoch",
            "--metric_for_best_model",
            "f1",
        ],
        Handled(),
    ),
    _case(
        "early-stopping-without-evaluations",
        ["--early_stopping_patience", "2", "--eval_strategy", "no"],
        Error(r"--early_stopping_patience.*--eval_strategy no turns them off"),
    ),
    _case("class-weights-count", ["--class_weights", "1,2,3"], Error(r"--class_weights 1,2,3: 3 weight\(s\) for 2")),
    _case("bf16-on-cpu", ["--bf16", "true"], Error(r"--bf16.*--use_cpu true") if _cpu_only() else Handled()),
    _case("fp16-on-cpu", ["--fp16", "true"], Error(r"--fp16.*GPU") if _cpu_only() else Handled()),
    _case("bf16-and-use-cpu", ["--bf16", "true", "--use_cpu", "true"], Handled()),
    _case("report-to-missing-tracker", ["--report_to", "wandb"], Error(r"--report_to.*wandb.*pip install wandb.*none")),
    _case("report-to-unknown", ["--report_to", "tensorbord"], Error(r"--report_to.*tensorbord.*tensorboard")),
    # the Hub push is checked before training
    _case(
        "push-invalid-repo-id",
        ["--push_to_hub", "true", "--hub_model_id", "alice//tiny model", "--hub_token", "hf_x"],
        Error(r"--hub_model_id.*alice//tiny model"),
    ),
    _case(
        "push-invalid-derived-repo-id",
        ["--push_to_hub", "true", "--hub_token", "hf_x", "--output_dir", "out dir (copy)"],
        Error(r"--hub_model_id.*--output_dir"),
    ),
    Case(
        "flags-push-without-token",
        "flags",
        None,
        Error(r"--push_to_hub.*no.*token.*hf auth login.*--hub_token"),
        run=_push_without_token,
    ),
]
