"""Domain-alignment methods: one file each, registered by name (see `base.py`).

Importing a method's module registers it; the lines at the end, one per method, are the registration of every method
hftl ships.
"""
# ruff: noqa: E402, F401, I001

from hftl.adaptation.methods.base import (
    AlignmentLoss,
    DomainOutputs,
    get_method,
    method_names,
    register_method,
)

__all__ = ["AlignmentLoss", "DomainOutputs", "get_method", "method_names", "register_method"]

from hftl.adaptation.methods import dann
from hftl.adaptation.methods import mmd
from hftl.adaptation.methods import coral
from hftl.adaptation.methods import cdan
from hftl.adaptation.methods import mcc
from hftl.adaptation.methods import self_training
