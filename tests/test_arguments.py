"""Flag parsing: --config precedence, explicit flags, strategy learning-rate defaults, validation messages."""

import pytest
from transformers import TrainingArguments

from hftl.arguments import DataTrainingArguments, StrategyArguments, parse_args
from hftl.errors import InputError
from hftl.modalities import TextModality
from hftl.training import _strategy_learning_rates, argument_types

ARGUMENT_TYPES = argument_types(TextModality())


def _parse(args, defaults=None):
    return parse_args(ARGUMENT_TYPES, defaults or {"learning_rate": 1e-4}, args)


def test_explicit_flags_are_tracked(tmp_path):
    config = tmp_path / "c.json"
    config.write_text('{"num_train_epochs": 4}')
    (model, data, text, strategy, _adaptation, run, training), explicit = _parse(
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
    (_, _, _, strategy, _, _, training), explicit = _parse(args + ["--output_dir", "x"])
    _strategy_learning_rates(strategy, training, explicit)
    assert training.learning_rate == pytest.approx(learning_rate)
    assert strategy.stage2_learning_rate == (pytest.approx(stage2) if stage2 else None)


def test_validation_messages_name_the_flag():
    with pytest.raises(InputError, match="--num_frozen_layers must be >= 0"):
        StrategyArguments(num_frozen_layers=-1)
    with pytest.raises(InputError, match="--validation_split_percentage must be between 0 and 100"):
        DataTrainingArguments(validation_split_percentage=150)
    with pytest.raises(InputError, match="either --dataset_name or --train_file"):
        DataTrainingArguments(dataset_name="x", train_file="y.csv")


def test_unknown_strategy_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        _parse(["--strategy", "bogus"])
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


def test_training_arguments_names_are_transformers_own():
    (_, _, _, _, _, _, training), _ = _parse(
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
