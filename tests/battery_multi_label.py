"""Battery cases of multi-label runs (`--problem_type multi_label_classification`): label sets the data cannot give,
and flags that make no sense with them, refused before any model loads."""

from __future__ import annotations

from battery import Case, Error, text_rows, text_run
from battery_text import csv_text, jsonl, split_files

A = "text"
MULTI = ["--problem_type", "multi_label_classification"]
BEST_ON_ACCURACY = "--load_best_model_at_end --eval_strategy epoch --save_strategy epoch --metric_for_best_model"
BEST_ON_ACCURACY = [*BEST_ON_ACCURACY.split(), "accuracy"]


def _rows(n: int, seed: int, changes: dict[int, object] | None = None) -> list[dict]:
    """Texts with label sets 'positive|plot', 'negative' ... ('|'-separated), row i's label set to `changes[i]`."""
    rows = [
        {"text": row["text"], "label": row["label"] + ("|plot" if "plot" in row["text"].split() else "")}
        for row in text_rows(n, seed)
    ]
    for i, label in (changes or {}).items():
        rows[i]["label"] = label
    return rows


def _csv(folder, assets, *flags, train_changes=None, validation_changes=None):
    files = split_files(
        folder, ".csv", csv_text(_rows(32, 1, train_changes)), csv_text(_rows(16, 2, validation_changes))
    )
    return text_run(folder, assets, *MULTI, *flags, **files)


def _single_label_lists(folder, assets):
    def lists(n, seed):
        return [{"text": row["text"], "label": row["label"].split("|")} for row in _rows(n, seed)]

    return text_run(folder, assets, **split_files(folder, ".jsonl", jsonl(lists(32, 1)), jsonl(lists(16, 2))))


def _numbers(folder, assets):
    def numbers(n, seed):
        return [{"text": row["text"], "label": i % 3} for i, row in enumerate(_rows(n, seed))]

    files = split_files(folder, ".jsonl", jsonl(numbers(32, 1)), jsonl(numbers(16, 2)))
    return text_run(folder, assets, *MULTI, **files)


CASES = [
    Case(
        "multi-label-empty-set",
        A,
        lambda f, a: _csv(f, a, train_changes={4: ""}),
        Error(r"rows \[4\].*no label in column 'label'.*--allow_empty_labels.*--drop_invalid_examples"),
    ),
    Case(
        "multi-label-numbers-not-sets",
        A,
        _numbers,
        Error(r"column 'label' holds single int64 values, not label sets.*drop --problem_type"),
    ),
    Case(
        "multi-label-label-only-in-validation",
        A,
        lambda f, a: _csv(f, a, validation_changes={3: "positive|sequel"}),
        Error(r"validation\.csv.*\['sequel'\] never occur in train"),
    ),
    Case(
        "multi-label-case-variants",
        A,
        lambda f, a: _csv(f, a, train_changes={0: "Positive|plot"}),
        Error(r"differ only by case.*--merge_label_variants"),
    ),
    Case(
        "single-label-given-label-lists",
        A,
        _single_label_lists,
        Error(r"holds lists.*--problem_type multi_label_classification"),
    ),
    Case(
        "multi-label-with-adaptation",
        A,
        lambda f, a: _csv(f, a, "--adaptation", "dann", "--target_train_file", "x.csv"),
        Error(r"--adaptation dann does not work with --problem_type multi_label_classification"),
    ),
    Case(
        "multi-label-with-label-smoothing",
        A,
        lambda f, a: _csv(f, a, "--label_smoothing_factor", "0.1"),
        Error(r"--label_smoothing_factor 0\.1 does not work with --problem_type.*softmax"),
    ),
    Case(
        "multi-label-best-model-on-accuracy",
        A,
        lambda f, a: _csv(f, a, *BEST_ON_ACCURACY),
        Error(r"--metric_for_best_model accuracy: not a metric.*f1_micro"),
    ),
    Case(
        "label-delimiter-without-multi-label",
        A,
        lambda f, a: text_run(f, a, "--label_delimiter", ";"),
        Error(r"--label_delimiter applies to multi-label classification: add --problem_type"),
    ),
    *[
        Case(
            f"multi-label-with-{flag.strip('-').replace('_', '-')}",
            A,
            lambda f, a, given=given: _csv(f, a, *given),
            Error(rf"{flag} .*does not work with --problem_type multi_label_classification.*Drop {flag}"),
        )
        for flag, given in (
            ("--temperature_scaling", ["--temperature_scaling", "true"]),
            ("--class_weights", ["--class_weights", "balanced"]),
            ("--balanced_sampling", ["--balanced_sampling", "true"]),
        )
    ],
]
