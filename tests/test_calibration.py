"""Calibration: the expected calibration error on known cases, the temperature fit, and `--temperature_scaling`
through the text recipe (the saved model's own scores are the calibrated ones, with or without LoRA)."""

import csv
import json

import numpy as np
import pytest
import torch
from helpers import make_texts, recipe_args, recipe_defaults, write_csv
from torch import nn
from torch.nn import functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from hftl.calibration import expected_calibration_error, fit_temperature, negative_log_likelihood
from hftl.errors import InputError
from hftl.modalities import TextModality
from hftl.pipeline import run_classification
from hftl.recipes import main
from hftl.temperature_scaling import fold_temperature, logit_layer_name

DEFAULTS = recipe_defaults("text_classification")
FAST = (
    "--num_train_epochs 6 --per_device_train_batch_size 16 --learning_rate 5e-3 --logging_steps 5 "
    "--disable_tqdm true --eval_strategy no --save_strategy no --report_to none"
).split()


# ---- the maths ---------------------------------------------------------------------------------------------------


def test_ece_of_a_hand_computed_case():
    # confidences 0.9, 0.9 (bin 14: one right -> |0.5 - 0.9|), 0.6, 0.6 (bin 9: both right -> |1 - 0.6|), 0.3 of
    # three classes (bin 5: wrong -> |0 - 0.35|): ECE = (2 * 0.4 + 2 * 0.4 + 0.35) / 5
    p = np.array([[0.9, 0.1, 0], [0.1, 0.9, 0], [0.4, 0.6, 0], [0.6, 0.4, 0], [0.35, 0.33, 0.32]])
    labels = np.array([0, 0, 1, 0, 2])
    assert expected_calibration_error(p, labels) == pytest.approx((0.8 + 0.8 + 0.35) / 5)
    # one bin: every example is in [0, 1], so ECE = |accuracy - mean confidence|
    assert expected_calibration_error(p, labels, num_bins=1) == pytest.approx(
        abs(3 / 5 - np.mean([0.9, 0.9, 0.6, 0.6, 0.35]))
    )


def test_ece_is_zero_when_calibrated_and_counts_bin_edges_once():
    # each bin holds examples right exactly as often as their confidence says: 0.75 (3 of 4 right), 1.0 (all right)
    p = np.array([[0.75, 0.25]] * 4 + [[1.0, 0.0]] * 2)
    assert expected_calibration_error(p, np.array([0, 0, 0, 1, 0, 0])) == pytest.approx(0.0, abs=1e-12)
    # a confidence of exactly 1 (upper edge of the last bin) is counted, and only once: all wrong -> ECE 1
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(1.0)


