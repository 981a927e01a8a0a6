"""Label-free scorers and the selection rule of `--adaptation auto`, on synthetic problems whose answer is known."""

from types import SimpleNamespace

import numpy as np
import pytest

from hftl.adaptation.scorers import CandidateOutputs, score_all, scorer_names
from hftl.adaptation.scorers.class_balance import prediction_balance
from hftl.adaptation.scorers.density_ratio import estimate_density_ratio
from hftl.adaptation.scorers.dev import dev_risk
from hftl.adaptation.scorers.iwcv import iwcv_risk
from hftl.adaptation.scorers.mutual_information import information_maximization
from hftl.adaptation.scorers.snd import soft_neighborhood_density
from hftl.adaptation.selection import ScoredCandidate, candidate_warnings, mean_ranks, select_candidate

MEANS = np.array([[0.0, 2.0], [1.8, -1.0], [-1.8, -1.0]])  # three classes in 2-D
ANGLE = 40.0  # the target is the source turned by ANGLE degrees: same classes, same prior, each class moved towards
SPREAD = 0.8  # the next one


def _turn(features: np.ndarray, degrees: float) -> np.ndarray:
    angle = np.deg2rad(degrees)
    return features @ np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])


def _domain(n: int, rng: np.random.Generator, degrees: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 3, n)
    return _turn(MEANS[labels] + SPREAD * rng.normal(size=(n, 2)), degrees), labels


def _logits(features: np.ndarray) -> np.ndarray:
    """The source Bayes classifier: log p(x | c) up to a constant, equal priors."""
    return -((features[:, None, :] - MEANS[None]) ** 2).sum(-1) / (2 * SPREAD**2)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    source_train, _ = _domain(600, rng)
    source, source_labels = _domain(300, rng)
    target, target_labels = _domain(300, rng, ANGLE)
    return SimpleNamespace(
        source_train=source_train, source=source, source_labels=source_labels, target=target, labels=target_labels
    )


def _candidate(problem, target_features, source_features=None) -> CandidateOutputs:
    """A candidate as a feature map: its features of each domain, classified by the source Bayes classifier."""
    source_features = problem.source if source_features is None else source_features
    return CandidateOutputs(
        source_logits=_logits(source_features),
        source_labels=problem.source_labels,
        source_features=source_features,
        target_logits=_logits(target_features),
        target_features=target_features,
        source_train_features=problem.source_train,
    )


def _candidates(problem) -> dict[str, CandidateOutputs]:
    """none: the raw features (the target turned: many target errors); aligned: the turn undone on the target (the
    right adaptation); collapsed: every target example mapped onto class 0; worse: the target turned further."""
    rng = np.random.default_rng(1)
    return {
        "none": _candidate(problem, problem.target),
        "aligned": _candidate(problem, _turn(problem.target, -ANGLE)),
        "collapsed": _candidate(problem, MEANS[0] + 0.05 * rng.normal(size=problem.target.shape)),
        "worse": _candidate(problem, _turn(problem.target, 0.75 * ANGLE)),
    }


def _accuracy(outputs: CandidateOutputs, labels: np.ndarray) -> float:
    return float(np.mean(outputs.target_logits.argmax(1) == labels))


@pytest.fixture(scope="module")
def scored(problem):
    candidates = _candidates(problem)
    return {name: score_all(outputs) for name, outputs in candidates.items()}, candidates


def _scored(name: str, scores: dict[str, float], method: str | None = None) -> ScoredCandidate:
    return ScoredCandidate(name, method or name.split("@")[0], 1.0, False, scores)


def test_every_scorer_is_registered_and_finite(scored):
    scores, _ = scored
    assert set(scorer_names()) >= {"source_accuracy", "iwcv", "dev", "entropy", "snd", "im", "class_balance"}
    assert all(np.isfinite(list(s.values())).all() for s in scores.values())


