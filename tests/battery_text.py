"""Battery cases of the text recipe's inputs: file formats, delimiters, encodings, headers, columns and labels."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from battery import Case, Error, Handled, Result, log_says, text_rows, text_run

A = "text"


def _csv_text(rows: list[dict], delimiter: str = ",") -> str:
    """`rows` as CSV text (header first), fields quoted where needed."""
    import io

    handle = io.StringIO()
    writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return handle.getvalue()


def _write(path: Path, data: str | bytes, encoding: str = "utf-8") -> str:
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return str(path)


def _train_with_comma(n: int = 32, seed: int = 1) -> list[dict]:
    """Rows whose texts hold commas (so a `;` file read with `,` splits them)."""
    return [{"text": row["text"].replace(" ", ", ", 1), "label": row["label"]} for row in text_rows(n, seed)]


def _files(folder: Path, suffix: str, train: str | bytes, validation: str | bytes, encoding="utf-8"):
    return {
        "train": _write(folder / f"train{suffix}", train, encoding),
        "validation": _write(folder / f"validation{suffix}", validation, encoding),
    }


def _card_counts(result: Result) -> dict[str, int]:
    """Class name -> training examples, from the model card's class table."""
    card = (result.output_dir / "README.md").read_text()
    return {m[1]: int(m[2]) for m in re.finditer(r"^\| \d+ \| (.*) \| (\d+) \|$", card, re.MULTILINE)}


def _classes(*names: str):
    def check(result: Result) -> None:
        config = json.loads((result.output_dir / "config.json").read_text())
        assert sorted(config["id2label"].values()) == sorted(names), config["id2label"]

    return check


def _all(*checks):
    def check(result: Result) -> None:
        for one in checks:
            one(result)

    return check


# ---- 1. delimiters and encodings ----------------------------------------------------------------------------------


def _semicolon(folder, assets, bom=False, flags=()):
    prefix = "\ufeff" if bom else ""
    files = _files(
        folder,
        ".csv",
        prefix + _csv_text(_train_with_comma(), ";"),
        prefix + _csv_text(_train_with_comma(16, 2), ";"),
    )
    return text_run(folder, assets, *flags, **files)


def _tab_in_csv(folder, assets):
    files = _files(folder, ".csv", _csv_text(_train_with_comma(), "\t"), _csv_text(_train_with_comma(16, 2), "\t"))
    return text_run(folder, assets, **files)


def _tsv(folder, assets):
    files = _files(folder, ".tsv", _csv_text(text_rows(32, 1), "\t"), _csv_text(text_rows(16, 2), "\t"))
    return text_run(folder, assets, **files)


def _latin1(folder, assets, flags=()):
    rows = text_rows(32, 1)
    rows[3]["text"] += " café"
    files = _files(folder, ".csv", _csv_text(rows), _csv_text(text_rows(16, 2)), encoding="latin-1")
    return text_run(folder, assets, *flags, **files)


def _bad_byte_in_middle(folder, assets):
    rows = text_rows(600, 1)
    data = _csv_text(rows).encode("utf-8").split(b"\n")
    data[500] = data[500].replace(b" ", b" \xff ", 1)  # line 501 of the file (row 499)
    return text_run(folder, assets, train=_write(folder / "train.csv", b"\n".join(data)))


def _utf16(folder, assets):
    files = _files(folder, ".tsv", _csv_text(text_rows(32, 1), "\t"), _csv_text(text_rows(16, 2), "\t"), "utf-16")
    return text_run(folder, assets, **files)


def _txt(folder, assets):
    return text_run(folder, assets, train=_write(folder / "train.txt", _csv_text(text_rows(32, 1))))


def _ragged(folder, assets):
    text = _csv_text(text_rows(32, 1)).split("\n")
    text[5] += ",extra"
    return text_run(folder, assets, train=_write(folder / "train.csv", "\n".join(text)))


