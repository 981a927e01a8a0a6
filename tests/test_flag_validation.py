"""Every flag value, config file and model path is checked before anything loads, as one `InputError` naming the
flag, what it accepts and the fix (hftl.validation, hftl.flag_checks, hftl.config_file, hftl.model_source, the
early half of hftl.hub). The battery (battery_flags.py, battery_config.py, battery_paths.py) runs the same through
the recipes; these tests pin the pieces."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml
from helpers import ROOT

from hftl.config import argument_types, parse_args, resolve_config, write_config
from hftl.errors import InputError
from hftl.flag_checks import FLAG_RANGES
from hftl.modalities import AudioModality, ImageModality, TextModality
from hftl.validation import FlagParser

TYPES = argument_types(TextModality())


def _parse(*args: str, defaults=None):
    return parse_args(TYPES, defaults or {}, ["--output_dir", "x", *args])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--learnign_rate", "1e-3"], r"unknown flag\(s\) --learnign_rate \(did you mean --learning_rate"),
        (["--learning_rat", "1e-3"], r"unknown flag\(s\) --learning_rat \(did you mean --learning_rate"),
        (["--warmup_ratio", "0.1"], r"--warmup_ratio \(transformers 5 calls it --warmup_steps"),
        (["--seed", "1", "2"], r"unexpected value\(s\) \['2'\]"),
        (["--learning_rate", "abc"], r"^--learning_rate abc: expected a number"),
        (["--per_device_train_batch_size", "8.5"], r"^--per_device_train_batch_size 8\.5: expected an integer"),
        (["--do_train", "maybe"], r"^--do_train maybe: expected true or false"),
        (
            ["--lr_scheduler_type", "cosin"],
            r"^--lr_scheduler_type cosin: not one of linear, .*\(did you mean cosine\?\)",
        ),
        (["--seed"], r"^--seed: expected one argument"),
    ],
)
def test_parser_errors_are_input_errors_naming_the_flag(args, message):
    """argparse's errors (usage + exit) and transformers' unknown-flag ValueError become one-line InputErrors;
    an abbreviation is refused (it would set --learning_rate while the explicit-flag tracking saw --learning_rat)."""
    with pytest.raises(InputError, match=message):
        _parse(*args)


def test_every_checked_flag_exists():
    """A renamed flag upstream would silently drop its range check."""
    parser = FlagParser(TYPES)
    assert set(FLAG_RANGES) <= parser.flag_names, set(FLAG_RANGES) - parser.flag_names


@pytest.mark.parametrize(
    "flag, value",
    [
        ("learning_rate", "0"),
        ("weight_decay", "-1"),
        ("adam_beta2", "1"),
        ("max_grad_norm", "-0.5"),
        ("num_train_epochs", "-1"),
        ("max_steps", "-2"),
        ("per_device_eval_batch_size", "0"),
        ("gradient_accumulation_steps", "0"),
        ("save_total_limit", "-1"),
        ("seed", str(2**32)),
        ("dataloader_num_workers", "-1"),
        ("label_smoothing_factor", "1"),
        ("lora_alpha", "-4"),
        ("lora_dropout", "1.5"),
    ],
)
def test_out_of_range_values_name_the_flag_and_range(flag, value):
    allowed = re.escape(FLAG_RANGES[flag].allowed)
    with pytest.raises(InputError, match=rf"^--{flag} {value}(\.0)?: must be {allowed}\.$"):
        _parse(f"--{flag}", value)


def test_steps_are_checked_only_under_the_steps_strategy():
    _parse("--logging_strategy", "epoch", "--logging_steps", "0")
    with pytest.raises(InputError, match=r"--logging_steps 0(\.0)?: must be > 0"):
        _parse("--logging_strategy", "steps", "--logging_steps", "0")


def test_transformers_own_checks_become_input_errors():
    """What TrainingArguments.__post_init__ refuses (here a prefetch factor without workers) is reported, not
    re-implemented."""
    with pytest.raises(InputError, match=r"--dataloader_prefetch_factor.*TrainingArguments refused these flags"):
        _parse("--dataloader_prefetch_factor", "2")


def test_zero_epochs_are_refused_only_when_training():
    with pytest.raises(InputError, match=r"--num_train_epochs 0 with --do_train trains nothing"):
        _parse("--do_train", "true", "--num_train_epochs", "0")
    _parse("--do_train", "true", "--num_train_epochs", "0", "--max_steps", "3")
    _parse("--do_train", "false", "--num_train_epochs", "0")


def test_best_model_metric_is_one_the_evaluations_report():
    best = ["--load_best_model_at_end", "true", "--eval_strategy", "epoch", "--save_strategy", "epoch"]
    for metric in ("f1", "eval_accuracy", "loss"):
        _parse(*best, "--metric_for_best_model", metric)
    with pytest.raises(InputError, match=r"--metric_for_best_model eval_acc: .*choose from loss, accuracy"):
        _parse(*best, "--metric_for_best_model", "eval_acc")


# ---- --config files ----------------------------------------------------------------------------------------------


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    """A 'billion laughs' file: refused in a child process allowed 1 GB more memory than its imports took (the old
    loader handed the aliased lists on, and writing them out took 6 GB)."""
    from battery_config import BILLION_LAUGHS

    (tmp_path / "laughs.yaml").write_text(BILLION_LAUGHS)
    script = textwrap.dedent(
        f"""
        import resource
        from hftl.config import argument_types, parse_args
        from hftl.errors import InputError
        from hftl.modalities import TextModality
        used = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:")) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, used + 2**30))
        try:
            parse_args(argument_types(TextModality()), {{}}, ["--config", {str(tmp_path / "laughs.yaml")!r}])
        except InputError as error:
            print(error)
        """
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert "line 3: YAML alias *a refused" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize(
    "text, message",
    [
        ("learning_rate: [0.1, 0.2]\n", r"learning_rate: expects one value, got a list"),
        ("lora_target_modules: query\n", None),
        ("learning_rate: true\n", r"learning_rate: True is not a number"),
        ("max_train_samples: null\n", None),
        ("num_train_epochs: null\n", r"num_train_epochs: null is not allowed"),
        ("strategy: LoRA\n", r"strategy: 'LoRA' is not one of full"),
        ("accelerator_config: {split_batches: true}\n", None),
    ],
)
def test_config_values_are_converted_like_the_command_line(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    if message is None:
        _parse("--config", str(tmp_path / "c.yaml"))
    else:
        with pytest.raises(InputError, match=rf"--config .*c\.yaml: {message}"):
            _parse("--config", str(tmp_path / "c.yaml"))


@pytest.mark.parametrize("modality", [TextModality(), ImageModality(), AudioModality()], ids=["text", "image", "audio"])
def test_written_config_reads_back_to_the_same_values(tmp_path, modality):
    """`hftl_config.yaml` is usable as `--config`, even with a list object repeated (written out, not aliased)."""
    config = resolve_config(modality, {}, ["--output_dir", str(tmp_path), "--strategy", "lora"])
    shared = ["query", "value"]
    config.strategy.lora_target_modules = config.training.label_names = shared
    write_config(config, str(tmp_path))
    assert "&" not in (tmp_path / "hftl_config.yaml").read_text()
    again = resolve_config(modality, {}, ["--config", str(tmp_path / "hftl_config.yaml")])
    assert again.as_dict() == config.as_dict()


def test_command_line_overrides_the_config_file(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"seed": 5, "learning_rate": 1e-3}))
    (*_, training), explicit = _parse("--config", str(tmp_path / "c.json"), "--seed", "7")
    assert (training.seed, training.learning_rate) == (7, 1e-3) and {"seed", "learning_rate"} <= explicit


# ---- the Hub push, before training --------------------------------------------------------------------------------


def test_push_settings_are_checked_before_training(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from hftl.hub import check_push

    for name in ("HF_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))  # nobody ran `hf auth login`
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(InputError, match=r"--hub_model_id 'a b/c', which is not a valid Hub repository id"):
        check_push("a b/c", str(tmp_path), "hf_x")
    with pytest.raises(InputError, match=r"--hub_model_id not given.*--output_dir folder 'my run'"):
        check_push(None, str(tmp_path / "my run"), "hf_x")
    with pytest.raises(InputError, match=r"no Hub token found.*`hf auth login`.*--hub_token"):
        check_push("alice/tiny", str(tmp_path), None)
    check_push("alice/tiny", str(tmp_path), "hf_x")
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    check_push(None, str(tmp_path / "tiny"), None)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(InputError, match=r"HF_HUB_OFFLINE"):
        check_push("alice/tiny", str(tmp_path), "hf_x")


# ---- model folders -----------------------------------------------------------------------------------------------


def _model_args(path, **kwargs):
    from hftl.arguments import ModelArguments

    return ModelArguments(model_name_or_path=str(path), **kwargs)


def test_sharded_pickles_are_checked_shard_by_shard(tiny_bert_dir, tmp_path):
    """A sharded `pytorch_model.bin` whose second shard would run code: refused, naming the shard and the global,
    without unpickling anything."""
    import argparse

    import torch
    from safetensors.torch import load_file

    from hftl.model_source import check_model_sources

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    state = load_file(model / "model.safetensors")
    (model / "model.safetensors").unlink()
    names = sorted(state)
    half = len(names) // 2
    torch.save({k: state[k] for k in names[:half]}, model / "shard-1.bin")
    torch.save({**{k: state[k] for k in names[half:]}, "x": argparse.Namespace()}, model / "shard-2.bin")
    index = {"weight_map": {k: "shard-1.bin" if i < half else "shard-2.bin" for i, k in enumerate(names)}}
    (model / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match=r"shard-2\.bin is a pickle that is refused .*argparse\.Namespace"):
        check_model_sources(_model_args(model))
    torch.save({k: state[k] for k in names[half:]}, model / "shard-2.bin")
    check_model_sources(_model_args(model))


def test_custom_code_is_refused_without_running_it(tiny_bert_dir, tmp_path):
    from hftl.model_source import check_model_sources

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_x.XConfig"}
    (model / "config.json").write_text(json.dumps(config))
    (model / "configuration_x.py").write_text("raise SystemExit(97)\n")
    with pytest.raises(InputError, match=r"needs custom code \(configuration_x\.py\).*--trust_remote_code true"):
        check_model_sources(_model_args(model))
    check_model_sources(_model_args(model, trust_remote_code=True))  # trusted: left to transformers


def test_written_yaml_is_plain(tmp_path):
    from hftl.config_file import dump_config

    shared = [1, 2]
    with open(tmp_path / "c.yaml", "w") as handle:
        dump_config({"a": shared, "b": shared}, handle)
    assert yaml.safe_load((tmp_path / "c.yaml").read_text()) == {"a": [1, 2], "b": [1, 2]}
    assert "*" not in (tmp_path / "c.yaml").read_text()