def test_fit_temperature_recovers_the_scale_of_overconfident_logits():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 4, generator=generator) * 1.5
    labels = torch.multinomial(z.softmax(-1), 1, generator=generator).squeeze(1)  # calibrated at T = 1
    t = fit_temperature(3 * z, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    assert negative_log_likelihood(3 * z, labels, t) < negative_log_likelihood(3 * z, labels)
    probs = lambda logits: logits.softmax(-1).numpy()  # noqa: E731
    assert expected_calibration_error(probs(3 * z / t), labels) < expected_calibration_error(probs(3 * z), labels)


def test_fold_temperature_divides_the_logits():
    layer, x = nn.Linear(5, 3), torch.randn(7, 5)
    before = layer(x).detach()
    fold_temperature(layer, 2.5)
    torch.testing.assert_close(layer(x).detach(), before / 2.5)


def test_a_head_that_does_not_end_in_a_linear_layer_is_refused():
    class Model(nn.Module):
        feature_head = ("classifier", "norm")

        def __init__(self):
            super().__init__()
            self.backbone, self.classifier, self.norm = nn.Linear(4, 4), nn.Linear(4, 2), nn.LayerNorm(2)

    with pytest.raises(InputError, match="head ends in 'norm' \\(LayerNorm\\), not a Linear layer"):
        logit_layer_name(Model(), 2)


# ---- through the recipe ------------------------------------------------------------------------------------------


def _noisy_files(folder) -> dict[str, str]:
    """Texts whose every fifth label is flipped (train 64, validation 32, test 16): the model cannot be right
    everywhere, so its confidence has something to be calibrated against."""

    def flipped(rows):
        flip = {"positive": "negative", "negative": "positive"}
        return [{**r, "label": flip[r["label"]] if i % 5 == 0 else r["label"]} for i, r in enumerate(rows)]

    return {
        "train_file": write_csv(folder / "train.csv", flipped(make_texts(64, seed=1))),
        "validation_file": write_csv(folder / "validation.csv", flipped(make_texts(32, seed=2))),
        "test_file": write_csv(folder / "test.csv", make_texts(16, seed=3)),
    }


def _run(model_dir, files, output_dir, *flags):
    args = recipe_args(model_dir, files, output_dir, *FAST, *flags)
    metrics = run_classification(TextModality(), DEFAULTS, args)
    return metrics, json.load(open(output_dir / "all_results.json"))


def _validation_logits(model, files) -> tuple[torch.Tensor, torch.Tensor]:
    tokenizer = AutoTokenizer.from_pretrained(files["_model_dir"])
    rows = list(csv.DictReader(open(files["validation_file"], encoding="utf-8")))
    with torch.no_grad():
        logits = model.eval()(**tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")).logits
    return logits, torch.tensor([model.config.label2id[r["label"]] for r in rows])


def test_temperature_scaling_is_saved_in_the_model(tiny_bert_dir, tmp_path):
    text_files = _noisy_files(tmp_path)
    _, plain = _run(tiny_bert_dir, text_files, tmp_path / "plain")
    metrics, scaled = _run(tiny_bert_dir, text_files, tmp_path / "scaled", "--temperature_scaling", "true")
    t = scaled["temperature"]
    assert scaled == pytest.approx(metrics, nan_ok=True) and t > 0 and t != 1.0
    # the same training (same seed), then T: the ECE before scaling is the unscaled run's, the accuracy unchanged
    assert scaled["eval_ece_before_scaling"] == pytest.approx(plain["eval_ece"], abs=1e-6)
    assert scaled["eval_accuracy"] == plain["eval_accuracy"] and "test_ece" in scaled
    assert scaled["eval_nll_after_scaling"] <= scaled["eval_nll_before_scaling"]

    files = {**text_files, "_model_dir": str(tmp_path / "scaled")}
    before = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain")
    after = AutoModelForSequenceClassification.from_pretrained(tmp_path / "scaled")
    assert after.config.hftl_temperature == pytest.approx(t)
    logits_before, labels = _validation_logits(before, files)
    expected = (logits_before / t).softmax(-1)
    # the saved model's pipeline(...) returns softmax(logits_before / T), with no custom code
    classifier = pipeline("text-classification", model=str(tmp_path / "scaled"))
    texts = [r["text"] for r in csv.DictReader(open(text_files["validation_file"], encoding="utf-8"))]
    served = [{s["label"]: s["score"] for s in row} for row in classifier(texts, truncation=True, top_k=None)]
    names = [after.config.id2label[i] for i in range(2)]
    np.testing.assert_allclose([[row[n] for n in names] for row in served], expected.numpy(), atol=1e-5)
    assert F.cross_entropy(logits_before / t, labels) <= F.cross_entropy(logits_before, labels) + 1e-9
    # the evaluation saw the calibrated model: eval_loss is the scaled NLL
    assert scaled["eval_loss"] == pytest.approx(F.cross_entropy(logits_before / t, labels).item(), abs=1e-4)


def test_temperature_scaling_with_lora_reaches_the_merged_model_and_the_adapter(tiny_bert_dir, tmp_path):
    from peft import AutoPeftModelForSequenceClassification

    text_files = _noisy_files(tmp_path)
    metrics, _ = _run(
        tiny_bert_dir, text_files, tmp_path / "out", "--strategy", "lora", "--temperature_scaling", "true"
    )
    t = metrics["temperature"]
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    config = merged.config
    adapter = AutoPeftModelForSequenceClassification.from_pretrained(
        tmp_path / "out" / "adapter", num_labels=2, id2label=config.id2label, label2id=config.label2id
    )
    files = {**text_files, "_model_dir": str(tmp_path / "out")}
    logits, labels = _validation_logits(merged, files)
    torch.testing.assert_close(_validation_logits(adapter, files)[0], logits, atol=1e-5, rtol=1e-4)
    # the saved logits are the trained model's divided by T: times T, they give the NLL calibrate measured before
    # folding; as they are, the NLL after (which the evaluation measured too)
    assert F.cross_entropy(logits * t, labels).item() == pytest.approx(metrics["eval_nll_before_scaling"], abs=1e-4)
    assert F.cross_entropy(logits, labels).item() == pytest.approx(metrics["eval_nll_after_scaling"], abs=1e-4)
    assert metrics["eval_loss"] == pytest.approx(metrics["eval_nll_after_scaling"], abs=1e-4)
    assert config.hftl_temperature == pytest.approx(t) and t != 1.0


def test_temperature_scaling_needs_an_evaluation(tiny_bert_dir, text_files, tmp_path, capsys):
    args = recipe_args(tiny_bert_dir, text_files, tmp_path / "out", *FAST, "--temperature_scaling", "true")
    assert main(TextModality(), DEFAULTS, [*args, "--do_eval", "false"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --temperature_scaling fits the temperature on the validation split")
    assert "\n" not in error and not (tmp_path / "out").exists()


def test_a_calibrated_model_trained_again_does_not_keep_its_old_temperature(tiny_bert_dir, tmp_path):
    files = _noisy_files(tmp_path)
    _, scaled = _run(tiny_bert_dir, files, tmp_path / "scaled", "--temperature_scaling", "true")
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "scaled").config.hftl_temperature
    _run(str(tmp_path / "scaled"), files, tmp_path / "again", "--do_train", "false")
    # T is folded into the weights the second run starts from: its saved config must not claim a temperature
    assert getattr(AutoModelForSequenceClassification.from_pretrained(tmp_path / "again").config, "hftl_temperature",
                   None) is None  # fmt: skip


def test_cached_head_with_dann_bottleneck_is_calibrated_in_evaluation_and_model(tiny_bert_dir, tmp_path):
    # feature_extraction + dann trains a bottleneck on cached features and folds it into the classifier afterwards;
    # evaluation runs the bottleneck head, the saved model the classifier: T must reach both
    files = _noisy_files(tmp_path)
    target = [{"text": r["text"]} for r in make_texts(40, seed=7)]
    files["target_train_file"] = write_csv(tmp_path / "target_train.csv", target)
    flags = ("--strategy", "feature_extraction", "--adaptation", "dann", "--num_train_epochs", "20")
    metrics, _ = _run(tiny_bert_dir, files, tmp_path / "out", *flags, "--temperature_scaling", "true")
    assert metrics["temperature"] != 1.0
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    probabilities = _validation_logits(model, {**files, "_model_dir": str(tmp_path / "out")})[0].softmax(-1)
    with open(tmp_path / "out" / "eval_predictions.csv", encoding="utf-8") as handle:
        saved = [[float(r["prob_negative"]), float(r["prob_positive"])] for r in csv.DictReader(handle)]
    np.testing.assert_allclose(probabilities.numpy(), saved, atol=1e-5)
