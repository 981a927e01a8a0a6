"""Image classification: an image processor turns each image into `pixel_values` (B, 3, H, W).

Every image is read as the saved model's `pipeline(...)` reads it (`image_io`: EXIF orientation applied, then
`convert("RGB")`), and the processor is configured (and saved) to output one fixed (H, W): training images, random
resized crops of that size (flipped where mirrored examples are still valid), evaluation images and served ones all
reach the model at that shape, with the same pixels.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random

import torch
from datasets import DatasetDict, Image
from PIL import Image as PILImage
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, TrainingArguments

from hftl.arguments import ImageArguments, ModelArguments
from hftl.assets import packaged_image_model
from hftl.data.builtin import BUILTIN_DATASETS
from hftl.data.checks import LABELS
from hftl.data.loading import RawData
from hftl.errors import InputError
from hftl.modalities.base import Modality, cast_file_column, describe_file_cell
from hftl.modalities.image_io import image_problem, load_rgb

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_COLUMNS = ("image", "img", "image_path", "path", "file", "filename")


_PROBE_SIZES = ((48, 20), (20, 48))  # (width, height) of two probe images of opposite aspect ratios

# Model types whose embeddings refuse any input size but `config.image_size` (ViT: "Input image size (64*64) doesn't
# match model (32*32)"): their position embeddings are fixed. transformers interpolates them only when
# `interpolate_pos_encoding=True` is passed to `forward`, which neither the Trainer nor `pipeline(...)` does. Found by
# running every `AutoModelForImageClassification` type of transformers 5 at sizes other than its config's.
FIXED_SIZE_MODEL_TYPES = ("vit", "deit", "vit_msn", "ijepa", "clip", "metaclip_2", "siglip")


def _output_shapes(processor) -> set[tuple[int, int]]:
    """(height, width) of what `processor` outputs for each probe image (a processor is what it does, whatever its
    `size` / `crop_size` / `crop_pct` say)."""
    shapes = set()
    for width, height in _PROBE_SIZES:
        try:
            output = processor(PILImage.new("RGB", (width, height), (128, 128, 128)), return_tensors="pt")
        except Exception as error:
            raise InputError(
                f"Image processor {type(processor).__name__} (size {_size_dict(processor)}) fails on a {width} x "
                f"{height} RGB image: {type(error).__name__}: {str(error).strip()[:200]}"
            ) from None
        shapes.add(tuple(int(n) for n in output["pixel_values"].shape[-2:]))
    return shapes


def _size_dict(processor) -> dict:
    size = getattr(processor, "size", None)
    return {"height": size, "width": size} if isinstance(size, int) else dict(size or {})


def processor_size(processor) -> tuple[int, int]:
    """(height, width) of every image `processor` outputs, measured on two images of opposite aspect ratios.

    Raises:
        InputError: the output's shape follows the input's (see `ImageModality.configure_processor`, which fixes it).
    """
    shapes = _output_shapes(processor)
    if len(shapes) > 1:
        raise InputError(
            f"Image processor {type(processor).__name__} (size {_size_dict(processor)}) outputs images of several "
            f"shapes ({sorted(shapes)} for {_PROBE_SIZES[0]} and {_PROBE_SIZES[1]} inputs); training, evaluation and "
            f"pipeline(...) need one (height, width). Pass --image_size N, or use a processor whose size is "
            f'{{"height": H, "width": W}}.'
        )
    return shapes.pop()


def _nominal_size(processor) -> tuple[int, int]:
    """(height, width) that the processor's size names: {height, width}, else the shortest (or longest) edge."""
    size = _size_dict(processor)
    if size.get("height") and size.get("width"):
        return size["height"], size["width"]
    for key in ("shortest_edge", "longest_edge"):
        if size.get(key):
            return size[key], size[key]
    raise InputError(f"Image processor {type(processor).__name__} has an unsupported size {size}. Pass --image_size.")