CASES = [
    Case("text-csv-semicolon", A, _semicolon, Handled(log_says(r"delimiter ';'"))),
    Case("text-csv-semicolon-bom", A, lambda f, a: _semicolon(f, a, bom=True), Handled(log_says(r"delimiter ';'"))),
    Case(
        "text-csv-semicolon-flag",
        A,
        lambda f, a: _semicolon(f, a, flags=("--delimiter", ";")),
        Handled(_classes("negative", "positive")),
    ),
    Case("text-csv-tab-delimited", A, _tab_in_csv, Handled(log_says(r"delimiter '\\t'"))),
    Case("text-tsv", A, _tsv, Handled(_classes("negative", "positive"))),
    Case("text-tsv-utf16", A, _utf16, Handled(log_says("utf-16"))),
    Case("text-csv-latin1", A, _latin1, Error(r"train\.csv.*not (valid )?utf-8.*line 5.*--encoding")),
    Case("text-csv-latin1-flag", A, lambda f, a: _latin1(f, a, ("--encoding", "latin-1")), Handled()),
    Case("text-csv-bad-byte-in-middle", A, _bad_byte_in_middle, Error(r"train\.csv.*utf-8.*line 501.*--encoding")),
    Case("text-txt-file", A, _txt, Error(r"train\.txt.*unsupported extension '\.txt'.*\.csv")),
    Case("text-csv-ragged-row", A, _ragged, Error(r"train\.csv.*line 6")),
]


# ---- 2.-4. headers and columns ------------------------------------------------------------------------------------


def _duplicate_column(folder, assets):
    rows = [{"text": r["text"], "label": r["label"], "text ": "other"} for r in text_rows(32, 1)]
    lines = _csv_text(rows).split("\n")
    lines[0] = "text,label,text"
    return text_run(folder, assets, train=_write(folder / "train.csv", "\n".join(lines)))


def _no_header(folder, assets, flags=()):
    train = "\n".join(_csv_text(text_rows(32, 1)).split("\n")[1:])
    validation = "\n".join(_csv_text(text_rows(16, 2)).split("\n")[1:])
    return text_run(folder, assets, *flags, **_files(folder, ".csv", train, validation))


def _first_text(folder, assets):
    """Headerless, and the user followed the old advice of naming the first row's text as the text column."""
    return _no_header(folder, assets, ("--text_column_name", text_rows(32, 1)[0]["text"]))


def _pairs(folder, assets, flags=()):
    def rows(n, seed):
        return [{"sentence1": r["text"], "sentence2": "the film", "label": r["label"]} for r in text_rows(n, seed)]

    files = _files(folder, ".csv", _csv_text(rows(32, 1)), _csv_text(rows(16, 2)))
    return text_run(folder, assets, *flags, **files)


CASES += [
    Case(
        "text-csv-duplicate-column", A, _duplicate_column, Error(r"train\.csv.*column 'text'.*(twice|more than once)")
    ),
    Case("text-csv-no-header", A, _no_header, Error(r"train\.csv.*first (row|line).*looks like data.*header")),
    Case("text-csv-no-header-named-column", A, _first_text, Error(r"train\.csv.*first (row|line).*looks like data")),
    Case(
        "text-text-column-is-label",
        A,
        lambda f, a: text_run(f, a, "--text_column_name", "label"),
        Error(r"'label'.*both.*input.*label column.*--label_column_name"),
    ),
    Case(
        "text-pair-column-is-text",
        A,
        lambda f, a: text_run(f, a, "--text_pair_column_name", "text"),
        Error(r"--text_pair_column_name.*'text'.*same"),
    ),
    Case(
        "text-pair-column-is-label",
        A,
        lambda f, a: _pairs(f, a, ("--text_pair_column_name", "label")),
        Error(r"'label'.*both.*input.*label column"),
    ),
    Case("text-sentence-pairs", A, _pairs, Handled(log_says(r"sentence1.*sentence2|text pair"))),
    Case(
        "text-pair-column-missing",
        A,
        lambda f, a: text_run(f, a, "--text_pair_column_name", "sentence2"),
        Error(r"no column 'sentence2'.*Available columns"),
    ),
    Case(
        "text-label-column-missing",
        A,
        lambda f, a: text_run(f, a, "--label_column_name", "sentiment"),
        Error(r"no label column 'sentiment'.*--label_column_name"),
    ),
]


# ---- 5.-9. labels -------------------------------------------------------------------------------------------------


def _with_labels(folder, assets, labels: dict[int, str], *flags, n=32):
    rows = text_rows(n, 1)
    for i, label in labels.items():
        rows[i]["label"] = label
    return text_run(folder, assets, *flags, train=_write(folder / "train.csv", _csv_text(rows)))


