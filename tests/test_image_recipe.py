"""The image recipe on tiny models built from configs: every strategy, every input quirk, the custom model."""

import csv
import json
import os

import pytest
import torch
from datasets import load_dataset
from helpers import make_image, recipe_args, recipe_defaults, run_python
from PIL import Image
from torch.nn import functional as F
from transformers import AutoImageProcessor, AutoModelForImageClassification, ViTImageProcessor, pipeline

from hftl.modalities import ImageModality
from hftl.modalities.image import processor_size
from hftl.modalities.image_io import image_problem, load_rgb
from hftl.pipeline import run_classification
from hftl.recipes import main

DEFAULTS = recipe_defaults("image_classification")
FAST = (
    "--num_train_epochs 2 --per_device_train_batch_size 8 --per_device_eval_batch_size 8 "
    "--learning_rate 1e-3 --logging_steps 5 --disable_tqdm true --image_size 32"
).split()


def _args(model_dir, data, output_dir, *extra):
    return recipe_args(model_dir, data, output_dir, *FAST, *extra)


def _assert_reload_matches(output_dir, validation_dir):
    """The saved model and processor reproduce the run's validation loss and predictions."""
    model = AutoModelForImageClassification.from_pretrained(output_dir).eval()
    processor = AutoImageProcessor.from_pretrained(output_dir)
    rows = load_dataset("imagefolder", data_dir=validation_dir, split="train")
    pixel_values = processor([load_rgb(image) for image in rows["image"]], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = model(pixel_values=pixel_values).logits
    names = rows.features["label"].names
    labels = torch.tensor([model.config.label2id[names[i]] for i in rows["label"]])
    results = json.load(open(os.path.join(output_dir, "all_results.json")))
    assert F.cross_entropy(logits, labels).item() == pytest.approx(results["eval_loss"], abs=1e-4)
    with open(os.path.join(output_dir, "eval_predictions.csv"), encoding="utf-8") as handle:
        saved = [row["prediction"] for row in csv.DictReader(handle)]
    assert saved == [model.config.id2label[i] for i in logits.argmax(-1).tolist()]


@pytest.mark.parametrize("strategy", ["full", "feature_extraction", "freeze", "two_stage", "lora"])
def test_every_strategy_on_vit(tiny_vit_dir, image_folders, tmp_path, strategy, caplog):
    output_dir = tmp_path / strategy
    metrics = run_classification(
        ImageModality(), DEFAULTS, _args(tiny_vit_dir, image_folders, output_dir, "--strategy", strategy)
    )
    assert metrics["train_samples"] == 24 and metrics["eval_samples"] == 8 and metrics["test_samples"] == 8
    assert "Newly initialised (trained from scratch): ['classifier.bias', 'classifier.weight']" in caplog.text
    config = json.load(open(output_dir / "config.json"))
    assert config["id2label"] == {"0": "dots", "1": "stripes"}
    assert json.load(open(output_dir / "preprocessor_config.json"))["size"] == {"height": 32, "width": 32}
    _assert_reload_matches(str(output_dir), image_folders["validation_dir"])
    classifier = pipeline("image-classification", model=str(output_dir))
    assert {p["label"] for p in classifier(make_image("dots", 1))} == {"dots", "stripes"}


def test_feature_extraction_caches_vit_features(tiny_vit_dir, image_folders, tmp_path):
    metrics = run_classification(
        ImageModality(),
        DEFAULTS,
        _args(tiny_vit_dir, image_folders, tmp_path / "fe", "--strategy", "feature_extraction"),
    )
    assert metrics["trainable_parameters"] == 32 * 2 + 2
    assert "feature_extraction_runtime" in metrics


def test_resnet_with_shortest_edge_processor(tiny_resnet_dir, image_folders, tmp_path):
    output_dir = tmp_path / "resnet"
    run_classification(
        ImageModality(),
        DEFAULTS,
        _args(tiny_resnet_dir, image_folders, output_dir, "--strategy", "freeze", "--num_frozen_layers", "1"),
    )
    processor = AutoImageProcessor.from_pretrained(output_dir)
    assert processor_size(processor) == (32, 32) and dict(processor.size) == {"shortest_edge": 32}
    _assert_reload_matches(str(output_dir), image_folders["validation_dir"])


def test_efficientnet_lite_loads_in_a_fresh_process_without_hftl(tiny_efficientnet_lite_dir, image_folders, tmp_path):
    output_dir = tmp_path / "lite"
    run_classification(
        ImageModality(),
        DEFAULTS,
        _args(
            tiny_efficientnet_lite_dir, image_folders, output_dir, "--strategy", "two_stage", "--unfreeze_top_k", "1"
        ),
    )
    assert (output_dir / "modeling_efficientnet_lite.py").exists()
    assert "trust_remote_code=True" in (output_dir / "README.md").read_text()
    _assert_reload_matches(str(output_dir), image_folders["validation_dir"])
    image = tmp_path / "probe.png"
    make_image("stripes", 3).save(image)
    script = (
        "import sys; from transformers import pipeline; "
        f"p = pipeline('image-classification', model={str(output_dir)!r}, trust_remote_code=True); "
        f"print(sorted(r['label'] for r in p({str(image)!r}))); "
        "assert 'hftl' not in sys.modules"
    )
    done = run_python(["-c", script], cwd=str(tmp_path))
    assert "['dots', 'stripes']" in done.stdout


def _csv_with_paths(tmp_path, broken: bool):
    rows = []
    for i in range(12):
        label = ("stripes", "dots")[i % 2]
        name = f"images/{i}.png"
        (tmp_path / "images").mkdir(exist_ok=True)
        make_image(label, i).save(tmp_path / name)
        rows.append({"file": name, "label": label})
    if broken:
        (tmp_path / "images" / "3.png").write_bytes(b"not a png at all")
        rows[5]["file"] = "images/missing.png"
    path = tmp_path / "train.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def test_csv_of_relative_image_paths(tiny_vit_dir, tmp_path):
    train = _csv_with_paths(tmp_path, broken=False)
    metrics = run_classification(
        ImageModality(),
        DEFAULTS,
        _args(tiny_vit_dir, {"train_file": train}, tmp_path / "out", "--validation_split_percentage", "25"),
    )
    assert metrics["train_samples"] == 9 and metrics["eval_samples"] == 3


def test_corrupt_images_are_reported_by_path_or_skipped(tiny_vit_dir, tmp_path, capsys, caplog):
    train = _csv_with_paths(tmp_path, broken=True)
    code = main(ImageModality(), DEFAULTS, _args(tiny_vit_dir, {"train_file": train}, tmp_path / "out"))
    error = capsys.readouterr().err
    assert code == 2
    assert "2 invalid row(s)" in error and "rows [3, 5]" in error
    assert f"{tmp_path}/images/3.png" in error and f"{tmp_path}/images/missing.png" in error
    assert not (tmp_path / "out").exists()
    metrics = run_classification(
        ImageModality(),
        DEFAULTS,
        _args(
            tiny_vit_dir,
            {"train_file": train},
            tmp_path / "out",
            "--drop_invalid_examples",
            "true",
            "--num_train_epochs",
            "1",
        ),
    )
    assert "Dropped 2 invalid row(s)" in caplog.text
    assert metrics["train_samples"] + metrics["eval_samples"] == 10


def test_missing_image_column_lists_columns(tmp_path, capsys):
    path = tmp_path / "train.csv"
    path.write_text("picture,label\na.png,x\nb.png,y\n")
    assert main(ImageModality(), DEFAULTS, ["--train_file", str(path), "--output_dir", str(tmp_path / "o")]) == 2
    assert "no image column found among ['picture', 'label']" in capsys.readouterr().err


def test_mismatched_head_without_the_flag_is_a_clear_error(tiny_vit_dir, image_folders, tmp_path, capsys):
    code = main(
        ImageModality(),
        DEFAULTS,
        _args(tiny_vit_dir, image_folders, tmp_path / "o", "--ignore_mismatched_sizes", "false"),
    )
    assert code == 2
    assert "--ignore_mismatched_sizes" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "RGB", "LA", "1", "CMYK"])
