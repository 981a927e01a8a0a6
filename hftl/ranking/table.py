"""The ranking: every candidate's transferability scores on the source labels, its domain gap to the target, its
size and speed; ordered by LogME, printed as a table and written as JSON.

Ranking rule: highest LogME first (You et al. 2021 found it the most reliable of the label-based scores across model
hubs; it needs no hyper-parameter), ties broken by fewer parameters. H-score and TransRate are shown beside it as
second opinions, and the domain gap (MMD^2 and proxy A-distance, `hftl.adaptation.report`) as a warning that the
source score may not carry over to the target: it does not enter the order, since a small gap says nothing of how
well the classes separate.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np

from hftl.ranking.candidates import Candidate
from hftl.ranking.hscore import h_score
from hftl.ranking.logme import logme
from hftl.ranking.transrate import transrate

logger = logging.getLogger("hftl")

SCORES = {"logme": logme, "h_score": h_score, "transrate": transrate}
RANK_BY = "logme"
RANKING_RULE = "highest LogME on the source training data first, ties by fewer parameters"


def score_candidate(candidate: Candidate, labels: np.ndarray, seed: int = 0) -> dict:
    """One row of the ranking: the candidate's scores (higher is better), its domain gap (lower is closer; None
    without target data), parameters and examples per second."""
    from hftl.adaptation.report import domain_gap

    row = {
        "model": candidate.model,
        "layer": candidate.layer,
        "layer_name": candidate.name,
        "feature_layer_croppable": candidate.croppable,
        "feature_size": int(candidate.source.shape[1]),
    }
    row.update({name: round(float(score(candidate.source, labels)), 6) for name, score in SCORES.items()})
    gap = domain_gap(candidate.source, candidate.target, seed=seed) if candidate.target is not None else {}
    row["mmd"], row["proxy_a_distance"] = gap.get("mmd"), gap.get("proxy_a_distance")
    row["parameters"] = candidate.parameters
    speed = candidate.examples_per_second
    row["examples_per_second"] = round(speed, 2) if math.isfinite(speed) else None
    return row


def rank_rows(rows: list[dict]) -> list[dict]:
    """`rows` ordered by the ranking rule (`RANKING_RULE`), each given its 1-based `rank`."""
    ordered = sorted(rows, key=lambda row: (-row[RANK_BY], row["parameters"]))
    return [{"rank": i + 1, **row} for i, row in enumerate(ordered)]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    """The ranked rows as a plain-text table (model, layer, scores, domain gap, parameters, examples/s)."""
    columns = ["rank", "model", "layer_name", *SCORES, "mmd", "proxy_a_distance", "parameters", "examples_per_second"]
    heads = ["rank", "model", "layer", "LogME", "H-score", "TransRate", "MMD^2", "PAD", "params", "examples/s"]
    cells = [[_cell(row[c]) if c != "model" else _short(row[c]) for c in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _short(path: str) -> str:
    return path if len(path) <= 40 else "..." + path[-37:]


def write_ranking(rows: list[dict], path: str, about: dict) -> None:
    """Write `{"ranking_rule", **about, "candidates": rows}` as JSON to `path`."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"ranking_rule": RANKING_RULE, **about, "candidates": rows}, handle, indent=2)
