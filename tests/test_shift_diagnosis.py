"""The shift diagnosis: the permutation test, BCTS and EM-BCTS, the label / covariate / none decision, the warning it
drives, `hftl diagnose` and the report fields of an adapting recipe run, on synthetic features and tiny models."""

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import make_texts, recipe_args, recipe_defaults, write_csv

from hftl.adaptation.bcts import fit_bcts
from hftl.adaptation.diagnosis import Reweighting, classify_shift, diagnose_shift
from hftl.adaptation.label_shift import estimate_target_prior, total_variation
from hftl.adaptation.mmd import multiple_kernel_mmd
from hftl.adaptation.prior_evidence import PriorEvidence, prior_evidence
from hftl.adaptation.shift import _warn_if_label_shift
from hftl.adaptation.two_sample import ProxyADistance, mmd_permutation_test, proxy_a_distance_interval
from hftl.cli import main as cli_main
from hftl.modalities import TextModality
from hftl.pipeline import run_classification

CENTRES = np.random.default_rng(42).normal(size=(3, 8)) * 2.0


def _domain(prior, n, rng, offset=0.0):
    """Three Gaussian classes in 8-D; `offset` moves every class's inputs (a covariate shift)."""
    labels = rng.choice(3, size=n, p=prior)
    return CENTRES[labels] + rng.normal(size=(n, 8)) + offset, labels


def _pair(target_prior, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    uniform = [1 / 3] * 3
    (x_train, y_train), (x_val, y_val) = _domain(uniform, 600, rng), _domain(uniform, 240, rng)
    x_target, _ = _domain(target_prior, 400, rng, offset)
    features = {"train": x_train, "validation": x_val, "target_train": x_target}
    return features, {"train": y_train, "validation": y_val}


def test_permutation_test_on_gaussians():
    rng = np.random.default_rng(0)
    same = mmd_permutation_test(rng.normal(size=(200, 5)), rng.normal(size=(150, 5)))
    shifted = mmd_permutation_test(rng.normal(size=(200, 5)), rng.normal(size=(150, 5)) + 0.5)
    assert same.p_value > 0.1 and shifted.p_value < 0.01
    assert (same.n_s, same.n_t) == (200, 150)
    # the statistic is the unbiased MK-MMD^2 of hftl.adaptation.mmd, on the same examples
    a, b = rng.normal(size=(60, 5)), rng.normal(size=(40, 5)) + 0.3
    expected = multiple_kernel_mmd(torch.from_numpy(a).float(), torch.from_numpy(b).float(), estimator="unbiased")
    assert mmd_permutation_test(a, b).mmd == pytest.approx(float(expected), abs=1e-5)
    # the proxy A-distance and its interval: near 0 for one distribution, near 2 for separated ones
    near = proxy_a_distance_interval(rng.normal(size=(300, 5)), rng.normal(size=(300, 5)))
    far = proxy_a_distance_interval(rng.normal(size=(300, 5)), rng.normal(size=(300, 5)) + 3.0)
    assert near.low <= near.value <= near.high and near.low < 0.2 < 1.8 < far.low


def test_bcts_recovers_a_known_temperature_and_bias():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 3)) * 2.0
    bias = np.array([0.5, 0.0, -0.5])
    shifted = true_logits + bias
    probabilities = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in probabilities])
    fitted = fit_bcts(3.0 * true_logits, labels)  # over-confident by 3: T should come out near 3
    assert fitted.temperature == pytest.approx(3.0, rel=0.1)
    np.testing.assert_allclose(fitted.bias - fitted.bias.mean(), bias, atol=0.12)


def test_em_bcts_recovers_a_known_prior_and_agrees_with_bbse():
    target_prior = np.array([0.6, 0.3, 0.1])
    features, labels = _pair(target_prior)
    source, estimated, used = estimate_target_prior(
        features["train"], labels["train"], features["validation"], labels["validation"],
        features["target_train"], 3, estimator="em_bcts",
    )  # fmt: skip
    assert used == "em_bcts" and total_variation(estimated, target_prior) < 0.05, estimated
    evidence = prior_evidence(
        features["train"], labels["train"], features["validation"], labels["validation"], features["target_train"], 3
    )
    assert evidence.disagreement < 0.05  # BBSE and EM-BCTS agree under a pure label shift
    assert evidence.prior_change_interval[0] < 0.3 < evidence.prior_change_interval[1]  # true change: 0.267
    assert evidence.condition_number < 5


