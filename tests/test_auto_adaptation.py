"""`--adaptation auto` through the text recipe on a tiny model: every candidate trained, recorded and scored; the
saved model is the kept candidate's (not retrained); a rerun reuses finished candidates; bad combinations refused
before any model loads. The tests do not depend on which candidate the selection rule keeps."""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import recipe_args, recipe_defaults
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from hftl.adaptation.auto import AutoAdaptationArguments
from hftl.adaptation.auto.candidates import candidate_list
from hftl.adaptation.auto.report import SELECTION_FILE, TARGET_KEY
from hftl.adaptation.scorers import scorer_names
from hftl.errors import InputError
from hftl.modalities import TextModality
from hftl.pipeline import run_classification

FLAGS = (
    "--strategy feature_extraction --num_train_epochs 2 --per_device_train_batch_size 8 --learning_rate 5e-2 "
    "--disable_tqdm true --report_to none --save_strategy no --bottleneck_dim 8 --discriminator_hidden_size 8 "
    "--adaptation auto --auto_methods mmd dann --auto_trade_offs 0.5"
).split()
NAMES = ["none", "mmd@0.5", "dann@0.5"]


def _args(tiny_bert_dir, text_files, output_dir, *flags):
    data = {
        **text_files,
        "target_train_file": text_files["validation_file"],
        "target_test_file": text_files["test_file"],
    }
    return recipe_args(tiny_bert_dir, data, output_dir, *FLAGS, *flags)


def _run(tiny_bert_dir, text_files, output_dir, *flags):
    return run_classification(TextModality(), recipe_defaults("text_classification"), _args(
        tiny_bert_dir, text_files, output_dir, *flags))  # fmt: skip


def _candidate_file(output_dir, name, file):
    return os.path.join(output_dir, "candidates", name, file)


def _saved_logits(output_dir, texts) -> np.ndarray:
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()


