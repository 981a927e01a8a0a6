"""`hftl diagnose`: the shift diagnosis of a source -> target pair, without training.

    hftl diagnose --dataset_name mnist_source_half --target_dataset_name mnist_inverted --output_dir out/diag

It takes the recipes' model and data flags (`--model_name_or_path`, `--dataset_name` / `--train_file` ...,
`--target_dataset_name` / `--target_train_file` ..., `--feature_layer`, `--feature_cache_dir`, `--max_train_samples`,
`--output_dir` ...) and runs a recipe's first steps: config -> data -> model -> inputs -> the pretrained features
and the shift diagnosis (`hftl.adaptation.diagnosis`). It prints the verdict and its evidence and writes
`shift_diagnosis.json` and `label_shift.json` in `--output_dir`. The modality is `--modality`, else the one whose
Auto class loads the model, else the built-in `--dataset_name`'s.
"""

from __future__ import annotations

import json
import os
import sys

from hftl.errors import InputError

DEFAULTS = dict(
    output_dir="outputs/diagnosis",
    strategy="feature_extraction",  # frozen features: a sentence-transformers model's own sentence embedding
    ignore_mismatched_sizes=True,  # the head is never used: the features are its input
    per_device_eval_batch_size=64,
    report_to="none",
    disable_tqdm=True,
)


def add_diagnose_parser(commands) -> None:
    """The `diagnose` sub-command: `--modality` here, every other flag is a recipe flag (see the module docstring)."""
    parser = commands.add_parser(
        "diagnose",
        help="Diagnose the source -> target shift (gap beyond chance? label, covariate or both?) without training.",
        description="Takes the recipes' model and data flags (see recipes/<modality>_classification.py --help) and "
        "writes shift_diagnosis.json in --output_dir.",
    )
    parser.add_argument("--modality", choices=["text", "image", "audio"], help="Default: from the model or data.")


def _flag(flags: list[str], name: str) -> str | None:
    for i, flag in enumerate(flags):
        if flag == name and i + 1 < len(flags):
            return flags[i + 1]
        if flag.startswith(name + "="):
            return flag.split("=", 1)[1]
    return None


def _modality_of_model(path: str):
    """The modality whose Auto class maps the model's config (None: none or several do, or no readable config)."""
    from transformers import AutoConfig

    from hftl.modalities import AudioModality, ImageModality, TextModality

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError):
        return None
    found = [
        m for m in (TextModality, ImageModality, AudioModality) if type(config) in m.auto_model_class._model_mapping
    ]
    return found[0]() if len(found) == 1 else None


def pick_modality(modality: str | None, flags: list[str]):
    """`--modality`, else the model's (`--model_name_or_path`), else the built-in `--dataset_name`'s.

    Raises:
        InputError: none of them says.
    """
    from hftl.data.builtin import BUILTIN_DATASETS
    from hftl.modalities import AudioModality, ImageModality, TextModality

    by_name = {"text": TextModality, "image": ImageModality, "audio": AudioModality}
    if modality:
        return by_name[modality]()
    model = _flag(flags, "--model_name_or_path")
    found = _modality_of_model(model) if model else None
    if found is not None:
        return found
    dataset = _flag(flags, "--dataset_name")
    if dataset in BUILTIN_DATASETS:
        return by_name[BUILTIN_DATASETS[dataset].modality]()
    raise InputError(
        "hftl diagnose could not tell the modality from --model_name_or_path or --dataset_name: pass --modality "
        "text, image or audio."
    )


def diagnose(modality, flags: list[str]):
    """Run config -> data -> model -> inputs -> shift and write the reports; returns the `DomainShift`.

    Raises:
        InputError: bad flags or data, or no target data.
    """
    from transformers import set_seed

    from hftl.adaptation.reporting import write_diagnosis
    from hftl.adaptation.shift import shift_of
    from hftl.config import resolve_config
    from hftl.data.domains import load_data
    from hftl.inputs import build_inputs
    from hftl.modeling import load_model
    from hftl.ranking.auto import choose_feature_layer

    config = resolve_config(modality, DEFAULTS, flags)
    if not config.adaptation.has_target:
        raise InputError(
            "hftl diagnose needs target data: pass --target_dataset_name, --target_train_file or --target_train_dir."
        )
    set_seed(config.training.seed)
    data = load_data(modality, config)
    config, _ = choose_feature_layer(modality, config, data)  # --feature_layer auto: ranked on the source train data
    loaded = load_model(modality, config, data.labels)
    inputs = build_inputs(modality, config, data, loaded.processor)
    shift = shift_of(loaded.model, loaded.processor, inputs, data, config)
    output_dir = config.training.output_dir
    write_diagnosis(shift.diagnosis, data.labels.names, output_dir)
    with open(os.path.join(output_dir, "label_shift.json"), "w", encoding="utf-8") as handle:
        json.dump(shift.label_shift.as_dict(data.labels.names), handle, indent=2)
    return shift


def run_diagnose(modality: str | None, flags: list[str]) -> int:
    """`hftl diagnose`: prints the verdict and evidence; 0 on success, bad input prints `error: ...` and returns 2."""
    try:
        shift = diagnose(pick_modality(modality, flags), flags)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    diagnosis = shift.diagnosis
    print(f"Shift: {diagnosis.shift_kind}\n{diagnosis.verdict}\nEvidence:")
    for line in diagnosis.evidence:
        print(f"  - {line}")
    return 0