def test_target_scores_prefer_the_aligned_model_and_only_im_sees_the_collapse(problem, scored):
    scores, candidates = scored
    accuracy = {name: _accuracy(outputs, problem.labels) for name, outputs in candidates.items()}
    # the known answer: aligned right, none shifted, worse more so, collapsed at chance
    assert accuracy["aligned"] > 0.95 > 0.85 > accuracy["none"] > accuracy["worse"] + 0.1
    assert accuracy["collapsed"] < 0.4
    for name in ("entropy", "snd", "im"):
        assert scores["aligned"][name] > scores["none"][name] > scores["worse"][name], name
    # a turn of this mixture is invisible to a linear domain classifier: weights near 1, DEV about the source loss
    assert scores["aligned"]["dev"] == pytest.approx(scores["none"]["dev"], rel=0.1)
    # the known failure of entropy and SND: a collapsed model looks best to them; IM and class balance see it
    assert scores["collapsed"]["entropy"] > scores["aligned"]["entropy"]
    assert scores["collapsed"]["snd"] > scores["aligned"]["snd"]
    assert scores["collapsed"]["im"] < scores["none"]["im"] < scores["aligned"]["im"]
    assert scores["collapsed"]["class_balance"] == 0.0 < 0.9 < scores["aligned"]["class_balance"]


