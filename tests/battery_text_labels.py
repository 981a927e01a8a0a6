"""Battery cases of the text recipe's labels: blank, variant and numeric labels, classes lost by carving or by
`--max_*_samples`, 10,000 classes, labels that need quoting in the predictions CSV."""

from __future__ import annotations

import csv

from battery import Case, Error, Handled, Result, log_says, text_rows, text_run
from battery_text import (
    A,
    all_of,
    card_counts,
    classes_are,
    csv_text,
    jsonl,
    relabelled,
    split_files,
    write_file,
)

# ---- 5.-9. labels -------------------------------------------------------------------------------------------------


def _with_labels(folder, assets, labels: dict[int, str], *flags, n=32):
    rows = text_rows(n, 1)
    for i, label in labels.items():
        rows[i]["label"] = label
    return text_run(folder, assets, *flags, train=write_file(folder / "train.csv", csv_text(rows)))


def _csv_labels(folder, assets, names: dict, changes: dict[int, object] | None = None):
    """Train and validation CSV files with labels renamed by `names`, train row i's label set to `changes[i]`."""
    train, validation = relabelled(names, changes or {}, 32, 1), relabelled(names, {}, 16, 2)
    return text_run(folder, assets, **split_files(folder, ".csv", csv_text(train), csv_text(validation)))


def _jsonl_labels(folder, assets, names: dict, changes: dict[int, object] | None = None):
    """Like `_csv_labels`, as JSON Lines files (labels keep their JSON types)."""
    train, validation = relabelled(names, changes or {}, 32, 1), relabelled(names, {}, 16, 2)
    return text_run(folder, assets, **split_files(folder, ".jsonl", jsonl(train), jsonl(validation)))


def _sorted_train(folder, assets):
    rows = sorted(text_rows(32, 1), key=lambda r: r["label"] != "positive")
    return text_run(folder, assets, "--max_train_samples", "8", train=write_file(folder / "train.csv", csv_text(rows)))


def _no_validation(argv: list[str]) -> list[str]:
    i = argv.index("--validation_file")
    return argv[:i] + argv[i + 2 :]


def _carve(folder, assets, rows, *flags):
    return _no_validation(text_run(folder, assets, *flags, train=write_file(folder / "train.csv", csv_text(rows))))


def _rows_with(n, labels: dict[int, str], seed=1):
    rows = text_rows(n, seed)
    for i, label in labels.items():
        rows[i]["label"] = label
    return rows


def _keeps_every_class(result: Result) -> None:
    counts = card_counts(result)
    assert counts and all(c > 0 for c in counts.values()), counts


def _many_classes(folder, assets):
    rows = [{"text": f"{row['text']} {i}", "label": f"class_{i:05d}"} for i, row in enumerate(text_rows(10_000, 1))]
    validation = rows[:200]
    return text_run(
        folder, assets, "--do_eval", "false", "--per_device_train_batch_size", "500", "--logging_steps", "5",
        train=write_file(folder / "train.csv", csv_text(rows)), validation=write_file(folder / "validation.csv",
        csv_text(validation)),
    )  # fmt: skip


def _punctuated_labels(folder, assets):
    names = {"positive": 'good, "really"', "negative": "bad; so, so"}
    files = split_files(
        folder,
        ".csv",
        csv_text([{**r, "label": names[r["label"]]} for r in text_rows(32, 1)]),
        csv_text([{**r, "label": names[r["label"]]} for r in text_rows(16, 2)]),
    )
    return text_run(folder, assets, **files)


def _predictions_read_back(result: Result) -> None:
    import pandas

    path = result.output_dir / "eval_predictions.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = ["source_row", "prediction", "score", "prob_bad; so, so", 'prob_good, "really"']  # classes sorted
    assert len(rows) == 16 and list(rows[0]) == columns, rows[:2]
    assert {r["prediction"] for r in rows} <= {'good, "really"', "bad; so, so"}, rows
    for row in rows:  # the score is the predicted class's probability, and the probabilities sum to 1
        assert float(row["score"]) == float(row[f"prob_{row['prediction']}"])
        assert abs(float(row[columns[3]]) + float(row[columns[4]]) - 1) < 1e-6
    frame = pandas.read_csv(path)
    assert list(frame.columns) == columns and len(frame) == 16
    assert set(frame["prediction"]) <= {'good, "really"', "bad; so, so"}


CASES = [
    Case("text-blank-label", A, lambda f, a: _with_labels(f, a, {3: " "}), Error(r"missing label.*rows \[3\]")),
    Case(
        "text-blank-label-dropped",
        A,
        lambda f, a: _with_labels(f, a, {3: " ", 9: "\t"}, "--drop_invalid_examples", "true"),
        Handled(all_of(classes_are("negative", "positive"), log_says(r"Dropped 2 invalid row"))),
    ),
    Case("text-max-train-samples-drops-class", A, _sorted_train, Error(r"--max_train_samples 8.*'negative'")),
    Case(
        "text-carve-singleton-class",
        A,
        lambda f, a: _carve(f, a, _rows_with(40, {7: "neutral"}), "--validation_split_percentage", "20"),
        Handled(all_of(_keeps_every_class, classes_are("negative", "neutral", "positive"))),
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
        Handled(all_of(_keeps_every_class, log_says(r"carved 1 of 32"))),
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
        Handled(classes_are("0", "1")),
    ),
    Case(
        "text-numeric-labels",
        A,
        lambda f, a: _jsonl_labels(f, a, {"positive": 1, "negative": 0}),
        Handled(classes_are("0", "1")),
    ),
]
