"""Domain adaptation: alignment losses (DANN, MMD), label-shift correction and the domain-gap report."""

from hftl.adaptation.dann import DomainAdversarialLoss, DomainDiscriminator
from hftl.adaptation.grl import GradientReversalLayer, gradient_reverse, grl_lambda
from hftl.adaptation.label_shift import bbse_prior, em_prior, estimate_target_prior, importance_weights
from hftl.adaptation.mmd import MultipleKernelMMDLoss, multiple_kernel_mmd
from hftl.adaptation.model import (
    METHODS,
    DomainAdaptationCallback,
    DomainAdaptationModel,
    DomainPairCollator,
    PairedDomainDataset,
    base_method,
)

__all__ = [
    "METHODS",
    "DomainAdaptationCallback",
    "DomainAdaptationModel",
    "DomainAdversarialLoss",
    "DomainDiscriminator",
    "DomainPairCollator",
    "GradientReversalLayer",
    "MultipleKernelMMDLoss",
    "PairedDomainDataset",
    "base_method",
    "bbse_prior",
    "em_prior",
    "estimate_target_prior",
    "gradient_reverse",
    "grl_lambda",
    "importance_weights",
    "multiple_kernel_mmd",
]
