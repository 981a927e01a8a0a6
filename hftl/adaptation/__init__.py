"""Domain adaptation: alignment methods (one file each in `methods/`), the training task that adds them to the
classification loss, source / target pairing, label-shift correction, the shift diagnosis and the domain-gap report."""

from hftl.adaptation.dann import DomainAdversarialLoss, DomainDiscriminator
from hftl.adaptation.diagnosis import ShiftDiagnosis, diagnose_shift
from hftl.adaptation.grl import GradientReversalLayer, gradient_reverse, grl_lambda
from hftl.adaptation.label_shift import bbse_prior, em_prior, estimate_target_prior, importance_weights
from hftl.adaptation.methods import AlignmentLoss, DomainOutputs, get_method, method_names, register_method
from hftl.adaptation.mmd import MultipleKernelMMDLoss, multiple_kernel_mmd
from hftl.adaptation.pairing import AdaptationCallback, DomainPairCollator, PairedDomainDataset
from hftl.adaptation.task import AdaptationTask

__all__ = [
    "AdaptationCallback",
    "AdaptationTask",
    "AlignmentLoss",
    "DomainAdversarialLoss",
    "DomainDiscriminator",
    "DomainOutputs",
    "DomainPairCollator",
    "GradientReversalLayer",
    "MultipleKernelMMDLoss",
    "PairedDomainDataset",
    "ShiftDiagnosis",
    "bbse_prior",
    "diagnose_shift",
    "em_prior",
    "estimate_target_prior",
    "get_method",
    "gradient_reverse",
    "grl_lambda",
    "importance_weights",
    "method_names",
    "multiple_kernel_mmd",
    "register_method",
]
