"""Specifications of the core: stateless modalities, the config snapshot, loss parts logged as means, the Trainer's
reliance on private transformers methods, and `import hftl` registering hftl's models."""

import inspect
import os
import subprocess
import sys

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from hftl.adaptation import AdaptationTask
from hftl.adaptation.methods import get_method
from hftl.adaptation.pairing import AdaptationCallback, DomainPairCollator, PairedDomainDataset
from hftl.config import resolve_config
from hftl.modalities import AudioModality, ImageModality
from hftl.trainer import HftlTrainer
from hftl.trainer.internals import RELIED_ON
from hftl.training.cached_head import CachedFeatureHead


def test_image_flip_follows_the_source_data_whatever_the_target(tmp_path):
    """Built-in digits are never mirrored, even when a target folder is loaded (it once turned flips on)."""
    (tmp_path / "target" / "a").mkdir(parents=True)
    args = ["--dataset_name", "optdigits", "--target_train_dir", str(tmp_path / "target"), "--output_dir", "x"]
    config = resolve_config(ImageModality(), {}, args)
    assert config.inputs.random_flip is False
    assert config.as_dict()["random_flip"] is False
    assert resolve_config(ImageModality(), {}, ["--train_dir", str(tmp_path), "--output_dir", "x"]).inputs.random_flip


def test_modalities_hold_no_state():
    assert vars(ImageModality()) == {} and vars(AudioModality()) == {}
    assert "args" in inspect.signature(AudioModality.is_valid_input).parameters


def test_trainer_internals_match_transformers():
    """hftl overrides these private Trainer methods (hftl/trainer/internals.py): fail loudly when one changes."""
    for name, expected in RELIED_ON.items():
        parameters = tuple(inspect.signature(getattr(Trainer, name)).parameters)
        assert parameters[: len(expected)] == expected or set(expected) <= set(parameters), (name, parameters)
    source = inspect.getsource(Trainer)
    assert "epoch=epoch" in source  # `_run_epoch` receives the epoch by keyword


def _paired_trainer(tmp_path, recorded: list[float]):
    torch.manual_seed(0)
    head = CachedFeatureHead([torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)])
    alignment = get_method("mmd").from_arguments(3, 2, 10.0, get_method("mmd").arguments_class())
    task = AdaptationTask(head, "head.1", alignment, 1.0)
    task.register_forward_hook(
        lambda _m, _i, out: recorded.append(out["align_loss"].item()) if "align_loss" in out else None
    )
    source = Dataset.from_dict({"features": torch.randn(16, 4).numpy(), "labels": [0, 1] * 8}).with_format("torch")
    target = Dataset.from_dict({"features": (torch.randn(16, 4) + 1).numpy()}).with_format("torch")
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        logging_steps=1,
        max_steps=2,
        report_to="none",
        remove_unused_columns=False,
        save_strategy="no",
        use_cpu=True,
    )
    paired = PairedDomainDataset(source, target)
    return HftlTrainer(
        model=task,
        args=args,
        train_dataset=paired,
        data_collator=DomainPairCollator(),
        callbacks=[AdaptationCallback(task, paired)],
    )


def test_loss_parts_are_logged_as_means_over_accumulation_steps(tmp_path):
    recorded: list[float] = []
    trainer = _paired_trainer(tmp_path, recorded)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "align_loss" in entry]
    assert len(logged) == 2 and len(recorded) == 4  # 2 optimizer steps of 2 micro-batches
    for step, entry in enumerate(logged):
        assert entry["align_loss"] == pytest.approx(sum(recorded[2 * step : 2 * step + 2]) / 2, abs=1e-5)
        assert {"cls_loss", "grl_lambda", "mmd"} <= set(entry)


def test_import_hftl_registers_its_models(tiny_efficientnet_lite_dir):
    """A folder hftl saved loads with `pipeline(...)` in any process that imported hftl, without remote code."""
    code = (
        "import hftl\n"
        "from transformers import pipeline\n"
        "from PIL import Image\n"
        f"classifier = pipeline('image-classification', model={tiny_efficientnet_lite_dir!r})\n"
        "print(len(classifier(Image.new('RGB', (32, 32)))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
