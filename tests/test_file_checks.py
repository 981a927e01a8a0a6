"""Reading data files (delimiter, encoding, header, JSON layout) and the label checks, tested directly in
milliseconds; `battery_text.py` runs the same inputs through the text recipe."""

import logging
import time

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict
from helpers import make_texts, write_csv

from hftl.data import check_and_encode, load_raw_data
from hftl.data.files import detect_delimiter, file_encoding, file_options, header_problem
from hftl.data.labels import LABELS, carve_validation, class_counts
from hftl.errors import InputError
from hftl.modalities import TextModality

TEXT = TextModality()


def _check(paths, **kwargs):
    raw = load_raw_data(None, **paths)
    return check_and_encode(raw, ["text"], "label", TEXT.is_valid_input, TEXT.input_problem, **kwargs)


@pytest.mark.parametrize(
    "sample, preferred, expected",
    [
        ("text;label\nthe film, good;positive\nbad, dull;negative\n", ",", ";"),
        ('text,label\n"a; b",x\n"c; d",y\n', ",", ","),
        ("text\tlabel\na, b\tx\nc; d\ty\n", ",", "\t"),
        ("text|label\na, b|x\n", ",", "|"),
        ("text,label\na,x\nb,y,z\n", ",", ","),  # ragged: the parser then names the line
        ("text\tlabel\na\tx\n", "\t", "\t"),
    ],
)
def test_delimiter_is_detected(sample, preferred, expected):
    assert detect_delimiter(sample, preferred) == expected


def test_undecodable_byte_is_named_with_its_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"text,label\n" + b"good film,positive\n" * 100_000 + b"caf\xe9,negative\n")
    with pytest.raises(InputError, match=r"t\.csv is not valid utf-8 text: byte 0xe9 on line 100002.*--encoding"):
        file_encoding("--train_file", str(path), None)
    assert file_encoding("--train_file", str(path), "latin-1") == "latin-1"


def test_byte_order_marks_name_the_encoding(tmp_path):
    for text, encoding, expected in [("a,b\n", "utf-8-sig", "utf-8-sig"), ("a\tb\n", "utf-16", "utf-16")]:
        path = tmp_path / f"{expected}.csv"
        path.write_bytes(text.encode(encoding))
        assert file_encoding("--train_file", str(path), None) == expected
        assert file_encoding("--train_file", str(path), "utf-8" if expected == "utf-8-sig" else "utf-16") == expected


def test_file_options():
    assert file_options("\\t", None) == ("\t", None) and file_options("tab", "latin-1") == ("\t", "latin-1")
    with pytest.raises(InputError, match="--delimiter must be one character"):
        file_options(";;", None)
    with pytest.raises(InputError, match="--encoding klingon: unknown encoding"):
        file_options(None, "klingon")


def test_header_that_looks_like_data():
    rows = Dataset.from_dict({"the film was very good": ["bad one", "nice"], "positive": ["negative", "positive"]})
    assert "looks like data" in header_problem(rows) and "'positive' is also a value" in header_problem(rows)
    assert header_problem(Dataset.from_dict({"text": ["a b"], "label": ["x"]})) == ""
    assert "--delimiter ';'" in header_problem(Dataset.from_dict({"text;label": ["a;x"]}))


def test_semicolon_csv_with_bom_reads_its_columns(tmp_path, caplog):
    rows = make_texts(20)
    path = tmp_path / "t.csv"
    path.write_bytes(("\ufeff" + "text;label\n" + "".join(f"{r['text']}, ok;{r['label']}\n" for r in rows)).encode())
    caplog.set_level(logging.INFO, logger="hftl")
    splits, labels = _check({"train_file": str(path)})
    assert labels.names == ["negative", "positive"] and splits["train"][0]["text"].endswith(", ok")
    assert "delimiter ';' (detected), encoding utf-8-sig" in caplog.text


def test_na_words_are_texts_and_labels(tmp_path):
    rows = [{"text": ["NA", "null", "None", "n/a"][i % 4], "label": ["None", "NA"][i % 2]} for i in range(12)]
    splits, labels = _check({"train_file": write_csv(tmp_path / "t.csv", rows)})
    assert labels.names == ["NA", "None"]


