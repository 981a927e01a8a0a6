"""Battery cases: domain adaptation (target data, methods and their flags), over the three recipes."""

import json
import re
from pathlib import Path

from battery import Case, Error, Handled, Result, audio_folder, image_folder, image_run, log_says, speech_run, text_run
from helpers import make_texts, write_csv


def _target(folder: Path, n: int = 24, name: str = "target.csv", **renames) -> str:
    """Unlabelled-domain texts (another seed), optionally with renamed columns (`text="review"`)."""
    rows = [{renames.get(k, k): v for k, v in row.items()} for row in make_texts(n, seed=7)]
    return write_csv(folder / name, rows)


def _adapt(folder: Path, assets: dict, *flags: str, target: str | None = None, test: str | None = None) -> list[str]:
    """A text run adapting to `target` (written here unless given), labelled target test data when `test`."""
    extra = ["--target_train_file", target or _target(folder)]
    if test:
        extra += ["--target_test_file", test]
    return text_run(folder, assets, *extra, *flags)


def _results(result: Result) -> dict:
    return json.loads((result.output_dir / "all_results.json").read_text())


def _has(*keys: str):
    def check(result: Result) -> None:
        results = _results(result)
        missing = [k for k in keys if k not in results]
        assert not missing, f"all_results.json lacks {missing}: {sorted(results)}"

    return check


def _files(*names: str):
    def check(result: Result) -> None:
        missing = [n for n in names if not (result.output_dir / n).exists()]
        assert not missing, f"missing {missing} in {sorted(p.name for p in result.output_dir.iterdir())}"

    return check


def _both(*checks):
    def check(result: Result) -> None:
        for one in checks:
            one(result)

    return check


def _labelled_target(folder: Path) -> str:
    return _target(folder, 16, "target_test.csv")


def _methods() -> list[Case]:
    cases = []
    for method in ("dann", "mmd", "coral"):
        cases.append(
            Case(
                f"adapt-{method}-labelled-target",
                "adaptation",
                lambda f, a, m=method: _adapt(f, a, "--adaptation", m, test=_labelled_target(f)),
                Handled(_has("target_accuracy", "target_balanced_accuracy", "eval_accuracy")),
            )
        )
    cases.append(
        Case(
            "adapt-importance-weighting-only",
            "adaptation",
            lambda f, a: _adapt(f, a, "--importance_weighting", "true"),
            Handled(_files("label_shift.json")),
        )
    )
    cases.append(
        Case(
            "adapt-iwdann-alias",
            "adaptation",
            lambda f, a: _adapt(f, a, "--adaptation", "iwdann"),
            Handled(log_says(r"label shift \((bbse|em)\)")),
        )
    )
    return cases


def _strategies() -> list[Case]:
    runs = {
        "feature-extraction-dann": ("--strategy", "feature_extraction", "--adaptation", "dann"),
        "lora-mmd": ("--strategy", "lora", "--adaptation", "mmd"),
        "two-stage-coral": ("--strategy", "two_stage", "--adaptation", "coral", "--num_train_epochs", "2"),
        "freeze-dann-report": ("--strategy", "freeze", "--num_frozen_layers", "1", "--adaptation", "dann",
                               "--domain_gap_report", "true"),
    }  # fmt: skip
    return [
        Case(
            f"adapt-{name}", "adaptation", lambda f, a, x=flags: _adapt(f, a, *x), Handled(_files("model.safetensors"))
        )
        for name, flags in runs.items()
    ]


def _target_data_errors() -> list[Case]:
    def one_row(f, a):
        return _adapt(f, a, "--adaptation", "dann", target=_target(f, 1))

    def other_column(f, a):
        return _adapt(f, a, "--adaptation", "mmd", target=_target(f, 24, text="review"))

    def unknown_label(f, a):
        rows = make_texts(8, seed=3) + [{"text": "a good film", "label": "neutral"}]
        return _adapt(f, a, "--adaptation", "mmd", test=write_csv(f / "t_test.csv", rows))

    def header_only(f, a):
        (f / "empty.csv").write_text("text,label\n")
        return _adapt(f, a, "--adaptation", "mmd", target=str(f / "empty.csv"))

    def empty_cells(f, a):
        rows = make_texts(20, seed=4) + [{"text": "", "label": ""}]
        return _adapt(f, a, "--adaptation", "mmd", target=write_csv(f / "t.csv", rows))

    missing = lambda f, a: _adapt(f, a, "--adaptation", "dann", target=str(f / "nowhere.csv"))  # noqa: E731
    return [
        Case("adapt-target-one-example", "adaptation", one_row, Error(r"1 unlabelled target example.*at least 2")),
        Case("adapt-target-other-column", "adaptation", other_column, Error(r"target_train_file.*'text'|text.*review")),
        Case("adapt-target-unknown-label", "adaptation", unknown_label, Error(r"neutral.*not classes of the source")),
        Case("adapt-target-header-only", "adaptation", header_only, Error(r"target.*(empty|no rows|0 rows)")),
        Case("adapt-target-missing-file", "adaptation", missing, Error(r"--target_train_file.*nowhere\.csv")),
        Case("adapt-target-empty-cell", "adaptation", empty_cells, Error(r"target_train_file.*row|row.*target")),
    ]


