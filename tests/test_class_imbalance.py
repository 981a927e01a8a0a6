"""Class imbalance: the weighted cross-entropy and balanced class weights (known values), `--class_weights` parsed and
checked before any model loads, the weights composed with importance weighting, and through the text recipe on an
imbalanced set: the warning, a loss (and model) that the weights change, class-balanced sampling."""

import json
import logging
import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import make_texts, recipe_args, recipe_defaults, saved_weights, write_csv
from torch import nn
from torch.nn import functional as F
from transformers import TrainingArguments

from hftl.adaptation.task import AdaptationTask
from hftl.errors import InputError
from hftl.imbalance import balanced_class_weights, class_weights
from hftl.modalities import TextModality
from hftl.pipeline import run_classification
from hftl.recipes import main
from hftl.trainer import HftlTrainer
from hftl.trainer.balance import BalancedSampler, class_weighted_loss
from hftl.training_flags import TrainingControlArguments

DEFAULTS = recipe_defaults("text_classification")
FAST = (
    "--num_train_epochs 2 --per_device_train_batch_size 16 --learning_rate 5e-3 --logging_steps 1 "
    "--disable_tqdm true --eval_strategy epoch --save_strategy no --do_predict false"
).split()
LOGITS = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
LABELS = torch.tensor([0, 1, 0])


def _cross_entropy(row: list[float], label: int) -> float:
    return math.log(sum(math.exp(v) for v in row)) - row[label]


def test_weighted_cross_entropy_is_the_hand_computed_value():
    # sum_i w_{y_i} CE_i / sum_i w_{y_i} with w = (1, 3): (CE_0 + 3 CE_1 + CE_2) / 5
    expected = (_cross_entropy([2, 0], 0) + 3 * _cross_entropy([0, 1], 1) + _cross_entropy([1, 1], 0)) / 5
    assert expected == pytest.approx((0.126928 + 3 * 0.313262 + 0.693147) / 5, abs=1e-6)
    loss, outputs = class_weighted_loss(lambda **_: {"logits": LOGITS}, {"labels": LABELS}, torch.tensor([1.0, 3.0]))
    assert loss.item() == pytest.approx(expected, abs=1e-6) and torch.equal(outputs["logits"], LOGITS)
    ones, _ = class_weighted_loss(lambda **_: {"logits": LOGITS}, {"labels": LABELS}, torch.ones(2))
    assert ones.item() == pytest.approx(F.cross_entropy(LOGITS, LABELS).item(), abs=1e-7)


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(2))
            self.fc.bias.zero_()

    def forward(self, x, labels=None):
        return {"logits": self.fc(x)}


def test_class_weights_compose_with_importance_weights_in_the_adaptation_task():
    """cls_loss weighs an example by importance w_y times class weight c_y; evaluation keeps the plain loss."""
    task = AdaptationTask(_Linear(), "fc", None, class_weights=torch.tensor([2.0, 1.0]), loss_weights=[1.0, 4.0])
    task.train()
    weights = [2.0, 4.0, 2.0]  # (2 * 1, 1 * 4, 2 * 1) for labels 0, 1, 0
    rows = LOGITS.tolist()
    expected = sum(w * _cross_entropy(r, y) for w, r, y in zip(weights, rows, LABELS.tolist(), strict=True)) / 8
    assert task(labels=LABELS, x=LOGITS)["cls_loss"].item() == pytest.approx(expected, abs=1e-6)
    task.eval()
    assert task(labels=LABELS, x=LOGITS)["cls_loss"].item() == pytest.approx(F.cross_entropy(LOGITS, LABELS).item())
    assert "loss_weights" not in task.state_dict()  # recomputed from the flags and data, not checkpointed


def test_balanced_weights_are_n_over_classes_times_count():
    assert balanced_class_weights([1000, 100]).tolist() == pytest.approx([1100 / 2000, 1100 / 200])
    weights = balanced_class_weights([5, 20, 75])
    assert weights.tolist() == pytest.approx([100 / 15, 100 / 60, 100 / 225])
    assert (weights * [5, 20, 75]).sum() == pytest.approx(100)  # the mean weight over the examples is 1


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("balanced", [500 / 100, 500 / 900]),  # counts (50, 450): n / (C * count_c)
        ("1,10", [1.0, 10.0]),
        ("b=3", [1.0, 3.0]),
        ("a=2, b=0.5", [2.0, 0.5]),
        ('{"b": 3}', [1.0, 3.0]),  # a mapping in a --config YAML file
    ],
)
def test_class_weights_flag_values(spec, expected):
    weights = class_weights(TrainingControlArguments(class_weights=spec), ["a", "b"], [50, 450])
    assert weights.tolist() == pytest.approx(expected)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("1,2,3", r"3 weight\(s\) for 2 classes\. Give one per class in label order \(a, b\)"),
        ("c=2", r"no class named \['c'\]; the classes are \['a', 'b'\]"),
        ("1,-2", r"'-2' is not a weight > 0"),
        ("a=1,2", r"either weights in label order"),
        ("heavy", r"'heavy' is not a weight > 0"),
    ],
)
def test_bad_class_weights_are_refused(spec, message):
    with pytest.raises(InputError, match=message):
        class_weights(TrainingControlArguments(class_weights=spec), ["a", "b"], [50, 450])


