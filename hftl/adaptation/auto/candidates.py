"""The candidates `--adaptation auto` trains, and the flags each one trains with: those of the plain run
`--adaptation METHOD --trade_off L [--importance_weighting]`, in its own folder."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

from hftl.config import RunConfig

logger = logging.getLogger("hftl")

SOURCE_ONLY = "none"
CANDIDATES_DIR = "candidates"


@dataclass(frozen=True)
class Candidate:
    """One candidate: source only (`method` "none"), or an alignment method at a trade-off, with or without
    importance weighting (label-shift correction)."""

    method: str
    trade_off: float = 0.0
    importance_weighting: bool = False

    @property
    def name(self) -> str:
        """ "none", "iw" (importance weighting alone), "mmd@1.0", "iwdann@0.3" ..."""
        prefix = "iw" if self.importance_weighting else ""
        if self.method == SOURCE_ONLY:
            return prefix or SOURCE_ONLY
        return f"{prefix}{self.method}@{float(self.trade_off)}"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "method": self.method,
            "trade_off": self.trade_off,
            "importance_weighting": self.importance_weighting,
        }


def _weighted(args, diagnosis) -> tuple[bool, str]:
    """(try the importance-weighted forms, why) for --auto_importance_weighting and the shift diagnosis (or None)."""
    choice = args.auto_importance_weighting
    if choice != "when_credible":
        return choice == "always", f"--auto_importance_weighting {choice}"
    if diagnosis is None:
        return False, "no shift diagnosis to say whether a label shift is credible"
    credible = bool(getattr(diagnosis, "label_shift_credible", False))
    return credible, "the diagnosis finds the label shift " + ("credible" if credible else "not credible")


def candidate_list(args, diagnosis=None) -> list[Candidate]:
    """Source only first, then every method at every trade-off; their importance-weighted forms (and importance
    weighting alone) too when `_weighted` says so.

    Args:
        args: `AutoAdaptationArguments`; diagnosis: the run's `ShiftDiagnosis`, or None.
    """
    plain = [Candidate(method, float(t)) for method in args.methods for t in args.auto_trade_offs]
    weighted, why = _weighted(args, diagnosis)
    candidates = [Candidate(SOURCE_ONLY), *plain]
    if weighted:
        candidates.append(Candidate(SOURCE_ONLY, 0.0, True))
        candidates += [dataclasses.replace(c, importance_weighting=True) for c in plain]
    logger.info(
        "--adaptation auto: %d candidates (%s); importance-weighted forms %s: %s.",
        len(candidates), ", ".join(c.name for c in candidates), "included" if weighted else "left out", why,
    )  # fmt: skip
    return candidates


def candidate_folder(config: RunConfig, candidate: Candidate) -> str:
    """Where a candidate trains and keeps its record: `output_dir/candidates/<name>`."""
    return os.path.join(config.training.output_dir, CANDIDATES_DIR, candidate.name)


def candidate_config(config: RunConfig, candidate: Candidate, output_dir: str | None = None) -> RunConfig:
    """The flags of the plain run that trains `candidate` (its method, trade-off and importance weighting), writing
    into `output_dir` (default: the main output folder)."""
    adaptation = dataclasses.replace(
        config.adaptation,
        adaptation=candidate.method,
        trade_off=candidate.trade_off,  # 0 for source only and importance weighting alone, which have no alignment
        importance_weighting=candidate.importance_weighting,
    )
    changed = {"adaptation": adaptation}
    if output_dir is not None:
        changed["training"] = dataclasses.replace(config.training, output_dir=output_dir)
    return dataclasses.replace(config, **changed)
