"""Label shift: estimate the target class prior without target labels, and the class importance weights.

Sources: Lipton, Wang & Smola, "Detecting and Correcting for Label Shift with Black Box Predictors", ICML 2018
(arXiv:1802.03916), black-box shift estimation (BBSE); Saerens, Latinne & Decaestecker, "Adjusting the Outputs of
a Classifier to New a Priori Probabilities", Neural Computation 2002 (EM re-weighting). The weights
w_y = p_t(y) / p_s(y) weight source examples in the alignment and classification losses as in IWDAN (Tachet des
Combes et al., NeurIPS 2020, arXiv:2003.04475). EM-BCTS: EM on posteriors calibrated by bias-corrected temperature
scaling (Alexandari, Kundaje & Shrikumar, ICML 2020, arXiv:1901.06852; `hftl.adaptation.bcts`).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

logger = logging.getLogger(__name__)

ESTIMATORS = ("bbse", "em", "em_bcts")


def _normalise(prior: np.ndarray) -> np.ndarray:
    prior = np.clip(np.asarray(prior, dtype=np.float64), 0.0, None)
    total = prior.sum()
    return prior / total if total > 0 else np.full(len(prior), 1.0 / len(prior))


def bbse_prior(
    source_probabilities: np.ndarray,
    source_labels: np.ndarray,
    target_probabilities: np.ndarray,
) -> np.ndarray:
    """Target class prior by black-box shift estimation (Lipton et al. 2018), with soft predictions.

    Solves `C w = mu_t` for the importance weights w, where `C[i, j] = E_s[p(yhat = i | x) 1{y = j}]` is the
    joint confusion matrix on held-out labelled *source* data and `mu_t[i] = E_t[p(yhat = i | x)]` the mean
    prediction on unlabelled *target* data; then `p_t = w * p_s` (p_s: the held-out examples' class shares),
    clipped at 0 and renormalised. Consistent under label shift (p(x | y) equal across domains) for any classifier
    whose confusion matrix is invertible.

    Args:
        source_probabilities: (N_s, C) predicted class probabilities on held-out source examples.
        source_labels: (N_s,) their true class ids.
        target_probabilities: (N_t, C) predicted class probabilities on target examples.

    Returns:
        (C,) the estimated target prior, summing to 1.
    """
    num_classes = source_probabilities.shape[1]
    one_hot = np.eye(num_classes)[np.asarray(source_labels)]
    confusion = source_probabilities.T @ one_hot / len(source_labels)  # (C_pred, C_true), joint
    mean_target = target_probabilities.mean(0)
    weights, *_ = np.linalg.lstsq(confusion, mean_target, rcond=None)
    return _normalise(np.clip(weights, 0.0, None) * one_hot.mean(0))


def em_prior(
    target_probabilities: np.ndarray,
    source_prior: np.ndarray,
    max_iterations: int = 1000,
    tolerance: float = 1e-8,
) -> np.ndarray:
    """Target class prior by EM re-weighting of a source classifier's posteriors (Saerens et al. 2002).

    Iterates `p(y | x) ∝ p_s(y | x) * pi_t(y) / pi_s(y)` (E step) and `pi_t(y) = mean_x p(y | x)` (M step) from
    `pi_t = pi_s`. Needs calibrated posteriors (e.g. logistic regression).

    Args:
        target_probabilities: (N_t, C) source-classifier posteriors on target examples.
        source_prior: (C,) the prior the classifier was trained under.

    Returns:
        (C,) the estimated target prior, summing to 1.
    """
    source_prior = _normalise(source_prior)
    prior = source_prior.copy()
    ratio_base = target_probabilities / np.clip(source_prior, 1e-12, None)
    for _ in range(max_iterations):
        posterior = ratio_base * prior
        posterior /= np.clip(posterior.sum(1, keepdims=True), 1e-12, None)
        updated = posterior.mean(0)
        if np.abs(updated - prior).max() < tolerance:
            prior = updated
            break
        prior = updated
    return _normalise(prior)


def importance_weights(target_prior: np.ndarray, source_prior: np.ndarray, max_weight: float = 20.0) -> np.ndarray:
    """Class importance weights `w_y = p_t(y) / p_s(y)`, clipped to [0, max_weight] (classes absent in the source
    get weight 0)."""
    source_prior = np.asarray(source_prior, dtype=np.float64)
    weights = np.where(source_prior > 0, np.asarray(target_prior) / np.clip(source_prior, 1e-12, None), 0.0)
    return np.clip(weights, 0.0, max_weight)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Total variation distance `0.5 * sum |p - q|` between two class priors (0: equal, 1: disjoint)."""
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


class PriorEstimate(NamedTuple):
    """What `estimate_target_prior` found: the source prior (C,), the estimated target prior (C,), and the estimator
    that produced it (BBSE falls back to EM when a class is absent from the held-out data)."""

    source_prior: np.ndarray
    target_prior: np.ndarray
    estimator: str


class SourceProbe(NamedTuple):
    """A linear probe trained on labelled source features: `log_probabilities(features (N, F)) -> (N, C)`, and the
    source class prior `prior` (C,) it was trained under."""

    scaler: object
    model: object
    num_classes: int
    prior: np.ndarray

    def log_probabilities(self, features: np.ndarray) -> np.ndarray:
        out = np.full((len(features), self.num_classes), np.log(1e-12))  # a class absent from training: ~0
        out[:, self.model.classes_] = np.log(
            np.clip(self.model.predict_proba(self.scaler.transform(features)), 1e-12, None)
        )
        return out

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return np.exp(self.log_probabilities(features))


def fit_probe(train_features: np.ndarray, train_labels: np.ndarray, num_classes: int, seed: int = 0) -> SourceProbe:
    """A standardised logistic regression on source features (N, F) and labels (N,) (the black box of BBSE)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train_labels = np.asarray(train_labels)
    prior = np.bincount(train_labels, minlength=num_classes) / len(train_labels)
    scaler = StandardScaler().fit(train_features)
    model = LogisticRegression(max_iter=2000, random_state=seed).fit(scaler.transform(train_features), train_labels)
    return SourceProbe(scaler, model, num_classes, prior)


def em_bcts_prior(probe: SourceProbe, heldout_features, heldout_labels, target_features) -> np.ndarray:
    """EM (Saerens et al. 2002) on posteriors calibrated by BCTS on held-out source data (Alexandari et al., ICML
    2020, `hftl.adaptation.bcts`). Shapes as `estimate_target_prior`; returns the target prior (C,)."""
    from hftl.adaptation.bcts import fit_calibration

    calibration = fit_calibration(probe.log_probabilities(heldout_features), np.asarray(heldout_labels))
    return em_prior(calibration.probabilities(probe.log_probabilities(target_features)), probe.prior)


def prior_from_probe(probe: SourceProbe, heldout_features, heldout_labels, target_features, estimator: str):
    """The target prior (C,) by `estimator` ("bbse", "em" or "em_bcts") from a fitted probe; shapes as
    `estimate_target_prior`. Returns (prior, the estimator used: BBSE falls back to EM when a class is absent from
    `heldout_labels`)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    missing = sorted(set(range(probe.num_classes)) - set(np.asarray(heldout_labels).tolist()))
    if estimator == "bbse" and missing:
        logger.warning(
            "BBSE needs every class in the held-out source data (validation split); class id(s) %s are absent, so "
            "the confusion matrix is singular. Estimating the target prior by EM instead.",
            missing,
        )
        estimator = "em"
    if estimator == "em":
        return em_prior(probe.probabilities(target_features), probe.prior), "em"
    if estimator == "em_bcts":
        return em_bcts_prior(probe, heldout_features, heldout_labels, target_features), "em_bcts"
    heldout, target = probe.probabilities(heldout_features), probe.probabilities(target_features)
    return bbse_prior(heldout, np.asarray(heldout_labels), target), "bbse"


def estimate_target_prior(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    heldout_features: np.ndarray,
    heldout_labels: np.ndarray,
    target_features: np.ndarray,
    num_classes: int,
    estimator: str = "bbse",
    seed: int = 0,
) -> PriorEstimate:
    """Estimate the target prior from features: a logistic regression trained on the source, then BBSE, EM or
    EM-BCTS (EM on posteriors calibrated on the held-out split, `em_bcts_prior`).

    Args:
        train_features: (N, F) labelled source features the probe is trained on; train_labels (N,).
        heldout_features: (M, F) held-out labelled source features (BBSE's confusion matrix, BCTS's calibration);
            heldout_labels (M,).
        target_features: (K, F) unlabelled target features.
        num_classes: C.
        estimator: "bbse", "em" or "em_bcts".

    Returns:
        `PriorEstimate`: source prior from train_labels (C,), estimated target prior (C,), and the estimator used
        ("em" when "bbse" was asked for but a class is absent from `heldout_labels`).

    Raises:
        ValueError: an unknown estimator.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    probe = fit_probe(train_features, train_labels, num_classes, seed)
    prior, used = prior_from_probe(probe, heldout_features, heldout_labels, target_features, estimator)
    return PriorEstimate(probe.prior, prior, used)
