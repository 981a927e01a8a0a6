"""PLACEHOLDER (branch i10-auto only): the minimal `select_candidate` of the contract, so that `--adaptation auto`
runs and its tests pass. The scorers helper owns this file; the lead replaces it with that version at merge.

Rule here: the candidate with the highest `source_accuracy`; source only is kept unless a candidate beats it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScoredCandidate:
    name: str
    method: str
    trade_off: float
    importance_weighting: bool
    scores: dict[str, float]


@dataclass(frozen=True)
class Selection:
    index: int
    reason: str


def select_candidate(candidates: list[ScoredCandidate], diagnosis=None) -> Selection:
    """The index of the kept candidate and why (placeholder rule, see the module docstring)."""
    source = next(i for i, c in enumerate(candidates) if c.method == "none" and not c.importance_weighting)
    best = max(range(len(candidates)), key=lambda i: candidates[i].scores.get("source_accuracy", float("-inf")))
    if candidates[best].scores["source_accuracy"] > candidates[source].scores["source_accuracy"]:
        return Selection(best, f"{candidates[best].name} has the highest source validation accuracy")
    return Selection(source, "no candidate beats source only on source validation accuracy")