@pytest.mark.parametrize(
    "target_prior, offset, kind",
    [
        ([1 / 3, 1 / 3, 1 / 3], 0.0, "none"),
        ([0.6, 0.3, 0.1], 0.0, "label"),
        ([1 / 3, 1 / 3, 1 / 3], np.r_[1.5, np.zeros(7)], "covariate"),
    ],
)
def test_diagnosis_names_a_known_shift(target_prior, offset, kind):
    features, labels = _pair(target_prior, offset, seed=1)
    diagnosis = diagnose_shift(features, labels, 3)
    assert diagnosis.shift_kind == kind, diagnosis.verdict
    assert diagnosis.gap_significant == (kind != "none")
    assert diagnosis.label_shift_credible == (kind == "label")
    report = diagnosis.as_dict(["a", "b", "c"])
    assert report["shift_kind"] == kind and set(report["prior"]["source_prior"]) == {"a", "b", "c"}
    json.dumps(report)  # JSON-ready


def test_warning_recommends_importance_weighting_only_for_a_credible_label_shift(caplog):
    shift = SimpleNamespace(total_variation=0.4)

    def warn(kind, credible, method, weighted):
        diagnosis = SimpleNamespace(
            shift_kind=kind, label_shift_credible=credible, prior=SimpleNamespace(prior_change=0.4)
        )
        config = SimpleNamespace(adaptation=SimpleNamespace(adaptation=method, importance_weighting=weighted))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hftl"):
            _warn_if_label_shift(shift, diagnosis, config)
        return caplog.text

    assert "--importance_weighting re-weights source classes" in warn("label", True, "mmd", False)
    assert warn("covariate", False, "mmd", False) == ""  # a spurious prior change: no iw recommendation
    assert "covariate shift, not a credible label shift" in warn("covariate", False, "mmd", True)
    assert warn("label", True, "mmd", True) == ""


@pytest.fixture
def shifted_text_files(tmp_path) -> dict[str, str]:
    """Source texts half positive; target texts 90% negative (a label shift the tiny model may or may not see)."""
    target = [row for row in make_texts(120, seed=7) if row["label"] == "negative"][:36]
    target += [row for row in make_texts(40, seed=8) if row["label"] == "positive"][:4]
    return {
        "train_file": write_csv(tmp_path / "train.csv", make_texts(64, seed=1)),
        "validation_file": write_csv(tmp_path / "validation.csv", make_texts(16, seed=2)),
        "target_train_file": write_csv(tmp_path / "target.csv", target),
    }


def test_hftl_diagnose_end_to_end(tiny_bert_dir, shifted_text_files, tmp_path, capsys):
    output_dir = tmp_path / "diagnosis"
    args = recipe_args(tiny_bert_dir, shifted_text_files, output_dir)  # the modality comes from the model
    assert cli_main(["diagnose", *args]) == 0
    printed = capsys.readouterr().out
    report = json.load(open(output_dir / "shift_diagnosis.json"))
    assert report["shift_kind"] in ("none", "label", "covariate", "both")
    assert f"Shift: {report['shift_kind']}" in printed and report["verdict"] in printed
    assert 0 < report["gap_p_value"] <= 1 and set(report["prior"]["source_prior"]) == {"negative", "positive"}
    assert (output_dir / "label_shift.json").is_file()
    # no target data: one error line naming the flags, exit 2
    no_target = {k: v for k, v in shifted_text_files.items() if k != "target_train_file"}
    assert cli_main(["diagnose", *recipe_args(tiny_bert_dir, no_target, tmp_path / "x")]) == 2
    assert "--target_dataset_name" in capsys.readouterr().err


