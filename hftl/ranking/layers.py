"""Features of every encoder layer of one model, from one forward pass per batch, as `--feature_layer N` would give.

For a stack of identical layers (BERT, ViT, Whisper and wav2vec2 encoders: what `--feature_layer N` can crop), the
features of layer N are exactly the head inputs (`hftl.features.head_modules`) that the model cropped to N layers
computes: the backbone's final norm and pooling (BERT's pooler on the first token, ViT's norm and class token,
Whisper's norm and masked mean over time) applied to layer N's output. The forward pass records every layer's output;
for each N < L the model then runs once more with its layer stack replaced by one module that returns the recorded
output of layer N, so only the embeddings and the pooling run again, not the layers.

For a stack whose layers change width (EfficientNet-Lite blocks, ResNet stages: no `--feature_layer` crop exists),
the candidates are the ends of the stages (the blocks after which the width or resolution changes), each output
mean-pooled over space (or time), and the model's own head input (all blocks plus its head convolution and pooling).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from hftl.features import capture_inputs
from hftl.strategies.parts import backbone_name, layer_list


@dataclass(frozen=True)
class LayerFeatures:
    """Features of a model's candidate layers on one dataset.

    Attributes:
        layers: 1-based index of the encoder layer (block) each candidate ends at.
        names: how each is shown ("layer 3", "block 5 (stage end)", "block 16 + head").
        features: one (N, F_l) float32 array per candidate, in the dataset's order.
        seconds: forward seconds from the model's input to each candidate's layer, summed over the dataset.
        croppable: the layers form a stack `--feature_layer N` crops, and `features[i]` is what it gives.
    """

    layers: list[int]
    names: list[str]
    features: list[np.ndarray]
    seconds: list[float]
    croppable: bool


class _Replay(nn.Module):
    """Stands in for a model's whole layer stack: returns a recorded layer output, whatever its input."""

    def __init__(self, output):
        super().__init__()
        self.output = output

    def forward(self, *args, **kwargs):
        return self.output


def uniform_layers(layers: nn.ModuleList) -> bool:
    """True when every layer has the same type and the same parameter and buffer shapes (a croppable stack)."""
    shapes = [(type(layer), [(k, tuple(v.shape)) for k, v in layer.state_dict().items()]) for layer in layers]
    return all(shape == shapes[0] for shape in shapes)


def _tensor(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else getattr(output, "last_hidden_state", output)


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, C, H, W) -> mean over space; (B, T, D) -> mean over the unmasked steps (mask (B, T)) or all."""
    if hidden.dim() == 4:
        return hidden.mean(dim=(2, 3))
    if hidden.dim() == 3:
        if mask is not None and mask.shape == hidden.shape[:2]:
            weights = mask.to(hidden.dtype).unsqueeze(-1)
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return hidden.mean(dim=1)
    return hidden.flatten(1)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Recorder:
    """Forward hooks on every layer of a stack: each layer's output in one batch and when it was produced."""

    def __init__(self, stack: nn.ModuleList, device):
        self.device, self.outputs, self.times = device, [], []
        self.handles = [layer.register_forward_hook(self._hook) for layer in stack]

    def _hook(self, _module, _args, output):
        _sync(self.device)
        self.times.append(time.perf_counter())
        self.outputs.append(output)

    def start(self) -> float:
        self.outputs, self.times = [], []
        _sync(self.device)
        return time.perf_counter()

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _set_stack(model: nn.Module, list_name: str, stack: nn.ModuleList) -> None:
    backbone = getattr(model, backbone_name(model))
    parent = backbone.get_submodule(list_name.rsplit(".", 1)[0]) if "." in list_name else backbone
    setattr(parent, list_name.rsplit(".", 1)[-1], stack)


def _head_input(model: nn.Module, batch: dict, head_layer: nn.Module) -> torch.Tensor:
    with capture_inputs(head_layer) as captured:
        model(**batch)
    if not captured or captured[-1].dim() != 2:
        raise ValueError("the head's first module did not receive (batch, F) features")
    return captured[-1]


