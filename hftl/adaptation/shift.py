"""Step 6 of an adapting run: what the pretrained model says of the source -> target shift before training.

The pretrained model's features (the input of its feature layer, `hftl.features`) of the source train and
validation splits and of the unlabelled target data; from them, the target class prior estimated without target
labels (BBSE or EM, `label_shift.py`). The domain-gap report's "before" figures and the importance weights read them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from hftl.adaptation.label_shift import estimate_target_prior, importance_weights, total_variation
from hftl.feature_cache import extract_or_load
from hftl.features import feature_layer

logger = logging.getLogger("hftl")

LABEL_SHIFT_WARNING = 0.1  # total variation between the source and the estimated target prior


@dataclass(frozen=True)
class LabelShift:
    """Source class prior and the target prior estimated without target labels, with the weights p_t / p_s."""

    estimator: str
    source_prior: list[float]
    target_prior: list[float]
    total_variation: float
    weights: list[float] = field(default_factory=list)

    def as_dict(self, names: list[str]) -> dict:
        return {
            "estimator": self.estimator,
            "total_variation": round(self.total_variation, 4),
            "classes": {
                name: {
                    "source_prior": round(self.source_prior[i], 4),
                    "estimated_target_prior": round(self.target_prior[i], 4),
                    "importance_weight": round(self.weights[i], 4),
                }
                for i, name in enumerate(names)
            },
        }


@dataclass(frozen=True)
class DomainShift:
    """Attributes:
    features: "train", "validation", "target_train" -> (N, F) pretrained features.
    label_shift: the estimated target prior.
    """

    features: dict[str, np.ndarray]
    label_shift: LabelShift


def _estimate(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], num_classes: int, config) -> LabelShift:
    source_prior, target_prior, estimator = estimate_target_prior(
        features["train"],
        labels["train"],
        features["validation"],
        labels["validation"],
        features["target_train"],
        num_classes,
        config.adaptation.label_shift_estimator,
        config.training.seed,
    )
    shift = LabelShift(
        estimator,
        source_prior.tolist(),
        target_prior.tolist(),
        total_variation(source_prior, target_prior),
        importance_weights(target_prior, source_prior).tolist(),
    )
    logger.info(
        "Label shift (%s): source prior %s, estimated target prior %s, total variation %.3f.",
        estimator,
        np.round(source_prior, 3).tolist(),
        np.round(target_prior, 3).tolist(),
        shift.total_variation,
    )
    return shift


def _warn_if_label_shift(shift: LabelShift, config) -> None:
    method = config.adaptation.adaptation
    if method != "none" and not config.adaptation.importance_weighting and shift.total_variation > LABEL_SHIFT_WARNING:
        logger.warning(
            "The estimated target class prior differs from the source prior (total variation %.2f > %.2f). Plain "
            "--adaptation %s aligns the marginal feature distributions, which under label shift is known to hurt "
            "the target accuracy; --importance_weighting re-weights source classes to the estimated target prior. "
            "The estimate assumes p(x | y) is the same in both domains: under a strong covariate shift it can be "
            "wrong, and the re-weighting then hurts (see label_shift.json and the README).",
            shift.total_variation,
            LABEL_SHIFT_WARNING,
            method,
        )


def measure_shift(model, processor, inputs, data, config) -> DomainShift | None:
    """Pretrained features and the label-shift estimate, when the run adapts or reports the domain gap (else None)."""
    adaptation = config.adaptation
    if data.target is None or not (adaptation.adapts or adaptation.domain_gap_report):
        return None
    _, layer = feature_layer(model, len(data.labels.names))
    datasets = {
        "train": (inputs.source.plain["train"], inputs.source.lengths("train")),
        "validation": (inputs.source.plain["validation"], inputs.source.lengths("validation")),
        "target_train": (inputs.target.plain["train"], inputs.target.lengths("train")),
    }
    features = {
        split: extract_or_load(model, layer, dataset, lengths, inputs.collator, processor, config).numpy()
        for split, (dataset, lengths) in datasets.items()
    }
    labels = {split: np.asarray(data.source.splits[split]["labels"]) for split in ("train", "validation")}
    shift = _estimate(features, labels, len(data.labels.names), config)
    _warn_if_label_shift(shift, config)
    return DomainShift(features, shift)
