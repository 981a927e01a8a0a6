"""CDAN+E as a registered method: a domain discriminator on the multilinear map of features and predictions.

Source: Long et al., "Conditional Adversarial Domain Adaptation", NeurIPS 2018 (arXiv:1705.10667); reference code:
thuml/CDAN and tllib's `alignment/cdan.py`. With importance weights it is IWCDAN (Tachet des Combes et al., NeurIPS
2020, arXiv:2003.04475).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from hftl.adaptation.dann import DomainAdversarialLoss, DomainDiscriminator
from hftl.adaptation.grl import grl_lambda
from hftl.adaptation.methods.base import AlignmentLoss, DomainOutputs, register_method

# the paper's rule: the exact map up to this many dimensions (d_f x d_g), the randomized one beyond it
MAX_MULTILINEAR_SIZE = 4096


@dataclass
class CDANArguments:
    """Flags of `--adaptation cdan`."""

    cdan_discriminator_hidden_size: int = field(
        default=1024, metadata={"help": "cdan: width of the discriminator MLP."}
    )
    cdan_discriminator_dropout: float = field(default=0.5, metadata={"help": "cdan: dropout in the discriminator."})
    cdan_randomized: bool | None = field(
        default=None,
        metadata={
            "help": "cdan: use the randomized multilinear map (fixed random projections to --cdan_randomized_dim) "
            "instead of the F x C outer product. Default: only when F x C > 4096, as in the paper."
        },
    )
    cdan_randomized_dim: int = field(default=1024, metadata={"help": "cdan: output size of the randomized map."})
    cdan_entropy_conditioning: bool = field(
        default=True,
        metadata={"help": "cdan: weight examples by 1 + exp(-entropy) of their prediction (CDAN+E; false: CDAN)."},
    )

    def __post_init__(self):
        from hftl.errors import InputError

        if self.cdan_discriminator_hidden_size < 1:
            raise InputError(
                f"--cdan_discriminator_hidden_size must be positive, got {self.cdan_discriminator_hidden_size}."
            )
        if not 0 <= self.cdan_discriminator_dropout < 1:
            raise InputError(f"--cdan_discriminator_dropout must be in [0, 1), got {self.cdan_discriminator_dropout}.")
        if self.cdan_randomized_dim < 1:
            raise InputError(f"--cdan_randomized_dim must be positive, got {self.cdan_randomized_dim}.")


def multilinear_map(features: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    """The multilinear map `T(f, g) = f ⊗ g`, flattened: entry `c * F + k` is `g_c * f_k` (CDAN eq. 4).

    Shape:
        features: (N, F), predictions: (N, C). Returns (N, C * F), in the promoted dtype of the two.

    Example:
        >>> multilinear_map(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.25, 0.75]]))
        tensor([[0.2500, 0.5000, 0.7500, 1.5000]])
    """
    return (predictions[:, :, None] * features[:, None, :]).flatten(1)


class RandomizedMultilinearMap(nn.Module):
    """The randomized multilinear map `T(f, g) = (R_f f) ⊙ (R_g g) / sqrt(d)` (CDAN eq. 5): an unbiased estimate of
    inner products under the exact map, with fixed Gaussian matrices R_f (d, F) and R_g (d, C) drawn once.

    R_f and R_g are buffers: saved with the Trainer's checkpoints, so a resumed run keeps the same map.

    Shape:
        features: (N, F), predictions: (N, C). Returns (N, d), float32.
    """

    def __init__(self, feature_size: int, num_labels: int, output_dim: int = 1024):
        super().__init__()
        self.register_buffer("r_f", torch.randn(feature_size, output_dim))
        self.register_buffer("r_g", torch.randn(num_labels, output_dim))

    def forward(self, features: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):
            product = (features.float() @ self.r_f) * (predictions.float() @ self.r_g)
        return product / math.sqrt(self.r_f.shape[1])


def entropy_weights(probabilities: torch.Tensor) -> torch.Tensor:
    """CDAN+E's example weights `w = 1 + exp(-H(g))`, H the entropy in nats: 2 for a one-hot prediction, 1 + 1/C for
    a uniform one over C classes. Detached (tllib's choice: the weights only rank the examples).

    Shape:
        probabilities: (N, C). Returns (N,), float32.
    """
    p = probabilities.detach().float()
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)
    return 1.0 + torch.exp(-entropy)


@register_method
class CDAN(AlignmentLoss):
    """`align_loss` = the domain discriminator's cross-entropy on `T(f, softmax(g))`, behind the gradient reversal
    layer whose coefficient follows `grl_lambda(progress, gamma)` (DANN's schedule).

    The predictions g are detached (tllib): the discriminator conditions on them, the gradient trains the features.
    With entropy conditioning each domain's term is the mean weighted by `1 + exp(-H(g))` (the weights normalised
    per domain, as in the reference code), so confident, transferable examples count more. Source weights `w_s`
    (importance weighting) multiply the source weights.

    Args:
        feature_size: F. num_labels: C.
        randomized: the randomized map (None: when F * C > 4096, the paper's rule).
        randomized_dim: d of the randomized map.

    Shape:
        source.features: (N_s, F), source.logits: (N_s, C); target likewise with N_t; w_s: (N_s,) or None.

    Example:
        >>> loss = CDAN(8, 3, hidden_size=16)
        >>> s = DomainOutputs(torch.randn(4, 8), torch.randn(4, 3))
        >>> t = DomainOutputs(torch.randn(6, 8), torch.randn(6, 3))
        >>> sorted(loss(s, t, progress=0.5))
        ['align_loss', 'grl_lambda']
    """

    name = "cdan"
    arguments_class = CDANArguments
    card_text = (
        "Conditional domain-adversarial training with entropy conditioning (CDAN+E; Long et al., NeurIPS 2018): a "
        "domain discriminator behind a gradient reversal layer, on the multilinear map of the features entering the "
        "classification layer and the predicted class probabilities"
    )
    resume_keys = ("cdan_discriminator_hidden_size", "cdan_randomized", "cdan_randomized_dim")

    def __init__(
        self,
        feature_size: int,
        num_labels: int,
        hidden_size: int = 1024,
        dropout: float = 0.5,
        gamma: float = 10.0,
        randomized: bool | None = None,
        randomized_dim: int = 1024,
        entropy_conditioning: bool = True,
    ):
        super().__init__()
        if randomized is None:
            randomized = feature_size * num_labels > MAX_MULTILINEAR_SIZE
        self.map = RandomizedMultilinearMap(feature_size, num_labels, randomized_dim) if randomized else None
        width = randomized_dim if randomized else feature_size * num_labels
        self.adversarial = DomainAdversarialLoss(DomainDiscriminator(width, hidden_size, dropout))
        self.gamma = gamma
        self.entropy_conditioning = entropy_conditioning

    @classmethod
    def from_arguments(cls, feature_size, num_labels, gamma, args: CDANArguments) -> CDAN:
        return cls(
            feature_size,
            num_labels,
            args.cdan_discriminator_hidden_size,
            args.cdan_discriminator_dropout,
            gamma,
            args.cdan_randomized,
            args.cdan_randomized_dim,
            args.cdan_entropy_conditioning,
        )

    def _conditioned(self, outputs: DomainOutputs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(T(f, g), entropy weights or None) of one domain's batch."""
        probabilities = F.softmax(outputs.logits.detach().float(), dim=-1)
        map_ = multilinear_map if self.map is None else self.map
        mapped = map_(outputs.features, probabilities)
        return mapped, entropy_weights(probabilities) if self.entropy_conditioning else None

    def forward(self, source: DomainOutputs, target: DomainOutputs, progress: float, w_s=None):
        coefficient = grl_lambda(progress, self.gamma)
        h_s, e_s = self._conditioned(source)
        h_t, e_t = self._conditioned(target)
        if w_s is not None:
            w_s = w_s.float() if e_s is None else e_s * w_s.float()
        else:
            w_s = e_s
        loss = self.adversarial(h_s, h_t, coefficient, w_s, e_t)
        return {"align_loss": loss, "grl_lambda": torch.tensor(coefficient)}