def test_blank_labels_are_missing(tmp_path):
    rows = make_texts(12)
    rows[4]["label"] = "  "
    with pytest.raises(InputError, match=r"missing label\).*rows \[4\]"):
        _check({"train_file": write_csv(tmp_path / "t.csv", rows)})


def test_numeric_spellings_of_one_class_are_variants(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(f'{{"text": "t {i}", "label": "{["1", "0", "1.0"][i % 3]}"}}\n' for i in range(12)))
    with pytest.raises(InputError, match=r"number format.*'1' / '1\.0'"):
        _check({"train_file": str(path)})
    _, labels = _check({"train_file": str(path)}, merge_label_variants=True)
    assert labels.names == ["0", "1"]


def _train(labels: list[int], num_classes: int) -> DatasetDict:
    names = [f"c{i}" for i in range(num_classes)]
    data = Dataset.from_dict({"x": list(range(len(labels))), LABELS: labels})
    return DatasetDict({"train": data.cast_column(LABELS, ClassLabel(names=names))})


@pytest.mark.parametrize("percentage", [0.5, 10, 50, 90, 99])
def test_carved_validation_keeps_every_class_in_train(percentage):
    labels = [0] * 50 + [1] * 7 + [2] * 2 + [3]  # class 3 has a single example
    splits = _train(labels, 4)
    carve_validation(splits, percentage, seed=3, where="train.csv")
    train, validation = class_counts(splits["train"], 4), class_counts(splits["validation"], 4)
    assert all(count >= 1 for count in train) and validation[3] == 0
    assert [t + v for t, v in zip(train, validation, strict=True)] == [50, 7, 2, 1]
    assert len(splits["validation"]) >= 1
    assert sorted([*splits["train"]["x"], *splits["validation"]["x"]]) == list(range(60))


def test_carved_validation_is_stratified_and_seeded():
    splits, again = _train([0] * 80 + [1] * 20, 2), _train([0] * 80 + [1] * 20, 2)
    carve_validation(splits, 10, seed=1, where="t")
    carve_validation(again, 10, seed=1, where="t")
    assert class_counts(splits["validation"], 2) == [8, 2]
    assert splits["validation"]["x"] == again["validation"]["x"] and splits["train"]["x"] != sorted(
        splits["train"]["x"]
    )


def test_carving_from_single_examples_is_refused():
    with pytest.raises(InputError, match=r"train\.csv: no validation example can be carved.*--validation_file"):
        carve_validation(_train([0, 1, 2], 3), 50, seed=0, where="train.csv")


def test_ten_thousand_classes_check_in_linear_time(tmp_path):
    rows = [{"text": f"text {i}", "label": f"class_{i}"} for i in range(10_000)] * 2
    path = write_csv(tmp_path / "t.csv", rows)
    start = time.perf_counter()
    splits, labels = _check({"train_file": path}, validation_split_percentage=50)
    assert len(labels.names) == 10_000 and labels.counts["train"] == [1] * 10_000
    assert time.perf_counter() - start < 120  # hang detection: the quadratic count took many minutes


def test_max_train_samples_that_drops_a_class(tmp_path):
    rows = sorted(make_texts(20), key=lambda r: r["label"])
    paths = {"train_file": write_csv(tmp_path / "t.csv", rows), "validation_file": write_csv(tmp_path / "v.csv", rows)}
    with pytest.raises(InputError, match=r"--max_train_samples 5 keeps the first 5 of 20.*\['positive'\].*shuffle"):
        _check(paths, max_train_samples=5)
    splits, labels = _check(paths, max_eval_samples=5)  # evaluating on a subset only warns
    assert labels.counts["validation"] == [5, 0]


def test_label_column_as_input_is_refused(tmp_path):
    raw = load_raw_data(None, train_file=write_csv(tmp_path / "t.csv", make_texts(10)))
    with pytest.raises(InputError, match=r"Column 'label' is both an input column"):
        check_and_encode(raw, ["text", "label"], "label", TEXT.is_valid_input, TEXT.input_problem)


def test_class_counts_are_one_pass():
    data = _train(list(np.arange(20_000) % 10_000), 10_000)["train"]
    assert class_counts(data, 10_000) == [2] * 10_000
