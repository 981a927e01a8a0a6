"""Domain adaptation inside the shared run: target data, label shift, the training wrapper, the domain-gap report.

`hftl.training.run_classification` calls these when target data is given (`--target_dataset_name`,
`--target_train_file`, `--target_train_dir`); nothing here depends on the modality.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from torch import nn

from hftl.adaptation.grl import grl_lambda
from hftl.adaptation.label_shift import estimate_target_prior, importance_weights, total_variation
from hftl.adaptation.model import (
    TARGET_PREFIX,
    DomainAdaptationCallback,
    DomainAdaptationModel,
    DomainPairCollator,
    PairedDomainDataset,
    base_method,
)
from hftl.adaptation.report import domain_gap, plot_projection, save_report
from hftl.arguments import AdaptationArguments
from hftl.data import LabelInfo, check_and_encode_target, load_raw_data
from hftl.errors import InputError
from hftl.features import classification_layer, extract_features
from hftl.trainer import HftlTrainer

logger = logging.getLogger("hftl")

LABEL_SHIFT_WARNING = 0.1  # total variation between the source and the estimated target prior
REPORT_EXAMPLES = 1000  # examples per domain in the domain-gap figures and the plot


@dataclass
class TargetData:
    """The target domain of a run.

    Attributes:
        splits: checked splits: "train" (unlabelled) and, if given, "test" (labelled when `labelled`).
        rows: split -> each example's row in its file or split.
        description: one line for logs and the model card.
        labelled: the "test" split has labels (target_* metrics are reported).
        ready / unaugmented: model-ready splits (with and without training augmentation), set after preprocessing.
    """

    splits: DatasetDict
    rows: dict[str, list[int]]
    description: str
    labelled: bool
    ready: DatasetDict | None = None
    unaugmented: DatasetDict | None = None


def load_target(
    modality, modality_args, args: AdaptationArguments, columns, label_column, labels, model_args, data_args
):
    """Load and check the target data given by the `--target_*` flags (before any model loads).

    Raises:
        InputError: missing files or columns, invalid rows, target labels that are not source classes; the
            message names the `--target_*` flag.
    """
    if args.target_folders() and modality.folder_builder is None:
        raise InputError(
            f"--target_train_dir / --target_test_dir are for folder data (image, speech); the {modality.name} recipe "
            f"takes --target_train_file / --target_test_file or --target_dataset_name."
        )
    try:
        raw = load_raw_data(
            args.target_dataset_name,
            args.target_dataset_config_name,
            args.target_train_file,
            None,
            args.target_test_file,
            cache_dir=model_args.cache_dir,
            token=model_args.token,
            folders=args.target_folders(),
            folder_builder=modality.folder_builder,
        )
        raw.sources = {split: _target_flags(where) for split, where in raw.sources.items()}
        modality.prepare_raw(raw, columns, modality_args)
        splits, rows = check_and_encode_target(
            raw,
            columns,
            label_column,
            labels,
            modality.is_valid_input,
            modality.input_problem,
            drop_invalid_examples=data_args.drop_invalid_examples,
            max_train_samples=args.max_target_train_samples,
            max_eval_samples=args.max_target_eval_samples,
            describe_input=modality.describe_input,
        )
    except InputError as error:
        raise InputError(_target_flags(str(error))) from None
    labelled = "test" in splits and "labels" in splits["test"].column_names
    if "test" in splits and not labelled:
        logger.warning(
            "The target test data (%s) has no labels in column '%s': no target_* metrics. Name its label column "
            "with --label_column_name (the same as the source's).",
            raw.sources.get("test", "test"),
            label_column,
        )
    logger.info("Target data: %s; %s", raw.description, {s: len(d) for s, d in splits.items()} | {"labelled": labelled})
    return TargetData(splits, rows, raw.description, labelled)


def _target_flags(text: str) -> str:
    """Messages of the shared loaders name the source flags (`--train_file`); for target data, name the target ones."""
    import re

    return re.sub(
        r"--(dataset_name|dataset_config_name|train_file|test_file|train_dir|test_dir)\b", r"--target_\1", text
    )


@dataclass
class LabelShift:
    """Source class prior and the target prior estimated without target labels."""

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


def alignment_layer(model: nn.Module, num_labels: int) -> tuple[str, int]:
    """(name, input width) of the classification layer, whose input features are aligned."""
    name, layer = classification_layer(model, num_labels)
    return name, layer.in_features


def wrapped_name(model: nn.Module, name: str) -> str:
    """Where module `name` of the plain model sits in `model` (a peft model nests it, e.g. `base_model.model.x`)."""
    names = [n for n, _ in model.named_modules() if n == name or n.endswith("." + name)]
    if not names:
        raise ValueError(f"no module named {name} in {type(model).__name__}")
    return min(names, key=len)


def pretrained_features(model, layer, datasets: dict[str, Dataset], collator, batch_size, device, lengths):
    """Inputs of `layer` for each dataset (split name -> (N, F) numpy array), the model in eval mode."""
    model.to(device)
    return {
        split: extract_features(model, dataset, collator, batch_size, layer, device, lengths(split)).numpy()
        for split, dataset in datasets.items()
    }


def estimate_label_shift(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], num_classes, args, seed):
    """Estimate the target prior from source train / validation and target train features (see `label_shift`)."""
    source_prior, target_prior = estimate_target_prior(
        features["train"],
        labels["train"],
        features["validation"],
        labels["validation"],
        features["target"],
        num_classes,
        args.label_shift_estimator,
        seed,
    )
    shift = LabelShift(
        args.label_shift_estimator,
        source_prior.tolist(),
        target_prior.tolist(),
        total_variation(source_prior, target_prior),
        importance_weights(target_prior, source_prior).tolist(),
    )
    logger.info(
        "Label shift (%s): source prior %s, estimated target prior %s, total variation %.3f.",
        shift.estimator,
        np.round(source_prior, 3).tolist(),
        np.round(target_prior, 3).tolist(),
        shift.total_variation,
    )
    if args.adaptation in ("dann", "mmd") and shift.total_variation > LABEL_SHIFT_WARNING:
        logger.warning(
            "The estimated target class prior differs from the source prior (total variation %.2f > %.2f). Plain "
            "--adaptation %s aligns the marginal feature distributions, which under label shift is known to hurt "
            "the target accuracy; --adaptation iw%s re-weights source classes to the estimated target prior. The "
            "estimate assumes p(x | y) is the same in both domains: under a strong covariate shift it can be wrong, "
            "and the re-weighting then hurts (see label_shift.json and the README).",
            shift.total_variation,
            LABEL_SHIFT_WARNING,
            args.adaptation,
            args.adaptation,
        )
    return shift


def adaptation_model(classifier, feature_layer: str, feature_size: int, args: AdaptationArguments, shift):
    """The training wrapper for `--adaptation` (see `DomainAdaptationModel`)."""
    weights = torch.tensor(shift.weights, dtype=torch.float32) if args.adaptation.startswith("iw") else None
    model = DomainAdaptationModel(
        classifier,
        feature_layer,
        args.adaptation,
        feature_size,
        trade_off=args.trade_off,
        gamma=args.grl_gamma,
        class_weights=weights,
        discriminator_hidden_size=args.discriminator_hidden_size,
        discriminator_dropout=args.discriminator_dropout,
        mmd_kernel_multipliers=tuple(args.mmd_kernel_multipliers),
        mmd_estimator=args.mmd_estimator,
    )
    if base_method(args.adaptation) == "dann":
        size = sum(p.numel() for p in model.alignment.parameters())
        logger.info("Domain discriminator: %s parameters (training only; not saved with the model).", f"{size:,}")
    return model


class DomainAdaptationTrainer(HftlTrainer):
    """Logs the GRL / alignment coefficient lambda_p and the last alignment loss with the training loss."""

    def log(self, logs, *args, **kwargs):
        model = self.accelerator.unwrap_model(self.model)
        if "loss" in logs and isinstance(model, DomainAdaptationModel):
            logs["grl_lambda"] = round(grl_lambda(model.training_progress, model.gamma), 6)
            if model.last_domain_loss is not None:
                logs["domain_loss"] = round(float(model.last_domain_loss), 6)
        super().log(logs, *args, **kwargs)


def adapt_trainer(model, args, train_source, train_target, eval_dataset, collator, **kwargs):
    """A Trainer of `model` (a `DomainAdaptationModel`) on source examples paired with target examples."""
    paired = PairedDomainDataset(train_source, train_target, seed=args.seed)
    trainer = DomainAdaptationTrainer(
        model=model,
        args=args,
        train_dataset=paired,
        eval_dataset=eval_dataset,
        data_collator=DomainPairCollator(collator),
        callbacks=[DomainAdaptationCallback(model, paired)],
        **kwargs,
    )
    classifier = model.classifier
    inner = classifier.get_base_model() if hasattr(classifier, "get_base_model") else classifier
    columns = list(inspect.signature(inner.forward).parameters)
    trainer._signature_columns = columns + [TARGET_PREFIX + c for c in columns] + ["label", "label_ids", "labels"]
    return trainer


def fold_bottleneck(bottleneck: nn.Linear, head: nn.Linear, classifier: nn.Linear) -> None:
    """Write `head(bottleneck(x))` into `classifier` (exact: a composition of affine maps is affine).

    Shape:
        bottleneck: F -> D, head: D -> C, classifier: F -> C.
    """
    with torch.no_grad():
        classifier.weight.copy_(head.weight @ bottleneck.weight)
        classifier.bias.copy_(head.weight @ bottleneck.bias + head.bias)


def write_domain_gap_report(
    output_dir: str,
    before: dict[str, tuple],
    after: dict[str, tuple] | None,
    shift: LabelShift | None,
    labels: LabelInfo,
    seed: int,
) -> dict:
    """Write `domain_gap.json` and `domain_gap.png`; returns the figures.

    Args:
        before / after: (f_s (N_s, F), y_s (N_s,), f_t (N_t, F), y_t or None) of the pretrained model (the input of
            its head) and of the trained model (the input of its classification layer), or None.
    """
    report: dict = {"max_examples_per_domain": REPORT_EXAMPLES}
    panels = {}
    for when, data in (("before", before), ("after", after)):
        if data is None:
            continue
        report[when] = domain_gap(data[0], data[2], REPORT_EXAMPLES, seed)
        pad = report[when]["proxy_a_distance"]
        panels[f"{when} training (MMD^2 {report[when]['mmd']:.3f}, PAD {'n/a' if pad is None else f'{pad:.2f}'})"] = (
            data
        )
    if shift is not None:
        report["label_shift"] = shift.as_dict(labels.names)
    save_report(report, output_dir)
    plot_projection(panels, labels.names, os.path.join(output_dir, "domain_gap.png"), REPORT_EXAMPLES, seed)
    logger.info("Domain gap: %s", json.dumps({k: v for k, v in report.items() if k in ("before", "after")}))
    return report
