"""What is served sees what training saw: the saved model's `pipeline(...)` gives the probabilities of hftl's own
evaluation on the same files, for images in every mode hftl accepts and of every aspect ratio, and evaluation
images have the shape training images have."""

import json
import os

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from helpers import make_image, recipe_args, recipe_defaults, seed_of
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    ConvNextImageProcessor,
    TrainingArguments,
    ViTImageProcessor,
    pipeline,
)

from hftl.arguments import ImageArguments
from hftl.data.loading import RawData
from hftl.modalities import ImageModality
from hftl.modalities.image import processor_size
from hftl.pipeline import run_classification

DEFAULTS = recipe_defaults("image_classification")
SIZES = ((40, 25), (25, 40), (30, 30), (64, 20))  # (width, height): four aspect ratios
EXIF_ORIENTATION = 0x0112


def _with_alpha(image: Image.Image, mode: str) -> Image.Image:
    """`image` in `mode` ("RGBA" / "LA") with an alpha ramp from transparent (left) to opaque (right)."""
    alpha = np.tile(np.linspace(0, 255, image.width).astype(np.uint8), (image.height, 1))
    converted = image.convert(mode)
    converted.putalpha(Image.fromarray(alpha, mode="L"))
    return converted


def _save(image: Image.Image, folder, name: str, mode: str) -> None:
    """Save `image` as a file whose decoded mode is `mode` (or that is EXIF-rotated, for "exif")."""
    path = os.path.join(folder, name)
    if mode == "exif":  # stored sideways, tagged "rotate 90 degrees clockwise to view"
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = 6
        image.transpose(Image.Transpose.ROTATE_90).save(path + ".jpg", exif=exif, quality=95)
    elif mode == "CMYK":
        image.convert("CMYK").save(path + ".jpg", quality=95)
    elif mode in ("RGBA", "LA"):
        _with_alpha(image, mode).save(path + ".png")
    elif mode == "P+transparency":
        palette = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        palette.save(path + ".png", transparency=0)
    elif mode == "I;16":  # 16-bit storage of 8-bit values: what pipeline(...) reads faithfully
        Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16)).save(path + ".png")
    elif mode == "I":
        Image.fromarray(np.asarray(image.convert("L")).astype(np.int32)).save(path + ".tif")
    else:
        image.convert(mode).save(path + ".png")


MODES = ("RGB", "L", "1", "P", "P+transparency", "RGBA", "LA", "CMYK", "exif", "I;16", "I")