def test_auto_trains_scores_and_keeps_one(tiny_bert_dir, text_files, tmp_path, caplog):
    output_dir = str(tmp_path / "auto")
    with caplog.at_level("INFO", logger="hftl"):
        metrics = _run(tiny_bert_dir, text_files, output_dir)
    record = json.load(open(os.path.join(output_dir, SELECTION_FILE)))
    entries = record["candidates"]
    assert [c["name"] for c in entries] == NAMES
    assert [(c["method"], c["trade_off"]) for c in entries][1:] == [("mmd", 0.5), ("dann", 0.5)]
    for entry in entries:  # every candidate trained, scored by every scorer, its true target figures set apart
        assert set(entry["scores"]) == set(scorer_names()) and entry["training_seconds"] > 0
        assert not entry["resumed"] and 0 <= entry[TARGET_KEY]["accuracy"] <= 1
        assert TARGET_KEY not in entry["scores"]
        assert os.path.isfile(_candidate_file(output_dir, entry["name"], "weights.safetensors"))
    chosen = record["chosen"]["name"]
    assert entries[record["chosen_index"]]["name"] == chosen and record["reason"]
    assert "diagnosis" in record and record["flags"]["adaptation"] == "auto"
    assert any(f"--adaptation auto kept {chosen} of 3 candidates" in m for m in caplog.messages)
    # the saved model is the kept candidate: its logits on the target examples are those the candidate recorded
    texts = [row.split(",")[0] for row in open(text_files["validation_file"]).read().splitlines()[1:]]
    saved = _saved_logits(output_dir, texts)
    outputs = {n: np.load(_candidate_file(output_dir, n, "outputs.npz")) for n in NAMES}
    for arrays in outputs.values():  # what the scorers read: 16 source validation and 16 target examples, F = 32
        assert arrays["source_logits"].shape == arrays["target_logits"].shape == (16, 2)
        assert arrays["source_features"].shape == arrays["target_features"].shape == (16, 32)
        assert arrays["source_train_features"].shape == (64, 32) and len(arrays["source_labels"]) == 16
    assert np.allclose(saved, outputs[chosen]["target_logits"], atol=1e-4)
    assert any(not np.allclose(saved, outputs[n]["target_logits"], atol=1e-4) for n in NAMES if n != chosen)
    predicted = [p["label"] for p in pipeline("text-classification", model=output_dir)(texts)]
    model = AutoModelForSequenceClassification.from_pretrained(output_dir)
    assert predicted == [model.config.id2label[i] for i in saved.argmax(-1)]
    assert metrics["target_accuracy"] == pytest.approx(
        entries[record["chosen_index"]][TARGET_KEY]["accuracy"], abs=1e-4
    )
    assert metrics["auto_candidates"] == 3
    card = open(os.path.join(output_dir, "README.md")).read()
    assert "Chosen by `--adaptation auto` among 3 candidates" in card and f"`{chosen}`" in card
    assert "adaptation-auto" in card

    # each candidate trains as the plain run with its flags would: bit-identical weights
    plain_dir = str(tmp_path / "plain_mmd")
    plain_flags = ["--adaptation", "mmd", "--trade_off", "0.5"]  # the later --adaptation wins
    _run(tiny_bert_dir, text_files, plain_dir, *plain_flags)
    candidate = load_file(_candidate_file(output_dir, "mmd@0.5", "weights.safetensors"))
    plain = load_file(os.path.join(plain_dir, "model.safetensors"))
    assert candidate and all(torch.equal(tensor, plain[key]) for key, tensor in candidate.items())

    # a rerun with the same flags reuses the finished candidates; one whose record is missing is trained again
    os.remove(_candidate_file(output_dir, "dann@0.5", "candidate.json"))
    again = _run(tiny_bert_dir, text_files, output_dir)
    rerun = json.load(open(os.path.join(output_dir, SELECTION_FILE)))
    assert [c["resumed"] for c in rerun["candidates"]] == [True, True, False]
    for first, second in zip(entries[:2], rerun["candidates"][:2], strict=True):
        assert first["scores"] == second["scores"] and first["training_seconds"] == second["training_seconds"]
    assert again["target_accuracy"] == pytest.approx(
        rerun["candidates"][rerun["chosen_index"]][TARGET_KEY]["accuracy"], abs=1e-4
    )


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--hp_search_trials", "2"], "--hp_search_trials"),
        (["--importance_weighting"], "--importance_weighting"),
        (["--problem_type", "multi_label_classification"], "multi_label"),
        (["--auto_methods", "nosuch"], "--auto_methods nosuch"),
        (["--auto_trade_offs", "0"], "--auto_trade_offs"),
    ],
)
def test_refused_before_any_model_loads(tmp_path, text_files, flags, match):
    missing_model = str(tmp_path / "no_model_here")  # refused before the model is even looked for
    with pytest.raises(InputError, match=match):
        _run(missing_model, text_files, str(tmp_path / "out"), *flags)


def test_auto_needs_target_data(tmp_path, text_files):
    args = recipe_args(str(tmp_path), text_files, str(tmp_path / "out"), "--adaptation", "auto")
    with pytest.raises(InputError, match="--adaptation auto needs unlabelled target data"):
        run_classification(TextModality(), recipe_defaults("text_classification"), args)


def test_importance_weighted_candidates_follow_the_diagnosis():
    args = AutoAdaptationArguments(auto_methods=["mmd"], auto_trade_offs=[1.0])
    credible, not_credible = SimpleNamespace(label_shift_credible=True), SimpleNamespace(label_shift_credible=False)
    assert [c.name for c in candidate_list(args)] == ["none", "mmd@1.0"]  # no diagnosis: never by default
    assert [c.name for c in candidate_list(args, not_credible)] == ["none", "mmd@1.0"]
    assert [c.name for c in candidate_list(args, credible)] == ["none", "mmd@1.0", "iw", "iwmmd@1.0"]
    always = AutoAdaptationArguments(auto_methods=["mmd"], auto_trade_offs=[1.0], auto_importance_weighting="always")
    assert [c.importance_weighting for c in candidate_list(always)] == [False, False, True, True]