def _relabelled(names: dict, changes: dict[int, object], n: int, seed: int) -> list[dict]:
    rows = [{**r, "label": names[r["label"]]} for r in text_rows(n, seed)]
    for i, label in changes.items():
        rows[i]["label"] = label
    return rows


def _csv_labels(folder, assets, names: dict, changes: dict[int, object] | None = None):
    """Train and validation CSV files with labels renamed by `names`, train row i's label set to `changes[i]`."""
    train, validation = _relabelled(names, changes or {}, 32, 1), _relabelled(names, {}, 16, 2)
    return text_run(folder, assets, **_files(folder, ".csv", _csv_text(train), _csv_text(validation)))


def _jsonl(rows: list[dict]) -> str:
    return "\n".join(json.dumps(row) for row in rows) + "\n"


def _jsonl_labels(folder, assets, names: dict, changes: dict[int, object] | None = None):
    """Like `_csv_labels`, as JSON Lines files (labels keep their JSON types)."""
    train, validation = _relabelled(names, changes or {}, 32, 1), _relabelled(names, {}, 16, 2)
    return text_run(folder, assets, **_files(folder, ".jsonl", _jsonl(train), _jsonl(validation)))


def _sorted_train(folder, assets):
    rows = sorted(text_rows(32, 1), key=lambda r: r["label"] != "positive")
    return text_run(folder, assets, "--max_train_samples", "8", train=_write(folder / "train.csv", _csv_text(rows)))


def _no_validation(argv: list[str]) -> list[str]:
    i = argv.index("--validation_file")
    return argv[:i] + argv[i + 2 :]


def _carve(folder, assets, rows, *flags):
    return _no_validation(text_run(folder, assets, *flags, train=_write(folder / "train.csv", _csv_text(rows))))


def _rows_with(n, labels: dict[int, str], seed=1):
    rows = text_rows(n, seed)
    for i, label in labels.items():
        rows[i]["label"] = label
    return rows


def _keeps_every_class(result: Result) -> None:
    counts = _card_counts(result)
    assert counts and all(c > 0 for c in counts.values()), counts


def _many_classes(folder, assets):
    rows = [{"text": f"{row['text']} {i}", "label": f"class_{i:05d}"} for i, row in enumerate(text_rows(10_000, 1))]
    validation = rows[:200]
    return text_run(
        folder, assets, "--do_eval", "false", "--per_device_train_batch_size", "500", "--logging_steps", "5",
        train=_write(folder / "train.csv", _csv_text(rows)), validation=_write(folder / "validation.csv",
        _csv_text(validation)),
    )  # fmt: skip


def _punctuated_labels(folder, assets):
    names = {"positive": 'good, "really"', "negative": "bad; so, so"}
    files = _files(
        folder,
        ".csv",
        _csv_text([{**r, "label": names[r["label"]]} for r in text_rows(32, 1)]),
        _csv_text([{**r, "label": names[r["label"]]} for r in text_rows(16, 2)]),
    )
    return text_run(folder, assets, **files)


def _predictions_read_back(result: Result) -> None:
    import pandas

    path = result.output_dir / "eval_predictions.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16 and set(rows[0]) == {"source_row", "prediction"}, rows[:2]
    assert {r["prediction"] for r in rows} <= {'good, "really"', "bad; so, so"}, rows
    frame = pandas.read_csv(path)
    assert list(frame.columns) == ["source_row", "prediction"] and len(frame) == 16
    assert set(frame["prediction"]) <= {'good, "really"', "bad; so, so"}


