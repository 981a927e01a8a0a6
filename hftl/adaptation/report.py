"""The domain-gap report: how far apart source and target features are, before and after adaptation.

Figures: MK-MMD^2 (`multiple_kernel_mmd`, biased estimator) and the proxy A-distance
`PAD = 2 (1 - 2 err)`, err the test error of a linear classifier telling source from target features (Ben-David
et al., "Analysis of Representations for Domain Adaptation", NeurIPS 2006; "A theory of learning from different
domains", Machine Learning 2010). PAD is 0 when the domains cannot be told apart and 2 when they separate
perfectly. Beside them: the source class prior and the target prior estimated without target labels (the
label-shift part of the gap), and a 2-D PCA projection of the features coloured by class, marked by domain.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import torch

from hftl.adaptation.mmd import multiple_kernel_mmd

logger = logging.getLogger(__name__)


def _subsample(features: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    return features if len(features) <= limit else features[rng.choice(len(features), limit, replace=False)]


def proxy_a_distance(f_s: np.ndarray, f_t: np.ndarray, seed: int = 0) -> float:
    """Proxy A-distance `2 (1 - 2 err)` of a logistic regression separating the domains (half the examples of
    each domain, balanced, train it; the other half measures err).

    Shape:
        f_s: (N_s, F), f_t: (N_t, F), each N >= 4. Returns a float in [-2, 2] (about [0, 2] in practice).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(f_s), len(f_t))
    f_s, f_t = _subsample(f_s, n, rng), _subsample(f_t, n, rng)
    half = n // 2
    x_train = np.concatenate([f_s[:half], f_t[:half]])
    y_train = np.r_[np.ones(half), np.zeros(half)]
    x_test = np.concatenate([f_s[half:], f_t[half:]])
    y_test = np.r_[np.ones(n - half), np.zeros(n - half)]
    scaler = StandardScaler().fit(x_train)
    probe = LogisticRegression(max_iter=2000, random_state=seed).fit(scaler.transform(x_train), y_train)
    error = float((probe.predict(scaler.transform(x_test)) != y_test).mean())
    return 2.0 * (1.0 - 2.0 * error)


def domain_gap(f_s: np.ndarray, f_t: np.ndarray, max_examples: int = 1000, seed: int = 0) -> dict[str, float]:
    """MK-MMD^2 (biased) and proxy A-distance between source features (N_s, F) and target features (N_t, F), on at
    most `max_examples` of each (a seeded subsample)."""
    rng = np.random.default_rng(seed)
    s, t = _subsample(f_s, max_examples, rng), _subsample(f_t, max_examples, rng)
    mmd = multiple_kernel_mmd(torch.from_numpy(s).float(), torch.from_numpy(t).float(), estimator="biased")
    # the proxy A-distance trains on half of each domain and tests on the other half: it needs a few examples
    pad = round(proxy_a_distance(s, t, seed), 4) if min(len(s), len(t)) >= 4 else None
    return {"mmd": round(float(mmd), 6), "proxy_a_distance": pad}


def plot_projection(
    panels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]],
    class_names: list[str],
    path: str,
    max_examples: int = 1000,
    seed: int = 0,
) -> None:
    """Save a PNG with one 2-D PCA projection per panel: source dots and target crosses, coloured by class
    (target examples without labels in grey).

    Args:
        panels: title -> (f_s (N_s, F), y_s (N_s,), f_t (N_t, F), y_t (N_t,) or None).
        class_names: names of the class ids.
        path: where the PNG goes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.5), squeeze=False)
    colours = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for axis, (title, (f_s, y_s, f_t, y_t)) in zip(axes[0], panels.items(), strict=True):
        keep_s = _subsample(np.arange(len(f_s)), max_examples, rng)
        keep_t = _subsample(np.arange(len(f_t)), max_examples, rng)
        pca = PCA(n_components=2, random_state=seed).fit(np.concatenate([f_s[keep_s], f_t[keep_t]]))
        p_s, p_t = pca.transform(f_s[keep_s]), pca.transform(f_t[keep_t])
        for c, name in enumerate(class_names):
            chosen = y_s[keep_s] == c
            axis.scatter(*p_s[chosen].T, s=8, marker="o", color=colours(c % colours.N), alpha=0.5, label=name)
        if y_t is None:
            axis.scatter(*p_t.T, s=14, marker="x", color="grey", alpha=0.6, label="target")
        else:
            for c in range(len(class_names)):
                chosen = y_t[keep_t] == c
                axis.scatter(*p_t[chosen].T, s=14, marker="x", color=colours(c % colours.N), alpha=0.7)
        axis.set_title(f"{title}\n(dots: source, crosses: target)")
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0][0].legend(loc="best", fontsize=7, markerscale=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def save_report(report: dict, output_dir: str) -> str:
    """Write `domain_gap.json` in `output_dir`; returns its path."""
    path = os.path.join(output_dir, "domain_gap.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    return path
