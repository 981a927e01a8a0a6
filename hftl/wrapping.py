"""What a module the Trainer trains in place of a classifier (`AdaptationTask`, `MultiTaskModel`) must expose."""

from __future__ import annotations

import torch
from torch import nn


class ClassifierWrapper(nn.Module):
    """A module wrapping `self.classifier` (a transformers classifier, a peft model or a cached-feature head) that
    the Trainer trains, checkpoints and resumes: it reads the classifier's config, saves a state of contiguous
    tensors (safetensors refuses others, e.g. channels-last weights) and passes gradient checkpointing on.

    Subclasses set `self.classifier` in `__init__`.
    """

    classifier: nn.Module

    @property
    def config(self):  # lets the Trainer read the classifier's config
        return getattr(self.classifier, "config", None)

    def state_dict(self, *args, **kwargs):
        """The state, every tensor contiguous: the Trainer saves it with safetensors."""
        state = super().state_dict(*args, **kwargs)
        return {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in state.items()}

    def gradient_checkpointing_enable(self, **kwargs) -> None:
        self.classifier.gradient_checkpointing_enable(**kwargs)

    def gradient_checkpointing_disable(self) -> None:
        self.classifier.gradient_checkpointing_disable()