def test_balanced_sampler_is_seeded_by_epoch_and_draws_classes_equally(tmp_path):
    labels = [0] * 90 + [1] * 10
    sampler, again = BalancedSampler(labels, seed=3), BalancedSampler(labels, seed=3)
    first = list(sampler)
    assert first == list(again) and len(first) == 100  # every process draws the same order
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first  # a resumed epoch replays its draw
    # through hftl's Trainer: the training loader draws both classes about equally, over 10 epochs
    data = Dataset.from_dict({"x": [[float(y), 0.0] for y in labels], "labels": labels})
    args = TrainingArguments(str(tmp_path), per_device_train_batch_size=10, report_to=[], use_cpu=True, seed=3)
    trainer = HftlTrainer(model=_Linear(), args=args, train_dataset=data, balanced_labels=labels)
    drawn = []
    for epoch in range(10):
        loader = trainer.get_train_dataloader()
        loader.set_epoch(epoch)
        drawn += [int(y) for batch in loader for y in batch["labels"]]
    counts = np.bincount(drawn)
    assert len(drawn) == 1000 and 420 <= counts[1] <= 580, counts  # 500 expected; 10 of 100 without balancing


def _imbalanced_files(tmp_path) -> dict[str, str]:
    """60 positive and 6 negative training texts; balanced validation."""
    rows = make_texts(120, seed=1)
    train = [r for r in rows if r["label"] == "positive"] + [r for r in rows if r["label"] == "negative"][:6]
    train = [train[i] for i in np.random.default_rng(0).permutation(len(train))]
    return {
        "train_file": write_csv(tmp_path / "train.csv", train),
        "validation_file": write_csv(tmp_path / "validation.csv", make_texts(16, seed=2)),
    }


def _losses(output_dir) -> list[float]:
    return [e["loss"] for e in json.load(open(output_dir / "trainer_state.json"))["log_history"] if "loss" in e]


@pytest.mark.parametrize("strategy", ["full", "feature_extraction"])
def test_class_weights_change_the_training_loss_and_the_model(tiny_bert_dir, tmp_path, caplog, strategy):
    """Weights of 1 reproduce the model's own loss exactly; balanced weights change the loss and the trained model.
    The unweighted run warns about the 10:1 imbalance."""
    files = _imbalanced_files(tmp_path)
    runs = {}
    for name, flags in (
        ("plain", []),
        ("ones", ["--class_weights", "1,1"]),
        ("balanced", ["--class_weights", "balanced"]),
    ):
        caplog.clear()
        output_dir = tmp_path / name
        args = recipe_args(tiny_bert_dir, files, output_dir, *FAST, "--strategy", strategy, *flags)
        with caplog.at_level(logging.INFO, logger="hftl"):
            run_classification(TextModality(), DEFAULTS, args)
        warnings = [r.getMessage() for r in caplog.records if "strongly imbalanced" in r.getMessage()]
        runs[name] = (_losses(output_dir), saved_weights(output_dir), warnings, caplog.text)
    plain, ones, balanced = runs["plain"], runs["ones"], runs["balanced"]
    assert len(plain[2]) == 1 and "negative 6, positive 60" in plain[2][0] and "10.0 : 1" in plain[2][0]
    assert "--class_weights balanced" in plain[2][0] and not balanced[2]
    assert "(--class_weights balanced): negative 5.5, positive 0.55" in balanced[3]
    assert ones[0] == pytest.approx(plain[0], abs=1e-6)
    assert len(balanced[0]) == len(plain[0]) and balanced[0][0] != pytest.approx(plain[0][0], abs=1e-4)
    changed = [k for k in plain[1] if not torch.equal(plain[1][k], balanced[1][k])]
    assert any("classifier" in k for k in changed)


def test_balanced_sampling_through_the_recipe(tiny_bert_dir, tmp_path, monkeypatch):
    """The training batches of a 10:1 set hold both classes about equally."""
    files = _imbalanced_files(tmp_path)
    with open(files["train_file"], encoding="utf-8") as handle:
        labels = [line.rstrip().rsplit(",", 1)[1] for line in handle][1:]
    drawn = []
    draw = BalancedSampler.__iter__

    def recording(self):
        indices = list(draw(self))
        drawn.extend(indices)
        return iter(indices)

    monkeypatch.setattr(BalancedSampler, "__iter__", recording)
    args = recipe_args(
        tiny_bert_dir, files, tmp_path / "out", *FAST, "--balanced_sampling", "true", "--num_train_epochs", "3"
    )
    run_classification(TextModality(), DEFAULTS, args)
    negatives = sum(labels[i] == "negative" for i in drawn)
    assert len(drawn) == 3 * 66 and 0.35 < negatives / len(drawn) < 0.65  # 6 / 66 without balancing


def test_bad_class_weights_stop_the_recipe_before_the_model_loads(tiny_bert_dir, tmp_path, capsys):
    files = _imbalanced_files(tmp_path)
    args = recipe_args(tiny_bert_dir, files, tmp_path / "out", "--class_weights", "1,2,3")
    assert main(TextModality(), DEFAULTS, args) == 2
    assert "error: --class_weights 1,2,3: 3 weight(s) for 2 classes" in capsys.readouterr().err
