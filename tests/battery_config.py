"""Battery cases: `--config` files (YAML / JSON) that are missing, malformed, hostile or name unknown flags, and
what a file and the command line give together (see battery.py)."""

from __future__ import annotations

from pathlib import Path

import yaml
from battery import Case, Error, Handled, Result, run_recipe, text_run

# a few hundred bytes of YAML whose aliases expand to 9**9 (387 million) strings: a "billion laughs" under a real flag
BILLION_LAUGHS = "lora_target_modules:\n- &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"- &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def _config_case(name: str, text: str | None, expect, *flags: str, suffix: str = ".yaml") -> Case:
    """A text run given `--config <file holding text>` (no file written when `text` is None) and `flags`."""

    def build(folder: Path, assets: dict) -> list[str]:
        path = folder / f"run{suffix}"
        if text is not None:
            path.write_text(text)
        return text_run(folder, assets, "--config", str(path), *flags)

    return Case(f"config-{name}", "config", build, expect)


def _resolved(**expected):
    """A `Handled` check: `hftl_config.yaml` holds these values."""

    def check(result: Result) -> None:
        values = yaml.safe_load((result.output_dir / "hftl_config.yaml").read_text())
        assert {k: values[k] for k in expected} == expected, {k: values[k] for k in expected}

    return check


def _rerun_from_written_config(folder: Path, assets: dict) -> Result:
    """A run (into `first/`), then a run given only the `hftl_config.yaml` it wrote and another output folder."""
    flags = text_run(folder, assets, "--max_steps", "1", "--seed", "3", "--output_dir", str(folder / "first"))
    first = run_recipe("text", flags, folder, 180, {})
    assert first.returncode == 0, first.stderr[-3000:]
    again = ["--config", str(folder / "first" / "hftl_config.yaml"), "--output_dir", str(folder / "out")]
    return run_recipe("text", again, folder, 180, {})


def _same_config_as_first(result: Result) -> None:
    """Every flag of the second run has the first run's value (but --output_dir)."""
    first = yaml.safe_load((result.folder / "first" / "hftl_config.yaml").read_text())
    again = yaml.safe_load((result.output_dir / "hftl_config.yaml").read_text())
    differ = {k: (v, again.get(k)) for k, v in first.items() if k != "output_dir" and again.get(k) != v}
    assert not differ, differ


CASES = [
    _config_case("missing-file", None, Error(r"--config .*run\.yaml.*no such file")),
    Case(
        "config-is-a-folder",
        "config",
        lambda f, a: text_run(f, a, "--config", str(f)),
        Error(r"--config .*: not a file \(a folder\?\)"),
    ),
    _config_case("billion-laughs", BILLION_LAUGHS, Error(r"--config .*run\.yaml.*(alias|anchor)")),
    _config_case("one-alias", "seed: &s 3\ndata_seed: *s\n", Error(r"--config .*run\.yaml.*line 2.*alias")),
    _config_case("empty-file", "", Handled()),
    _config_case("comments-only", "# nothing yet\n", Handled()),
    _config_case("not-a-mapping", "- learning_rate\n- 1e-4\n", Error(r"--config .*mapping.*got (a )?list")),
    _config_case("scalar", "learning_rate\n", Error(r"--config .*mapping.*got (a )?str")),
    _config_case("yaml-syntax", "seed: 3\nlearning_rate: [1e-4\n", Error(r"--config .*run\.yaml.*line \d+")),
    _config_case(
        "json-syntax", '{"seed": 3,\n "learning_rate": 1e-4,\n}', Error(r"--config .*run\.json.*line 3"), suffix=".json"
    ),
    _config_case("unknown-key", "learnign_rate: 1.0e-4\n", Error(r"--config .*unknown.*learnign_rate.*learning_rate")),
    _config_case("dashed-key", "learning-rate: 1.0e-4\n", Error(r"--config .*learning-rate.*learning_rate")),
    _config_case("float-not-a-number", "learning_rate: fast\n", Error(r"--config .*learning_rate.*fast.*number")),
    _config_case(
        "int-given-float",
        "per_device_train_batch_size: 8.5\n",
        Error(r"--config .*per_device_train_batch_size.*8\.5.*integer"),
    ),
    _config_case("bool-maybe", "do_train: maybe\n", Error(r"--config .*do_train.*maybe.*true.*false")),
    _config_case("bool-given-number", "do_train: 2\n", Error(r"--config .*do_train.*2.*true.*false")),
    _config_case("list-for-scalar", "learning_rate: [1.0e-4, 2.0e-4]\n", Error(r"--config .*learning_rate.*one value")),
    _config_case("null-for-required", "learning_rate: null\n", Error(r"--config .*learning_rate.*null")),
    _config_case("choice-unknown", "strategy: fulll\n", Error(r"--config .*strategy.*fulll.*full")),
    _config_case("value-out-of-range", "learning_rate: -0.5\n", Error(r"--learning_rate.*-0\.5")),
    _config_case(
        "yaml-scientific-string", "learning_rate: 1e-3\nnum_train_epochs: 1\n", Handled(_resolved(learning_rate=1e-3))
    ),
    _config_case(
        "command-line-wins",
        "seed: 5\nlearning_rate: 1.0e-3\n",
        Handled(_resolved(seed=7, learning_rate=1e-3)),
        "--seed",
        "7",
    ),
    _config_case(
        "json-values",
        '{"seed": 11, "lora_target_modules": ["query", "value"], "strategy": "lora"}',
        Handled(_resolved(seed=11, lora_target_modules=["query", "value"])),
        suffix=".json",
    ),
    Case(
        "config-written-by-a-run",
        "config",
        None,
        Handled(_same_config_as_first),
        run=_rerun_from_written_config,
    ),
]
