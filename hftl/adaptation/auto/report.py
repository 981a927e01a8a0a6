"""What `--adaptation auto` reports of its choice: `adaptation_selection.json`, one sentence in the log and a table
in the model card."""

from __future__ import annotations

import json
import logging
import os

from hftl.adaptation.scorers import get_scorer

logger = logging.getLogger("hftl")

SELECTION_FILE = "adaptation_selection.json"
TARGET_KEY = "target_test_never_used_for_choice"  # each candidate's true target figures: read for the record only


def selection_record(candidates: list[dict], selection, diagnosis, flags: dict, seconds: float) -> dict:
    """The content of `adaptation_selection.json`.

    Args:
        candidates: one dict per candidate (see `hftl.adaptation.auto.run`): name, method, trade_off,
            importance_weighting, scores, training_seconds, resumed and, when the target test split is labelled,
            `TARGET_KEY` (accuracy, balanced accuracy).
        selection: `Selection` (index, reason); diagnosis: `ShiftDiagnosis` or None; flags: the run's flags.
        seconds: wall time of the whole selection (training, scoring, choosing).
    """
    names = list(candidates[0]["scores"]) if candidates else []
    chosen = candidates[selection.index]
    return {
        "chosen": {k: chosen[k] for k in ("name", "method", "trade_off", "importance_weighting")},
        "chosen_index": selection.index,
        "reason": selection.reason,
        "diagnosis": diagnosis.as_dict() if diagnosis is not None else None,
        "scorers": {name: get_scorer(name).source for name in names},
        "candidates": candidates,
        "note": f"'{TARGET_KEY}': the candidate's accuracy on the labelled target test split, recorded for comparison "
        "only; the choice never read it (it reads the scores alone).",
        "wall_seconds": round(seconds, 1),
        "flags": flags,
    }


def write_selection(record: dict, output_dir: str) -> None:
    """Write `output_dir/adaptation_selection.json` and say the choice and its reason in one log line."""
    path = os.path.join(output_dir, SELECTION_FILE)
    temporary = f"{path}.{os.getpid()}.partial"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    os.replace(temporary, path)
    logger.info(
        "--adaptation auto kept %s of %d candidates: %s.",
        record["chosen"]["name"], len(record["candidates"]), record["reason"].rstrip("."),
    )  # fmt: skip


def _cell(value) -> str:
    return "" if value is None else f"{value:.4f}"


def selection_card_text(record: dict | None) -> str:
    """The model card's paragraph and table of the candidates ("" without a selection)."""
    if not record:
        return ""
    candidates = record["candidates"]
    names = list(candidates[0]["scores"])
    truth = any(c.get(TARGET_KEY) for c in candidates)
    header = ["candidate", *names, "train s", *(["target accuracy (not used)"] if truth else []), "kept"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for i, c in enumerate(candidates):
        cells = [f"`{c['name']}`", *(_cell(c["scores"][n]) for n in names), f"{c['training_seconds']:.1f}"]
        if truth:
            cells.append(_cell((c.get(TARGET_KEY) or {}).get("accuracy")))
        cells.append("**yes**" if i == record["chosen_index"] else "")
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"\n\nChosen by `--adaptation auto` among {len(candidates)} candidates trained with the same budget and "
        f"scored without target labels: {record['reason'].rstrip('.')}. Scores (higher is better) and each "
        f"candidate's training time are in `{SELECTION_FILE}`"
        + (", with each candidate's target accuracy, never used for the choice" if truth else "")
        + ".\n\n"
        + "\n".join(lines)
    )
