"""Battery cases: paths that do not exist or hold the wrong thing (model folders, tokenizers, data files, caches,
output folders), refused before any model loads with one `error:` line naming the flag and the path; model files
that would run code (a refused pickle, custom code) named with their safe fix (see battery.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from battery import Case, Error, Handled, Result, image_run, speech_run, text_run

RUNS = {"text": text_run, "image": image_run, "speech": speech_run}
# the configuration file of a model with custom code: a run that executes it exits with status 97
CUSTOM_CODE = "raise SystemExit(97)  # hftl must not run a model's code without --trust_remote_code\n"


def _case(name: str, flags, expect, recipe: str = "text", **kwargs) -> Case:
    """A run of `recipe` with `flags(folder, assets)` appended (a flag given twice: the last one wins)."""
    build = lambda f, a: RUNS[recipe](f, a, *flags(f, a))  # noqa: E731
    return Case(f"paths-{name}", "paths", build, expect, recipe=recipe, **kwargs)


def _model(folder: Path, assets: dict, change, source: str = "tiny_bert_dir") -> list[str]:
    """A tiny model (BERT by default) copied to `folder/model`, then `change(model_folder)`; returns its
    --model_name_or_path."""
    model = folder / "model"
    shutil.copytree(assets[source], model)
    change(model)
    return ["--model_name_or_path", str(model)]


def _edit_config(**values):
    def change(model: Path) -> None:
        config = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps({**config, **values}))

    return change


def _custom_code(model: Path) -> None:
    _edit_config(
        model_type="hftl-custom",
        auto_map={
            "AutoConfig": "configuration_custom.CustomConfig",
            "AutoModelForSequenceClassification": "modeling_custom.CustomModel",
        },
    )(model)
    (model / "configuration_custom.py").write_text(CUSTOM_CODE)
    (model / "modeling_custom.py").write_text(CUSTOM_CODE)


def _pickled_weights(extra=None):
    """The weights as `pytorch_model.bin` (torch.save of the state dict, plus `extra` entries) and no safetensors."""

    def change(model: Path) -> None:
        import torch
        from safetensors.torch import load_file

        state = load_file(model / "model.safetensors")
        torch.save({**state, **(extra() if extra else {})}, model / "pytorch_model.bin")
        (model / "model.safetensors").unlink()

    return change


def _unsafe_object():
    import argparse

    return {"training_args": argparse.Namespace(learning_rate=1e-4)}  # not on torch's weights_only allow-list


def _saved_safetensors(result: Result) -> None:
    assert (result.output_dir / "model.safetensors").is_file() and not (
        result.output_dir / "pytorch_model.bin"
    ).exists()


def _file(folder: Path, name: str = "a_file.txt") -> str:
    (folder / name).write_text("not a folder\n")
    return str(folder / name)


def _empty_dir(folder: Path, name: str = "empty") -> str:
    (folder / name).mkdir()
    return str(folder / name)


CASES = [
    # --model_name_or_path / --config_name / --tokenizer_name
    _case(
        "model-missing-relative",
        lambda f, a: ["--model_name_or_path", "./no_such_model"],
        Error(r"--model_name_or_path \./no_such_model: no such folder"),
    ),
    _case(
        "model-missing-absolute",
        lambda f, a: ["--model_name_or_path", str(f / "models" / "bert")],
        Error(r"--model_name_or_path .*models/bert: no such folder"),
    ),
    _case(
        "model-missing-home",
        lambda f, a: ["--model_name_or_path", "~/no_such_hftl_model"],
        Error(r"--model_name_or_path ~/no_such_hftl_model: no such folder"),
    ),
    _case(
        "model-hub-id-offline",
        lambda f, a: ["--model_name_or_path", "hftl-tests/no-such-model"],
        Error(r"--model_name_or_path hftl-tests/no-such-model: no such folder.*cache.*HF_HUB_OFFLINE"),
    ),
    _case(
        "model-is-a-file",
        lambda f, a: ["--model_name_or_path", _file(f)],
        Error(r"--model_name_or_path .*a_file\.txt.*a file.*folder"),
    ),
    _case(
        "model-without-config",
        lambda f, a: _model(f, a, lambda m: (m / "config.json").unlink()),
        Error(r"--model_name_or_path .*model.*no config\.json"),
    ),
    _case(
        "model-config-broken-json",
        lambda f, a: _model(f, a, lambda m: (m / "config.json").write_text('{\n"model_type": "bert",\n')),
        Error(r"--model_name_or_path .*config\.json.*line \d+"),
    ),
    _case(
        "model-unknown-model-type",
        lambda f, a: _model(f, a, _edit_config(model_type="blorp")),
        Error(r"--model_name_or_path .*model_type 'blorp'.*transformers"),
    ),
    _case(
        "model-without-weights",
        lambda f, a: _model(f, a, lambda m: (m / "model.safetensors").unlink()),
        Error(r"--model_name_or_path .*no weights.*model\.safetensors"),
    ),
    _case(
        "model-custom-code",
        lambda f, a: _model(f, a, _custom_code),
        Error(r"--model_name_or_path .*custom code.*--trust_remote_code true.*trust"),
    ),
    _case(
        "model-pickle-refused",
        lambda f, a: _model(f, a, _pickled_weights(_unsafe_object)),
        Error(r"--model_name_or_path .*pytorch_model\.bin.*(refused|unsafe).*argparse\.Namespace.*safetensors"),
    ),
    _case(
        "model-weights-damaged",
        lambda f, a: _model(f, a, lambda m: (m / "model.safetensors").write_bytes(b"not safetensors")),
        Error(r"--model_name_or_path .*safetensors weights are damaged"),
    ),
    _case("model-pickle-plain-state-dict", lambda f, a: _model(f, a, _pickled_weights()), Handled(_saved_safetensors)),
    _case(
        "config-name-missing",
        lambda f, a: ["--config_name", str(f / "no_config")],
        Error(r"--config_name .*no_config: no such folder"),
    ),
    _case(
        "tokenizer-missing",
        lambda f, a: ["--tokenizer_name", "./no_tokenizer"],
        Error(r"--tokenizer_name \./no_tokenizer: no such folder"),
    ),
    _case(
        "tokenizer-folder-empty",
        lambda f, a: ["--tokenizer_name", _empty_dir(f)],
        Error(r"--tokenizer_name .*empty.*no tokenizer"),
    ),
    _case(
        "image-model-missing",
        lambda f, a: ["--model_name_or_path", "./no_such_vit"],
        Error(r"--model_name_or_path \./no_such_vit: no such folder"),
        recipe="image",
    ),
    _case(
        "speech-model-missing",
        lambda f, a: ["--model_name_or_path", "../no_such_wav2vec2"],
        Error(r"--model_name_or_path \.\./no_such_wav2vec2: no such folder"),
        recipe="speech",
    ),
    _case(
        "image-processor-missing",
        lambda f, a: _model(f, a, lambda m: (m / "preprocessor_config.json").unlink(), source="tiny_vit_dir"),
        Error(r"--model_name_or_path .*no (image processor|tokenizer).*--tokenizer_name"),
        recipe="image",
    ),
    # data files and folders
    _case("train-file-missing", lambda f, a: ["--train_file", str(f / "nope.csv")], Error(r"--train_file .*nope\.csv")),
    _case(
        "validation-file-missing",
        lambda f, a: ["--validation_file", str(f / "nope.csv")],
        Error(r"--validation_file .*nope\.csv"),
    ),
    _case(
        "train-file-is-a-folder",
        lambda f, a: ["--train_file", _empty_dir(f, "data.csv")],
        Error(r"--train_file .*data\.csv"),
    ),
    _case(
        "train-dir-missing",
        lambda f, a: ["--train_dir", str(f / "no_images")],
        Error(r"--train_dir .*no_images"),
        recipe="image",
    ),
    _case(
        "target-file-missing",
        lambda f, a: ["--adaptation", "dann", "--target_train_file", str(f / "t.csv")],
        Error(r"--target_train_file .*t\.csv"),
    ),
    # caches and output
    _case("cache-dir-is-a-file", lambda f, a: ["--cache_dir", _file(f)], Error(r"--cache_dir .*a_file\.txt.*a file")),
    _case(
        "feature-cache-dir-is-a-file",
        lambda f, a: ["--strategy", "feature_extraction", "--feature_cache_dir", _file(f)],
        Error(r"--feature_cache_dir .*a_file\.txt.*a file"),
    ),
    _case("output-dir-is-a-file", lambda f, a: ["--output_dir", _file(f)], Error(r"--output_dir .*a_file\.txt")),
]
