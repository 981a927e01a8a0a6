"""Every bad input yields a clear message, naming file, column, rows or labels, before any model loads."""

import json

import pytest
from helpers import make_texts, write_csv

from hftl.data import check_and_encode, load_raw_data
from hftl.errors import InputError
from hftl.modalities import TextModality

TEXT = TextModality()


def _check(paths, **kwargs):
    raw = load_raw_data(None, **paths)
    return check_and_encode(raw, ["text"], "label", TEXT.is_valid_input, TEXT.input_problem, **kwargs)


def test_string_labels_are_encoded_sorted(text_files):
    splits, labels = _check(text_files)
    assert labels.names == ["negative", "positive"]
    assert splits["train"].features["labels"].names == ["negative", "positive"]
    assert labels.counts["train"] == [32, 32]
    assert splits["train"].column_names == ["text", "labels"]


def test_missing_column_lists_available(tmp_path):
    path = write_csv(tmp_path / "t.csv", [{"review": "a b", "label": "x"}, {"review": "c", "label": "y"}])
    with pytest.raises(InputError, match=r"t\.csv: no column 'text'. Available columns: \['review', 'label'\]"):
        _check({"train_file": path})


def test_missing_label_column(tmp_path):
    path = write_csv(tmp_path / "t.csv", [{"text": "a b", "sentiment": "x"}])
    with pytest.raises(InputError, match="no label column 'label'.*'sentiment'.*--label_column_name"):
        _check({"train_file": path})


def test_empty_split(tmp_path):
    train = write_csv(tmp_path / "train.csv", make_texts(10))
    (tmp_path / "val.csv").write_text("text,label\n")
    with pytest.raises(InputError, match=r"val\.csv is empty"):
        _check({"train_file": train, "validation_file": str(tmp_path / "val.csv")})


def test_empty_and_non_string_text_rows_are_reported_with_line_numbers(tmp_path):
    rows = make_texts(10)
    rows[3]["text"] = "   "
    path = tmp_path / "t.jsonl"
    records = [dict(r) for r in rows]
    records[7]["text"] = 42
    path.write_text("\n".join(json.dumps(r) for r in records))
    with pytest.raises(
        InputError, match=r"t\.jsonl: 2 invalid row\(s\).*empty or not a string.*rows \[3, 7\] \(0-based\)"
    ):
        _check({"train_file": str(path)})

    rows[8]["text"] = ""
    csv_path = write_csv(tmp_path / "t.csv", rows)
    with pytest.raises(
        InputError, match=r"2 invalid row\(s\).*rows \[3, 8\].*file line = row \+ 2.*--drop_invalid_examples"
    ):
        _check({"train_file": csv_path})


def test_non_string_cells_in_json(tmp_path):
    path = tmp_path / "t.json"
    rows = make_texts(6)
    rows[2]["text"] = None
    path.write_text(json.dumps(rows))
    with pytest.raises(InputError, match=r"rows \[2\]"):
        _check({"train_file": str(path)})


def test_drop_invalid_examples_counts(tmp_path, caplog):
    rows = make_texts(10)
    rows[3]["text"] = ""
    rows[5]["label"] = ""
    splits, _ = _check({"train_file": write_csv(tmp_path / "t.csv", rows)}, drop_invalid_examples=True)
    assert len(splits["train"]) + len(splits["validation"]) == 8
    assert "Dropped 2 invalid row(s)" in caplog.text


def test_unseen_labels_are_named(tmp_path):
    train = write_csv(tmp_path / "train.csv", make_texts(10))
    test_rows = make_texts(4)
    test_rows[1]["label"] = "neutral"
    test = write_csv(tmp_path / "test.csv", test_rows)
    with pytest.raises(InputError, match=r"test\.csv: label\(s\) \['neutral'\] never occur in train"):
        _check({"train_file": train, "test_file": test})


def test_case_and_space_variants_are_refused_or_merged(tmp_path, caplog):
    rows = make_texts(12)
    rows[0]["label"] = "Positive"
    rows[2]["label"] = " positive "
    path = write_csv(tmp_path / "t.csv", rows)
    with pytest.raises(InputError, match="differ only by case or surrounding spaces.*--merge_label_variants"):
        _check({"train_file": path})
    splits, labels = _check({"train_file": path}, merge_label_variants=True)
    assert labels.names == ["negative", "positive"]
    assert "Merged label variants" in caplog.text


def test_file_that_does_not_parse(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "lab')
    with pytest.raises(InputError, match=r"broken\.json does not parse as JSON"):
        _check({"train_file": str(path)})


def test_missing_file_and_bad_extension(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        _check({"train_file": str(tmp_path / "nope.csv")})
    path = tmp_path / "data.txt"
    path.write_text("x")
    with pytest.raises(InputError, match="unsupported extension '.txt'"):
        _check({"train_file": str(path)})


def test_fractional_labels_are_refused(tmp_path):
    rows = [{"text": f"t {i}", "label": i + 0.5} for i in range(4)]
    with pytest.raises(InputError, match="fractional"):
        _check({"train_file": write_csv(tmp_path / "t.csv", rows)})


def test_integer_labels_keep_their_values_as_names(tmp_path):
    rows = [{"text": f"t {i}", "label": [3, 10][i % 2]} for i in range(20)]
    splits, labels = _check({"train_file": write_csv(tmp_path / "t.csv", rows)})
    assert labels.names == ["3", "10"]


def test_validation_is_carved_stratified_and_seeded(tmp_path):
    rows = make_texts(100)
    path = write_csv(tmp_path / "t.csv", rows)
    a, _ = _check({"train_file": path}, validation_split_percentage=20, seed=7)
    b, _ = _check({"train_file": path}, validation_split_percentage=20, seed=7)
    assert len(a["validation"]) == 20 and len(a["train"]) == 80
    assert a["validation"]["labels"].count(0) == 10  # stratified: 50 / 50 classes stay 50 / 50
    assert a["validation"]["text"] == b["validation"]["text"]


def test_test_split_without_labels_is_accepted(tmp_path):
    train = write_csv(tmp_path / "train.csv", make_texts(10))
    test = write_csv(tmp_path / "test.csv", [{"text": "good film"}, {"text": "bad film"}])
    splits, _ = _check({"train_file": train, "test_file": test})
    assert "labels" not in splits["test"].column_names


def test_max_samples(text_files):
    splits, _ = _check(text_files, max_train_samples=10, max_eval_samples=3, max_predict_samples=2)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [10, 3, 2]