CASES += [
    Case("text-blank-label", A, lambda f, a: _with_labels(f, a, {3: " "}), Error(r"missing label.*rows \[3\]")),
    Case(
        "text-blank-label-dropped",
        A,
        lambda f, a: _with_labels(f, a, {3: " ", 9: "\t"}, "--drop_invalid_examples", "true"),
        Handled(_all(_classes("negative", "positive"), log_says(r"Dropped 2 invalid row"))),
    ),
    Case("text-max-train-samples-drops-class", A, _sorted_train, Error(r"--max_train_samples 8.*'negative'")),
    Case(
        "text-carve-singleton-class",
        A,
        lambda f, a: _carve(f, a, _rows_with(40, {7: "neutral"}), "--validation_split_percentage", "20"),
        Handled(_all(_keeps_every_class, _classes("negative", "neutral", "positive"))),
    ),
    Case(
        "text-carve-all-singletons",
        A,
        lambda f, a: _carve(f, a, [{"text": "good film", "label": "a"}, {"text": "bad film", "label": "b"}]),
        Error(r"validation.*(single|one) example.*--validation_file"),
    ),
    Case(
        "text-validation-split-tiny",
        A,
        lambda f, a: _carve(f, a, text_rows(32, 1), "--validation_split_percentage", "0.5"),
        Handled(_all(_keeps_every_class, log_says(r"carved 1 of 32"))),
    ),
    Case(
        "text-validation-split-99",
        A,
        lambda f, a: _carve(f, a, text_rows(32, 1), "--validation_split_percentage", "99"),
        Handled(_keeps_every_class),
    ),
    Case(
        "text-validation-split-100",
        A,
        lambda f, a: _carve(f, a, text_rows(32, 1), "--validation_split_percentage", "100"),
        Error(r"--validation_split_percentage.*between 0 and 100"),
    ),
    Case(
        "text-10000-classes",
        A,
        _many_classes,
        Handled(log_says(r"10000 classes|classes: \['class_00000'")),
        timeout=400,
    ),
    Case("text-label-with-comma-and-quotes", A, _punctuated_labels, Handled(_predictions_read_back)),
    Case(
        "text-one-class",
        A,
        lambda f, a: _with_labels(f, a, {i: "positive" for i in range(32)}),
        Error(r"only one class"),
    ),
    Case(
        "text-label-case-variants",
        A,
        lambda f, a: _with_labels(f, a, {0: "Positive"}),
        Error(r"differ only by case.*--merge_label_variants"),
    ),
    Case(
        "text-numeric-label-variants",
        A,
        lambda f, a: _jsonl_labels(f, a, {"positive": "1", "negative": "0"}, {0: "1.0"}),
        Error(r"'1'.*'1\.0'|'1\.0'.*'1'"),
    ),
    Case(
        "text-float-labels-integral",
        A,
        lambda f, a: _csv_labels(f, a, {"positive": "1.0", "negative": "0"}, {2: "1"}),
        Handled(_classes("0", "1")),
    ),
    Case(
        "text-numeric-labels",
        A,
        lambda f, a: _jsonl_labels(f, a, {"positive": 1, "negative": 0}),
        Handled(_classes("0", "1")),
    ),
]


# ---- 10. file formats and other inputs ----------------------------------------------------------------------------


def _json_files(folder, assets, train: str, validation: str, suffix=".json", *flags):
    return text_run(folder, assets, *flags, **_files(folder, suffix, train, validation))


def _json_records(folder, assets, bom=False):
    prefix = "\ufeff" if bom else ""
    return _json_files(folder, assets, prefix + json.dumps(text_rows(32, 1)), prefix + json.dumps(text_rows(16, 2)))


def _json_under_key(folder, assets):
    return _json_files(folder, assets, json.dumps({"data": text_rows(32, 1)}), json.dumps({"data": text_rows(16, 2)}))


