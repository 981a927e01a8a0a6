"""Choosing the model and the layer before training: the scores' maths, every layer's features, `hftl rank` and
`--feature_layer auto` through a recipe, on tiny models offline."""

import copy
import json
import logging

import numpy as np
import pytest
import torch
import yaml
from helpers import make_texts, recipe_args, recipe_defaults, write_csv
from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification, AutoTokenizer

from hftl.cli import main as hftl_main
from hftl.errors import InputError
from hftl.features import extract_features, head_modules
from hftl.modalities import ImageModality, TextModality
from hftl.pipeline import run_classification
from hftl.ranking import h_score, logme, transrate
from hftl.ranking.layers import extract_layer_features
from hftl.strategies import keep_bottom_layers

SCORES = {"logme": logme, "h_score": h_score, "transrate": transrate}
FAST = "--num_train_epochs 1 --per_device_train_batch_size 16 --logging_steps 1 --report_to none".split()


def _feature_sets(n=300, classes=3, seed=0):
    """Labels, and three (N, 8) feature sets whose class information is known: strong, weak and none."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    means = rng.normal(size=(classes, 8)) * 2
    noise = rng.normal(size=(n, 8))
    return y, {"strong": means[y] + noise, "weak": 0.25 * means[y] + noise, "none": rng.normal(size=(n, 8))}


@pytest.mark.parametrize("name", SCORES)
def test_scores_rank_feature_sets_by_the_information_they_hold(name):
    y, sets = _feature_sets()
    score = SCORES[name]
    values = {key: score(f, y) for key, f in sets.items()}
    assert values["strong"] > values["weak"] > values["none"], values
    assert score(100.0 * sets["strong"], y) == pytest.approx(values["strong"], rel=1e-3)  # no matter the scale


def test_logme_with_more_features_than_examples_stays_a_ranking():
    """N < F: any labels are fitted exactly in all F directions; LogME keeps the top N / 2 and still ranks."""
    y, sets = _feature_sets(n=100)
    rng = np.random.default_rng(3)
    strong, noise = (np.c_[sets[k], rng.normal(size=(100, 200))] for k in ("strong", "none"))
    assert -2 < logme(noise, y) < logme(strong, y) < 0
    assert logme(noise, y) == logme(noise.copy(), y)  # deterministic


def test_logme_is_the_maximum_of_the_bayesian_evidence():
    """LogME's fixed point against a direct maximisation of log N(y; 0, I / beta + F F^T / alpha) over alpha, beta."""
    from scipy.optimize import minimize
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 40)
    f = np.c_[y + 0.7 * rng.normal(size=40), rng.normal(size=(40, 2))]

    def evidence(log_ab, target):
        alpha, beta = np.exp(log_ab)
        cov = np.eye(40) / beta + f @ f.T / alpha
        return multivariate_normal(np.zeros(40), cov).logpdf(target) / 40

    best = [-minimize(lambda p: -evidence(p, (y == c).astype(float)), [0.0, 0.0]).fun for c in (0, 1)]
    assert logme(f, y) == pytest.approx(np.mean(best), abs=1e-3)


def test_h_score_is_the_plain_formula_when_the_covariance_is_well_estimated():
    """Many examples of a few mixed features: the shrinkage vanishes and tr(cov(f)^-1 cov(E[f | y])) remains."""
    y, sets = _feature_sets(n=20000)
    raw = sets["weak"] @ np.random.default_rng(5).normal(size=(8, 8))  # correlated features of unequal scales
    f = raw - raw.mean(0)
    means = np.stack([f[y == c].mean(0) for c in range(3)])[y]
    plain = np.trace(np.linalg.inv(np.cov(f.T, bias=True)) @ (means.T @ means / len(f)))
    assert h_score(raw, y) == pytest.approx(plain, rel=0.005)


def _token_batches(tokenizer, texts):
    from datasets import Dataset

    dataset = Dataset.from_dict(dict(tokenizer(texts)))

    def collate(examples):
        return tokenizer.pad(examples, return_tensors="pt")

    return dataset, collate


