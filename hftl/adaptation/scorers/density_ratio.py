"""The density ratio w(x) = p_t(x) / p_s(x) at held-out source examples, from a domain classifier: what IWCV and DEV
weight the source validation loss with.

A logistic regression told source from target features with balanced class weights estimates
P(target | x) / P(source | x) = p_t(x) / p_s(x) (Bickel, Brückner & Scheffer, "Discriminative Learning Under
Covariate Shift", JMLR 2009; the domain classifier of DEV, You et al., ICML 2019, section 4.2). Its inverse
regularisation strength is chosen by cross-validated log loss, a proper scoring rule, so that its probabilities, and
the ratios read from them, are calibrated rather than only accurate. The classifier never sees the weighted examples:
it trains on `source_train_features` (or, without them, on the other half of the validation examples: two-fold
cross-fitting) against the target features. Weights are clipped at `MAX_WEIGHT`: a few source examples that look
like the target would otherwise carry the whole estimate (the variance problem of importance weighting, Sugiyama et
al. 2007, section 3).
"""

from __future__ import annotations

import numpy as np

from hftl.adaptation.scorers.base import CandidateOutputs

MAX_WEIGHT = 20.0  # clip of w(x); the mean weight is 1 when the ratio is right
MAX_FIT_EXAMPLES = 2000  # per domain, for the domain classifier's fit (a seeded subsample beyond that)
_CACHE: list[tuple[CandidateOutputs, np.ndarray]] = []  # the last outputs' weights: IWCV and DEV share one fit


def _subsample(features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(features) <= MAX_FIT_EXAMPLES:
        return features
    return features[rng.choice(len(features), MAX_FIT_EXAMPLES, replace=False)]


def _fit_predict(source: np.ndarray, target: np.ndarray, query: np.ndarray, seed: int) -> np.ndarray:
    """P(target | x) at `query` (N_q,) from a balanced, log-loss-tuned logistic regression of source vs target."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([source, target]).astype(np.float64)
    y = np.r_[np.zeros(len(source)), np.ones(len(target))]
    folds = int(min(3, len(source), len(target)))
    classifier = LogisticRegressionCV(
        Cs=np.logspace(-3, 1, 5),
        l1_ratios=(0.0,),  # an L2 penalty
        cv=max(folds, 2),
        scoring="neg_log_loss",
        class_weight="balanced",
        max_iter=1000,
        random_state=seed,
        use_legacy_attributes=False,
    )
    model = make_pipeline(StandardScaler(), classifier).fit(x, y)
    return model.predict_proba(query.astype(np.float64))[:, 1]


def ratio_from_probability(probability: np.ndarray, max_weight: float = MAX_WEIGHT) -> np.ndarray:
    """w = p / (1 - p) from a balanced domain classifier's P(target | x), clipped to [0, max_weight].

    Example:
        >>> ratio_from_probability(np.array([0.5, 0.8, 1.0])).round(2).tolist()
        [1.0, 4.0, 20.0]
    """
    p = np.clip(probability, 1e-12, 1.0 - 1e-12)
    return np.clip(p / (1.0 - p), 0.0, max_weight)


def estimate_density_ratio(
    source_train: np.ndarray | None, source_heldout: np.ndarray, target: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Importance weights w(x) ~ p_t(x) / p_s(x) of held-out source examples, clipped to [0, MAX_WEIGHT].

    Args:
        source_train: (M, F) source features the domain classifier trains on, or None: then the held-out examples
            are split in two halves and each half is weighted by a classifier trained on the other (cross-fitting).
        source_heldout: (N_s, F) the source examples to weight (the validation split).
        target: (N_t, F) unlabelled target features.
        seed: the subsample and the classifier's seed.

    Returns:
        (N_s,) float64 weights; their mean is about 1 when the classifier is right and nothing was clipped. All 1
        (no re-weighting) when there are too few examples to fit a classifier (N_t < 2, or N_s < 4 without
        `source_train`).
    """
    rng = np.random.default_rng(seed)
    target_fit = _subsample(target, rng)
    if len(target) < 2 or (len(source_heldout) < 4 and (source_train is None or len(source_train) < 2)):
        return np.ones(len(source_heldout))  # too few examples to fit a classifier: no re-weighting
    if source_train is not None and len(source_train) >= 2:
        return ratio_from_probability(_fit_predict(_subsample(source_train, rng), target_fit, source_heldout, seed))
    order = rng.permutation(len(source_heldout))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    weights = np.empty(len(source_heldout))
    for fit, query in (halves, halves[::-1]):
        probability = _fit_predict(source_heldout[fit], target_fit, source_heldout[query], seed)
        weights[query] = ratio_from_probability(probability)
    return weights


def candidate_weights(outputs: CandidateOutputs) -> np.ndarray:
    """`estimate_density_ratio` on a candidate's own features (DEV's "embedded" features), computed once per
    `outputs` object: (N_s,) weights of `outputs.source_features`."""
    if _CACHE and _CACHE[0][0] is outputs:
        return _CACHE[0][1]
    weights = estimate_density_ratio(
        outputs.source_train_features, outputs.source_features, outputs.target_features, outputs.seed
    )
    _CACHE[:] = [(outputs, weights)]
    return weights


def per_example_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """-log softmax(logits)[label] per example, in nats. Shape: logits (N, C), labels (N,) -> (N,).

    Example:
        >>> per_example_cross_entropy(np.zeros((1, 2)), np.array([1])).round(4).tolist()
        [0.6931]
    """
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probabilities[np.arange(len(labels)), np.asarray(labels)]
