"""Step 6 of an adapting run: what the pretrained model says of the source -> target shift before training.

The pretrained model's features (the input of its feature layer, `hftl.features`) of the source train and
validation splits and of the unlabelled target data; from them, the target class prior estimated without target
labels (BBSE, EM or EM-BCTS, `label_shift.py`), and the shift diagnosis (`diagnosis.py`: is the gap beyond chance,
is it a label or a covariate shift). The domain-gap report's "before" figures and the importance weights read them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from hftl.adaptation.diagnosis import ShiftDiagnosis, diagnose_shift
from hftl.adaptation.label_shift import SourceProbe, fit_probe, importance_weights, prior_from_probe, total_variation
from hftl.feature_cache import extract_or_load
from hftl.features import feature_layer

logger = logging.getLogger("hftl")


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
    diagnosis: the shift diagnosis (gap beyond chance? label, covariate or both?).
    """

    features: dict[str, np.ndarray]
    label_shift: LabelShift
    diagnosis: ShiftDiagnosis | None = None


def _estimate(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], probe: SourceProbe, config) -> LabelShift:
    source_prior = probe.prior
    target_prior, estimator = prior_from_probe(
        probe,
        features["validation"],
        labels["validation"],
        features["target_train"],
        config.adaptation.label_shift_estimator,
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


def _warn_if_label_shift(shift: LabelShift, diagnosis: ShiftDiagnosis, config) -> None:
    """Recommend --importance_weighting only for a credible label shift; warn against it under a covariate shift."""
    adaptation = config.adaptation
    if adaptation.importance_weighting and diagnosis.shift_kind == "covariate":
        logger.warning(
            "--importance_weighting re-weights source classes by an estimated target prior (total variation %.2f "
            "from the source prior), but the shift diagnosis finds a covariate shift, not a credible label shift: "
            "the estimate assumes p(x | y) is the same in both domains, and re-weighting by a wrong prior is known "
            "to hurt. Consider --adaptation %s without --importance_weighting (see shift_diagnosis.json).",
            shift.total_variation,
            adaptation.adaptation if adaptation.adaptation != "none" else "mmd",
        )
    elif adaptation.adaptation not in ("none", "auto") and not adaptation.importance_weighting:
        if not diagnosis.label_shift_credible:  # auto: its candidates follow the diagnosis by themselves
            return
        logger.warning(
            "The target class prior differs credibly from the source prior (total variation %.2f; the shift "
            "diagnosis says: %s). Plain --adaptation %s does not correct for it (aligning marginal feature "
            "distributions under label shift is known to hurt the target accuracy); --importance_weighting re-weights "
            "source classes to the estimated target prior (see shift_diagnosis.json and the README).",
            diagnosis.prior.prior_change,
            diagnosis.shift_kind,
            adaptation.adaptation,
        )


def _diagnose(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], probe: SourceProbe, config):
    diagnosis = diagnose_shift(features, labels, probe.num_classes, config.training.seed, probe)
    logger.info("Shift diagnosis: %s Evidence: %s.", diagnosis.verdict, "; ".join(diagnosis.evidence))
    return diagnosis


def measure_shift(model, processor, inputs, data, config) -> DomainShift | None:
    """Pretrained features, the label-shift estimate and the shift diagnosis, when the run adapts or reports the
    domain gap (else None)."""
    adaptation = config.adaptation
    if data.target is None or not (adaptation.adapts or adaptation.domain_gap_report):
        return None
    return shift_of(model, processor, inputs, data, config)


def shift_of(model, processor, inputs, data, config) -> DomainShift:
    """`measure_shift` for data with a target, whatever the flags (`hftl diagnose` calls it directly)."""
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
    probe = fit_probe(features["train"], labels["train"], len(data.labels.names), config.training.seed)
    shift = _estimate(features, labels, probe, config)
    diagnosis = _diagnose(features, labels, probe, config)
    _warn_if_label_shift(shift, diagnosis, config)
    return DomainShift(features, shift, diagnosis)
