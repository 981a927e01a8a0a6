"""Each task's own BatchNorm statistics in multi-task runs: recomputed per task on known data, restored after, and
used by both the run's evaluation and the exported classifiers."""

from __future__ import annotations

import copy
import csv

import numpy as np
import torch
import yaml
from helpers import recipe_defaults, write_csv
from PIL import Image, ImageOps
from safetensors.torch import load_file
from torch import nn
from transformers import pipeline

from hftl.modalities import ImageModality
from hftl.multi_task.batch_norm import batch_norm_layers, task_statistics, using_statistics
from hftl.pipeline import run_classification


class _Normalised(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.norm = nn.BatchNorm1d(2)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(2))
            self.linear.bias.zero_()

    def forward(self, x):
        return {"logits": self.norm(self.linear(x))}


def _rows(mean: list[float], n: int = 64) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=generator) + torch.tensor(mean)
    return [{"x": row, "labels": 0} for row in x]


def test_each_task_gets_the_mean_and_variance_of_its_own_data_and_the_model_is_left_as_it_was():
    model = _Normalised().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first, second = _rows([5.0, -5.0]), _rows([-3.0, 0.0], n=80)
    statistics = task_statistics(model, [first, second], None, batch_size=16)
    for rows, (mean, var, count) in zip((first, second), (s[0] for s in statistics), strict=True):
        x = torch.stack([r["x"] for r in rows])
        assert torch.allclose(mean, x.mean(0), atol=1e-5)  # the identity layer passes x through
        # momentum None: the plain average of each batch's unbiased variance, batches in the seeded random order
        batches = x[np.random.default_rng(0).permutation(len(rows))].split(16)
        assert torch.allclose(var, torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0), atol=1e-5)
        assert int(count) == -(-len(rows) // 16)  # one per batch
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with using_statistics(model, statistics[1]):
        assert torch.equal(model.norm.running_mean, statistics[1][0][0])
    assert torch.equal(model.norm.running_mean, before["norm.running_mean"])
    assert task_statistics(nn.Linear(2, 2), [first], None, batch_size=16) is None  # no BatchNorm: nothing to do


def test_rows_sorted_by_class_and_a_last_batch_of_one_row():
    """17 rows sorted by class (first half around -4, second half around +4): the batches mix both halves, so the
    variance holds the spread between them, and the 17th row (a batch of one, which BatchNorm1d refuses) is dropped."""
    rows = _rows([-4.0, -4.0], n=8) + _rows([4.0, 4.0], n=9)
    (mean, var, count), *_ = task_statistics(_Normalised(), [rows], None, batch_size=8)[0]
    assert int(count) == 2 and bool((var > 4.0).all())  # within one half the variance is about 1


def test_a_lora_model_and_its_merged_copy_list_the_same_batch_norm_layers():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_Normalised(), LoraConfig(target_modules=["linear"], modules_to_save=["norm"]))
    merged = copy.deepcopy(model).merge_and_unload()
    assert len(batch_norm_layers(model)) == len(batch_norm_layers(merged)) == 1  # not peft's untrained original
    statistics = task_statistics(model, [_rows([2.0, 2.0])], None, batch_size=16)[0]
    with using_statistics(merged, statistics):
        assert torch.equal(merged.norm.running_mean, statistics[0][0])


def test_a_batch_norm_backbone_exports_each_task_with_its_own_statistics(tiny_efficientnet_lite_dir, image_folders,
                                                                          tmp_path):  # fmt: skip
    """The folder task beside its inverted pictures (other labels): the two exported classifiers share every weight
    but hold different BatchNorm statistics, and each predicts what the run evaluated with them."""
    files = {}
    for split in ("train", "validation", "test"):
        rows = []
        for i, path in enumerate(sorted((tmp_path / split).rglob("*.png"))):
            inverted = tmp_path / "inverted" / split / f"{i}.png"
            inverted.parent.mkdir(parents=True, exist_ok=True)
            ImageOps.invert(Image.open(path).convert("RGB")).save(inverted)
            rows.append({"image": str(inverted), "size": ("small", "large")[i % 2]})
        files[split] = write_csv(tmp_path / f"inverted_{split}.csv", rows)
    tasks = [{"name": "pattern", **image_folders},
             {"name": "size", **{f"{s}_file": f for s, f in files.items()}, "label_column_name": "size"}]  # fmt: skip
    config = tmp_path / "tasks.yaml"
    config.write_text(yaml.safe_dump({"tasks": tasks}))
    output_dir = tmp_path / "out"
    args = ["--config", str(config), "--model_name_or_path", tiny_efficientnet_lite_dir, "--output_dir",
            str(output_dir), "--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--save_strategy", "no",
            "--eval_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", "--ignore_mismatched_sizes",
            "true"]  # fmt: skip
    run_classification(ImageModality(), recipe_defaults("image_classification"), args)
    pattern, size = (load_file(output_dir / "tasks" / name / "model.safetensors") for name in ("pattern", "size"))
    means = [k for k in pattern if k.endswith("running_mean")]
    assert means and all(not torch.allclose(pattern[k], size[k]) for k in means)
    convolutions = [k for k in pattern if k.endswith("weight") and pattern[k].dim() == 4]
    assert convolutions and all(torch.equal(pattern[k], size[k]) for k in convolutions)
    inverted = [row["image"] for row in csv.DictReader(open(files["test"], encoding="utf-8"))]
    for name, images in (("pattern", sorted(str(p) for p in (tmp_path / "test").rglob("*.png"))), ("size", inverted)):
        folder = output_dir / "tasks" / name
        with open(folder / "test_predictions.csv", encoding="utf-8") as handle:
            evaluated = sorted(float(row["score"]) for row in csv.DictReader(handle))  # the folder's rows: no paths
        classifier = pipeline("image-classification", model=str(folder), device="cpu")
        predicted = sorted(max(p["score"] for p in scores) for scores in classifier(images))
        assert np.allclose(predicted, evaluated, atol=1e-5)  # the run evaluated with the statistics it exported
    assert len(batch_norm_layers(nn.Sequential(nn.BatchNorm2d(3), nn.BatchNorm1d(3, track_running_stats=False)))) == 1