def _set_image_size(processor, image_size: int) -> None:
    """--image_size N: N x N, as {height, width}, or as the shortest edge where the processor crops after it."""
    square = {"height": image_size, "width": image_size}
    processor.size = {"shortest_edge": image_size} if "shortest_edge" in _size_dict(processor) else square
    if getattr(processor, "do_center_crop", False):
        processor.crop_size = square


def check_image_size(image_size: int | None, model_args: ModelArguments) -> None:
    """Refuse an --image_size the model cannot take, from its config alone (before any weights load).

    Raises:
        InputError: the model is of a type whose position embeddings fix the input size (`FIXED_SIZE_MODEL_TYPES`)
            and --image_size differs from its config's `image_size`.
    """
    path = model_args.config_name or model_args.model_name_or_path
    if not image_size or not path:  # the packaged default model is convolutional: any size
        return
    try:
        config = AutoConfig.from_pretrained(
            path, revision=model_args.model_revision, token=model_args.token, cache_dir=model_args.cache_dir,
            trust_remote_code=model_args.trust_remote_code,
        )  # fmt: skip
    except Exception:  # no config: the model step reports the missing model
        return
    if config.model_type not in FIXED_SIZE_MODEL_TYPES:
        return
    fixed = getattr(getattr(config, "vision_config", None) or config, "image_size", None)
    height, width = fixed if isinstance(fixed, list | tuple) else (fixed, fixed)
    if fixed is None or (height, width) == (image_size, image_size):
        return
    fix = f"pass --image_size {height}, or leave it out" if height == width else "leave --image_size out"
    raise InputError(
        f"--image_size {image_size}: {path} is a {config.model_type} model, whose position embeddings fix its input "
        f"at {height} x {width} (its config's image_size); it cannot take {image_size} x {image_size} images. "
        f"{fix[0].upper()}{fix[1:]}, or choose a convolutional model."
    )


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

    def resolve_arguments(self, args: ImageArguments, data_args, model_args=None) -> ImageArguments:
        """--random_flip defaults to what the *source* data allows: off for built-in digit sets, else on.

        Raises:
            InputError: --image_size is one the model cannot take (see `check_image_size`).
        """
        if model_args is not None:
            check_image_size(args.image_size, model_args)
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
        """A regular file (or bytes) that decodes, converts to RGB, and holds no values beyond 8 bits."""
        return image_problem(value) is None

    def describe_input(self, value: object) -> str:
        """The cell's path and why it is unusable, e.g. "a.png (I;16 values 0..65535, ...; convert ... to 8 bits)"."""
        return describe_file_cell(value, "image", image_problem(value) if value else None)

    def load_processor(self, model_args: ModelArguments, model_path: str):
        return AutoImageProcessor.from_pretrained(
            model_args.tokenizer_name or model_path,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            token=model_args.token,
            trust_remote_code=model_args.trust_remote_code,
        )

    def configure_processor(self, processor, args: ImageArguments):
        """Apply --image_size, then make the processor output one fixed (height, width); it is saved so.

        A size that keeps each image's aspect ratio without a crop (`{"shortest_edge": 32}`, as some ViT processors
        have) turns a 40 x 25 image into 32 x 51 while training's crops are 32 x 32: evaluation would fail, or fail
        to batch two aspect ratios. Such a size becomes {height, width} (the whole image resized, as training's
        crops are), so that evaluation and `pipeline(...)` on the saved model see training's shape.

        Raises:
            InputError: the processor fails on an RGB image, or still outputs several shapes.
        """
        if args.image_size:
            _set_image_size(processor, args.image_size)
        if len(_output_shapes(processor)) > 1:
            height, width = _nominal_size(processor)
            logger.warning(
                "Image processor %s (size %s) keeps each image's aspect ratio; its size is set to {height: %d, "
                "width: %d} (saved with the model), the shape training images get.",
                type(processor).__name__, _size_dict(processor), height, width,
            )  # fmt: skip
            processor.size = {"height": height, "width": width}
            processor_size(processor)  # raises if the shape still follows the input's
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
            images = [load_rgb(cell) for cell in batch[column]]
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
