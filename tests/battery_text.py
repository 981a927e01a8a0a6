"""Battery cases of the text recipe's input files: formats, delimiters, encodings, headers and columns (labels are in
`battery_text_labels.py`, which shares the file-writing helpers here)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from battery import Case, Error, Handled, Result, log_says, text_rows, text_run

A = "text"


def csv_text(rows: list[dict], delimiter: str = ",") -> str:
    """`rows` as CSV text (header first), fields quoted where needed."""
    import io

    handle = io.StringIO()
    writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return handle.getvalue()


def write_file(path: Path, data: str | bytes, encoding: str = "utf-8") -> str:
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return str(path)


def _train_with_comma(n: int = 32, seed: int = 1) -> list[dict]:
    """Rows whose texts hold commas (so a `;` file read with `,` splits them)."""
    return [{"text": row["text"].replace(" ", ", ", 1), "label": row["label"]} for row in text_rows(n, seed)]


def split_files(folder: Path, suffix: str, train: str | bytes, validation: str | bytes, encoding="utf-8"):
    return {
        "train": write_file(folder / f"train{suffix}", train, encoding),
        "validation": write_file(folder / f"validation{suffix}", validation, encoding),
    }


def card_counts(result: Result) -> dict[str, int]:
    """Class name -> training examples, from the model card's class table."""
    card = (result.output_dir / "README.md").read_text()
    return {m[1]: int(m[2]) for m in re.finditer(r"^\| \d+ \| (.*) \| (\d+) \|$", card, re.MULTILINE)}


def classes_are(*names: str):
    def check(result: Result) -> None:
        config = json.loads((result.output_dir / "config.json").read_text())
        assert sorted(config["id2label"].values()) == sorted(names), config["id2label"]

    return check


def all_of(*checks):
    def check(result: Result) -> None:
        for one in checks:
            one(result)

    return check


# ---- 1. delimiters and encodings ----------------------------------------------------------------------------------


def _semicolon(folder, assets, bom=False, flags=()):
    prefix = "\ufeff" if bom else ""
    files = split_files(
        folder,
        ".csv",
        prefix + csv_text(_train_with_comma(), ";"),
        prefix + csv_text(_train_with_comma(16, 2), ";"),
    )
    return text_run(folder, assets, *flags, **files)


def _tab_in_csv(folder, assets):
    files = split_files(folder, ".csv", csv_text(_train_with_comma(), "\t"), csv_text(_train_with_comma(16, 2), "\t"))
    return text_run(folder, assets, **files)


def _tsv(folder, assets):
    files = split_files(folder, ".tsv", csv_text(text_rows(32, 1), "\t"), csv_text(text_rows(16, 2), "\t"))
    return text_run(folder, assets, **files)


def _latin1(folder, assets, flags=()):
    rows = text_rows(32, 1)
    rows[3]["text"] += " café"
    files = split_files(folder, ".csv", csv_text(rows), csv_text(text_rows(16, 2)), encoding="latin-1")
    return text_run(folder, assets, *flags, **files)


def _bad_byte_in_middle(folder, assets):
    rows = text_rows(600, 1)
    data = csv_text(rows).encode("utf-8").split(b"\n")
    data[500] = data[500].replace(b" ", b" \xff ", 1)  # line 501 of the file (row 499)
    return text_run(folder, assets, train=write_file(folder / "train.csv", b"\n".join(data)))


def _utf16(folder, assets):
    files = split_files(folder, ".tsv", csv_text(text_rows(32, 1), "\t"), csv_text(text_rows(16, 2), "\t"), "utf-16")
    return text_run(folder, assets, **files)


def _txt(folder, assets):
    return text_run(folder, assets, train=write_file(folder / "train.txt", csv_text(text_rows(32, 1))))


def _ragged(folder, assets):
    text = csv_text(text_rows(32, 1)).split("\n")
    text[5] += ",extra"
    return text_run(folder, assets, train=write_file(folder / "train.csv", "\n".join(text)))