def test_layer_features_are_the_head_inputs_of_the_cropped_models(tiny_bert_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    dataset, collate = _token_batches(AutoTokenizer.from_pretrained(tiny_bert_dir), [r["text"] for r in make_texts(9)])
    found = extract_layer_features(model, dataset, collate, 4, head_modules(model, 2)[0][1])
    assert found.croppable and found.layers == [1, 2, 3, 4] and found.seconds == sorted(found.seconds)
    for n in found.layers:
        cropped = copy.deepcopy(model)
        keep_bottom_layers(cropped, n)
        expected = extract_features(cropped, dataset, collate, 4, head_modules(cropped, 2)[0][1])
        torch.testing.assert_close(torch.from_numpy(found.features[n - 1]), expected, atol=1e-5, rtol=1e-4)


def test_stages_of_a_network_whose_blocks_change_width(tiny_efficientnet_lite_dir):
    from datasets import Dataset

    model = AutoModelForImageClassification.from_pretrained(tiny_efficientnet_lite_dir, trust_remote_code=True)
    pixels = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    dataset = Dataset.from_dict({"pixel_values": pixels.numpy()}).with_format("torch")
    found = extract_layer_features(model, dataset, None, 2, head_modules(model, 4)[0][1])
    assert not found.croppable and found.names == ["block 1 (stage end)", "block 3 + head"]
    assert [f.shape for f in found.features] == [(5, 8), (5, 32)]
    with torch.no_grad():  # the last candidate is the model's own head input: its pooled features
        pooled = model.efficientnet(pixel_values=pixels).pooler_output
    torch.testing.assert_close(torch.from_numpy(found.features[-1]), pooled, atol=1e-5, rtol=1e-4)


def _text_data(tmp_path):
    return {
        "train_file": write_csv(tmp_path / "train.csv", make_texts(48, seed=1)),
        "validation_file": write_csv(tmp_path / "validation.csv", make_texts(16, seed=2)),
        "test_file": write_csv(tmp_path / "test.csv", make_texts(16, seed=3)),
    }


def test_rank_command_on_a_text_model_with_target_data(tiny_bert_dir, tmp_path, capsys, caplog):
    data = _text_data(tmp_path)
    target = write_csv(tmp_path / "target.csv", make_texts(24, seed=7))
    flags = [f"--{k}={v}" for k, v in data.items()] + ["--target_train_file", target, "--target_test_file", target]
    args = ["rank", "--model_name_or_path", tiny_bert_dir, "--modality", "text", *flags]
    args += ["--output_file", str(tmp_path / "rank.json"), "--feature_cache_dir", str(tmp_path / "cache")]
    assert hftl_main(args) == 0
    assert "LogME" in capsys.readouterr().out
    ranking = json.load(open(tmp_path / "rank.json"))
    rows = ranking["candidates"]
    assert sorted(r["layer"] for r in rows) == [1, 2, 3, 4] and ranking["ranking_rule"].startswith("highest LogME")
    assert [r["logme"] for r in rows] == sorted((r["logme"] for r in rows), reverse=True)
    by_layer = sorted(rows, key=lambda r: r["layer"])
    assert all(a["parameters"] < b["parameters"] for a, b in zip(by_layer, by_layer[1:], strict=False))
    assert all(
        r["mmd"] is not None and r["proxy_a_distance"] is not None and r["examples_per_second"] > 0 for r in rows
    )
    with caplog.at_level(logging.INFO, logger="hftl"):  # again: the features come from the cache, same scores
        assert hftl_main(args) == 0
    assert "Layer features read from the cache" in caplog.text
    assert [r["logme"] for r in json.load(open(tmp_path / "rank.json"))["candidates"]] == [r["logme"] for r in rows]


def test_rank_command_compares_two_image_models(tiny_vit_dir, tiny_efficientnet_lite_dir, image_folders, tmp_path):
    # no --ignore_mismatched_sizes: rank never uses the checkpoints' heads, whatever their class count
    flags = [f"--{k}={v}" for k, v in image_folders.items()] + ["--trust_remote_code", "true"]
    models = [tiny_vit_dir, tiny_efficientnet_lite_dir]
    args = ["rank", "--model_name_or_path", *models, "--modality", "image", *flags]
    assert hftl_main([*args, "--output_file", str(tmp_path / "rank.json")]) == 0
    rows = json.load(open(tmp_path / "rank.json"))["candidates"]
    assert {(r["model"], r["layer_name"]) for r in rows} == {
        (tiny_vit_dir, "layer 1"),
        (tiny_vit_dir, "layer 2"),
        (tiny_efficientnet_lite_dir, "block 1 (stage end)"),
        (tiny_efficientnet_lite_dir, "block 3 + head"),
    }
    assert all(r["mmd"] is None for r in rows)  # no target data, no gap


def test_feature_layer_auto_through_the_text_recipe(tiny_bert_dir, tmp_path):
    output_dir = tmp_path / "auto"
    args = recipe_args(tiny_bert_dir, _text_data(tmp_path), output_dir, *FAST, "--feature_layer", "auto")
    metrics = run_classification(TextModality(), recipe_defaults("text_classification"), args + ["--strategy", "lora"])
    ranking = json.load(open(output_dir / "layer_ranking.json"))
    best = max(ranking["candidates"], key=lambda r: r["logme"])
    results = json.load(open(output_dir / "all_results.json"))
    assert results["feature_layer_auto"] == metrics["feature_layer_auto"] == best["layer"] == ranking["chosen_layer"]
    assert results["feature_layer_auto_logme"] == best["logme"]
    saved = AutoModelForSequenceClassification.from_pretrained(output_dir)
    assert saved.config.num_hidden_layers == len(saved.bert.encoder.layer) == best["layer"]
    assert f"Encoder layer {best['layer']} of 4 chosen before training" in open(output_dir / "README.md").read()
    assert yaml.safe_load(open(output_dir / "hftl_config.yaml"))["feature_layer"] == "auto"


def test_feature_layer_auto_refuses_models_it_cannot_crop(tiny_efficientnet_lite_dir, image_folders, tmp_path):
    args = recipe_args(tiny_efficientnet_lite_dir, image_folders, tmp_path / "x", "--feature_layer", "auto")
    with pytest.raises(InputError, match="--feature_layer auto: EfficientNetLite.*hftl rank"):
        run_classification(ImageModality(), {}, args + ["--trust_remote_code", "true"])
    with pytest.raises(InputError, match="--feature_layer must be an integer >= 1 or auto, got 'top'"):
        run_classification(
            ImageModality(),
            {},
            recipe_args(tiny_efficientnet_lite_dir, image_folders, tmp_path / "y", "--feature_layer", "top"),
        )


def test_speech_layers_are_what_feature_layer_n_gives(tiny_whisper_dir, audio_folders, tmp_path):
    """Whisper (cropped to the clip length): layer 1's candidate features are the features of the run that
    `--feature_layer 1` loads."""
    from hftl.config import resolve_config
    from hftl.data.domains import load_data
    from hftl.inputs import build_inputs
    from hftl.modalities import AudioModality
    from hftl.modeling import load_model
    from hftl.ranking.candidates import model_candidates

    modality = AudioModality()
    config = resolve_config(modality, {}, recipe_args(tiny_whisper_dir, audio_folders, tmp_path / "x"))
    data = load_data(modality, config)
    candidates, labels = model_candidates(modality, config, data)
    assert [c.layer for c in candidates] == [1, 2] and len(labels) == len(candidates[0].source)
    cropped = resolve_config(
        modality, {}, recipe_args(tiny_whisper_dir, audio_folders, tmp_path / "x", "--feature_layer", "1")
    )
    loaded = load_model(modality, cropped, data.labels)
    inputs = build_inputs(modality, cropped, data, loaded.processor)
    head = head_modules(loaded.model, len(data.labels.names))[0][1]
    train = inputs.source.plain["train"]
    batch = config.training.per_device_eval_batch_size  # cropped Whisper's features depend on the batch's longest clip
    expected = extract_features(loaded.model, train, inputs.collator, batch, head, inputs.source.lengths("train"))
    torch.testing.assert_close(torch.from_numpy(candidates[0].source), expected, atol=1e-5, rtol=1e-4)