def test_known_values():
    one_hot = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    assert information_maximization(one_hot) == pytest.approx(np.log(3))  # confident and balanced: the maximum
    assert information_maximization(np.full((4, 3), 1 / 3)) == pytest.approx(0.0)
    assert soft_neighborhood_density(np.eye(3)[[0] * 5]) == pytest.approx(np.log(4))  # 4 equal neighbours each
    assert soft_neighborhood_density(one_hot) == pytest.approx(np.log(1), abs=1e-6)  # one twin each
    assert prediction_balance(np.array([0, 1, 2]), np.array([0, 1, 2]), 3) == 1.0
    assert dev_risk(np.ones(4), np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(2.5)  # w = 1: the plain mean
    assert iwcv_risk(np.array([0.0, 2.0]), np.array([5.0, 1.0])) == pytest.approx(1.0)


def test_density_ratio_recovers_a_known_ratio():
    """Source N(0, 1), target N(1, 1): p_t(x) / p_s(x) = exp(x - 1/2)."""
    rng = np.random.default_rng(0)
    heldout = rng.normal(0, 1, (300, 1))
    truth = np.exp(heldout[:, 0] - 0.5)
    target = rng.normal(1, 1, (800, 1))
    for source_train in (rng.normal(0, 1, (800, 1)), None):  # a separate fit, or cross-fitting on the held-out half
        weights = estimate_density_ratio(source_train, heldout, target, seed=0)
        assert np.corrcoef(np.log(weights), np.log(truth))[0, 1] > 0.97
        assert np.median(np.abs(np.log(weights / truth))) < 0.25
        assert weights.mean() == pytest.approx(1.0, abs=0.2)


def test_dev_is_unbiased_with_less_variance_than_iwcv():
    """With the true ratio, loss x^2: the target risk E_t[x^2] = 2 (source 1); DEV's control variate cuts the
    spread over resamples of 100 source examples (You et al., ICML 2019, Theorem 3)."""
    rng = np.random.default_rng(0)
    dev, iwcv = [], []
    for _ in range(300):
        x = rng.normal(0, 1, 100)
        dev.append(dev_risk(np.exp(x - 0.5), x**2))
        iwcv.append(iwcv_risk(np.exp(x - 0.5), x**2))
    assert np.mean(dev) == pytest.approx(2.0, abs=0.25) and np.mean(iwcv) == pytest.approx(2.0, abs=0.25)
    assert np.var(dev) < 0.6 * np.var(iwcv)


def test_selection_picks_the_aligned_candidate(scored):
    scores, _ = scored
    candidates = [_scored(name, scores[name]) for name in ("none", "collapsed", "worse", "aligned")]
    selection = select_candidate(candidates)
    assert selection.index == 3, selection.reason
    assert selection.reason.startswith("chose aligned")
    warnings = candidate_warnings(candidates)
    assert warnings[0] == warnings[2] == warnings[3] == [] and "collapsed" in warnings[1][0]


def test_selection_refuses_a_collapsed_model_and_keeps_source_only_without_a_better_one(scored):
    scores, _ = scored
    collapsed = select_candidate([_scored("none", scores["none"]), _scored("collapsed@1.0", scores["collapsed"])])
    assert collapsed.index == 0 and "collapsed" in collapsed.reason
    worse = select_candidate([_scored("worse@1.0", scores["worse"]), _scored("none", scores["none"])])
    assert worse.index == 1 and worse.reason.startswith("kept source only")


def test_selection_keeps_source_only_when_the_diagnosis_sees_no_gap(scored):
    scores, _ = scored
    candidates = [_scored("none", scores["none"]), _scored("aligned@1.0", scores["aligned"])]
    assert select_candidate(candidates, SimpleNamespace(gap_significant=True)).index == 1
    kept = select_candidate(candidates, SimpleNamespace(gap_significant=False, gap_p_value=0.41))
    assert kept.index == 0 and "no significant" in kept.reason and "0.41" in kept.reason
    weighted = [candidates[0], ScoredCandidate("iwmmd@1.0", "mmd", 1.0, True, scores["aligned"])]
    assert select_candidate(weighted, SimpleNamespace(label_shift_credible=True)).index == 1
    no_label_shift = select_candidate(weighted, SimpleNamespace(label_shift_credible=False))
    assert no_label_shift.index == 0 and "no credible label shift" in no_label_shift.reason


def test_selection_reads_class_balance_not_snd_without_a_credible_label_shift():
    # the speech pair's pattern: source only fits the synthetic source perfectly (DEV risk ~0) and puts the target
    # into few classes (tight clusters: the best SND); the aligned candidate is balanced, with a DEV risk of 0.001
    base = {"source_accuracy": 1.0, "dev": -0.0, "im": 1.03, "snd": 6.5, "class_balance": 0.66}
    aligned = {"source_accuracy": 1.0, "dev": -0.001, "im": 1.56, "snd": 6.0, "class_balance": 0.99}
    candidates = [_scored("none", base), _scored("mmd@1.0", aligned)]
    covariate = select_candidate(candidates, SimpleNamespace(label_shift_credible=False))
    assert covariate.index == 1 and "class_balance" in covariate.reason, covariate.reason
    label_shift = select_candidate(candidates, SimpleNamespace(label_shift_credible=True))
    assert label_shift.index == 0 and "no adapted candidate ranks above it" in label_shift.reason, label_shift.reason
    # the absolute DEV margin lets a 0.001-nat rise pass, not a 0.1-nat one
    riskier = aligned | {"dev": -0.1}
    vetoed = select_candidate(
        [_scored("none", base), _scored("mmd@1.0", riskier)], SimpleNamespace(label_shift_credible=False)
    )
    assert vetoed.index == 0 and "DEV" in vetoed.reason, vetoed.reason


def test_selection_safety_net_on_weak_evidence():
    base = {"source_accuracy": 0.95, "dev": -0.40, "im": 0.50, "snd": 5.0, "class_balance": 1.0}
    confident_but_riskier = base | {"dev": -0.60, "im": 0.70, "snd": 6.0}  # wins IM, SND; DEV risk +50%
    dropped = base | {"source_accuracy": 0.85, "dev": -0.30, "im": 0.70, "snd": 6.0}  # source accuracy -10 points
    one_win = base | {"dev": -0.30, "im": 0.40, "snd": 4.0}
    candidates = [_scored("none", base), _scored("st@1.0", confident_but_riskier)]
    assert select_candidate(candidates).index == 0 and "DEV" in select_candidate(candidates).reason
    kept = select_candidate([_scored("none", base), _scored("mmd@1.0", dropped)])
    assert kept.index == 0 and "source accuracy fell" in kept.reason
    assert select_candidate([_scored("none", base), _scored("dann@1.0", one_win)]).index == 0
    assert mean_ranks([_scored("none", base), _scored("dann@1.0", one_win)]).tolist() == [4 / 3, 5 / 3]
    with pytest.raises(ValueError, match="source-only"):
        select_candidate([_scored("mmd@1.0", base)])
