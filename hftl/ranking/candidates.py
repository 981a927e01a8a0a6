"""The candidates of a ranking: each layer of each model, with its frozen features on the source (and target)
training data, its size and its speed, from one extraction per model and domain (`hftl.ranking.layers`)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from hftl.ranking.cache import cached_layer_features
from hftl.ranking.layers import LayerFeatures, extract_layer_features

logger = logging.getLogger("hftl")


@dataclass(frozen=True)
class Candidate:
    """One model cut at one layer.

    Attributes:
        model: the model's folder or Hub id.
        layer: 1-based encoder layer (block) the features come from; `--feature_layer layer` crops there when
            `croppable`.
        name: how the layer is shown ("layer 3", "block 5 (stage end)").
        croppable: `--feature_layer layer` gives exactly these features.
        source: (N_s, F) features of the source training examples; target: (N_t, F) of the target's, or None.
        parameters: backbone parameters up to this layer (embeddings, layers 1..layer, and what follows the layers
            when the cropped model keeps it), the head excluded.
        examples_per_second: examples per second of the forward pass up to this layer (measured on the source
            extraction, batch size `--per_device_eval_batch_size`).
    """

    model: str
    layer: int
    name: str
    croppable: bool
    source: np.ndarray
    target: np.ndarray | None
    parameters: int
    examples_per_second: float


def _parameters_up_to(model, layers: list[int], croppable: bool) -> list[int]:
    from hftl.strategies import model_parts

    parts = model_parts(model)
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    total = []
    for n in layers:
        names = parts.embeddings + parts.layer_parameters(model, parts.layers[:n])
        if croppable or n == len(parts.layers):
            names += parts.after_layers
        total.append(int(sum(sizes[name] for name in names)))
    return total


def layer_features_of(model, head, dataset, lengths, collator, processor, config) -> LayerFeatures:
    """`extract_layer_features` of `dataset`, or read from `--feature_cache_dir` (`hftl.ranking.cache`)."""
    from hftl.feature_cache import dataset_digest, module_digest
    from hftl.strategies import backbone_name

    def compute():
        batch_size = config.training.per_device_eval_batch_size
        return extract_layer_features(model, dataset, collator, batch_size, head, lengths)

    if config.strategy.feature_cache_dir is None:
        return compute()
    key = {
        "model": [
            type(model).__name__,
            module_digest(model.get_submodule(backbone_name(model))),
            model.config.to_json_string(),
        ],
        "data": [len(dataset), dataset_digest(dataset)],
        "inputs": [dataclasses.asdict(config.inputs), repr(processor), collator.__class__.__name__],
        "batch_size": config.training.per_device_eval_batch_size,
    }
    return cached_layer_features(config.strategy.feature_cache_dir, key, compute)


def _domain(domain_inputs, domain_data, limit: int | None, seed: int):
    """(model-ready train split, its lengths, its class ids or None), cut to a seeded random subset of at most
    `limit` examples kept in the split's order."""
    dataset, lengths = domain_inputs.plain["train"], domain_inputs.lengths("train")
    raw = domain_data.splits["train"]
    labels = np.asarray(raw["labels"]) if "labels" in raw.column_names else None
    if limit is None or len(dataset) <= limit:
        return dataset, lengths, labels
    keep = np.sort(np.random.default_rng(seed).choice(len(dataset), limit, replace=False))
    lengths = [lengths[i] for i in keep] if lengths is not None else None
    return dataset.select(keep), lengths, labels[keep] if labels is not None else None


def model_candidates(
    modality, config, data, use_target: bool = True, max_examples: int | None = None
) -> tuple[list[Candidate], np.ndarray]:
    """Every candidate layer of the model `config.model.model_name_or_path` (all its layers loaded, whatever
    `--feature_layer` says), with its features on `data`'s source training split (and the target's when
    `use_target` and the run has target data), each domain cut to a seeded subset of `max_examples`.

    Returns:
        (the candidates, the (N_s,) class ids of the source examples their features are of).

    Raises:
        InputError: as `hftl.modeling.load_model` (bad model files).
    """
    from hftl.features import head_modules
    from hftl.inputs import build_inputs
    from hftl.modeling import load_model

    config = dataclasses.replace(config, strategy=dataclasses.replace(config.strategy, feature_layer=None))
    loaded = load_model(modality, config, data.labels)
    inputs = build_inputs(modality, config, data, loaded.processor)
    model, collator = loaded.model, inputs.collator
    head = head_modules(model, len(data.labels.names))[0][1]
    seed = config.training.seed
    dataset, lengths, labels = _domain(inputs.source, data.source, max_examples, seed)
    source = layer_features_of(model, head, dataset, lengths, collator, loaded.processor, config)
    target = None
    if use_target and inputs.target is not None:
        dataset, lengths, _ = _domain(inputs.target, data.target, max_examples, seed)
        target = layer_features_of(model, head, dataset, lengths, collator, loaded.processor, config)
    sizes = _parameters_up_to(model, source.layers, source.croppable)
    count = len(source.features[0]) if source.features else 0
    candidates = [
        Candidate(
            loaded.path,
            layer,
            source.names[i],
            source.croppable,
            source.features[i],
            target.features[i] if target is not None else None,
            sizes[i],
            count / source.seconds[i] if source.seconds[i] > 0 else float("nan"),
        )
        for i, layer in enumerate(source.layers)
    ]
    return candidates, labels