CASES = [
    Case("text-csv-semicolon", A, _semicolon, Handled(log_says(r"delimiter ';'"))),
    Case("text-csv-semicolon-bom", A, lambda f, a: _semicolon(f, a, bom=True), Handled(log_says(r"delimiter ';'"))),
    Case(
        "text-csv-semicolon-flag",
        A,
        lambda f, a: _semicolon(f, a, flags=("--delimiter", ";")),
        Handled(classes_are("negative", "positive")),
    ),
    Case("text-csv-tab-delimited", A, _tab_in_csv, Handled(log_says(r"delimiter '\\t'"))),
    Case("text-tsv", A, _tsv, Handled(classes_are("negative", "positive"))),
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
    lines = csv_text(rows).split("\n")
    lines[0] = "text,label,text"
    return text_run(folder, assets, train=write_file(folder / "train.csv", "\n".join(lines)))


def _no_header(folder, assets, flags=()):
    train = "\n".join(csv_text(text_rows(32, 1)).split("\n")[1:])
    validation = "\n".join(csv_text(text_rows(16, 2)).split("\n")[1:])
    return text_run(folder, assets, *flags, **split_files(folder, ".csv", train, validation))


def _first_text(folder, assets):
    """Headerless, and the user followed the old advice of naming the first row's text as the text column."""
    return _no_header(folder, assets, ("--text_column_name", text_rows(32, 1)[0]["text"]))


def _pairs(folder, assets, flags=()):
    def rows(n, seed):
        return [{"sentence1": r["text"], "sentence2": "the film", "label": r["label"]} for r in text_rows(n, seed)]

    files = split_files(folder, ".csv", csv_text(rows(32, 1)), csv_text(rows(16, 2)))
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


def relabelled(names: dict, changes: dict[int, object], n: int, seed: int) -> list[dict]:
    """`text_rows(n, seed)` with each label renamed by `names`, then row i's label set to `changes[i]`."""
    rows = [{**r, "label": names[r["label"]]} for r in text_rows(n, seed)]
    for i, label in changes.items():
        rows[i]["label"] = label
    return rows


def jsonl(rows: list[dict]) -> str:
    return "\n".join(json.dumps(row) for row in rows) + "\n"


# ---- 10. file formats and other inputs ----------------------------------------------------------------------------


def _json_files(folder, assets, train: str, validation: str, suffix=".json", *flags):
    return text_run(folder, assets, *flags, **split_files(folder, suffix, train, validation))


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
        return jsonl([{"review": {"body": r["text"], "stars": 3}, "label": r["label"]} for r in rows])

    return _json_files(folder, assets, nested(text_rows(32, 1)), nested(text_rows(16, 2)), ".jsonl", *flags)


def _parquet(folder, assets):
    import pandas

    pandas.DataFrame(text_rows(32, 1)).to_parquet(folder / "train.parquet")
    pandas.DataFrame(text_rows(16, 2)).to_parquet(folder / "validation.parquet")
    return text_run(folder, assets, train=str(folder / "train.parquet"), validation=str(folder / "validation.parquet"))


def _na_words(folder, assets):
    names = {"positive": "None", "negative": "NA"}
    train, validation = relabelled(names, {}, 32, 1), relabelled(names, {}, 16, 2)
    train[4]["text"], train[5]["text"] = "NA", "null"
    return text_run(folder, assets, **split_files(folder, ".csv", csv_text(train), csv_text(validation)))


def _long_texts(folder, assets):
    rows = [{**r, "text": " ".join([r["text"]] * 800)} for r in text_rows(32, 1)]
    return text_run(folder, assets, train=write_file(folder / "train.csv", csv_text(rows)))


def _unseen_in_validation(folder, assets):
    rows = text_rows(16, 2)
    rows[5]["label"] = "neutral"
    return text_run(folder, assets, validation=write_file(folder / "validation.csv", csv_text(rows)))


def _test_without_labels(folder, assets):
    test = write_file(folder / "test.csv", csv_text([{"text": r["text"]} for r in text_rows(10, 3)]))
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
    return text_run(folder, assets, train=write_file(folder / "train.csv", csv_text(rows).replace("\n", "\r\n")))


def _train_is_folder(folder, assets):
    (folder / "train_data").mkdir()
    return text_run(folder, assets, train=str(folder / "train_data"))


CASES += [
    Case("text-json-records", A, _json_records, Handled(classes_are("negative", "positive"))),
    Case("text-json-bom", A, lambda f, a: _json_records(f, a, bom=True), Handled(classes_are("negative", "positive"))),
    Case(
        "text-jsonl",
        A,
        lambda f, a: _json_files(f, a, jsonl(text_rows(32, 1)), jsonl(text_rows(16, 2)), ".jsonl"),
        Handled(classes_are("negative", "positive")),
    ),
    Case("text-json-records-under-key", A, _json_under_key, Handled(log_says(r"records under key 'data'"))),
    Case("text-json-object-of-columns", A, _json_columns, Handled(classes_are("negative", "positive"))),
    Case("text-json-nested-default", A, _json_nested, Error(r"no text column.*'review\.body'.*--text_column_name")),
    Case(
        "text-json-nested-field",
        A,
        lambda f, a: _json_nested(f, a, "--text_column_name", "review.body"),
        Handled(classes_are("negative", "positive")),
    ),
    Case("text-parquet", A, _parquet, Handled(classes_are("negative", "positive"))),
    Case(
        "text-empty-file",
        A,
        lambda f, a: text_run(f, a, train=write_file(f / "train.csv", "")),
        Error(r"train\.csv is empty"),
    ),
    Case(
        "text-header-only",
        A,
        lambda f, a: text_run(f, a, validation=write_file(f / "validation.csv", "text,label\n")),
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
            f, a, train=write_file(f / "train.csv", csv_text(text_rows(32, 1)).replace("\n", "\n,positive\n", 1))
        ),
        Error(r"empty or not a string.*rows \[0\]"),
    ),
    Case("text-na-words-are-text", A, _na_words, Handled(classes_are("NA", "None"))),
    Case("text-long-texts", A, _long_texts, Handled(classes_are("negative", "positive"))),
    Case("text-multiline-crlf", A, _multiline_texts, Handled(classes_are("negative", "positive"))),
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


def _header_spaces(folder, assets):
    train = csv_text(text_rows(32, 1)).replace("text,label", "text, label", 1)
    return text_run(folder, assets, train=write_file(folder / "train.csv", train))


def _several_record_keys(folder, assets):
    train = json.dumps({"train": text_rows(32, 1), "test": text_rows(8, 3)})
    return _json_files(folder, assets, train, json.dumps(text_rows(16, 2)))


CASES += [
    Case("text-csv-header-spaces", A, _header_spaces, Handled(classes_are("negative", "positive"))),
    Case(
        "text-json-several-record-keys",
        A,
        _several_record_keys,
        Error(r"train\.json.*several keys.*\['train', 'test'\]"),
    ),
    Case(
        "text-delimiter-flag-invalid",
        A,
        lambda f, a: text_run(f, a, "--delimiter", ";;"),
        Error(r"--delimiter must be one character"),
    ),
    Case(
        "text-encoding-flag-unknown",
        A,
        lambda f, a: text_run(f, a, "--encoding", "klingon"),
        Error(r"--encoding klingon: unknown encoding"),
    ),
]