def _replayed(model, batch, head_layer, list_name: str, stack: nn.ModuleList, output) -> torch.Tensor:
    """The head input of the model whose layers above the one that produced `output` are gone."""
    _set_stack(model, list_name, nn.ModuleList([_Replay(output)]))
    try:
        return _head_input(model, batch, head_layer)
    finally:
        _set_stack(model, list_name, stack)


def _stage_ends(outputs: list) -> list[int]:
    """1-based indices of the layers after which the output shape changes (the last layer excluded)."""
    shapes = [tuple(_tensor(output).shape[1:]) for output in outputs]
    return [i + 1 for i in range(len(shapes) - 1) if shapes[i] != shapes[i + 1]]


def _candidates(count: int, croppable: bool, ends: list[int]) -> tuple[list[int], list[str]]:
    if croppable:
        return list(range(1, count + 1)), [f"layer {n}" for n in range(1, count + 1)]
    return [*ends, count], [*(f"block {n} (stage end)" for n in ends), f"block {count} + head"]


@torch.inference_mode()
def extract_layer_features(model: nn.Module, dataset, collator, batch_size: int, head_layer: nn.Module, lengths=None):
    """`LayerFeatures` of every candidate layer of `model` for every example of `dataset` (see the module docstring).

    Examples are batched by length (`lengths`, or the length of `input_ids`), as `hftl.features.extract_features`
    batches them, and returned in the dataset's order. One process: every process computes all the features.

    Args:
        model: the classifier, all its layers; it runs in eval mode.
        dataset: model-ready examples (a `labels` column is ignored); collator: batches them.
        batch_size: examples per forward pass.
        head_layer: the first module of the head (its input is the features, (batch, F)).
        lengths: each example's size, for length-sorted batches.

    Raises:
        ValueError: the head's input is not (batch, F).
    """
    from accelerate import PartialState

    device = PartialState().device
    dataset = dataset.select_columns([c for c in dataset.column_names if c != "labels"])
    if lengths is None and "input_ids" in dataset.column_names:
        lengths = [len(ids) for ids in dataset["input_ids"]]
    order = np.argsort(lengths, kind="stable") if lengths is not None else np.arange(len(dataset))
    loader = DataLoader(dataset.select(order), batch_size=batch_size, collate_fn=collator, generator=torch.Generator())
    list_name, stack = layer_list(getattr(model, backbone_name(model)))
    croppable, was_training = uniform_layers(stack), model.training
    model.to(device).eval()
    recorder, chunks, seconds, ends = _Recorder(stack, device), None, np.zeros(len(stack)), None
    try:
        for batch in loader:
            batch = {key: value.to(device) for key, value in batch.items()}
            start = recorder.start()
            head = _head_input(model, batch, head_layer)
            outputs, seconds = list(recorder.outputs), seconds + np.asarray(recorder.times) - start
            ends = ends if ends is not None else _stage_ends(outputs)
            if croppable:
                parts = [_replayed(model, batch, head_layer, list_name, stack, out) for out in outputs[:-1]]
            else:
                parts = [_mean_pool(_tensor(outputs[n - 1]), batch.get("attention_mask")) for n in ends]
            parts = [part.detach().float().cpu() for part in [*parts, head]]
            chunks = chunks if chunks is not None else [[] for _ in parts]
            for chunk, part in zip(chunks, parts, strict=True):
                chunk.append(part)
    finally:
        recorder.close()
        model.train(was_training)
    layers, names = _candidates(len(stack), croppable, ends or [])
    restore = np.empty_like(order)
    restore[order] = np.arange(len(order))
    features = [torch.cat(chunk).numpy()[restore] for chunk in chunks or []]
    return LayerFeatures(layers, names, features, [float(seconds[n - 1]) for n in layers], croppable)
