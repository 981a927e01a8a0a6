"""Head-only training on cached head inputs: run the frozen backbone once, then train the head on what it computed.

When the head is the only part that trains, training it on cached inputs is exactly training the whole model with
the backbone frozen (minus dropout before the head), and each epoch after the extraction costs a matrix product
instead of a backbone pass. With an alignment method on a one-layer head, a linear bottleneck is trained (and
aligned) in front of the classification layer, then folded into it, so the saved model is the plain classifier.
"""

from __future__ import annotations

import logging
import time

import torch
from datasets import Dataset
from torch import nn
from torch.nn import functional as F

from hftl.adaptation.build import build_task
from hftl.context import RunContext
from hftl.feature_cache import extract_or_load
from hftl.imbalance import loss_weights
from hftl.training.early_stopping import early_stopping_metrics
from hftl.training.result import Trained
from hftl.training.trainers import classifier_trainer, stage_arguments, task_trainer

logger = logging.getLogger("hftl")

FEATURES = "features"


class CachedFeatureHead(nn.Module):
    """The head modules of a model, applied in order to cached head inputs; it shares their parameters.

    Shape:
        features: (B, F) float; labels: (B,) class ids. Returns `loss` (scalar) and `logits` (B, C).
    """

    def __init__(self, modules: list[nn.Module]):
        super().__init__()
        self.head = nn.Sequential(*modules)

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.head(features)
        output = {"logits": logits}
        if labels is not None:
            output["loss"] = F.cross_entropy(logits, labels)
        return output


def feature_dataset(features: torch.Tensor, source: Dataset) -> Dataset:
    """A dataset of cached `features` (N, F) with the `labels` of `source`, if it has them."""
    columns = {FEATURES: features.numpy()}
    if "labels" in source.column_names:
        columns["labels"] = source["labels"]
    return Dataset.from_dict(columns).with_format("torch")


def fold_bottleneck(bottleneck: nn.Linear, head: nn.Linear, classifier: nn.Linear) -> None:
    """Write `head(bottleneck(x))` into `classifier` (exact: a composition of affine maps is affine).

    Shape:
        bottleneck: F -> D, head: D -> C, classifier: F -> C.
    """
    with torch.no_grad():
        classifier.weight.copy_(head.weight @ bottleneck.weight)
        classifier.bias.copy_(head.weight @ bottleneck.bias + head.bias)


def _needed(stage, run: RunContext) -> dict[str, tuple]:
    """split -> (plain dataset, lengths) of what this stage reads: training, evaluation, target and report splits."""
    training, inputs, data = run.config.training, run.inputs, run.data
    adapting = stage.final and data.target is not None
    wanted = {
        "train": training.do_train or adapting,
        "validation": training.do_eval,
        "test": training.do_predict and stage.final,
    }
    needed = {s: (d, inputs.source.lengths(s)) for s, d in inputs.source.plain.items() if wanted.get(s)}
    if adapting:
        needed["target_train"] = (inputs.target.plain["train"], inputs.target.lengths("train"))
        if data.target.labelled_test and "test" in inputs.target.plain:
            needed["target_test"] = (inputs.target.plain["test"], inputs.target.lengths("test"))
    return needed


def _cache(model, head, stage, run: RunContext) -> tuple[dict[str, Dataset], dict]:
    """The cached head inputs of every needed split, with extraction metrics (features the shift measurement already
    extracted at the same layer are reused)."""
    start = time.perf_counter()
    at_feature_layer = run.layer is not None and head[0][0] == run.layer.name  # the shift's features are these
    reusable = run.shift.features if run.shift is not None and at_feature_layer else {}
    cached, extracted = {}, 0
    for split, (dataset, lengths) in _needed(stage, run).items():
        if split in reusable:
            features = torch.from_numpy(reusable[split])
        else:
            features = extract_or_load(
                model, head[0][1], dataset, lengths, run.inputs.collator, run.processor, run.config
            )
            extracted += len(dataset)
        cached[split] = feature_dataset(features, dataset)
    seconds = time.perf_counter() - start
    logger.info("Extracted features of %d examples in %.1f s.", extracted, seconds)
    metrics = {
        "feature_extraction_runtime": round(seconds, 4),
        "feature_extraction_samples_per_second": round(extracted / max(seconds, 1e-9), 3),
    }
    return cached, metrics


def _adapting_head(modules: list[nn.Module], num_labels: int, config):
    """(head to train, folds): a bottleneck + new top in front of a one-layer head (folded afterwards), else the
    head's own modules."""
    if len(modules) > 1 or config.adaptation.adaptation == "none":  # no alignment loss: nothing to align
        return CachedFeatureHead(modules), None
    width = config.adaptation.bottleneck_dim
    bottleneck, top = nn.Linear(modules[0].in_features, width), nn.Linear(width, num_labels)
    logger.info("Training a %d-wide linear bottleneck under the alignment loss.", width)
    return CachedFeatureHead([bottleneck, top]), (bottleneck, top, modules[0])


def train_cached_head(model, head, stage, run: RunContext) -> Trained:
    """Extract the head inputs once, then train the head modules `head` ((name, module) pairs) on them.

    In the final stage of an adapting run, target inputs are cached too and the head trains under the alignment
    loss (see the module docstring).
    """
    config, num_labels = run.config, run.num_labels
    cached, extraction = _cache(model, head, stage, run)
    args = stage_arguments(
        config.training,
        stage,
        save_strategy="no",
        load_best_model_at_end=False,
        push_to_hub=False,
        remove_unused_columns=False,
        activation_checkpointing=False,
        train_sampling_strategy="random",  # cached inputs have no length to group by
    )
    modules, folds = [module for _, module in head], None
    if stage.final and run.adapts_in_training:
        head_model, folds = _adapting_head(modules, num_labels, config)
        last = f"head.{len(head_model.head) - 1}"
        width = head_model.head[-1].in_features
        task = build_task(head_model, last, width, num_labels, config, run.shift, loss_weights(run))
        trainer = task_trainer(
            task, args, cached["train"], cached["target_train"], cached.get("validation"), run, False
        )
    else:
        head_model = CachedFeatureHead(modules)
        trainer = classifier_trainer(head_model, args, cached.get("train"), cached.get("validation"), run, False)
    metrics = dict(trainer.train().metrics) if config.training.do_train else {}
    metrics.update(early_stopping_metrics(trainer) if config.training.do_train else {})
    if folds is not None:  # the saved model is the plain classifier: bottleneck and top folded into its layer
        fold_bottleneck(*folds)
    plain_head = CachedFeatureHead(modules)
    return Trained(
        trainer,
        {"eval": cached.get("validation"), "test": cached.get("test"), "target": cached.get("target_test")},
        {**metrics, **extraction},
        report_model=plain_head,
        report_layer=modules[-1],
        report_data={"train": cached.get("train"), "target_train": cached.get("target_train")},
    )
