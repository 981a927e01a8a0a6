"""Features: one definition of the layer they come from, one way to capture them, and their extraction.

**Features** are the input of the model's **feature layer**, its classification layer: the last `nn.Linear` outside
the backbone with one output per class (`classifier`, `score` ...). They are what the alignment losses compare, what
the label-shift probe reads and what the domain-gap report measures before and after training (the same layer).

**Head inputs** are the input of the first module of the head trained on cached inputs (`head_modules`): for most
models the feature layer itself; for models that name a longer head (Whisper's `projector`, `classifier`) its first
module. `feature_extraction` caches them (see `hftl.training.cached_head`).
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


def feature_layer(model: nn.Module, num_labels: int) -> tuple[str, nn.Linear]:
    """(name, module) of the classification layer: the last `nn.Linear` outside the backbone with `num_labels`
    outputs. Its input, (N, F), is what hftl calls features.

    Raises:
        ValueError: the model has no such layer.
    """
    from hftl.strategies.parts import backbone_name

    prefix = backbone_name(model) + "."
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == num_labels and not name.startswith(prefix):
            found = (name, module)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no classification layer with {num_labels} outputs.")
    return found


def head_modules(model: nn.Module, num_labels: int) -> list[tuple[str, nn.Module]]:
    """The modules trained on cached head inputs, in order; the first one's input is what is cached.

    A model may name them in a `feature_head` attribute (e.g. `("projector", "classifier")` when its pooling comes
    before an affine projector); otherwise it is the feature layer alone.
    """
    names = getattr(model, "feature_head", None)
    if names:
        return [(name, model.get_submodule(name)) for name in names]
    return [feature_layer(model, num_labels)]


def wrapped_name(model: nn.Module, name: str) -> str:
    """Where module `name` of the plain model sits in `model` (a peft model nests it, e.g. `base_model.model.x`).

    Raises:
        ValueError: no such module.
    """
    names = [n for n, _ in model.named_modules() if n == name or n.endswith("." + name)]
    if not names:
        raise ValueError(f"no module named {name} in {type(model).__name__}")
    return min(names, key=len)


@contextlib.contextmanager
def capture_inputs(layer: nn.Module):
    """Within the block, every forward call of `layer` appends its first input to the yielded list.

    Example:
        >>> layer = nn.Linear(3, 2)
        >>> with capture_inputs(layer) as captured:
        ...     _ = layer(torch.ones(4, 3))
        >>> captured[0].shape
        torch.Size([4, 3])
    """
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    try:
        yield captured
    finally:
        handle.remove()


def cache_is_exact(model: nn.Module, head_names) -> bool:
    """True when every trainable parameter belongs to the head modules `head_names` (a name or a list of names)."""
    names = [head_names] if isinstance(head_names, str) else list(head_names)
    return all(
        any(name.startswith(head + ".") for head in names)
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    )


def _concat(batches: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)


@torch.inference_mode()
def _extract_shard(model, dataset: Dataset, collator, batch_size: int, layer: nn.Module, device) -> torch.Tensor:
    # its own generator: iterating a DataLoader draws a seed from the global RNG, and extraction must leave the
    # training's random stream as it found it (a run reading features from a cache then trains identically)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collator, generator=torch.Generator())
    chunks = []
    with capture_inputs(layer) as captured:
        for batch in tqdm(loader, desc="Extracting features", unit="batch"):
            model(**{key: value.to(device) for key, value in batch.items()})
            features = captured.pop()
            if features.dim() != 2:
                raise ValueError(f"the layer's input has shape {tuple(features.shape)}, not (batch, F)")
            chunks.append(features.detach().float().cpu())
    width = layer.in_features if isinstance(layer, nn.Linear) else 0
    return torch.cat(chunks) if chunks else torch.zeros(0, width)


def extract_features(
    model: nn.Module,
    dataset: Dataset,
    collator,
    batch_size: int,
    layer: nn.Module,
    lengths: list[float] | None = None,
) -> torch.Tensor:
    """Inputs of `layer` for every example of `dataset`, in the dataset's order, the model in eval mode.

    Examples are batched by length (`lengths`, or the length of `input_ids`) so that batches carry little padding.
    With several processes, the batches are dealt out in turn (each example once, each batch the one a single process
    would run) and the shares are gathered in order, so every process returns the same (N, F) features.

    Args:
        model: the classifier; it runs in eval mode on the process's device.
        dataset: model-ready examples; a `labels` column is ignored.
        collator: batches examples as in training.
        batch_size: examples per forward pass.
        layer: the module whose input is captured (the feature layer, or the first head module).
        lengths: the size of each example (tokens, seconds ...), for length-sorted batches.

    Returns:
        (N, F) float32 features on the CPU.

    Raises:
        ValueError: the layer's input is not (batch, F).
    """
    state = PartialState()
    dataset = dataset.select_columns([c for c in dataset.column_names if c != "labels"])
    if lengths is None and "input_ids" in dataset.column_names:
        lengths = [len(ids) for ids in dataset["input_ids"]]
    order = np.argsort(lengths, kind="stable") if lengths is not None else np.arange(len(dataset))
    # whole batches of the length-sorted order, dealt out in turn: every batch is the one a single process would run,
    # so the features do not depend on the number of processes (padding and cropping follow the batch)
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    shares = [_concat(batches[rank :: state.num_processes]) for rank in range(state.num_processes)]
    was_training = model.training
    model.to(state.device).eval()
    try:
        mine = _extract_shard(
            model, dataset.select(shares[state.process_index]), collator, batch_size, layer, state.device
        )
    finally:
        model.train(was_training)
    parts = gather_object([mine.numpy()]) if state.num_processes > 1 else [mine.numpy()]
    features = torch.from_numpy(np.concatenate(parts))
    restored = torch.empty_like(features)
    restored[torch.from_numpy(np.concatenate(shares))] = features
    return restored