def test_recipe_run_reports_the_diagnosis(tiny_bert_dir, shifted_text_files, tmp_path):
    output_dir = tmp_path / "run"
    fast = "--num_train_epochs 1 --per_device_train_batch_size 16 --report_to none --disable_tqdm true".split()
    flags = ["--strategy", "feature_extraction", "--adaptation", "mmd", "--domain_gap_report", *fast]
    flags += ["--label_shift_estimator", "em_bcts"]
    args = recipe_args(tiny_bert_dir, shifted_text_files, output_dir, *flags)
    metrics = run_classification(TextModality(), recipe_defaults("text_classification"), args)
    gap = json.load(open(output_dir / "domain_gap.json"))
    saved = json.load(open(output_dir / "shift_diagnosis.json"))
    assert gap["diagnosis"] == saved and saved["shift_kind"] in ("none", "label", "covariate", "both")
    assert metrics["shift_gap_p_value"] == round(saved["gap_p_value"], 4)
    assert json.load(open(output_dir / "label_shift.json"))["estimator"] == "em_bcts"


def _evidence(change, interval, disagreement=0.02, condition=3.0):
    prior = np.array([0.5, 0.5])
    return PriorEvidence(prior, {"em_bcts": prior}, change, interval, disagreement, condition, 1.0)


@pytest.mark.parametrize(
    "evidence, closed, p_after, pad, expected",
    [
        (_evidence(0.3, (0.25, 0.35)), 0.95, 0.4, (0.4, 0.3, 0.5), ("label", True)),
        (_evidence(0.3, (0.25, 0.35)), 0.5, 0.001, (1.0, 0.9, 1.1), ("both", True)),
        (_evidence(0.3, (0.25, 0.35)), 0.1, 0.001, (1.0, 0.9, 1.1), ("covariate", False)),  # explains too little
        (_evidence(0.3, (0.25, 0.35), disagreement=0.2), 0.9, 0.4, (0.4, 0.3, 0.5), ("covariate", False)),
        (_evidence(0.3, (0.25, 0.35), condition=1e4), 0.9, 0.4, (0.4, 0.3, 0.5), ("covariate", False)),
        (_evidence(0.02, (0.0, 0.05)), 0.0, 0.001, (1.0, 0.9, 1.1), ("covariate", False)),
        # a spurious prior that "explains" part of the gap, but the domains separate beyond PAD <= 2 TV
        (_evidence(0.5, (0.45, 0.55)), 0.3, 0.001, (1.95, 1.9, 2.0), ("covariate", False)),
    ],
)
def test_decision_table(evidence, closed, p_after, pad, expected):
    reweighting = Reweighting(300, 0.01, 0.01 * (1 - closed), p_after, closed)
    kind, credible, failed = classify_shift(True, evidence, reweighting, ProxyADistance(*pad))
    assert (kind, credible) == expected, failed
    assert bool(failed) == (not credible)
    assert classify_shift(False, evidence, reweighting, ProxyADistance(*pad))[0] == "none"


@pytest.mark.slow
def test_constructed_pairs_have_the_promised_shift():
    from hftl.data import load_builtin

    source, skewed, inverted = (load_builtin(n) for n in ("mnist_source_half", "mnist_label_shifted", "mnist_inverted"))
    pixels = {name: {np.asarray(img).tobytes() for img in data["train"]["image"]} for name, data in
              (("source", source), ("skewed", skewed), ("inverted", inverted))}  # fmt: skip
    assert not pixels["source"] & pixels["skewed"]  # disjoint halves of MNIST
    counts = {name: np.bincount(data["train"]["label"], minlength=10) for name, data in
              (("source", source), ("skewed", skewed), ("inverted", inverted))}  # fmt: skip
    prior = {name: c / c.sum() for name, c in counts.items()}
    assert total_variation(prior["source"], prior["inverted"]) < 0.03  # the same classes in the same proportions
    assert 0.33 < total_variation(prior["source"], prior["skewed"]) < 0.43  # class c kept at the share 0.7^c
    assert (np.diff(counts["skewed"]) < 0).all()
    # inverted: dark digits on a light background (MNIST's are light on dark)
    assert np.asarray(inverted["train"][0]["image"]).mean() > 127 > np.asarray(source["train"][0]["image"]).mean()
