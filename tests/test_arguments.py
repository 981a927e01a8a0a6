"""Flag parsing: --config precedence, explicit flags, strategy learning-rate defaults, validation messages."""

import pytest
from transformers import TrainingArguments

from hftl.arguments import DataTrainingArguments, StrategyArguments
from hftl.config import argument_types, parse_args, resolve_config
from hftl.errors import InputError
from hftl.modalities import TextModality

ARGUMENT_TYPES = argument_types(TextModality())


def _parse(args, defaults=None):
    return parse_args(ARGUMENT_TYPES, defaults or {"learning_rate": 1e-4}, args)


def test_explicit_flags_are_tracked(tmp_path):
    config = tmp_path / "c.json"
    config.write_text('{"num_train_epochs": 4}')
    (model, data, text, strategy, _adaptation, run, *_methods, training), explicit = _parse(
        ["--config", str(config), "--seed=3", "--strategy", "lora"]
    )
    assert {"num_train_epochs", "seed", "strategy", "config"} <= explicit
    assert training.num_train_epochs == 4 and training.seed == 3 and strategy.strategy == "lora"


@pytest.mark.parametrize(
    "args, learning_rate, stage2",
    [
        (["--strategy", "full"], 1e-4, None),
        (["--strategy", "lora"], 2e-3, None),
        (["--strategy", "lora", "--learning_rate", "5e-4"], 5e-4, None),
        (["--strategy", "feature_extraction"], 1e-2, None),
        (["--strategy", "two_stage"], 1e-2, 1e-4),
        (["--strategy", "two_stage", "--learning_rate", "3e-3"], 3e-3, 3e-4),
        (["--strategy", "two_stage", "--stage2_learning_rate", "2e-5"], 1e-2, 2e-5),
    ],
)
def test_strategy_learning_rate_defaults(args, learning_rate, stage2):
    config = resolve_config(TextModality(), {"learning_rate": 1e-4}, args + ["--output_dir", "x"])
    assert config.training.learning_rate == pytest.approx(learning_rate)
    assert config.strategy.stage2_learning_rate == (pytest.approx(stage2) if stage2 else None)


def test_validation_messages_name_the_flag():
    with pytest.raises(InputError, match="--num_frozen_layers must be >= 0"):
        StrategyArguments(num_frozen_layers=-1)
    with pytest.raises(InputError, match="--validation_split_percentage must be between 0 and 100"):
        DataTrainingArguments(validation_split_percentage=150)
    with pytest.raises(InputError, match="either --dataset_name or --train_file"):
        DataTrainingArguments(dataset_name="x", train_file="y.csv")


def test_unknown_strategy_is_refused_by_the_parser():
    with pytest.raises(InputError, match=r"--strategy bogus: not one of full, feature_extraction, freeze"):
        _parse(["--strategy", "bogus"])


def test_training_arguments_names_are_transformers_own():
    (*_, training), _ = _parse(
        [
            "--per_device_train_batch_size",
            "7",
            "--gradient_accumulation_steps",
            "3",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "5",
            "--output_dir",
            "x",
        ]
    )
    assert isinstance(training, TrainingArguments)
    assert (training.per_device_train_batch_size, training.gradient_accumulation_steps, training.eval_steps) == (
        7,
        3,
        5,
    )


def test_resolved_defaults_are_recorded_not_left_unset(tiny_bert_dir):
    """`hftl_config.yaml` holds what the run used: freeze's layer count (half of the model's 4) is resolved from the
    model's config before anything loads, and the iw aliases become a method plus --importance_weighting."""
    config = resolve_config(
        TextModality(),
        {},
        ["--model_name_or_path", tiny_bert_dir, "--strategy", "freeze", "--output_dir", "x"],
    )
    assert config.strategy.num_frozen_layers == 2 and config.as_dict()["num_frozen_layers"] == 2
    alias = resolve_config(
        TextModality(), {}, ["--adaptation", "iwdann", "--target_train_file", "t.csv", "--output_dir", "x"]
    )
    assert (alias.adaptation.adaptation, alias.adaptation.importance_weighting) == ("dann", True)
    assert alias.method.discriminator_hidden_size == 1024
    # a checkpoint of a run with another method, weighting or discriminator is not resumed
    assert {"adaptation", "importance_weighting", "discriminator_hidden_size"} <= set(alias.resume_keys())
    assert "num_frozen_layers" in config.resume_keys() and "lora_r" not in config.resume_keys()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--strategy", "two_stage", "--unfreeze_top_k", "99"], "--unfreeze_top_k 99 exceeds the model's 4"),
        (["--strategy", "freeze", "--num_frozen_layers", "99"], "--num_frozen_layers 99 exceeds the model's 4"),
    ],
)
def test_layer_counts_are_checked_before_anything_loads(tiny_bert_dir, flags, message):
    with pytest.raises(InputError, match=message):
        resolve_config(TextModality(), {}, ["--model_name_or_path", tiny_bert_dir, "--output_dir", "x", *flags])


def test_a_plugin_missing_a_required_member_is_refused_when_registered():
    from hftl.adaptation.methods import AlignmentLoss, register_method
    from hftl.strategies import Strategy, register_strategy

    class NoCardText(AlignmentLoss):
        name = "incomplete"

        def forward(self, source, target, progress, w_s=None):
            return {}

    with pytest.raises(TypeError, match=r"\['card_text', 'from_arguments'\]"):
        register_method(NoCardText)

    class NoApply(Strategy):
        name = "incomplete"
        description = "nothing"

    with pytest.raises(TypeError, match=r"\['apply'\]"):
        register_strategy(NoApply)
