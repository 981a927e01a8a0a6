"""How far the class prior moved from source to target, and how far to trust that figure (for the shift diagnosis).

Three estimators from one linear probe on the pretrained source features (`hftl.adaptation.label_shift`): BBSE
(Lipton et al., ICML 2018), EM (Saerens et al. 2002) and EM-BCTS (EM on bias-corrected temperature-scaled posteriors,
Alexandari et al., ICML 2020). The confidence signals: the total variation between BBSE's and EM-BCTS's estimates
(two estimators built on different assumptions agree when the label-shift model fits), the condition number of BBSE's
source confusion matrix (a large one makes BBSE's linear solve unstable, Lipton et al. Thm. 3), and a bootstrap
percentile interval on EM-BCTS's total variation from the source prior (target examples resampled).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hftl.adaptation.bcts import fit_calibration
from hftl.adaptation.label_shift import SourceProbe, bbse_prior, em_prior, fit_probe, total_variation

BOOTSTRAP = 100
MAX_BOOTSTRAP_EXAMPLES = 2000  # target examples per bootstrap EM


@dataclass(frozen=True)
class PriorEvidence:
    """Attributes:
    source_prior: (C,) the source train split's class shares.
    estimates: "bbse", "em", "em_bcts" -> (C,) estimated target prior.
    prior_change: total variation between the source prior and EM-BCTS's estimate, in [0, 1].
    prior_change_interval: (low, high), its bootstrap percentile interval (90%).
    disagreement: total variation between BBSE's and EM-BCTS's estimates.
    condition_number: of BBSE's joint source confusion matrix (C, C) (1: perfect classifier; inf: singular).
    temperature: BCTS's fitted temperature.
    """

    source_prior: np.ndarray
    estimates: dict[str, np.ndarray]
    prior_change: float
    prior_change_interval: tuple[float, float]
    disagreement: float
    condition_number: float
    temperature: float

    @property
    def weights(self) -> np.ndarray:
        """(C,) `w_y = p_t(y) / p_s(y)` from EM-BCTS's estimate (0 for a class absent from the source)."""
        source = self.source_prior
        return np.where(source > 0, self.estimates["em_bcts"] / np.clip(source, 1e-12, None), 0.0)


def _confusion_condition(probabilities: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    one_hot = np.eye(num_classes)[labels]
    confusion = probabilities.T @ one_hot / len(labels)
    return float(np.linalg.cond(confusion))


def _bootstrap_change(probabilities: np.ndarray, source_prior: np.ndarray, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    if len(probabilities) > MAX_BOOTSTRAP_EXAMPLES:
        probabilities = probabilities[rng.choice(len(probabilities), MAX_BOOTSTRAP_EXAMPLES, replace=False)]
    changes = [
        total_variation(
            source_prior,
            em_prior(
                probabilities[rng.integers(0, len(probabilities), len(probabilities))],
                source_prior,
                max_iterations=300,
                tolerance=1e-6,
            ),
        )
        for _ in range(BOOTSTRAP)
    ]
    low, high = np.percentile(changes, [5, 95])
    return float(low), float(high)


def prior_evidence(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    heldout_features: np.ndarray,
    heldout_labels: np.ndarray,
    target_features: np.ndarray,
    num_classes: int,
    seed: int = 0,
    probe: SourceProbe | None = None,
) -> PriorEvidence:
    """The three prior estimates and their confidence signals, from one probe.

    Args:
        train_features: (N, F) source features the probe trains on; train_labels (N,).
        heldout_features: (M, F) held-out source features (BBSE's confusion matrix, BCTS's calibration);
            heldout_labels (M,).
        target_features: (K, F) unlabelled target features.
        num_classes: C.
        probe: a `SourceProbe` already fitted on the train features (else one is fitted here).

    Returns:
        `PriorEvidence`. A class absent from the held-out labels makes the confusion matrix singular: BBSE's estimate
        is then EM's and the condition number infinite.
    """
    heldout_labels = np.asarray(heldout_labels)
    probe = probe if probe is not None else fit_probe(train_features, train_labels, num_classes, seed)
    heldout_log = probe.log_probabilities(heldout_features)
    target_log = probe.log_probabilities(target_features)
    target = np.exp(target_log)
    calibration = fit_calibration(heldout_log, heldout_labels)
    calibrated = calibration.probabilities(target_log)
    estimates = {"em": em_prior(target, probe.prior), "em_bcts": em_prior(calibrated, probe.prior)}
    complete = len(set(heldout_labels.tolist())) == num_classes
    if complete:
        estimates["bbse"] = bbse_prior(np.exp(heldout_log), heldout_labels, target)
        condition = _confusion_condition(np.exp(heldout_log), heldout_labels, num_classes)
    else:
        estimates["bbse"], condition = estimates["em"], float("inf")
    return PriorEvidence(
        probe.prior,
        estimates,
        total_variation(probe.prior, estimates["em_bcts"]),
        _bootstrap_change(calibrated, probe.prior, seed),
        total_variation(estimates["bbse"], estimates["em_bcts"]),
        condition,
        calibration.temperature,
    )
