"""Source validation accuracy: the baseline label-free scorer (it reads source labels only).

Source: the usual practice the domain-adaptation literature compares against, e.g. You et al., "Towards Accurate
Model Selection in Deep Unsupervised Domain Adaptation", ICML 2019, section 2 ("source risk").
"""

from __future__ import annotations

import numpy as np

from hftl.adaptation.scorers.base import CandidateOutputs, register_scorer


@register_scorer("source_accuracy", source="source validation accuracy (You et al., ICML 2019, 'source risk')")
def source_accuracy(outputs: CandidateOutputs) -> float:
    """The fraction of held-out source examples classified correctly, in [0, 1].

    Example:
        >>> import numpy as np
        >>> o = CandidateOutputs(np.eye(2), np.array([0, 0]), np.eye(2), np.eye(2), np.eye(2))
        >>> source_accuracy(o)
        0.5
    """
    return float(np.mean(np.argmax(outputs.source_logits, axis=1) == outputs.source_labels))