def test_every_mode_becomes_rgb(mode):
    image = make_image("dots", 0, "RGB")
    if mode in ("L", "RGBA", "P", "I;16", "RGB"):
        image = make_image("dots", 0, mode)
    else:
        image = image.convert(mode)
    converted = load_rgb(image)
    assert converted.mode == "RGB" and converted.size == image.size


def test_sixteen_bit_values_within_eight_bits_read_as_their_eight_bit_image():
    import numpy as np

    sixteen = make_image("stripes", 0, "I;16")
    assert sixteen.mode == "I;16" and image_problem(sixteen) is None
    eight = np.asarray(make_image("stripes", 0, "L"))
    assert np.array_equal(np.asarray(load_rgb(sixteen))[..., 0], eight)


def test_sixteen_bit_values_beyond_eight_bits_are_refused_with_the_fix():
    import numpy as np

    image = Image.fromarray(np.asarray(make_image("stripes", 0, "L")).astype(np.uint16) * 257)
    problem = image_problem(image)
    assert problem == "I;16 values 0..59110: pipeline(...) clips them at 255; convert the images to 8 bits"


def test_transparent_pixels_keep_their_colour_as_pipeline_shows_them():
    image = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert load_rgb(image).getpixel((0, 0)) == (10, 20, 30)


