"""Multi-label classification (`--problem_type multi_label_classification`): the maths of the metrics and thresholds,
label sets read from strings and lists, and the text recipe end to end, its saved pipeline returning exactly the
labels above their thresholds."""

import csv
import json
import random

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, List, Value
from helpers import FILLER, WORDS_BY_LABEL, recipe_args, recipe_defaults, write_csv
from transformers import AutoConfig, pipeline

from hftl.cli import main as cli
from hftl.data.loading import RawData
from hftl.data.multi_labels import check_and_encode_multi_label
from hftl.errors import InputError
from hftl.modalities import AudioModality, TextModality
from hftl.multi_label.arguments import ProblemArguments
from hftl.multi_label.metrics import multi_label_summary, per_label_report
from hftl.multi_label.thresholds import best_cut, best_cuts, fold, sigmoid
from hftl.pipeline import run_classification

DEFAULTS = recipe_defaults("text_classification")
MULTI = ["--problem_type", "multi_label_classification"]
FAST = (
    "--num_train_epochs 4 --per_device_train_batch_size 16 --learning_rate 5e-3 --logging_steps 5 --disable_tqdm true "
    "--eval_strategy no --save_strategy no --report_to none"
).split()


def multi_label_texts(n: int, seed: int) -> list[dict]:
    """`n` rows {text, labels}: 'positive' / 'negative' when the text holds such words (one or both), 'plot' when it
    holds the word "plot"."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = [name for name in ("positive", "negative") if rng.random() < 0.5] or [rng.choice(["negative"])]
        words = rng.sample(FILLER, 4) + [word for name in labels for word in rng.sample(WORDS_BY_LABEL[name], 2)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": sorted(labels + (["plot"] if "plot" in words else []))})
    return rows


# ---- maths --------------------------------------------------------------------------------------------------------


def test_metrics_on_a_hand_checked_case():
    true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    predicted = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
    m = multi_label_summary(predicted, true)
    # pooled: tp 3, fp 1, fn 2 -> P 3/4, R 3/5, F1 6/9
    assert m["precision_micro"] == pytest.approx(3 / 4) and m["recall_micro"] == pytest.approx(3 / 5)
    assert m["f1_micro"] == pytest.approx(2 / 3)
    # per label: a P 1 R 1 F1 1; b P 1 R 1/2 F1 2/3; c P 0 R 0 F1 0 (all labels present)
    assert m["f1_macro"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m["f1_weighted"] == pytest.approx((2 * 1 + 2 * 2 / 3 + 1 * 0) / 5)
    # per example F1: 2/3, 2/3, 2/3, and 1 for the empty set predicted empty
    assert m["f1_samples"] == pytest.approx((3 * 2 / 3 + 1) / 4)
    assert m["subset_accuracy"] == pytest.approx(1 / 4) and m["hamming_loss"] == pytest.approx(3 / 12)
    assert m["absent_labels"] == 0
    report = per_label_report(predicted, true, ["a", "b", "c"], {"a": 0.3, "b": 0.5, "c": 0.7})
    assert report["per_class"]["b"] == {
        "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2, "predicted": 1, "threshold": 0.5,
        "confusion_matrix": [[2, 0], [1, 1]],
    }  # fmt: skip


def test_macro_average_leaves_out_labels_without_examples():
    true, predicted = np.array([[1, 0], [1, 0]]), np.array([[1, 1], [1, 0]])
    m = multi_label_summary(predicted, true)
    assert m["f1_macro"] == 1.0 and m["absent_labels"] == 1 and m["precision_micro"] == pytest.approx(2 / 3)


def test_best_cut_maximises_f1_and_prefers_the_cut_nearest_one_half():
    scores = np.array([-3.0, -2.0, -0.5, 0.2, 1.0, 4.0])
    assert best_cut(scores, np.array([0, 0, 1, 1, 1, 1])) == pytest.approx(-1.25)  # between -2 and -0.5: F1 1
    assert best_cut(scores, np.array([0, 0, 0, 0, 1, 1])) == pytest.approx(0.6)
    assert best_cut(scores, np.zeros(6)) == 0.0  # no positive example: F1 undefined, 0.5 kept
    # positives on the lowest scores: every example predicted (F1 2/3) beats any cut (F1 <= 1/2); one unit below
    assert best_cut(scores, np.array([1, 1, 1, 0, 0, 0])) == pytest.approx(-3.5)
    # a tie: every example (cut -3) and the top one alone (cut 1.5) both give F1 2/3; the cut nearest 0 wins
    assert best_cut(np.array([-2.0, -1.0, 1.0, 2.0]), np.array([1, 0, 0, 1])) == pytest.approx(1.5)
    # a label with fewer positive examples than `min_positives` keeps 0.5 (cut 0)
    logits, labels = np.array([[-2.0, -2.0], [-1.0, -1.0], [2.0, 2.0]]), np.array([[0, 0], [1, 0], [1, 1]])
    assert best_cuts(logits, labels, min_positives=2).tolist() == [-1.5, 0.0]
    assert best_cuts(logits, labels, min_positives=1).tolist() == [-1.5, 0.5]


def test_folded_thresholds_make_one_half_the_threshold():
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 3)
    x = torch.randn(200, 8)
    labels = (torch.randn(200, 3) > 0).numpy()
    before = layer(x).detach().numpy()
    cuts = best_cuts(before, labels)
    fold(layer, cuts)
    after = torch.sigmoid(layer(x)).detach().numpy()
    thresholds = sigmoid(cuts)
    assert np.array_equal(after > 0.5, sigmoid(before) > thresholds)
    assert np.allclose(before - cuts, torch.logit(torch.as_tensor(after, dtype=torch.float64)).numpy(), atol=1e-4)


# ---- data -----------------------------------------------------------------------------------------------------------


def _encode(train: dict | Dataset, validation: dict | None = None, **flags):
    splits = {"train": train if isinstance(train, Dataset) else Dataset.from_dict(train)}
    if validation is not None:
        splits["validation"] = Dataset.from_dict(validation)
    raw = RawData(DatasetDict(splits), {s: f"--{s}_file x" for s in splits}, "test data")
    problem = ProblemArguments(problem_type="multi_label_classification", **flags)
    return check_and_encode_multi_label(raw, ["text"], "label", lambda v: bool(v), "empty", problem)


def test_label_sets_from_delimited_strings_and_lists():
    texts = ["t1", "t2", "t3"]
    splits, labels = _encode({"text": texts, "label": ["b | a", "c", "a|c|"]}, {"text": ["v"], "label": ["a"]})
    assert labels.names == ["a", "b", "c"] and labels.counts["train"] == [2, 1, 2]
    assert splits["train"]["labels"] == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0]]
    assert splits["train"].features["labels"] == List(Value("float32"))
    splits, labels = _encode({"text": texts, "label": [["x"], ["y", "x", "x"], []]}, {"text": ["v"], "label": [["y"]]},
                             allow_empty_labels=True)  # fmt: skip
    assert labels.names == ["x", "y"] and splits["train"]["labels"] == [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    splits, labels = _encode({"text": texts, "label": [[10], [2, 10], [2]]})
    assert labels.names == ["2", "10"]
    with_ids = Dataset.from_dict({"text": texts, "label": [[0], [1, 0], [1]]}).cast_column(
        "label", List(ClassLabel(names=["cat", "dog"]))
    )
    splits, labels = _encode(with_ids)
    assert labels.names == ["cat", "dog"] and len(splits["validation"]) == 1 and len(splits["train"]) == 2
    rows = list(splits["train"]["labels"]) + list(splits["validation"]["labels"])
    assert sorted(map(tuple, rows)) == [(0, 1), (1, 0), (1, 1)]


@pytest.mark.parametrize(
    "train, validation, flags, error",
    [
        ({"label": ["a", "", "b"]}, None, {}, r"rows \[1\].*row\(s\) with no label.*--allow_empty_labels"),
        ({"label": [1, 2, 3]}, None, {}, r"holds single int64 values, not label sets.*drop --problem_type"),
        ({"label": ["a", "b", "a"]}, {"label": ["c|a"]}, {}, r"\['c'\] never occur in train"),
        ({"label": ["a", "a", "a"]}, None, {}, r"only 1 label"),
        ({"label": [[0.5], [1.0], [2.0]]}, None, {}, r"holds a list with 0\.5 \(float\).*class names"),
        ({"label": ["a", "A", "b"]}, None, {}, r"differ only by case"),
    ],
)
def test_bad_label_sets_are_refused(train, validation, flags, error):
    texts = {"text": [f"t{i}" for i in range(len(train["label"]))]}
    valid = {"text": ["v"], **validation} if validation else None
    with pytest.raises(InputError, match=error):
        _encode(texts | train, valid, **flags)


def test_empty_label_sets_when_allowed():
    splits, labels = _encode(
        {"text": ["a", "b", "c"], "label": ["x", None, "y"]}, {"text": ["v"], "label": [""]}, allow_empty_labels=True
    )
    assert splits["train"]["labels"][1] == [0.0, 0.0] and splits["validation"]["labels"] == [[0.0, 0.0]]


# ---- the recipe -----------------------------------------------------------------------------------------------------


def _pipeline_labels(output_dir, texts: list[str]) -> list[list[str]]:
    classifier = pipeline("text-classification", model=str(output_dir))
    return [sorted(p["label"] for p in scores if p["score"] > 0.5) for scores in classifier(texts, top_k=None)]


def test_csv_with_delimited_labels_saves_a_pipeline_that_returns_the_labels_above_threshold(tiny_bert_dir, tmp_path):
    def rows(n, seed):
        return [{"text": r["text"], "labels": "|".join(r["labels"])} for r in multi_label_texts(n, seed)]

    files = {
        "train_file": write_csv(tmp_path / "train.csv", rows(96, 1)),
        "validation_file": write_csv(tmp_path / "validation.csv", rows(24, 2)),
    }
    output_dir = tmp_path / "out"
    args = recipe_args(tiny_bert_dir, files, output_dir, *FAST, *MULTI, "--label_column_name", "labels")
    metrics = run_classification(TextModality(), DEFAULTS, args)
    config = AutoConfig.from_pretrained(output_dir)
    assert config.problem_type == "multi_label_classification"
    assert list(config.id2label.values()) == ["negative", "plot", "positive"]
    assert set(config.hftl_thresholds) == {"negative", "plot", "positive"}
    assert any(t != 0.5 for t in config.hftl_thresholds.values())  # tuned on validation
    with open(output_dir / "eval_predictions.csv", encoding="utf-8") as handle:
        saved = list(csv.DictReader(handle))
    assert list(saved[0]) == ["source_row", "predictions", "prob_negative", "prob_plot", "prob_positive"]
    texts = [row["text"] for row in rows(24, 2)]
    assert _pipeline_labels(output_dir, texts) == [sorted(filter(None, r["predictions"].split("|"))) for r in saved]
    for row in saved:  # the CSV's probabilities are the model's own: a label is predicted iff above its threshold
        assert {n for n in config.hftl_thresholds if float(row[f"prob_{n}"]) > config.hftl_thresholds[n]} == set(
            filter(None, row["predictions"].split("|"))
        )
    results = json.loads((output_dir / "all_results.json").read_text())
    assert results == pytest.approx(metrics, nan_ok=True)
    for key in ("f1_micro", "f1_macro", "f1_weighted", "f1_samples", "precision_micro", "recall_macro",
                "subset_accuracy", "hamming_loss", "loss", "f1_plot", "recall_positive"):  # fmt: skip
        assert f"eval_{key}" in results, key
    assert results["eval_f1_micro"] > 0.6, results  # the labels are in the words: the tiny model learns them
    report = json.loads((output_dir / "eval_report.json").read_text())
    assert report["per_class"]["plot"]["threshold"] == pytest.approx(config.hftl_thresholds["plot"])
    card = (output_dir / "README.md").read_text()
    assert "multi_label_classification" in card and 'p["score"] > 0.5' in card and "f1_micro" in card


def test_jsonl_label_lists_feature_extraction_and_unlabelled_test(tiny_bert_dir, tmp_path):
    def write(name, rows):
        (tmp_path / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
        return str(tmp_path / name)

    test_rows = [{"text": r["text"]} for r in multi_label_texts(10, 3)]
    files = {
        "train_file": write("train.jsonl", multi_label_texts(64, 1)),
        "test_file": write("test.jsonl", test_rows),
    }
    output_dir = tmp_path / "out"
    flags = [*FAST, *MULTI, "--label_column_name", "labels", "--strategy", "feature_extraction", "--do_predict",
             "--validation_split_percentage", "40"]  # fmt: skip
    run_classification(TextModality(), DEFAULTS, recipe_args(tiny_bert_dir, files, output_dir, *flags))
    config = AutoConfig.from_pretrained(output_dir)
    with open(output_dir / "test_predictions.csv", encoding="utf-8") as handle:
        saved = list(csv.DictReader(handle))
    assert len(saved) == 10 and "prob_plot" in saved[0]
    texts = [row["text"] for row in test_rows]
    assert _pipeline_labels(output_dir, texts) == [sorted(filter(None, r["predictions"].split("|"))) for r in saved]
    assert set(config.hftl_thresholds) == {"negative", "plot", "positive"}
    assert any(t != 0.5 for t in config.hftl_thresholds.values())
    results = json.loads((output_dir / "all_results.json").read_text())
    assert "eval_f1_macro" in results and "test_f1_macro" not in results and results["test_samples"] == 10
    # evaluating the saved model again: its thresholds are unfolded on loading, so tuning finds the same ones
    again = tmp_path / "again"
    evaluate_only = recipe_args(str(output_dir), files, again, *flags, "--do_train", "false")
    run_classification(TextModality(), DEFAULTS, evaluate_only)
    assert AutoConfig.from_pretrained(again).hftl_thresholds == pytest.approx(config.hftl_thresholds, abs=1e-5)
    assert (again / "test_predictions.csv").read_text() == (output_dir / "test_predictions.csv").read_text()
    # `hftl predict` on the same file writes the run's CSV: the same label sets, the model's own probabilities
    scored = tmp_path / "scored.csv"
    command = ["predict", "--model_name_or_path", str(output_dir), "--test_file", files["test_file"]]
    assert cli([*command, "--output_file", str(scored)]) == 0
    with open(scored, encoding="utf-8") as handle:
        predicted = list(csv.DictReader(handle))
    assert [r["predictions"] for r in predicted] == [r["predictions"] for r in saved]
    for mine, theirs in zip(predicted, saved, strict=True):
        for name in config.hftl_thresholds:
            assert float(mine[f"prob_{name}"]) == pytest.approx(float(theirs[f"prob_{name}"]), abs=1e-4)


def test_speech_recipe_trains_label_sets_with_a_model_whose_own_loss_is_softmax(tiny_wav2vec2_dir, tmp_path):
    """wav2vec2's classifier computes a softmax cross-entropy whatever its `problem_type`: the run's loss is binary
    cross-entropy all the same, and the saved pipeline returns the labels above their thresholds."""
    import soundfile
    from helpers import make_tone

    (tmp_path / "clips").mkdir()
    rows, clips = [], []
    for i in range(12):
        labels = [["low"], ["high"], ["high", "low"]][i % 3]
        samples = sum(make_tone(label, 10 * i + k) for k, label in enumerate(labels)) / len(labels)
        soundfile.write(tmp_path / "clips" / f"{i}.wav", samples, 16_000)
        rows.append({"audio": f"clips/{i}.wav", "label": "|".join(labels)})
        clips.append(samples)
    files = {"train_file": write_csv(tmp_path / "train.csv", rows[:8]),
             "validation_file": write_csv(tmp_path / "validation.csv", rows[8:])}  # fmt: skip
    output_dir = tmp_path / "out"
    flags = ["--num_train_epochs", "1", "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
             "--report_to", "none", "--save_strategy", "no", "--max_length_seconds", "2", *MULTI]  # fmt: skip
    metrics = run_classification(AudioModality(), recipe_defaults("speech_classification"),
                                 recipe_args(tiny_wav2vec2_dir, files, output_dir, *flags))  # fmt: skip
    assert np.isfinite(metrics["train_loss"]) and "eval_f1_macro" in metrics
    assert AutoConfig.from_pretrained(output_dir).problem_type == "multi_label_classification"
    classifier = pipeline("audio-classification", model=str(output_dir))
    served = [sorted(p["label"] for p in classifier({"raw": clip, "sampling_rate": 16_000}, top_k=None)
                     if p["score"] > 0.5) for clip in clips[8:]]  # fmt: skip
    with open(output_dir / "eval_predictions.csv", encoding="utf-8") as handle:
        assert served == [sorted(filter(None, r["predictions"].split("|"))) for r in csv.DictReader(handle)]
