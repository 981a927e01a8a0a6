"""Label-free scorers of trained domain-adaptation candidates: one file each, registered by name (see `base.py`).

Importing a scorer's module registers it; the lines at the end, one per scorer, are every scorer hftl ships.
"""
# ruff: noqa: E402, F401, I001

from hftl.adaptation.scorers.base import (
    CandidateOutputs,
    Scorer,
    get_scorer,
    register_scorer,
    score_all,
    scorer_names,
)

__all__ = ["CandidateOutputs", "Scorer", "get_scorer", "register_scorer", "score_all", "scorer_names"]

from hftl.adaptation.scorers import source_accuracy
from hftl.adaptation.scorers import iwcv
from hftl.adaptation.scorers import dev
from hftl.adaptation.scorers import entropy
from hftl.adaptation.scorers import snd
from hftl.adaptation.scorers import mutual_information
from hftl.adaptation.scorers import class_balance
