"""`hftl predict`: a saved model scores a new file (or folder) into the CSV the run's own evaluation wrote."""

import csv
import json
import os

import numpy as np
import pytest
from helpers import make_texts, recipe_args, recipe_defaults, write_csv

from hftl.cli import main as cli
from hftl.modalities import ImageModality, TextModality
from hftl.pipeline import run_classification

FAST = (
    "--num_train_epochs 6 --per_device_train_batch_size 16 --learning_rate 5e-3 --disable_tqdm true "
    "--eval_strategy no --save_strategy no --report_to none"
).split()


def _read(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _assert_same_predictions(ours: list[dict], theirs: list[dict], names: list[str]) -> None:
    """Same rows, labels and columns; every probability (and the score) within 1e-5."""
    assert list(ours[0]) == list(theirs[0]) and len(ours) == len(theirs) > 0
    assert [(r["source_row"], r["prediction"]) for r in ours] == [(r["source_row"], r["prediction"]) for r in theirs]
    columns = ["score", *(f"prob_{name}" for name in names)]
    ours_p = np.array([[float(r[c]) for c in columns] for r in ours])
    theirs_p = np.array([[float(r[c]) for c in columns] for r in theirs])
    np.testing.assert_allclose(ours_p, theirs_p, atol=1e-5)


@pytest.fixture(scope="module")
def text_run(tiny_bert_dir, tmp_path_factory):
    """A tiny text model trained through the recipe (texts of up to 12 tokens, so truncation matters), its files."""
    folder = tmp_path_factory.mktemp("predict_text")
    test_rows = make_texts(16, seed=3)
    test_rows[5]["text"] = " ".join(["good film"] * 10) + " bad"  # longer than --max_seq_length: truncated
    files = {
        "train_file": write_csv(folder / "train.csv", make_texts(64, seed=1)),
        "validation_file": write_csv(folder / "validation.csv", make_texts(16, seed=2)),
        "test_file": write_csv(folder / "test.csv", test_rows),
    }
    output_dir = folder / "out"
    args = recipe_args(tiny_bert_dir, files, output_dir, *FAST, "--max_seq_length", "12", "--do_predict", "true")
    run_classification(TextModality(), recipe_defaults("text_classification"), args)
    return folder, files, output_dir


def test_predict_reproduces_the_runs_test_predictions(text_run, capsys):
    folder, files, output_dir = text_run
    out = folder / "scores.csv"
    code = cli(["predict", "--model_name_or_path", str(output_dir), "--test_file", files["test_file"]] + 
               ["--output_file", str(out), "--per_device_eval_batch_size", "4"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    ours, theirs = _read(out), _read(output_dir / "test_predictions.csv")
    assert list(ours[0])[:3] == ["source_row", "prediction", "score"]
    _assert_same_predictions(ours, theirs, ["negative", "positive"])
    assert len({r["prediction"] for r in ours}) == 2  # a model predicting one class would not test the labels


def test_predict_reads_json_lines_with_a_named_column(text_run, capsys):
    folder, files, output_dir = text_run
    rows = _read(files["test_file"])
    jsonl = folder / "new.jsonl"
    jsonl.write_text("".join(json.dumps({"id": i, "review": r["text"]}) + "\n" for i, r in enumerate(rows)))
    out = folder / "from_jsonl.csv"
    code = cli(["predict", "--model_name_or_path", str(output_dir), "--test_file", str(jsonl)] + 
               ["--output_file", str(out), "--text_column_name", "review"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    _assert_same_predictions(_read(out), _read(output_dir / "test_predictions.csv"), ["negative", "positive"])


def _error(capsys, *args) -> str:
    assert cli(["predict", *args]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]  # after any progress bar of the file's reading
    assert message.startswith("error: "), message
    return message


def test_predict_errors_name_the_flag_and_the_fix(text_run, tiny_bert_dir, capsys):
    folder, files, output_dir = text_run
    out = ["--output_file", str(folder / "never.csv")]
    model = ["--model_name_or_path", str(output_dir)]
    message = _error(capsys, *model, "--test_file", str(folder / "missing.csv"), *out)
    assert "--test_file" in message and "no such file" in message
    message = _error(capsys, *model, "--test_file", files["test_file"], "--text_column_name", "review", *out)
    assert "no column 'review'" in message and "['text', 'label']" in message
    message = _error(capsys, "--model_name_or_path", tiny_bert_dir, "--test_file", files["test_file"], *out)
    assert "not a text, image or audio classifier" in message  # a base model without a head
    message = _error(capsys, "--model_name_or_path", str(folder / "nothing"), "--test_file", files["test_file"], *out)
    assert "no such folder" in message
    (folder / "adapter_only").mkdir()
    (folder / "adapter_only" / "adapter_config.json").write_text("{}")
    message = _error(
        capsys, "--model_name_or_path", str(folder / "adapter_only"), "--test_file", files["test_file"], *out
    )
    assert "holds a LoRA adapter alone" in message and "--merge_adapter true" in message
    empty = write_csv(folder / "blank.csv", [{"id": 0, "text": "good"}, {"id": 1, "text": " "}])
    message = _error(capsys, *model, "--test_file", empty, *out)
    assert "rows [1]" in message and "--drop_invalid_examples true" in message
    assert not (folder / "never.csv").exists()


def test_predict_scores_a_folder_of_images(tiny_vit_dir, image_folders, tmp_path, capsys):
    output_dir = tmp_path / "image_out"
    flags = ["--num_train_epochs", "2", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3"]
    flags += ["--disable_tqdm", "true", "--image_size", "32", "--eval_strategy", "no", "--save_strategy", "no"]
    args = recipe_args(tiny_vit_dir, image_folders, output_dir, *flags, "--report_to", "none", "--do_predict", "true")
    run_classification(ImageModality(), recipe_defaults("image_classification"), args)
    out = tmp_path / "scores.csv"
    code = cli(["predict", "--model_name_or_path", str(output_dir), "--test_dir", image_folders["test_dir"]] + 
               ["--output_file", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    ours = _read(out)
    assert [r["path"].split("/test/")[1] for r in ours] == sorted(r["path"].split("/test/")[1] for r in ours)
    theirs = _read(output_dir / "test_predictions.csv")  # the recipe read the same folder in the same order
    _assert_same_predictions([{k: v for k, v in r.items() if k != "path"} for r in ours], theirs, ["dots", "stripes"])


def test_predict_scores_audio_clips_as_the_evaluation_read_them(tiny_wav2vec2_dir, audio_folders, tmp_path, capsys):
    from hftl.modalities import AudioModality

    output_dir = tmp_path / "audio_out"
    # the model as loaded (a new random head): what is tested is that clips are read as the evaluation read them,
    # cut at the run's --max_length_seconds (hftl predict reads it from hftl_config.yaml)
    flags = ["--do_train", "false", "--max_length_seconds", "1.5", "--disable_tqdm", "true", "--report_to", "none"]
    args = recipe_args(tiny_wav2vec2_dir, audio_folders, output_dir, *flags)
    run_classification(AudioModality(), recipe_defaults("speech_classification"), args)
    theirs = _read(output_dir / "eval_predictions.csv")
    model = ["--model_name_or_path", str(output_dir)]
    out = tmp_path / "scores.csv"
    assert cli(["predict", *model, "--test_dir", audio_folders["validation_dir"], "--output_file", str(out)]) == 0
    ours = _read(out)
    _assert_same_predictions([{k: v for k, v in r.items() if k != "path"} for r in ours], theirs, ["high", "low"])
    # a file of paths, relative to the file's folder, in another order: each row keeps its own clip's scores
    listing = tmp_path / "audio" / "clips.csv"
    write_csv(listing, [{"file": os.path.relpath(r["path"], listing.parent)} for r in reversed(ours)])
    assert cli(["predict", *model, "--test_file", str(listing), "--output_file", str(tmp_path / "b.csv")]) == 0
    from_file = _read(tmp_path / "b.csv")
    assert [r["source_row"] for r in from_file] == [str(i) for i in range(len(ours))], capsys.readouterr().err
    expected = [float(r["prob_low"]) for r in reversed(ours)]
    np.testing.assert_allclose([float(r["prob_low"]) for r in from_file], expected, atol=1e-5)
