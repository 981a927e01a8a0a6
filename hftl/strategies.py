"""Adaptation strategies: which parameters of a pretrained classifier train.

A classifier is seen as three parts, found from the model's structure rather than from per-architecture names:

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

from hftl.arguments import StrategyArguments
from hftl.errors import InputError

logger = logging.getLogger(__name__)

# LoRA target modules by model type, for models without attention projections of a common name
LORA_TARGET_MODULES = {
    "hftl_efficientnet_lite": ["expand_conv", "project_conv"],
    "resnet": ["convolution"],
    "convnext": ["pwconv1", "pwconv2"],
}
# attention projections, most specific first: the first group whose names all exist in the backbone is the default
ATTENTION_PROJECTIONS = (
    ("query", "value"),
    ("q_proj", "v_proj"),
    ("q_lin", "v_lin"),
    ("query_proj", "value_proj"),
    ("q", "v"),
    ("Wqkv",),
    ("qkv",),
    ("c_attn",),
    ("query_key_value",),
)


# Learning rates used when --learning_rate is not given: a head trained alone, or LoRA adapters, need far larger
# steps than full fine-tuning (measured on all-MiniLM-L6-v2 + Rotten Tomatoes, README).
DEFAULT_LEARNING_RATES = {"feature_extraction": 1e-2, "two_stage": 1e-2, "lora": 2e-3}


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


def _layer_list(backbone: nn.Module) -> tuple[str, nn.ModuleList]:
    """The backbone's stack of encoder layers: its `nn.ModuleList` of one block type with the most parameters."""
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
    backbone = getattr(model, prefix)
    layer_list_name, layer_list = _layer_list(backbone)
    layer_names = [f"{prefix}.{layer_list_name}.{i}" for i in range(len(layer_list))]
    layer_prefix = f"{prefix}.{layer_list_name}."
    names = [name for name, _ in model.named_parameters()]
    backbone_names = [n for n in names if n.startswith(prefix + ".")]
    in_layers = [i for i, n in enumerate(backbone_names) if n.startswith(layer_prefix)]
    first, last = in_layers[0], in_layers[-1]
    return ModelParts(
        backbone_prefix=prefix,
        layers=layer_names,
        embeddings=[n for n in backbone_names[:first]],
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


def _set_trainable(model: nn.Module, trainable: set[str]) -> None:
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name in trainable


def freeze_backbone(model: nn.Module, parts: ModelParts) -> None:
    """Train only the head and the new modules (feature extraction, and stage 1 of two_stage)."""
    _set_trainable(model, set(parts.head) | set(parts.new))


def freeze_bottom(model: nn.Module, parts: ModelParts, num_frozen_layers: int) -> None:
    """Freeze the embeddings and the first `num_frozen_layers` encoder layers (new modules still train)."""
    if num_frozen_layers > len(parts.layers):
        raise InputError(
            f"--num_frozen_layers {num_frozen_layers} exceeds the model's {len(parts.layers)} encoder layers."
        )
    frozen = set(parts.embeddings) | set(parts.layer_parameters(model, parts.layers[:num_frozen_layers]))
    _set_trainable(model, {n for n, _ in model.named_parameters() if n not in frozen} | set(parts.new))


def unfreeze_top(model: nn.Module, parts: ModelParts, unfreeze_top_k: int) -> None:
    """Train the top `unfreeze_top_k` encoder layers, what follows them, the head and new modules (stage 2)."""
    if unfreeze_top_k > len(parts.layers):
        raise InputError(f"--unfreeze_top_k {unfreeze_top_k} exceeds the model's {len(parts.layers)} encoder layers.")
    top = parts.layer_parameters(model, parts.layers[-unfreeze_top_k:])
    _set_trainable(model, set(top) | set(parts.after_layers) | set(parts.head) | set(parts.new))


def _module_names(parameter_names: list[str]) -> list[str]:
    return sorted({name.rsplit(".", 1)[0] for name in parameter_names if "." in name})


def lora_target_modules(model: nn.Module, requested: list[str] | None) -> list[str]:
    """The LoRA target modules: `requested`, or the model's attention query / value projections.

    Defaults come from `LORA_TARGET_MODULES` for the model type, else from the first group of
    `ATTENTION_PROJECTIONS` whose names all exist in the backbone (names change between transformers versions:
    ViT's `query` became `q_proj` in 5.x, so they are looked up, not assumed).

    Raises:
        InputError: a requested name matches no module, or no default applies; the message lists the candidate
            names (the leaf names of the backbone's `nn.Linear` / `nn.Conv*` modules).
    """
    prefix = backbone_name(model)
    leaves = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if name.startswith(prefix + ".") and isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d)
    }
    if requested:
        missing = [t for t in requested if t not in leaves]
        if missing:
            raise InputError(
                f"--lora_target_modules {missing} match no module of {type(model).__name__}. "
                f"Candidates: {sorted(leaves)}."
            )
        return list(requested)
    model_type = getattr(model.config, "model_type", "")
    groups = ([LORA_TARGET_MODULES[model_type]] if model_type in LORA_TARGET_MODULES else []) + [
        list(group) for group in ATTENTION_PROJECTIONS
    ]
    for group in groups:
        if all(name in leaves for name in group):
            return group
    raise InputError(
        f"No default LoRA target modules for {type(model).__name__} (model type '{model_type}'). Pass "
        f"--lora_target_modules, choosing among: {sorted(leaves)}."
    )


