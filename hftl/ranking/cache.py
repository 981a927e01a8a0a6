"""`LayerFeatures` kept on disk (`--feature_cache_dir`), keyed as `hftl.feature_cache` keys features: the backbone's
weights, the data's digest and the preprocessing, so that ranking again (or `--feature_layer auto` after
`hftl rank`) extracts once."""

from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np

from hftl.ranking.layers import LayerFeatures

logger = logging.getLogger("hftl")

_VERSION = "hftl.ranking.layers/1"  # bump when the features a key names change


def _save(path: str, found: LayerFeatures) -> None:
    arrays = {f"features_{i}": features for i, features in enumerate(found.features)}
    meta = json.dumps(
        {"layers": found.layers, "names": found.names, "seconds": found.seconds, "croppable": found.croppable}
    )
    temporary = f"{path}.{os.getpid()}.partial.npz"
    np.savez(temporary, meta=np.asarray(meta), **arrays)
    os.replace(temporary, path)


def _load(path: str) -> LayerFeatures:
    with np.load(path) as stored:
        meta = json.loads(str(stored["meta"]))
        features = [stored[f"features_{i}"] for i in range(len(meta["layers"]))]
    return LayerFeatures(meta["layers"], meta["names"], features, meta["seconds"], meta["croppable"])


def cached_layer_features(cache_dir: str | None, key_parts: dict, compute) -> LayerFeatures:
    """`compute()`, stored in `cache_dir/layers-<key>.npz` and read back when the same key was seen before.

    The key is a SHA-256 of `key_parts` (model weights digest, data digest, preprocessing ...); the file is written
    atomically. Without `cache_dir`, `compute()` runs. The stored forward seconds are those of the first extraction.
    """
    if cache_dir is None:
        return compute()
    text = json.dumps({"version": _VERSION, **key_parts}, sort_keys=True, default=str)
    path = os.path.join(cache_dir, f"layers-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:32]}.npz")
    if os.path.isfile(path):
        logger.info("Layer features read from the cache %s", path)
        return _load(path)
    found = compute()
    os.makedirs(cache_dir, exist_ok=True)
    _save(path, found)
    return found
