"""Cached feature extraction: run the frozen backbone once, then train the head on the stored features.

The features are the input of the model's head (by default its classification layer, the last `nn.Linear`
producing one logit per class; a model may name several head modules in `feature_head`), taken in eval mode.
When the head is the only part that trains, training it on cached features is exactly training the whole model
with the backbone frozen (minus dropout before the head), and each epoch after the extraction costs a matrix
product instead of a backbone pass.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

FEATURES = "features"


def classification_layer(model: nn.Module, num_labels: int) -> tuple[str, nn.Linear]:
    """The last `nn.Linear` outside the backbone with `num_labels` outputs (e.g. `classifier`, `score`).

    Raises:
        ValueError: the model has no such layer.
    """
    from hftl.strategies import backbone_name

    prefix = backbone_name(model) + "."
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == num_labels and not name.startswith(prefix):
            found = (name, module)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no classification layer with {num_labels} outputs.")
    return found


def feature_head(model: nn.Module, num_labels: int) -> list[tuple[str, nn.Module]]:
    """The modules trained on cached features, in order; the first one's input is what is cached.

    A model may name them in a `feature_head` attribute (e.g. `("projector", "classifier")` when its pooling
    comes before an affine projector); otherwise it is the classification layer alone.
    """
    names = getattr(model, "feature_head", None)
    if names:
        return [(name, model.get_submodule(name)) for name in names]
    return [classification_layer(model, num_labels)]


def cache_is_exact(model: nn.Module, head_names) -> bool:
    """True when every trainable parameter belongs to the head modules `head_names` (a name or a list of names)."""
    names = [head_names] if isinstance(head_names, str) else list(head_names)
    return all(
        any(name.startswith(head + ".") for head in names)
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    )


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    dataset: Dataset,
    collator,
    batch_size: int,
    layer: nn.Module,
    device: torch.device,
    lengths: list[float] | None = None,
) -> torch.Tensor:
    """Inputs of `layer` (the first head module) for every example of `dataset`, in the dataset's order.

    Examples are batched by length (shortest first: `lengths`, or the length of `input_ids`) so that batches carry
    little padding; the features come back in the original order.

    Args:
        model: the classifier (its backbone frozen); it runs in eval mode.
        dataset: model-ready examples; a `labels` column is ignored.
        collator: batches examples as in training.
        batch_size: examples per forward pass.
        layer: the classification layer whose input is captured.
        device: where the forward passes run.
        lengths: the size of each example (tokens, seconds ...), for length-sorted batches.

    Returns:
        Features of shape (N, F) on the CPU, float32.

    Raises:
        ValueError: the layer's input is not (batch, F).
    """
    captured: list[torch.Tensor] = []

    def capture(_module, inputs):
        features = inputs[0]
        if features.dim() != 2:
            raise ValueError(f"the classification layer's input has shape {tuple(features.shape)}, not (batch, F)")
        captured.append(features.detach().float().cpu())

    dataset = dataset.select_columns([c for c in dataset.column_names if c != "labels"])
    order = None
    if lengths is None and "input_ids" in dataset.column_names:
        lengths = [len(ids) for ids in dataset["input_ids"]]
    if lengths is not None:
        order = np.argsort(lengths, kind="stable")
        dataset = dataset.select(order)
    # its own generator: iterating a DataLoader draws a seed from the global RNG, and extraction must leave the
    # training's random stream as it found it (a run reading features from a cache then trains identically)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collator, generator=torch.Generator())
    was_training = model.training
    model.eval()
    handle = layer.register_forward_pre_hook(capture)
    try:
        for batch in tqdm(loader, desc="Extracting features", unit="batch"):
            model(**{key: value.to(device) for key, value in batch.items()})
    finally:
        handle.remove()
        model.train(was_training)
    features = torch.cat(captured)
    if order is not None:
        restored = torch.empty_like(features)
        restored[torch.from_numpy(order)] = features
        features = restored
    return features


def feature_dataset(features: torch.Tensor, source: Dataset) -> Dataset:
    """A dataset of cached `features` (N, F) with the `labels` of `source`, if it has them."""
    columns = {FEATURES: features.numpy()}
    if "labels" in source.column_names:
        columns["labels"] = source["labels"]
    return Dataset.from_dict(columns).with_format("torch")


class CachedFeatureHead(nn.Module):
    """The head modules of a model, applied in order to cached features.

    It shares its parameters with the model, so training it trains the model's own head.

    Args:
        modules: the model's head modules (`feature_head`), the last one producing (B, C) logits.

    Shape:
        features: (B, F) float; labels: (B,) long class ids. Returns `loss` (scalar) and `logits` (B, C).
    """

    def __init__(self, modules: list[nn.Module]):
        super().__init__()
        self.head = nn.Sequential(*modules)

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.head(features)
        output = {"logits": logits}
        if labels is not None:
            output["loss"] = F.cross_entropy(logits, labels)
        return output


def dataset_digest(dataset: Dataset) -> str:
    """SHA-256 of a dataset's rows (its Arrow data, without any transform): equal for equal content across runs.

    File cells (image / audio paths) are hashed as they are stored: a path, not the file's bytes.
    """
    import hashlib

    import pyarrow as pa

    digest = hashlib.sha256()
    for table in dataset.with_format("arrow").iter(batch_size=1024):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()


def module_digest(module: nn.Module) -> str:
    """SHA-256 of a module's parameter and buffer names and values."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_extract(cache_dir: str | None, key_parts: dict, compute) -> torch.Tensor:
    """`compute()` (features (N, F)), stored in `cache_dir/<key>.npy` and read back when the key was seen before.

    The key is a SHA-256 of `key_parts` (model weights digest, layer, data digest, preprocessing settings ...). Files
    are written atomically (a temporary file renamed into place). Without `cache_dir`, `compute()` runs.
    """
    if cache_dir is None:
        return compute()
    import hashlib
    import json
    import os

    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:32]
    path = os.path.join(cache_dir, f"{key}.npy")
    if os.path.isfile(path):
        logger.info("Features read from the cache %s", path)
        return torch.from_numpy(np.load(path))
    features = compute()
    os.makedirs(cache_dir, exist_ok=True)
    temporary = f"{path}.{os.getpid()}.partial.npy"
    np.save(temporary, features.numpy())
    os.replace(temporary, path)
    return features