def apply_lora(model: nn.Module, parts: ModelParts, args: StrategyArguments, task_type: str | None):
    """Wrap `model` in peft LoRA adapters; the head and every new module train in full and are saved.

    Returns:
        A `peft.PeftModel`.
    """
    from peft import LoraConfig, get_peft_model

    head_modules = sorted({name.split(".", 1)[0] for name in parts.head})
    new_in_backbone = [m for m in _module_names(parts.new) if m.startswith(parts.backbone_prefix + ".")]
    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=lora_target_modules(model, args.lora_target_modules),
        modules_to_save=head_modules + new_in_backbone,
        task_type=task_type,
    )
    logger.info(
        "LoRA on %s (r=%d, alpha=%g); trained and saved in full: %s",
        config.target_modules,
        args.lora_r,
        args.lora_alpha,
        config.modules_to_save,
    )
    return get_peft_model(model, config)


def apply_strategy(model: nn.Module, parts: ModelParts, args: StrategyArguments, task_type: str | None = None):
    """Set `requires_grad` (or add adapters) for the chosen strategy; returns the model to train.

    For `two_stage` this sets up stage 1 (backbone frozen); `unfreeze_top` sets up stage 2.
    """
    if args.strategy == "full":
        _set_trainable(model, {n for n, _ in model.named_parameters()})
    elif args.strategy in ("feature_extraction", "two_stage"):
        freeze_backbone(model, parts)
    elif args.strategy == "freeze":
        n = args.num_frozen_layers if args.num_frozen_layers is not None else len(parts.layers) // 2
        logger.info("Freezing the embeddings and the first %d of %d encoder layers.", n, len(parts.layers))
        freeze_bottom(model, parts, n)
    elif args.strategy == "lora":
        model = apply_lora(model, parts, args, task_type)
    else:  # unreachable: the flag's choices are checked by the parser
        raise InputError(f"Unknown --strategy {args.strategy}.")
    return model


LAYER_COUNT_KEYS = ("num_hidden_layers", "encoder_layers", "num_layers")


def keep_bottom_layers(model: nn.Module, num_layers: int) -> None:
    """Drop the encoder layers above layer `num_layers` (1-based) from `model` and its config, in place.

    The model then computes its head on the output of that layer (after the backbone's final norm, if it has one),
    and `save_pretrained` writes a model of `num_layers` layers that loads as the same class.

    Raises:
        InputError: `num_layers` exceeds the model's layers, or the config names its layer count in no known key.
    """
    prefix = backbone_name(model)
    backbone = getattr(model, prefix)
    list_name, layers = _layer_list(backbone)
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
