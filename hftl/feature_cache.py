"""Features kept on disk (`--feature_cache_dir`), keyed by the weights, the layer, the data and the preprocessing,
so that runs that differ only in method or seed extract once."""

from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np
import torch
from datasets import Dataset
from torch import nn

logger = logging.getLogger(__name__)


def dataset_digest(dataset: Dataset) -> str:
    """SHA-256 of a dataset's rows (its Arrow data, without any transform): equal for equal content across runs.

    File cells (image / audio paths) are hashed as they are stored: a path, not the file's bytes.
    """
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


def extract_or_load(model: nn.Module, layer: nn.Module, dataset: Dataset, lengths, collator, processor, config):
    """Inputs of `layer` for `dataset` (N, F): extracted (see `hftl.features.extract_features`), or read from
    `--feature_cache_dir` when the same backbone weights, layer, data and preprocessing were extracted before."""
    import dataclasses

    from hftl.features import extract_features
    from hftl.strategies import backbone_name

    def compute():
        return extract_features(model, dataset, collator, config.training.per_device_eval_batch_size, layer, lengths)

    cache_dir = config.strategy.feature_cache_dir
    if cache_dir is None:
        return compute()
    key = {
        "model": [
            type(model).__name__,
            module_digest(model.get_submodule(backbone_name(model))),
            model.config.to_json_string(),
        ],
        "layer": next(name for name, module in model.named_modules() if module is layer),
        "data": [len(dataset), dataset_digest(dataset)],
        "inputs": [dataclasses.asdict(config.inputs), repr(processor), collator.__class__.__name__],
    }
    return cached_extract(cache_dir, key, compute)
