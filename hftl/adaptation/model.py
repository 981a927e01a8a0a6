"""Training-time wrapper: a classifier plus an alignment loss (DANN or MMD) on the features entering its head.

The wrapper owns the loss: `L = L_cls(source) + trade_off * L_align(f_s, f_t)`, with the classifier untouched
inside it. The `Trainer` trains, checkpoints and resumes the wrapper (so the domain discriminator and the data
order live in the checkpoints); the saved or pushed model is the classifier alone, a plain Hugging Face model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset
from transformers import TrainerCallback, default_data_collator

from hftl.adaptation.dann import DomainAdversarialLoss, DomainDiscriminator
from hftl.adaptation.grl import grl_lambda
from hftl.adaptation.mmd import MultipleKernelMMDLoss

TARGET_PREFIX = "target_"
METHODS = ("none", "dann", "mmd", "iwdann", "iwmmd")


def base_method(method: str) -> str:
    """ "dann" for "dann" and "iwdann", "mmd" for "mmd" and "iwmmd", "none" for "none"."""
    return method[2:] if method.startswith("iw") else method


class DomainAdaptationModel(nn.Module):
    """A classifier trained with a domain-alignment loss on the input of its classification layer.

    Each training batch holds source inputs (with `labels`) and target inputs (keys prefixed `target_`, no
    labels). The classifier runs on both; the features entering `feature_layer` are captured by a forward
    pre-hook, and the loss is `L_cls + trade_off * L_domain` (DANN: the GRL coefficient follows `grl_lambda` of the
    training progress) or `L_cls + trade_off * lambda_p * MMD^2` (MMD: the same ramp, so that alignment starts once
    the features carry class information). With `class_weights` (w_y = p_t(y) / p_s(y): IWDAN / IW-MMD), source
    examples are weighted by the weight of their class in both terms. In evaluation (no target inputs) it is the
    classifier with its cross-entropy loss.

    `training_progress` (optimizer steps done / total, in [0, 1]) is set before each step by
    `DomainAdaptationCallback` from the Trainer's state, so it is restored with the state on resume.

    Args:
        classifier: a `...ForSequence/Image/AudioClassification` model (or a peft model, or `CachedFeatureHead`),
            returning `logits` (N, C).
        feature_layer: name (in `classifier`) of the module whose input is aligned, e.g. "classifier".
        method: "dann", "mmd", "iwdann" or "iwmmd".
        feature_size: F, the width of the aligned features.
        trade_off: weight of the alignment loss.
        gamma: the GRL schedule's rate (see `grl_lambda`).
        class_weights: (C,) importance weights for the iw methods, or None.
        discriminator_hidden_size, discriminator_dropout: the domain discriminator's MLP (DANN).
        mmd_kernel_multipliers, mmd_estimator: see `multiple_kernel_mmd`.
    """

    def __init__(
        self,
        classifier: nn.Module,
        feature_layer: str,
        method: str,
        feature_size: int,
        trade_off: float = 1.0,
        gamma: float = 10.0,
        class_weights: torch.Tensor | None = None,
        discriminator_hidden_size: int = 1024,
        discriminator_dropout: float = 0.5,
        mmd_kernel_multipliers: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0),
        mmd_estimator: str = "unbiased",
    ):
        super().__init__()
        if method not in METHODS[1:]:
            raise ValueError(f"method must be one of {METHODS[1:]}, got {method!r}")
        self.classifier = classifier
        self.feature_layer = feature_layer
        self.method = method
        self.trade_off = trade_off
        self.gamma = gamma
        self.training_progress = 0.0
        self.last_domain_loss: torch.Tensor | None = None
        if base_method(method) == "dann":
            self.alignment = DomainAdversarialLoss(
                DomainDiscriminator(feature_size, discriminator_hidden_size, discriminator_dropout)
            )
        else:
            self.alignment = MultipleKernelMMDLoss(mmd_kernel_multipliers, mmd_estimator)
        if method.startswith("iw") and class_weights is None:
            raise ValueError(f"method {method!r} needs class_weights")
        self.register_buffer(
            "class_weights", None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        )

    @property
    def config(self):  # lets the Trainer read the classifier's config
        return getattr(self.classifier, "config", None)

    def state_dict(self, *args, **kwargs):
        """The state, every tensor contiguous (channels-last weights too): the Trainer saves it with safetensors."""
        state = super().state_dict(*args, **kwargs)
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and not value.is_contiguous():
                state[key] = value.contiguous()
        return state

    def gradient_checkpointing_enable(self, **kwargs) -> None:
        self.classifier.gradient_checkpointing_enable(**kwargs)

    def gradient_checkpointing_disable(self) -> None:
        self.classifier.gradient_checkpointing_disable()

    def _classify(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        captured: list[torch.Tensor] = []
        layer = self.classifier.get_submodule(self.feature_layer)
        handle = layer.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
        try:
            output = self.classifier(**inputs)
        finally:
            handle.remove()
        return output["logits"], captured[-1]

    def forward(self, labels: torch.Tensor | None = None, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        source = {k: v for k, v in inputs.items() if not k.startswith(TARGET_PREFIX)}
        target = {k[len(TARGET_PREFIX) :]: v for k, v in inputs.items() if k.startswith(TARGET_PREFIX)}
        logits, f_s = self._classify(source)
        output = {"logits": logits}
        if labels is None:
            return output
        # importance weights in training only: evaluation reports the classifier's plain cross-entropy
        weights = self.class_weights if self.method.startswith("iw") and self.training else None
        if weights is None:
            loss = F.cross_entropy(logits.float(), labels)
        else:  # a weighted mean that stays finite when every example of the batch has weight 0
            w = weights[labels]
            loss = (F.cross_entropy(logits.float(), labels, reduction="none") * w).sum() / w.sum().clamp_min(1e-6)
        output["classification_loss"] = loss.detach()
        if target and self.training:
            _, f_t = self._classify(target)
            coefficient = grl_lambda(self.training_progress, self.gamma)
            w_s = None if weights is None else weights[labels]
            if base_method(self.method) == "dann":
                domain_loss = self.alignment(f_s, f_t, coefficient, w_s)
                loss = loss + self.trade_off * domain_loss
            else:
                domain_loss = self.alignment(f_s, f_t, w_s)
                loss = loss + self.trade_off * coefficient * domain_loss
            output["domain_loss"] = domain_loss.detach()
            self.last_domain_loss = domain_loss.detach()  # read when the Trainer logs (no sync per step)
        output["loss"] = loss
        return output


class PairedDomainDataset(Dataset):
    """Source examples, each paired with a target example (its inputs under `target_` keys, labels dropped).

    Example i of epoch e is paired with target example `order[(e * len(source) + i) % len(target)]`, `order` a
    seeded permutation: the pairing depends only on the index and the epoch (set by `DomainAdaptationCallback`),
    so a resumed run pairs exactly as an uninterrupted one, and over the epochs every target example is used.
    An epoch is one pass over the source.
    """

    def __init__(self, source, target, seed: int = 0):
        if len(target) == 0:
            raise ValueError("the target dataset is empty")
        self.source = source
        self.target = target
        self.order = np.random.default_rng(seed).permutation(len(target))
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        example = dict(self.source[index])
        target_index = int(self.order[(self.epoch * len(self.source) + index) % len(self.target)])
        paired = self.target[target_index]
        example.update({TARGET_PREFIX + k: v for k, v in paired.items() if k != "labels"})
        return example


class DomainPairCollator:
    """Collates the source and the `target_` parts of paired examples separately with the same collator
    (they are padded to their own lengths)."""

    def __init__(self, collator=None):
        self.collator = collator or default_data_collator

    def __call__(self, features: list[dict]) -> dict:
        source = [{k: v for k, v in f.items() if not k.startswith(TARGET_PREFIX)} for f in features]
        target = [{k[len(TARGET_PREFIX) :]: v for k, v in f.items() if k.startswith(TARGET_PREFIX)} for f in features]
        batch = dict(self.collator(source))
        if target and target[0]:
            batch.update({TARGET_PREFIX + k: v for k, v in self.collator(target).items()})
        return batch


class DomainAdaptationCallback(TrainerCallback):
    """Sets the wrapper's training progress (global_step / max_steps) before every optimizer step and the
    paired dataset's epoch before every epoch, both from the Trainer's state (restored on resume)."""

    def __init__(self, model: DomainAdaptationModel, dataset: PairedDomainDataset | None = None):
        self.model = model
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.dataset is not None:
            self.dataset.epoch = int(math.floor(state.epoch + 1e-6)) if state.epoch else 0

    def on_step_begin(self, args, state, control, **kwargs):
        self.model.training_progress = state.global_step / max(state.max_steps, 1)
