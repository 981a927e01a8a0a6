"""The parts of a pretrained classifier, found from its structure rather than from per-architecture names:

- the **backbone**: `model.base_model` (e.g. `model.bert`, `model.vit`, Whisper's `encoder`), made of the
  embeddings (its parameters registered before the first encoder layer), the **encoder layers** (the longest
  `nn.ModuleList` of identical blocks) and what follows them (final norm, pooler);
- the **head**: every parameter outside the backbone (classifier, and e.g. `projector`, `pre_classifier`);
- the **new modules**: those the checkpoint did not provide (randomly initialised by `from_pretrained`).
  They always train, wherever they sit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn

from hftl.errors import InputError

logger = logging.getLogger("hftl")

LAYER_COUNT_KEYS = ("num_hidden_layers", "encoder_layers", "num_layers")


@dataclass
class ModelParts:
    """Parameter names of a classifier's parts (see the module docstring).

    Attributes:
        backbone_prefix: name of the backbone module (`model.base_model_prefix`).
        layers: names of the encoder layers, bottom first ("bert.encoder.layer.0", ...).
        embeddings: parameters of the backbone registered before the first layer.
        after_layers: parameters of the backbone registered after the last layer.
        head: parameters outside the backbone.
        new: parameters the checkpoint did not provide.
    """

    backbone_prefix: str
    layers: list[str]
    embeddings: list[str]
    after_layers: list[str]
    head: list[str]
    new: list[str]

    def layer_parameters(self, model: nn.Module, layer_names: list[str]) -> list[str]:
        prefixes = tuple(name + "." for name in layer_names)
        return [name for name, _ in model.named_parameters() if name.startswith(prefixes)]


def layer_list(backbone: nn.Module) -> tuple[str, nn.ModuleList]:
    """The backbone's stack of encoder layers: its `nn.ModuleList` of one block type with the most parameters.

    Raises:
        InputError: the backbone has no such list.
    """
    best, best_size = None, -1
    for name, module in backbone.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(child) for child in module}) != 1:
                continue
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = (name, module), size
    if best is None:
        raise InputError(f"{type(backbone).__name__} has no stack of layers to freeze or unfreeze.")
    return best


def backbone_name(model: nn.Module) -> str:
    """Attribute name of the backbone: `model.base_model_prefix` when the model has that attribute (`bert`, `vit`),
    else its child module with the most parameters (e.g. `encoder` of `WhisperForAudioClassification`, whose
    declared prefix `model` names no attribute)."""
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and isinstance(getattr(model, prefix, None), nn.Module) and getattr(model, prefix) is not model:
        return prefix
    children = [(sum(p.numel() for p in child.parameters()), name) for name, child in model.named_children()]
    if not children:
        raise InputError(f"{type(model).__name__} has no backbone module.")
    return max(children)[1]


def model_parts(model: nn.Module, new_parameters: list[str] | None = None) -> ModelParts:
    """Split a `...ForSequence/Image/AudioClassification` model into its parts.

    Args:
        model: a transformers classifier with a `base_model_prefix` attribute.
        new_parameters: parameter names `from_pretrained` reported as missing or re-initialised.
    """
    prefix = backbone_name(model)
    layer_list_name, layers = layer_list(getattr(model, prefix))
    layer_names = [f"{prefix}.{layer_list_name}.{i}" for i in range(len(layers))]
    layer_prefix = f"{prefix}.{layer_list_name}."
    names = [name for name, _ in model.named_parameters()]
    backbone_names = [n for n in names if n.startswith(prefix + ".")]
    in_layers = [i for i, n in enumerate(backbone_names) if n.startswith(layer_prefix)]
    first, last = in_layers[0], in_layers[-1]
    return ModelParts(
        backbone_prefix=prefix,
        layers=layer_names,
        embeddings=backbone_names[:first],
        after_layers=[n for n in backbone_names[last + 1 :] if not n.startswith(layer_prefix)],
        head=[n for n in names if not n.startswith(prefix + ".")],
        new=sorted(set(new_parameters or []) & set(names)),
    )


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def log_parameter_counts(model: nn.Module, what: str) -> tuple[int, int]:
    trainable, total = count_parameters(model)
    logger.info(
        "%s: %s trainable of %s parameters (%.2f%%).", what, f"{trainable:,}", f"{total:,}", 100 * trainable / total
    )
    return trainable, total


def set_trainable(model: nn.Module, trainable: set[str]) -> None:
    """`requires_grad` on for the parameters named in `trainable`, off for the others."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name in trainable


def freeze_backbone(model: nn.Module, parts: ModelParts) -> None:
    """Train only the head and the new modules (feature extraction, and stage 1 of two_stage)."""
    set_trainable(model, set(parts.head) | set(parts.new))


def keep_bottom_layers(model: nn.Module, num_layers: int) -> None:
    """Drop the encoder layers above layer `num_layers` (1-based) from `model` and its config, in place.

    The model then computes its head on the output of that layer (after the backbone's final norm, if it has one),
    and `save_pretrained` writes a model of `num_layers` layers that loads as the same class.

    Raises:
        InputError: `num_layers` exceeds the model's layers, or the config names its layer count in no known key.
    """
    backbone = getattr(model, backbone_name(model))
    list_name, layers = layer_list(backbone)
    if num_layers > len(layers):
        raise InputError(f"--feature_layer {num_layers} exceeds the model's {len(layers)} encoder layers.")
    keys = [k for k in LAYER_COUNT_KEYS if getattr(model.config, k, None) == len(layers)]
    if not keys:
        raise InputError(
            f"--feature_layer: {type(model).__name__}'s config names its layer count in none of {LAYER_COUNT_KEYS}."
        )
    parent = backbone.get_submodule(list_name.rsplit(".", 1)[0]) if "." in list_name else backbone
    setattr(parent, list_name.rsplit(".", 1)[-1], nn.ModuleList(list(layers)[:num_layers]))
    for key in keys:
        setattr(model.config, key, num_layers)
    logger.info("Kept encoder layers 1-%d of %d (--feature_layer %d).", num_layers, len(layers), num_layers)


def encoder_layer_count(auto_model_class, config, trust_remote_code: bool = False) -> int:
    """How many encoder layers a model of `config` has, found as `model_parts` finds them, on a model built on the
    meta device (no weights are allocated or read)."""
    import torch

    with torch.device("meta"):
        model = auto_model_class.from_config(config, trust_remote_code=trust_remote_code)
    return len(layer_list(getattr(model, backbone_name(model)))[1])
