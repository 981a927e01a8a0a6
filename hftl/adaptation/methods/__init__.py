"""Domain-alignment methods: one file each, registered by name (see `base.py`).

Importing a method's module registers it; the lines below are the registration of every method hftl ships.
"""

from hftl.adaptation.methods.base import (
    AlignmentLoss,
    DomainOutputs,
    get_method,
    method_names,
    register_method,
)
from hftl.adaptation.methods import dann, mmd  # noqa: E402,F401  (registration)
from hftl.adaptation.methods import coral  # noqa: E402,F401

__all__ = ["AlignmentLoss", "DomainOutputs", "get_method", "method_names", "register_method"]
