"""The shift diagnosis: is there a source -> target gap worth adapting to, and is it a label shift, a covariate
shift, or both? Computed from the pretrained features `measure_shift` extracts, before any training.

The test. Under a pure label shift p(x | y) is shared, so p_t(x) = sum_y w_y p_s(y) p_s(x | y) with
w_y = p_t(y) / p_s(y): the source re-weighted by the (estimated) class weights IS the target distribution, and the
feature gap must close (Lipton et al., ICML 2018, the label-shift model; Zhang et al., "Domain Adaptation under Target
and Conditional Shift", ICML 2013, the same identity used the other way). Under a covariate shift p(x | y) changes and
no class re-weighting closes the gap; worse, every prior estimator assumes the label-shift model and can report a
large spurious change (BBSE reported total variation 0.38 and 0.48 on two hftl pairs whose priors are both near
uniform). So a prior change counts as credible only when (1) its bootstrap interval excludes a small change, (2) two
estimators built differently (BBSE's linear solve, EM on calibrated posteriors) agree, (3) the source confusion
matrix is well conditioned, and (4) re-weighting the source by it closes a material part of the feature gap (a
spurious prior explains nothing), and (5) the domains do not separate far beyond what a label shift of that size
allows: under a pure label shift the domain is independent of x given y, so (data processing) no classifier of the
domain from x beats one from y, whose accuracy on balanced domains is (1 + TV) / 2; hence PAD <= 2 TV. A proxy
A-distance far above 2 TV (by more than MAX_EXCESS_PAD, a quarter of its range) says p(x | y) moved a lot, and every
prior estimator assumes it did not. Checks (4) and (5) concern the gap and apply only when it is significant. Then:

    no gap beyond chance (MMD permutation test)                -> "none"
    gap, credible prior change, re-weighting closes the gap    -> "label"
    gap, credible prior change, a gap remains                  -> "both"
    gap, no credible prior change                              -> "covariate"

"Closes" is judged like with like: the re-weighted source (drawn by rejection sampling, accept with probability
w_y / max w, which gives an i.i.d. sample of the re-weighted distribution without duplicates) against a random
source sample of the same size, both tested against the same target sample.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from hftl.adaptation.label_shift import SourceProbe
from hftl.adaptation.prior_evidence import PriorEvidence, prior_evidence
from hftl.adaptation.two_sample import (
    MAX_EXAMPLES,
    ProxyADistance,
    mmd_permutation_test,
    proxy_a_distance_interval,
    subsample,
)
from hftl.adaptation.verdict import verdict_words

logger = logging.getLogger("hftl")

ALPHA = 0.05  # significance level of the permutation tests
MIN_PRIOR_CHANGE = 0.05  # the prior change's interval must lie above this total variation
MAX_CONDITION_NUMBER = 100.0  # BBSE's confusion matrix, beyond which its estimate is too unstable to compare
MIN_EXPLAINED = 0.25  # share of the feature gap that re-weighting must close for the prior change to be credible
CLOSED = 0.8  # share of the gap closed (or a non-significant re-weighted test) that makes it a pure label shift
MIN_REWEIGHTED = 20  # re-weighted source examples the second test needs
MAX_EXCESS_PAD = 0.5  # how far the proxy A-distance may exceed 2 x the prior change (check 5)


@dataclass(frozen=True)
class Reweighting:
    """The feature gap before and after re-weighting the source by the estimated class weights, on `n` source
    examples each: `mmd_before` / `mmd_after` (unbiased MK-MMD^2), `p_value_after`, and `closed` the share of the
    gap closed, `1 - max(mmd_after, 0) / mmd_before` (negative: re-weighting widened it)."""

    n: int
    mmd_before: float
    mmd_after: float
    p_value_after: float
    closed: float


@dataclass(frozen=True)
class ShiftDiagnosis:
    """What kind of shift separates source and target, with its evidence (see the module docstring).

    Attributes:
        gap_significant: the MMD permutation test rejects "one distribution" at level ALPHA.
        gap_p_value: its p-value.
        shift_kind: "none", "label", "covariate" or "both".
        label_shift_credible: the estimated prior change passes the five checks of the module docstring.
        verdict: one or two sentences in words.
        mmd: unbiased MK-MMD^2 of the tested samples.
        proxy_a_distance: the PAD and its bootstrap interval.
        prior: the three prior estimates and their confidence signals.
        reweighting: the gap after class re-weighting (None when too few source examples were kept).
        evidence: the figures behind the verdict, one line each.
    """

    gap_significant: bool
    gap_p_value: float
    shift_kind: str
    label_shift_credible: bool
    verdict: str
    mmd: float = 0.0
    proxy_a_distance: ProxyADistance | None = None
    prior: PriorEvidence | None = None
    reweighting: Reweighting | None = None
    evidence: list[str] = field(default_factory=list)

    def as_dict(self, names: list[str] | None = None) -> dict:
        """JSON-ready: the verdict, the test figures, the prior estimates (keyed by class name when `names`)."""
        prior = self.prior
        keys = names or ([str(i) for i in range(len(prior.source_prior))] if prior else [])
        out = {
            "shift_kind": self.shift_kind,
            "verdict": self.verdict,
            "gap_significant": self.gap_significant,
            "gap_p_value": round(self.gap_p_value, 4),
            "label_shift_credible": self.label_shift_credible,
            "mmd": round(self.mmd, 6),
            "proxy_a_distance": None if self.proxy_a_distance is None else _rounded(self.proxy_a_distance._asdict()),
            "reweighting": None if self.reweighting is None else _rounded(vars(self.reweighting)),
            "evidence": list(self.evidence),
        }
        if prior is not None:
            out["prior"] = {
                "prior_change": round(prior.prior_change, 4),
                "prior_change_interval": [round(x, 4) for x in prior.prior_change_interval],
                "bbse_em_bcts_disagreement": round(prior.disagreement, 4),
                # None: a class is missing from the held-out split, so the matrix is singular
                "confusion_condition_number": round(prior.condition_number, 2)
                if np.isfinite(prior.condition_number)
                else None,
                "bcts_temperature": round(prior.temperature, 4),
                "source_prior": dict(zip(keys, np.round(prior.source_prior, 4).tolist(), strict=True)),
                **{
                    f"target_prior_{name}": dict(zip(keys, np.round(estimate, 4).tolist(), strict=True))
                    for name, estimate in prior.estimates.items()
                },
            }
        return out


def _rounded(values: dict) -> dict:
    return {k: round(float(v), 6) if isinstance(v, float) else v for k, v in values.items()}


def reweighted_gap(
    f_s: np.ndarray, y_s: np.ndarray, f_t: np.ndarray, weights: np.ndarray, seed: int = 0
) -> Reweighting | None:
    """Re-weight the source by class weights `weights` (C,) and test the gap again (see the module docstring).

    Args:
        f_s: (N_s, F) source features with labels y_s (N_s,); f_t: (N_t, F) target features.

    Returns:
        `Reweighting`, or None when fewer than MIN_REWEIGHTED source examples are accepted.
    """
    rng = np.random.default_rng(seed)
    accept = np.asarray(weights, dtype=np.float64)[np.asarray(y_s)]
    if accept.max() <= 0:
        return None
    kept = f_s[rng.random(len(f_s)) < accept / accept.max()]
    n = min(len(kept), MAX_EXAMPLES)
    if n < MIN_REWEIGHTED:
        return None
    kept, plain = subsample(kept, n, rng), subsample(f_s, n, rng)
    target = subsample(f_t, MAX_EXAMPLES, rng)
    before = mmd_permutation_test(plain, target, max_examples=n, seed=seed)
    after = mmd_permutation_test(kept, target, max_examples=n, seed=seed)
    closed = 1.0 - max(after.mmd, 0.0) / before.mmd if before.mmd > 0 else 0.0
    return Reweighting(n, before.mmd, after.mmd, after.p_value, closed)


def classify_shift(
    gap_significant: bool, prior: PriorEvidence, reweighting: Reweighting | None, pad: ProxyADistance | None = None
) -> tuple[str, bool, list[str]]:
    """The decision table of the module docstring (`pad`: the proxy A-distance, for check 5).

    Returns:
        (shift_kind, label_shift_credible, the checks a credible prior change failed, in words).
    """
    failed = []
    if prior.prior_change_interval[0] <= MIN_PRIOR_CHANGE:
        failed.append(f"the prior change's interval reaches down to {prior.prior_change_interval[0]:.2f}")
    if prior.disagreement > max(MIN_PRIOR_CHANGE, 0.5 * prior.prior_change):
        failed.append(f"BBSE and EM-BCTS disagree (total variation {prior.disagreement:.2f} between them)")
    if not prior.condition_number <= MAX_CONDITION_NUMBER:
        failed.append(f"the source confusion matrix is ill-conditioned ({prior.condition_number:.0f})")
    explained = reweighting is not None and reweighting.closed >= MIN_EXPLAINED
    if gap_significant and not explained:
        share = "nothing" if reweighting is None else f"{max(reweighting.closed, 0.0):.0%} of it"
        failed.append(f"re-weighting the source to the estimated prior closes {share}")
    bound = 2 * prior.prior_change_interval[1] + MAX_EXCESS_PAD
    if gap_significant and pad is not None and pad.low > bound:
        failed.append(
            f"the domains separate far beyond what a label shift of that size allows (proxy A-distance "
            f"{pad.low:.2f} > 2 x {prior.prior_change_interval[1]:.2f} + {MAX_EXCESS_PAD}), so p(x | y) moved and the "
            f"prior estimate, which assumes it did not, cannot be trusted"
        )
    credible = not failed
    if not gap_significant:
        return "none", credible, failed
    if not credible:
        return "covariate", False, failed
    closed = reweighting.p_value_after > ALPHA or reweighting.closed >= CLOSED
    return ("label" if closed else "both"), True, failed


def diagnose_shift(
    features: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    num_classes: int,
    seed: int = 0,
    probe: SourceProbe | None = None,
) -> ShiftDiagnosis:
    """Diagnose the shift from pretrained features.

    Args:
        features: "train", "validation", "target_train" -> (N, F) features.
        labels: "train", "validation" -> (N,) class ids.
        num_classes: C.
        probe: a `SourceProbe` already fitted on the train features (else one is fitted here).

    Returns:
        `ShiftDiagnosis` (a few seconds on CPU: permutation tests on <= 500 examples per domain, one probe, BCTS,
        100 bootstrap EM runs).
    """
    f_s, f_t = features["train"], features["target_train"]
    gap = mmd_permutation_test(f_s, f_t, seed=seed)
    pad = proxy_a_distance_interval(f_s, f_t, seed=seed) if min(len(f_s), len(f_t)) >= 4 else None
    prior = prior_evidence(
        f_s, labels["train"], features["validation"], labels["validation"], f_t, num_classes, seed, probe
    )
    reweighting = reweighted_gap(f_s, labels["train"], f_t, prior.weights, seed)
    significant = gap.p_value < ALPHA
    kind, credible, failed = classify_shift(significant, prior, reweighting, pad)
    verdict, evidence = verdict_words(kind, gap, pad, prior, reweighting, failed)
    return ShiftDiagnosis(significant, gap.p_value, kind, credible, verdict, gap.mmd, pad, prior, reweighting, evidence)