def _image_folder(root, split: str, per_class: int) -> str:
    """A class-per-folder split with `per_class` images of every mode in MODES per class, in four aspect ratios."""
    for label in ("stripes", "dots"):
        os.makedirs(os.path.join(root, split, label), exist_ok=True)
        for i in range(per_class * len(MODES)):
            mode = MODES[i % len(MODES)]
            seed = seed_of(split, label, i)
            image = make_image(label, seed, "RGB", size=SIZES[i % len(SIZES)])
            if label == "dots":  # colour that the modes render differently
                image = Image.merge(
                    "RGB", (image.getchannel(0), image.getchannel(1).point(lambda v: v // 2), image.getchannel(2))
                )
            _save(image, os.path.join(root, split, label), f"{i}-{mode.replace(';', '')}", mode)
    return os.path.join(root, split)


@pytest.fixture(scope="module")
def shortest_edge_vit_dir(tiny_vit_dir, tmp_path_factory) -> str:
    """The tiny ViT (32 x 32 position embeddings) with a processor that keeps the aspect ratio: size
    {"shortest_edge": 32}, no crop (issue 13: evaluation saw 3 x 32 x 51 where training saw 3 x 32 x 32)."""
    path = tmp_path_factory.mktemp("vit_shortest_edge")
    AutoModelForImageClassification.from_pretrained(tiny_vit_dir).save_pretrained(path)
    ViTImageProcessor(size={"shortest_edge": 32}).save_pretrained(path)
    return str(path)


def _evaluation_probabilities(output_dir: str, paths: list[str]) -> np.ndarray:
    """hftl's evaluation-time preprocessing (augment=False) of `paths` with the saved processor, then the saved
    model's forward: (N, C) probabilities."""
    processor = AutoImageProcessor.from_pretrained(output_dir)
    model = AutoModelForImageClassification.from_pretrained(output_dir).eval()
    split = Dataset.from_dict({"image": paths, "labels": [0] * len(paths)})
    raw = RawData(DatasetDict(validation=split), {}, "")
    modality = ImageModality()
    modality.prepare_raw(raw, ["image"], ImageArguments())
    ready = modality.preprocess(
        raw.splits, processor, ["image"], ImageArguments(random_flip=False), TrainingArguments("x"), augment=False
    )
    pixel_values = torch.stack([ready["validation"][i]["pixel_values"] for i in range(len(paths))])
    with torch.no_grad():
        return torch.softmax(model(pixel_values=pixel_values).logits, -1).numpy()


@pytest.mark.parametrize("model", ["shortest_edge_vit_dir", "tiny_resnet_dir"])
def test_pipeline_sees_what_training_evaluation_saw(model, request, tmp_path):
    train = _image_folder(tmp_path, "train", 1)
    validation = _image_folder(tmp_path, "validation", 1)
    output_dir = tmp_path / "out"
    flags = "--num_train_epochs 1 --per_device_train_batch_size 8 --per_device_eval_batch_size 8 --report_to none"
    args = recipe_args(
        request.getfixturevalue(model), {"train_dir": train, "validation_dir": validation}, output_dir, *flags.split()
    )
    run_classification(ImageModality(), DEFAULTS, args)
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(validation) for name in names)
    expected = _evaluation_probabilities(str(output_dir), paths)
    classifier = pipeline("image-classification", model=str(output_dir), top_k=None)
    names = AutoModelForImageClassification.from_pretrained(output_dir).config.id2label
    served = [{score["label"]: score["score"] for score in classifier(path)} for path in paths]
    served = np.array([[scores[names[i]] for i in range(len(names))] for scores in served])
    differ = [
        os.path.relpath(p, validation)
        for p, s, e in zip(paths, served, expected, strict=True)
        if abs(s - e).max() > 1e-5
    ]
    assert differ == [], f"pipeline(...) differs from hftl's evaluation on {differ}"
    # the same probabilities give the loss the run reported on its validation split
    assert names == {0: "dots", 1: "stripes"}
    labels = [1 if f"{os.sep}stripes{os.sep}" in path else 0 for path in paths]
    loss = float(np.mean([-np.log(p[label]) for p, label in zip(expected, labels, strict=True)]))
    assert loss == pytest.approx(json.load(open(output_dir / "all_results.json"))["eval_loss"], abs=1e-4)


@pytest.mark.parametrize(
    "processor",
    [
        ViTImageProcessor(size={"shortest_edge": 32}),
        ViTImageProcessor(size={"height": 24, "width": 40}),
        ConvNextImageProcessor(size={"shortest_edge": 40}, crop_pct=0.875),
        ConvNextImageProcessor(size={"shortest_edge": 400}),
    ],
    ids=["vit-shortest-edge", "vit-height-width", "convnext-crop-pct", "convnext-warp"],
)
@pytest.mark.parametrize("image_size", [None, 36])
def test_evaluation_shape_is_training_shape(processor, image_size, tmp_path):
    """Training (random crops) and evaluation (the configured, saved and reloaded processor) give one shape."""
    import copy

    processor = ImageModality().configure_processor(copy.deepcopy(processor), ImageArguments(image_size=image_size))
    processor.save_pretrained(tmp_path)
    reloaded = AutoImageProcessor.from_pretrained(tmp_path)
    shape = processor_size(processor)
    if image_size:
        assert shape == (image_size, image_size)
    for size in SIZES:
        image = make_image("dots", 0, "RGB", size=size)
        assert tuple(reloaded(image, return_tensors="pt")["pixel_values"].shape[-2:]) == shape, size
    paths = []
    for i, size in enumerate(SIZES):
        paths.append(str(tmp_path / f"{i}.png"))
        make_image("dots", i, "RGB", size=size).save(paths[-1])
    split = Dataset.from_dict({"image": paths, "labels": [0] * len(paths)})
    raw = RawData(DatasetDict(train=split, validation=split), {}, "")
    modality = ImageModality()
    modality.prepare_raw(raw, ["image"], ImageArguments())
    ready = modality.preprocess(raw.splits, reloaded, ["image"], ImageArguments(), TrainingArguments("x"))
    for name in ("train", "validation"):
        assert {tuple(ready[name][i]["pixel_values"].shape) for i in range(len(paths))} == {(3, *shape)}


@pytest.mark.parametrize("modality", ["image", "audio"])
def test_paths_that_are_not_regular_files_are_reported_never_opened(modality, tmp_path):
    """A FIFO would block `open()` until a writer comes (forever), a device would stream without end: the checks
    refuse them from `os.stat` alone, and the message names what the path is."""
    import threading

    from hftl.arguments import AudioArguments
    from hftl.modalities import AudioModality

    os.mkfifo(tmp_path / "pipe.wav")
    (tmp_path / "folder.png").mkdir()
    checker = ImageModality() if modality == "image" else AudioModality()
    args = ImageArguments() if modality == "image" else AudioArguments()
    cells = {
        "pipe.wav": "a FIFO, not a regular file",
        "folder.png": "a directory, not a regular file",
        "/dev/zero": "a character device, not a regular file",
        "missing.png": "no such file",
    }
    results = {}

    def check():
        for name, _ in cells.items():
            cell = {"path": str(tmp_path / name), "bytes": None}
            results[name] = (checker.is_valid_input(cell, args), checker.describe_input(cell))

    worker = threading.Thread(target=check, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), f"the check hung on {next(n for n in cells if n not in results)}"
    for name, kind in cells.items():
        valid, described = results[name]
        assert not valid and described == f"{tmp_path / name} ({kind})", described
