"""Activation checkpointing with frozen layers below trainable ones: every trainable parameter still gets a gradient.

Reentrant checkpointing (`--gradient_checkpointing_kwargs '{"use_reentrant": true}'`, torch's
`checkpoint(use_reentrant=True)`) computes a layer's gradients only when one of its positional inputs requires a
gradient. Below the first trainable layer nothing does when the embeddings are frozen (`freeze`, `two_stage`,
LoRA), so that layer's parameters silently never update: torch only warns "None of the inputs have requires_grad".
transformers works around it for `input_ids` models alone (`enable_input_require_grads`); a ViT or a Whisper encoder
(`pixel_values`, `input_features`) is left out. The hook below makes the hidden states entering a checkpointed layer
that has trainable parameters require a gradient, whatever the modality. Non-reentrant checkpointing (transformers'
default) needs none of this, so nothing is hooked then.
"""

from __future__ import annotations

import torch
from transformers.modeling_layers import GradientCheckpointingLayer


def uses_reentrant_checkpointing(training) -> bool:
    """True when `--gradient_checkpointing` is on and its kwargs ask for torch's reentrant variant."""
    kwargs = {
        k: v
        for k, v in (training.activation_checkpointing_kwargs or {}).items()
        if k not in ("every_n_layers", "offload")
    }
    return bool(training.activation_checkpointing) and bool(kwargs) and bool(kwargs.get("use_reentrant", True))


def _inputs_require_grad(module: torch.nn.Module, args: tuple) -> None:
    """Forward pre-hook: the floating-point positional inputs of a layer with trainable parameters require grad."""
    if not (module.training and torch.is_grad_enabled()):
        return
    if not any(p.requires_grad for p in module.parameters()):
        return  # a frozen layer: no gradient to compute, and none wasted on its inputs
    for value in args:
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not value.requires_grad:
            value.requires_grad_(True)  # a leaf: it was computed without gradients


def keep_gradients_flowing(model: torch.nn.Module, training) -> int:
    """Hook every checkpointed layer of `model` under reentrant checkpointing (see the module docstring).

    Trainability is read at each forward, so stages that unfreeze layers later (`two_stage`) are covered.

    Returns:
        The number of layers hooked (0 without reentrant checkpointing).
    """
    if not uses_reentrant_checkpointing(training):
        return 0
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers:
        layer.register_forward_pre_hook(_inputs_require_grad)
    return len(layers)