def _flag_errors() -> list[Case]:
    def adapt(*flags):
        return lambda f, a: _adapt(f, a, *flags)

    no_target = lambda f, a: text_run(f, a, "--adaptation", "dann")  # noqa: E731
    test_only = lambda f, a: text_run(f, a, "--target_test_file", _labelled_target(f))  # noqa: E731
    report_only = lambda f, a: text_run(f, a, "--domain_gap_report", "true")  # noqa: E731
    return [
        Case("adapt-no-target", "adaptation", no_target, Error(r"--adaptation dann needs unlabelled target data")),
        Case("adapt-target-test-without-train", "adaptation", test_only, Error(r"--target_test_file.*need")),
        Case("adapt-report-without-target", "adaptation", report_only, Error(r"--domain_gap_report needs target")),
        Case("adapt-unknown-method", "adaptation", adapt("--adaptation", "cdann"), Error(r"--adaptation.*cdann")),
        Case("adapt-negative-trade-off", "adaptation", adapt("--trade_off", "-1"), Error(r"--trade_off must be >= 0")),
        Case("adapt-zero-grl-gamma", "adaptation", adapt("--grl_gamma", "0"), Error(r"--grl_gamma must be > 0")),
        Case("adapt-dropout-one", "adaptation", adapt("--adaptation", "dann", "--discriminator_dropout", "1"),
             Error(r"--discriminator_dropout must be in \[0, 1\)")),
        Case("adapt-kernel-negative", "adaptation", adapt("--adaptation", "mmd", "--mmd_kernel_multipliers", "-1"),
             Error(r"--mmd_kernel_multipliers must be positive")),
        Case("adapt-estimator-unknown", "adaptation", adapt("--importance_weighting", "true",
             "--label_shift_estimator", "rlls"), Error(r"--label_shift_estimator.*rlls")),
        Case("adapt-max-target-zero", "adaptation", adapt("--adaptation", "mmd", "--max_target_train_samples", "0"),
             Error(r"--max_target_train_samples must be positive")),
        Case("adapt-name-and-file", "adaptation", adapt("--target_dataset_name", "reviews"),
             Error(r"either as --target_dataset_name or as files")),
        Case("adapt-text-target-dir", "adaptation", lambda f, a: text_run(f, a, "--adaptation", "mmd",
             "--target_train_dir", str(f)), Error(r"--target_train_dir")),
    ]  # fmt: skip


def _handled_target_data() -> list[Case]:
    def unlabelled_test(f, a):
        rows = [{"text": row["text"]} for row in make_texts(12, seed=5)]
        return _adapt(f, a, "--adaptation", "mmd", test=write_csv(f / "t_test.csv", rows))

    def image_sizes(f, a):
        target = image_folder(f / "t", "train", 8, size=(40, 25))
        test = image_folder(f / "t", "test", 6, size=(33, 47))
        return image_run(f, a, "--adaptation", "mmd", "--target_train_dir", target, "--target_test_dir", test)

    def audio_rates(f, a):
        target = audio_folder(f / "t", "train", 8, rate=8_000)
        test = audio_folder(f / "t", "test", 6, rate=22_050)
        return speech_run(f, a, "--adaptation", "dann", "--target_train_dir", target, "--target_test_dir", test)

    def same_as_source(f, a):
        train = write_csv(f / "train.csv", make_texts(32, seed=1))
        return text_run(f, a, "--adaptation", "mmd", "--target_train_file", train, train=train)

    target_labels = re.compile(r"no labels in column 'label'")
    return [
        Case("adapt-target-test-unlabelled", "adaptation", unlabelled_test, Handled(log_says(target_labels.pattern))),
        Case("adapt-image-target-other-sizes", "adaptation", image_sizes, Handled(_has("target_accuracy")),
             recipe="image"),
        Case("adapt-speech-target-other-rates", "adaptation", audio_rates, Handled(_has("target_accuracy")),
             recipe="speech"),
        Case("adapt-target-is-source", "adaptation", same_as_source, Handled(_files("model.safetensors"))),
        Case("adapt-gap-report-files", "adaptation", lambda f, a: _adapt(f, a, "--domain_gap_report", "true"),
             Handled(_both(_files("domain_gap.json"), _has("eval_accuracy")))),
    ]  # fmt: skip


CASES = _methods() + _strategies() + _target_data_errors() + _flag_errors() + _handled_target_data()
