"""Metrics against hand-computed values; cached features against the full forward pass."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from hftl.arguments import StrategyArguments
from hftl.features import cache_is_exact, extract_features, feature_layer
from hftl.metrics import per_class_report, save_confusion_matrix, summary_metrics
from hftl.strategies import get_strategy, model_parts
from hftl.training.cached_head import CachedFeatureHead


def test_summary_metrics_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 1, 1, 1, 1])
    m = summary_metrics(predictions, labels, 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per class precision: 1, 2/4, 0; recall: 2/3, 1, 0
    assert m["precision"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["recall"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 2 * 0.5 * 1 / 1.5, 0]
    assert m["f1"] == pytest.approx(sum(f1) / 3)
    assert m["balanced_accuracy"] == pytest.approx(m["recall"])


def test_macro_recall_is_balanced_accuracy_when_a_class_is_absent():
    """Class 2 has no example: both figures average the two present classes (they once said 0.5 and 0.333)."""
    labels = np.array([0, 0, 1, 1])
    predictions = np.array([0, 1, 1, 2])
    m = summary_metrics(predictions, labels, 3)
    assert m["recall"] == pytest.approx((0.5 + 0.5) / 2)
    assert m["balanced_accuracy"] == pytest.approx(m["recall"])
    assert m["precision"] == pytest.approx((1 + 0.5) / 2)
    assert m["absent_classes"] == 1


def test_report_and_png(tmp_path):
    report = per_class_report(np.array([0, 1, 1]), np.array([0, 1, 0]), ["cat", "dog"])
    assert report["confusion_matrix"] == [[1, 1], [0, 1]]
    assert report["per_class"]["dog"]["precision"] == pytest.approx(0.5)
    path = tmp_path / "cm.png"
    save_confusion_matrix(report, str(path), "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cached_features_reproduce_the_full_model(tiny_bert_dir):
    model, info = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=3, output_loading_info=True
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    args = StrategyArguments(strategy="feature_extraction")
    get_strategy(args.strategy).apply(model, model_parts(model, info["missing_keys"]), args, None)
    name, layer = feature_layer(model, 3)
    assert name == "classifier" and cache_is_exact(model, name)
    texts = ["good film", "the plot was very dull and boring", "nice", "awful story"]
    dataset = Dataset.from_dict(dict(tokenizer(texts)))
    features = extract_features(model, dataset, DataCollatorWithPadding(tokenizer), 3, layer)
    assert features.shape == (4, 32)
    model.eval()
    with torch.no_grad():
        full = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
        cached = CachedFeatureHead([layer])(features)["logits"]
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


def test_cache_is_not_exact_when_more_than_the_layer_trains(tiny_bert_dir):
    model, info = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=2, output_loading_info=True
    )
    args = StrategyArguments(strategy="freeze", num_frozen_layers=1)
    get_strategy(args.strategy).apply(model, model_parts(model, info["missing_keys"]), args, None)
    assert not cache_is_exact(model, "classifier")