def test_processor_sizes():
    assert processor_size(ViTImageProcessor(size={"height": 30, "width": 40})) == (30, 40)
    from transformers import ConvNextImageProcessor

    assert processor_size(ConvNextImageProcessor(size={"shortest_edge": 64})) == (64, 64)


def test_augmentation_in_training_only(tiny_vit_dir, tmp_path):
    from datasets import Dataset, DatasetDict
    from transformers import TrainingArguments

    from hftl.arguments import ImageArguments
    from hftl.data.loading import RawData

    path = tmp_path / "a.png"
    make_image("stripes", 0, "RGB", size=(40, 30)).save(path)
    split = Dataset.from_dict({"image": [str(path)] * 6, "labels": [0] * 6})
    raw = RawData(DatasetDict(train=split, validation=split), {}, "")
    modality = ImageModality()
    modality.prepare_raw(raw, ["image"], ImageArguments())
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    ready = modality.preprocess(raw.splits, processor, ["image"], ImageArguments(), TrainingArguments("x"))
    train = [ready["train"][i]["pixel_values"] for i in range(6)]
    evaluation = [ready["validation"][i]["pixel_values"] for i in range(6)]
    assert all(t.shape == (3, 32, 32) for t in train + evaluation)
    assert any(not torch.equal(train[0], t) for t in train[1:])  # random crops / flips differ
    assert all(torch.equal(evaluation[0], e) for e in evaluation[1:])  # evaluation is deterministic
    unaugmented = modality.preprocess(
        raw.splits, processor, ["image"], ImageArguments(), TrainingArguments("x"), augment=False
    )
    assert torch.equal(unaugmented["train"][0]["pixel_values"], evaluation[0])  # what feature caching sees


def test_truncated_jpeg_is_reported_before_training(tiny_vit_dir, tmp_path, capsys):
    train = _csv_with_paths(tmp_path, broken=False)
    image = make_image("dots", 7, "RGB", size=(64, 64))
    image.save(tmp_path / "images" / "full.jpg", quality=95)
    data = (tmp_path / "images" / "full.jpg").read_bytes()
    (tmp_path / "images" / "6.png").write_bytes(data[: len(data) // 2])  # a truncated JPEG
    code = main(ImageModality(), DEFAULTS, _args(tiny_vit_dir, {"train_file": train}, tmp_path / "out"))
    error = capsys.readouterr().err
    assert code == 2 and "rows [6]" in error and "images/6.png" in error
