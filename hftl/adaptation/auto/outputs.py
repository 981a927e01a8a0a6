"""What a trained candidate outputs on source and target data: the label-free scorers' input (`CandidateOutputs`)
and, when the target test split is labelled, its true target accuracy (recorded, never used for the choice)."""

from __future__ import annotations

import numpy as np
from datasets import Dataset
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from hftl.adaptation.scorers import CandidateOutputs
from hftl.features import extract_features
from hftl.metrics import logits_of
from hftl.training import Trained


def _sample(dataset: Dataset, limit: int, seed: int) -> Dataset:
    """At most `limit` examples of `dataset`, drawn with `seed`, in the dataset's order; without labels."""
    if "labels" in dataset.column_names:
        dataset = dataset.remove_columns("labels")
    if len(dataset) <= limit:
        return dataset
    rng = np.random.default_rng(seed)
    return dataset.select(np.sort(rng.choice(len(dataset), size=limit, replace=False)))


def _features(trained: Trained, dataset: Dataset, batch_size: int) -> np.ndarray:
    """(N, F) inputs of the trained model's classification layer."""
    return extract_features(
        trained.report_model, dataset, trained.report_collator, batch_size, trained.report_layer
    ).numpy()


def _logits(trained: Trained, dataset: Dataset) -> tuple[np.ndarray, np.ndarray | None]:
    """((N, C) logits, (N,) labels or None) of the trained model on `dataset`, predicted by its Trainer."""
    output = trained.trainer.predict(dataset, metric_key_prefix="candidate")
    labels = None if output.label_ids is None else np.asarray(output.label_ids)
    return np.asarray(logits_of(output.predictions), dtype=np.float32), labels


def candidate_outputs(trained: Trained, limit: int, seed: int, batch_size: int) -> CandidateOutputs:
    """The candidate's logits and features on the source validation split (all of it) and on at most `limit`
    unlabelled target train examples, and its features on at most `limit` source train examples.

    Args:
        trained: the candidate's final stage (its Trainer, evaluation datasets and report model / layer).
        limit: examples drawn (with `seed`) from the target train and source train splits.
        batch_size: examples per forward pass of the feature extraction.
    """
    validation = trained.evaluation["eval"]
    source_logits, source_labels = _logits(trained, validation)
    target = _sample(trained.report_data["target_train"], limit, seed)
    target_logits, _ = _logits(trained, target)
    source_train = _sample(trained.report_data["train"], limit, seed + 1)
    return CandidateOutputs(
        source_logits=source_logits,
        source_labels=source_labels,
        source_features=_features(trained, validation, batch_size),
        target_logits=target_logits,
        target_features=_features(trained, target, batch_size),
        source_train_features=_features(trained, source_train, batch_size),
        seed=seed,
    )


def true_target_metrics(trained: Trained) -> dict[str, float] | None:
    """Accuracy and balanced accuracy on the labelled target test split (None without one). For the record only: the
    choice never reads them."""
    dataset = trained.evaluation.get("target")
    if dataset is None:
        return None
    logits, labels = _logits(trained, dataset)
    if labels is None:
        return None
    predictions = logits.argmax(-1)
    return {
        "accuracy": round(float(accuracy_score(labels, predictions)), 4),
        "balanced_accuracy": round(float(balanced_accuracy_score(labels, predictions)), 4),
        "samples": int(len(labels)),
    }
