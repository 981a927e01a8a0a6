"""The shift diagnosis in words: a one- or two-sentence verdict with what to do, and its evidence line by line."""

from __future__ import annotations

from hftl.adaptation.prior_evidence import PriorEvidence
from hftl.adaptation.two_sample import ProxyADistance, TwoSampleTest

ADVICE = {
    "none": "Adapting is unlikely to help: train on the source only (--adaptation none).",
    "label": "Correct the prior: --importance_weighting (alone, or the iw forms such as --adaptation iwmmd).",
    "both": "Use an iw form (--adaptation iwmmd / iwdann ...): it re-weights the prior and aligns what remains.",
    "covariate": "Align the features (e.g. --adaptation mmd or dann) without --importance_weighting: the class "
    "weights would rest on a prior estimate that the covariate shift has biased.",
}


def _gap(gap: TwoSampleTest, pad: ProxyADistance | None) -> str:
    text = f"MMD permutation p = {gap.p_value:.3f}"
    if pad is not None:
        text += f", proxy A-distance {pad.value:.2f} [{pad.low:.2f}, {pad.high:.2f}]"
    return text


def _prior(prior: PriorEvidence) -> str:
    low, high = prior.prior_change_interval
    return (
        f"class-prior change {prior.prior_change:.2f} [{low:.2f}, {high:.2f}] (EM-BCTS), BBSE and EM-BCTS "
        f"{prior.disagreement:.2f} apart"
    )


def verdict_words(kind: str, gap, pad, prior: PriorEvidence, reweighting, failed: list[str]) -> tuple[str, list[str]]:
    """The verdict (str) and the evidence (one line per figure) of a diagnosis; arguments as `ShiftDiagnosis`."""
    evidence = [
        f"feature gap: unbiased MK-MMD^2 {gap.mmd:.5f} on {gap.n_s} source / {gap.n_t} target examples, "
        f"{_gap(gap, pad)}",
        f"{_prior(prior)}; source confusion matrix condition number {prior.condition_number:.1f}; BCTS temperature "
        f"{prior.temperature:.2f}",
    ]
    if reweighting is not None:
        evidence.append(
            f"re-weighted by w_y = p_t(y) / p_s(y): MMD^2 {reweighting.mmd_before:.5f} -> {reweighting.mmd_after:.5f} "
            f"on {reweighting.n} source examples ({reweighting.closed:.0%} of the gap closed), p = "
            f"{reweighting.p_value_after:.3f} after"
        )
    if kind == "none":
        head = f"No shift beyond chance between source and target features ({_gap(gap, pad)})."
    elif kind == "label":
        head = (
            f"A label shift: the target class prior moved ({_prior(prior)}) and re-weighting the source classes to "
            f"it closes the feature gap."
        )
    elif kind == "both":
        head = (
            f"A label shift with a covariate shift: the class prior moved credibly ({_prior(prior)}) but "
            f"re-weighting closes only {reweighting.closed:.0%} of the feature gap."
        )
    else:
        head = f"A covariate shift: the features differ beyond chance ({_gap(gap, pad)}) but " + "; ".join(failed) + "."
    return f"{head} {ADVICE[kind]}", evidence
