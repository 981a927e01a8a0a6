"""Calibration of a single-label classifier: class probabilities, expected calibration error, temperature scaling.

A classifier is calibrated when, among the examples it predicts with confidence p, a fraction p is right. The
**expected calibration error** (ECE) measures the gap: the examples are sorted into equal-width bins of their
top-label confidence, and each bin's |accuracy - mean confidence| is averaged, weighted by the bin's share of
examples. **Temperature scaling** divides every logit by one scalar T > 0 fitted on held-out data by minimising the
negative log-likelihood: the predicted classes (and so the accuracy) do not change, the confidences do.

Sources: Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks", ICML 2017 (arXiv:1706.04599),
section 2 (ECE, M = 15 bins) and 4.2 (temperature scaling); Naeini, Cooper and Hauskrecht, "Obtaining Well Calibrated
Probabilities Using Bayesian Binning", AAAI 2015 (ECE).

These functions are for softmax outputs (one label per example); a multi-label path (one sigmoid per class) skips
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

ECE_BINS = 15  # Guo et al. 2017, as their tables report it


@dataclass
class CalibrationArguments:
    """Flags of the calibration step (run after training, before the model is saved)."""

    temperature_scaling: bool = field(
        default=False,
        metadata={
            "help": "Fit one temperature T on the validation split's logits (min. NLL, Guo et al. 2017) and fold it "
            "into the saved model's classification layer, so that pipeline(...) returns calibrated scores. "
            "Needs --do_eval."
        },
    )


def class_probabilities(logits) -> np.ndarray:
    """Softmax over the last axis, computed in float64.

    Shape:
        logits: (N, C). Returns (N, C), each row summing to 1.

    Example:
        >>> class_probabilities(np.array([[0.0, 0.0], [0.0, np.log(3.0)]])).round(2).tolist()
        [[0.5, 0.5], [0.25, 0.75]]
    """
    return torch.softmax(torch.as_tensor(np.asarray(logits), dtype=torch.float64), dim=-1).numpy()


def expected_calibration_error(probabilities, labels, num_bins: int = ECE_BINS) -> float:
    """Top-label expected calibration error with `num_bins` equal-width confidence bins (Guo et al. 2017, eq. 3).

    ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|, where bin B_m holds the examples whose confidence (the largest
    probability) lies in ((m - 1) / M, m / M], acc is the share of them predicted right (predicted class = the
    arg-max) and conf their mean confidence. 0 is perfectly calibrated; the worst is 1.

    Args:
        probabilities: (N, C) class probabilities (rows sum to 1).
        labels: (N,) true class ids.
        num_bins: M, the number of bins of [0, 1].

    Returns:
        The ECE, in [0, 1] (NaN for N = 0).

    Example:
        >>> p = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
        >>> round(expected_calibration_error(p, np.array([0, 1, 1, 1])), 6)  # |0.5 - 0.9| / 2 + |1 - 0.6| / 2
        0.4
    """
    probabilities, labels = np.asarray(probabilities, dtype=np.float64), np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    confidences = probabilities.max(axis=-1)
    correct = (probabilities.argmax(axis=-1) == labels).astype(np.float64)
    # bin m (1-based) holds (m - 1) / M < confidence <= m / M; a confidence of 0 joins the first bin
    bins = np.clip(np.ceil(confidences * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    gaps = np.bincount(bins, weights=correct - confidences, minlength=num_bins)  # per bin: sum of (acc - conf)
    return float(np.abs(gaps).sum() / len(labels))


def calibration_metrics(probabilities, labels, prefix: str) -> dict[str, float]:
    """`{prefix}_ece` of `expected_calibration_error`, for a split's metrics."""
    return {f"{prefix}_ece": expected_calibration_error(probabilities, labels)}


def negative_log_likelihood(logits, labels, temperature: float = 1.0) -> float:
    """Mean cross-entropy of softmax(logits / T) against `labels`, in float64. Shape: logits (N, C), labels (N,)."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    return float(F.cross_entropy(logits / temperature, torch.as_tensor(np.asarray(labels), dtype=torch.long)))


def fit_temperature(logits, labels, max_iter: int = 100) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) (Guo et al. 2017, section 4.2).

    T is optimised as log T (so it stays positive) with L-BFGS and a strong-Wolfe line search, starting from T = 1;
    the result never has a higher NLL than T = 1 (1 is returned if the optimiser found nothing better).

    Args:
        logits: (N, C) held-out logits (the validation split's, never the test split's).
        labels: (N,) their true class ids.
        max_iter: L-BFGS iterations.

    Returns:
        T (> 1 softens over-confident predictions, < 1 sharpens under-confident ones).

    Raises:
        ValueError: no examples.

    Example:
        >>> z = torch.randn(500, 3, generator=torch.Generator().manual_seed(0)) * 2
        >>> y = torch.distributions.Categorical(logits=z).sample()  # labels drawn from softmax(z): T = 1 is right
        >>> t = fit_temperature(4 * z, y)  # logits 4x too large: over-confident
        >>> 3 < t < 5
        True
    """
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(labels) == 0:
        raise ValueError("temperature scaling needs at least one labelled example")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not np.isfinite(temperature) or negative_log_likelihood(logits, labels, temperature) > negative_log_likelihood(
        logits, labels
    ):
        return 1.0
    return temperature