def _json_columns(folder, assets):
    def columns(rows):
        return json.dumps({"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]})

    return _json_files(folder, assets, columns(text_rows(32, 1)), columns(text_rows(16, 2)))


def _json_nested(folder, assets, *flags):
    def nested(rows):
        return _jsonl([{"review": {"body": r["text"], "stars": 3}, "label": r["label"]} for r in rows])

    return _json_files(folder, assets, nested(text_rows(32, 1)), nested(text_rows(16, 2)), ".jsonl", *flags)


def _parquet(folder, assets):
    import pandas

    pandas.DataFrame(text_rows(32, 1)).to_parquet(folder / "train.parquet")
    pandas.DataFrame(text_rows(16, 2)).to_parquet(folder / "validation.parquet")
    return text_run(folder, assets, train=str(folder / "train.parquet"), validation=str(folder / "validation.parquet"))


def _na_words(folder, assets):
    names = {"positive": "None", "negative": "NA"}
    train, validation = _relabelled(names, {}, 32, 1), _relabelled(names, {}, 16, 2)
    train[4]["text"], train[5]["text"] = "NA", "null"
    return text_run(folder, assets, **_files(folder, ".csv", _csv_text(train), _csv_text(validation)))


def _long_texts(folder, assets):
    rows = [{**r, "text": " ".join([r["text"]] * 800)} for r in text_rows(32, 1)]
    return text_run(folder, assets, train=_write(folder / "train.csv", _csv_text(rows)))


def _unseen_in_validation(folder, assets):
    rows = text_rows(16, 2)
    rows[5]["label"] = "neutral"
    return text_run(folder, assets, validation=_write(folder / "validation.csv", _csv_text(rows)))


def _test_without_labels(folder, assets):
    test = _write(folder / "test.csv", _csv_text([{"text": r["text"]} for r in text_rows(10, 3)]))
    return text_run(folder, assets, "--test_file", test, "--do_predict", "true")


def _predicted_rows(count: int):
    def check(result: Result) -> None:
        with open(result.output_dir / "test_predictions.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [int(r["source_row"]) for r in rows] == list(range(count)), rows

    return check


def _multiline_texts(folder, assets):
    rows = text_rows(32, 1)
    rows[2]["text"] = "good film\nsecond line, with a comma"
    return text_run(folder, assets, train=_write(folder / "train.csv", _csv_text(rows).replace("\n", "\r\n")))


def _train_is_folder(folder, assets):
    (folder / "train_data").mkdir()
    return text_run(folder, assets, train=str(folder / "train_data"))


CASES += [
    Case("text-json-records", A, _json_records, Handled(_classes("negative", "positive"))),
    Case("text-json-bom", A, lambda f, a: _json_records(f, a, bom=True), Handled(_classes("negative", "positive"))),
    Case(
        "text-jsonl",
        A,
        lambda f, a: _json_files(f, a, _jsonl(text_rows(32, 1)), _jsonl(text_rows(16, 2)), ".jsonl"),
        Handled(_classes("negative", "positive")),
    ),
    Case("text-json-records-under-key", A, _json_under_key, Handled(log_says(r"records under key 'data'"))),
    Case("text-json-object-of-columns", A, _json_columns, Handled(_classes("negative", "positive"))),
    Case("text-json-nested-default", A, _json_nested, Error(r"no text column.*'review\.body'.*--text_column_name")),
    Case(
        "text-json-nested-field",
        A,
        lambda f, a: _json_nested(f, a, "--text_column_name", "review.body"),
        Handled(_classes("negative", "positive")),
    ),
    Case("text-parquet", A, _parquet, Handled(_classes("negative", "positive"))),
    Case(
        "text-empty-file",
        A,
        lambda f, a: text_run(f, a, train=_write(f / "train.csv", "")),
        Error(r"train\.csv is empty"),
    ),
    Case(
        "text-header-only",
        A,
        lambda f, a: text_run(f, a, validation=_write(f / "validation.csv", "text,label\n")),
        Error(r"validation\.csv is empty"),
    ),
    Case(
        "text-empty-json-list",
        A,
        lambda f, a: _json_files(f, a, "[]", json.dumps(text_rows(16, 2))),
        Error(r"train\.json is empty"),
    ),
    Case(
        "text-empty-text-cell",
        A,
        lambda f, a: text_run(
            f, a, train=_write(f / "train.csv", _csv_text(text_rows(32, 1)).replace("\n", "\n,positive\n", 1))
        ),
        Error(r"empty or not a string.*rows \[0\]"),
    ),
    Case("text-na-words-are-text", A, _na_words, Handled(_classes("NA", "None"))),
    Case("text-long-texts", A, _long_texts, Handled(_classes("negative", "positive"))),
    Case("text-multiline-crlf", A, _multiline_texts, Handled(_classes("negative", "positive"))),
    Case("text-train-file-is-folder", A, _train_is_folder, Error(r"--train_file .*train_data.*(folder|directory)")),
    Case(
        "text-train-file-missing",
        A,
        lambda f, a: text_run(f, a, train=str(f / "nope.csv")),
        Error(r"--train_file .*nope\.csv: no such file"),
    ),
    Case(
        "text-validation-unseen-class",
        A,
        _unseen_in_validation,
        Error(r"validation\.csv.*'neutral'.*never occur in train"),
    ),
    Case("text-test-without-labels", A, _test_without_labels, Handled(_predicted_rows(10))),
]
