"""The ONNX graph of a classifier, written by PyTorch's maintained exporter: `torch.onnx.export(..., dynamo=True)`
(`torch.export` traces the model, onnxscript translates the graph and optimises it).

The batch axis of every input is dynamic; so is the length axis (tokens, samples or mel frames) of text and audio
inputs, except for a plain Whisper classifier, whose encoder takes exactly 30 s (3,000 frames). The model is traced
with the "eager" attention implementation (plain matmul / softmax), which every transformers model has and
`torch.export` traces with data-dependent lengths too (the cropped Whisper encoder's); the parity check compares the
graph with the model as `from_pretrained` loads it.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

import torch

from hftl.errors import InputError

logger = logging.getLogger("hftl")
FIXED_LENGTH_TYPES = ("whisper",)  # model types whose inputs have one length only


def dynamic_shapes(modality: str, model_type: str, example: dict[str, torch.Tensor]) -> dict[str, dict[int, Any]]:
    """`torch.export` dynamic shapes: input name -> {axis: Dim}.

    Axis 0 is `batch` for every input. Text: axis 1 is `sequence`, one Dim for the ids and their masks. Audio (bar
    fixed-length model types): the last axis is `time` (samples or mel frames), and the `attention_mask`'s its own
    `mask_length`: Whisper's feature extractor gives a mask over samples (480,000) or, asked for
    `return_attention_mask=True` as hftl's collator does, over frames (3,000); the cropped Whisper takes both.
    """
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence")
    shapes = {}
    for name, value in example.items():
        axes = {0: batch}
        if modality == "text":
            axes[1] = sequence
        elif modality == "audio" and model_type not in FIXED_LENGTH_TYPES:
            axes[value.dim() - 1] = torch.export.Dim("mask_length" if name == "attention_mask" else "time")
        shapes[name] = axes
    return shapes


def _eager_copy(model):
    """A copy of `model` with the eager attention implementation (the model itself is left as it is)."""
    traced = copy.deepcopy(model).eval()
    if hasattr(traced, "set_attn_implementation"):
        try:
            traced.set_attn_implementation("eager")
        except (ValueError, NotImplementedError, AttributeError):  # a model without attention layers
            pass
    return traced


def export_onnx(model, modality: str, example: dict[str, torch.Tensor], path: str, opset_version: int | None = None):
    """Write `model`'s ONNX graph to `path`, one file (weights inside), inputs named as `example`'s keys, output
    `logits`.

    Args:
        model: a transformers classifier in eval mode (not changed).
        modality: "text", "image" or "audio" (which axes are dynamic, see `dynamic_shapes`).
        example: inputs to trace with, e.g. {"input_ids": (B, S), "attention_mask": (B, S)}; B and S must be 2 or
            more (`torch.export` fixes axes of size 0 or 1).
        opset_version: the ONNX opset; None: the exporter's default.

    Raises:
        InputError: the exporter cannot trace this model (its message's first line is given).
    """
    traced = _eager_copy(model)
    shapes = dynamic_shapes(modality, model.config.model_type, example)
    try:
        with torch.no_grad():
            torch.onnx.export(
                traced,
                (),
                path,
                kwargs=example,
                input_names=list(example),
                output_names=["logits"],
                dynamic_shapes=shapes,
                opset_version=opset_version,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as error:  # torch.export and onnxscript raise many error types, all meaning "cannot export"
        if os.path.exists(path):
            os.remove(path)
        first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise InputError(
            f"torch.onnx.export cannot export this {model.config.model_type} model ({type(model).__name__}): {first}"
        ) from None
    logger.info("Wrote %s (%.1f MB)", path, os.path.getsize(path) / 2**20)
