"""Class balance of the target predictions: a collapse detector, read by the selection rule's veto.

`H(histogram of argmax target predictions) / H(source class prior)`, capped at 1: 1 when the candidate spreads its
target predictions over the classes at least as evenly as the source labels are spread, 0 when it predicts one class
for every target example. It is the failure that entropy minimisation and SND reward (Saito et al., ICCV 2021,
section 5 discuss it; Musgrave et al., arXiv 2208.07360, report validators that pick such models) and that the issue
saw in skada's benchmark. Under a real label shift towards a skewed target prior it falls too, which is why the
selection rule also compares it with the source-only model's (`selection.py`).
"""

from __future__ import annotations

import numpy as np

from hftl.adaptation.scorers.base import CandidateOutputs, register_scorer
from hftl.adaptation.scorers.entropy import entropy_rows


def prediction_balance(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """min(1, H(share of each predicted class) / H(share of each source label)), in [0, 1] (1 when the source prior
    has one class).

    Shape:
        predictions (N_t,) class ids, labels (N_s,) class ids.

    Example:
        >>> prediction_balance(np.array([0, 0, 0]), np.array([0, 1]), 2)  # one class predicted
        0.0
        >>> prediction_balance(np.array([0, 1]), np.array([1, 1, 0]), 2)  # more even than the source prior
        1.0
    """
    predicted = np.bincount(np.asarray(predictions), minlength=num_classes) / max(len(predictions), 1)
    prior = np.bincount(np.asarray(labels), minlength=num_classes) / max(len(labels), 1)
    reference = float(entropy_rows(prior))
    return 1.0 if reference <= 0 else float(min(1.0, entropy_rows(predicted) / reference))


@register_scorer("class_balance", source="collapse check (Saito et al., ICCV 2021, sec. 5; Musgrave et al., 2022)")
def class_balance(outputs: CandidateOutputs) -> float:
    """`prediction_balance` of argmax target_logits (N_t, C) against source_labels (N_s,): in [0, 1], higher is
    better; below 0.5 the selection rule treats the candidate as collapsed (unless source only is as skewed)."""
    logits = np.asarray(outputs.target_logits)
    return prediction_balance(np.argmax(logits, axis=1), outputs.source_labels, logits.shape[1])
