"""Information maximisation (IM): the mutual information between target inputs and predicted classes.

`IM = H(mean_i p_i) - mean_i H(p_i)`: confident predictions (low conditional entropy, as the entropy scorer rewards)
that are also diverse over classes (high entropy of the mean prediction). Sources: Krause, Perona & Gomes,
"Discriminative Clustering by Regularized Information Maximization", NeurIPS 2010; the objective of SHOT (Liang, Hu &
Feng, "Do We Really Need to Access the Source Data?", ICML 2020); as a validator of domain adaptation: Musgrave,
Belongie & Lim, "Three New Validators and a Large-Scale Benchmark Ranking for Unsupervised Domain Adaptation",
arXiv 2208.07360, 2022.

Why hftl adds it: entropy and SND reward a model that puts every target example in one class (their known failure);
IM's first term falls to 0 for such a model, so IM ranks a collapsed candidate below a confident, diverse one
without a separate veto. It reads target outputs only, so it complements DEV (which reads source labels and features).
Known weakness: the diversity term is largest for evenly spread predictions, so under a label shift towards a skewed
target prior IM prefers a model that predicts too evenly (SpamAssassin easy -> hard, 85% spam, `benchmarks/scorers.py`:
IW-MMD, target accuracy 0.847, has IM 0.342 below MMD's 0.414 at 0.773); hence it is one vote of three in the rule.
"""

from __future__ import annotations

import numpy as np

from hftl.adaptation.scorers.base import CandidateOutputs, register_scorer
from hftl.adaptation.scorers.entropy import entropy_rows, softmax


def information_maximization(probabilities: np.ndarray) -> float:
    """`H(mean p) - mean H(p)` of (N, C) probabilities, in [0, log C] nats, higher is better.

    Example:
        >>> round(information_maximization(np.array([[1.0, 0.0], [0.0, 1.0]])), 4)  # log 2: confident and diverse
        0.6931
    """
    p = np.asarray(probabilities, dtype=np.float64)
    return float(entropy_rows(p.mean(axis=0)) - np.mean(entropy_rows(p)))


@register_scorer("im", source="Krause et al., NeurIPS 2010; Liang et al., ICML 2020 (information maximisation)")
def im(outputs: CandidateOutputs) -> float:
    """IM of the softmax of target_logits (N_t, C), in [0, log C] nats: higher is better."""
    return information_maximization(softmax(outputs.target_logits))
