"""Image classification: an image processor turns each image into `pixel_values` (B, 3, H, W).

Every image is converted to RGB explicitly (grayscale, palette, RGBA and 16-bit images included), so that
processors without a grayscale path (transformers' PIL processors) never see other modes. Training images get a
random resized crop and, where mirrored examples are still valid, a horizontal flip; evaluation images do not.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import random

import numpy as np
import torch
from datasets import DatasetDict, Image
from PIL import Image as PILImage
from transformers import AutoImageProcessor, AutoModelForImageClassification, TrainingArguments

from hftl.arguments import ImageArguments, ModelArguments
from hftl.assets import packaged_image_model
from hftl.data.builtin import BUILTIN_DATASETS
from hftl.data.checks import LABELS
from hftl.data.loading import RawData
from hftl.errors import InputError
from hftl.modalities.base import Modality, cast_file_column, describe_file_cell

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_COLUMNS = ("image", "img", "image_path", "path", "file", "filename")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def open_image(cell) -> PILImage.Image:
    """Open an image cell: a PIL image, or a `datasets` Image dict with `bytes` or `path`."""
    if isinstance(cell, PILImage.Image):
        return cell
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return PILImage.open(io.BytesIO(cell["bytes"]))
        if cell.get("path"):
            return PILImage.open(cell["path"])
    raise ValueError(f"not an image: {type(cell).__name__}")


_warned_16_bit = False


def to_rgb(image: PILImage.Image) -> PILImage.Image:
    """Convert any PIL image to 8-bit RGB.

    16-bit (and 32-bit integer) grayscale is scaled to 8 bits (a warning says precision is lost); images with
    transparency (RGBA, LA, palette with a transparent colour) are composited onto white.
    """
    global _warned_16_bit
    if image.mode in _SIXTEEN_BIT_MODES:
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        if not _warned_16_bit and top > 255:
            logger.warning("16-bit image(s) reduced to 8 bits per channel for the image processor (precision lost).")
            _warned_16_bit = True
        image = PILImage.fromarray(np.clip(array * (255.0 / top), 0, 255).round().astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def processor_size(processor) -> tuple[int, int]:
    """(height, width) the processor produces: `size` as {height, width}, {shortest_edge} (+ crop_size) or an int."""
    size = processor.size
    if isinstance(size, int):
        return size, size
    size = dict(size)
    crop = getattr(processor, "crop_size", None)
    if getattr(processor, "do_center_crop", False) and crop:
        crop = dict(crop) if not isinstance(crop, int) else {"height": crop, "width": crop}
        return crop["height"], crop["width"]
    if "height" in size and "width" in size:
        return size["height"], size["width"]
    for key in ("shortest_edge", "longest_edge"):
        if size.get(key):
            return size[key], size[key]
    raise InputError(f"Image processor {type(processor).__name__} has an unsupported size {size}.")


def random_resized_crop(image: PILImage.Image, size: tuple[int, int], min_scale: float) -> PILImage.Image:
    """Crop a random area (a fraction in [min_scale, 1], aspect ratio in [3/4, 4/3]) and resize it to (h, w)."""
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * random.uniform(min_scale, 1.0)
        ratio = math.exp(random.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            left, top = random.randint(0, width - w), random.randint(0, height - h)
            return image.resize((size[1], size[0]), PILImage.BILINEAR, box=(left, top, left + w, top + h))
    return image.resize((size[1], size[0]), PILImage.BILINEAR)


class ImageModality(Modality):
    name = "image"
    arguments_class = ImageArguments
    auto_model_class = AutoModelForImageClassification
    pipeline_task = "image-classification"
    peft_task_type = None
    default_dataset = "mnist"
    folder_builder = "imagefolder"
    input_problem = "missing, unreadable or not an image"
    training_overrides = {"remove_unused_columns": False}  # the transforms need the raw image column
    # the packaged EfficientNet-Lite0 runs at 128 x 128 unless --image_size says otherwise: 3x faster than its
    # native 224 on a CPU, and the built-in digits are 28 x 28 anyway
    default_model_flags = {"image_size": 128}

    def default_model(self) -> str:
        return packaged_image_model()

    def input_columns(self, args: ImageArguments, raw: RawData) -> list[str]:
        available = raw.splits["train"].column_names
        column = args.image_column_name or next((c for c in DEFAULT_IMAGE_COLUMNS if c in available), None)
        if column is None:
            raise InputError(
                f"{raw.where('train')}: no image column found among {available}. Name it with --image_column_name."
            )
        return [column]

    def resolve_arguments(self, args: ImageArguments, data_args) -> ImageArguments:
        """--random_flip defaults to what the *source* data allows: off for built-in digit sets, else on."""
        if args.random_flip is not None:
            return args
        name = data_args.dataset_name
        if name is None and not data_args.train_file and not args.folders():
            name = self.default_dataset
        builtin = BUILTIN_DATASETS.get(name) if name else None
        return dataclasses.replace(args, random_flip=builtin.random_flip if builtin else True)

    def prepare_raw(self, raw: RawData, columns: list[str], args: ImageArguments) -> None:
        """Cast the image column to undecoded `Image` cells; paths in files resolve against the file's folder."""
        cast_file_column(raw, columns[0], Image(decode=False), "image")

    def is_valid_input(self, value: object, args=None) -> bool:
        try:
            with open_image(value) as image:
                image.load()  # decodes the pixels: verify() alone misses truncated JPEG data
            return True
        except Exception:
            return False

    def describe_input(self, value: object) -> str:
        return describe_file_cell(value, "image")

    def load_processor(self, model_args: ModelArguments, model_path: str):
        return AutoImageProcessor.from_pretrained(
            model_args.tokenizer_name or model_path,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            token=model_args.token,
            trust_remote_code=model_args.trust_remote_code,
        )

    def configure_processor(self, processor, args: ImageArguments):
        """Apply --image_size to the processor, so that the saved processor resizes as training did."""
        if args.image_size:
            size = processor.size
            keys = (
                set(size)
                if isinstance(size, dict)
                else {k for k in ("shortest_edge", "height") if getattr(size, k, None)}
            )
            square = {"height": args.image_size, "width": args.image_size}
            processor.size = {"shortest_edge": args.image_size} if "shortest_edge" in keys else square
            if getattr(processor, "do_center_crop", False):
                processor.crop_size = square
        return processor

    def prepare_model(self, model, args, processor=None):
        """Convolutional models run in channels-last memory layout (measured 1.6x faster training on CPU)."""
        if any(isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1) for m in model.modules()):
            model = model.to(memory_format=torch.channels_last)
        return model

    def preprocess(
        self,
        splits: DatasetDict,
        processor,
        columns: list[str],
        args: ImageArguments,
        training_args: TrainingArguments,
        augment: bool = True,
    ) -> DatasetDict:
        (column,) = columns
        size = processor_size(processor)
        flip = args.random_flip is not False  # resolved by `resolve_arguments`

        def transform(batch, train: bool):
            images = [to_rgb(open_image(cell)) for cell in batch[column]]
            if train:
                images = [random_resized_crop(image, size, args.min_crop_scale) for image in images]
                if flip:
                    images = [
                        image.transpose(PILImage.FLIP_LEFT_RIGHT) if random.random() < 0.5 else image
                        for image in images
                    ]
            output = {"pixel_values": list(processor(images, return_tensors="pt")["pixel_values"])}
            if LABELS in batch:
                output[LABELS] = batch[LABELS]
            return output

        ready = DatasetDict()
        for split, dataset in splits.items():
            train = augment and args.augment and split == "train"
            ready[split] = dataset.with_transform(lambda batch, train=train: transform(batch, train))
        return ready

    def data_collator(self, processor, args: ImageArguments):
        return collate_pixel_values


def collate_pixel_values(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack `pixel_values` (and `labels`, when present) into a batch."""
    pixel_values = torch.stack([example["pixel_values"] for example in examples])
    batch = {"pixel_values": pixel_values.contiguous(memory_format=torch.channels_last)}
    if LABELS in examples[0]:
        batch[LABELS] = torch.tensor([example[LABELS] for example in examples])
    return batch
