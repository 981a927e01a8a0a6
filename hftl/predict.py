"""`hftl predict`: score a new file (or folder) with a saved classifier, writing the CSV that evaluation writes.

    hftl predict --model_name_or_path outputs/text_classification --test_file new.csv --output_file scores.csv

The model runs through `transformers.pipeline(...)` on the saved folder, its task found from the Auto class the
folder loads with (text, image or audio classification). Inputs are read as training read them: files through
hftl's own reader (`hftl.data.files.read_file`), the input column found as the recipes find it, texts truncated where
training truncated them (the saved tokenizer's `model_max_length`), images opened as `pipeline(...)` opens them,
clips through `hftl.load_audio` cut at the run's `--max_length_seconds` (read from `hftl_config.yaml` beside the
model). The output has `source_row,prediction,score` and one `prob_<class>` column per class in id order (a folder's
files also get `path`, after `source_row`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import numpy as np

from hftl.errors import InputError

logger = logging.getLogger("hftl")

TASKS = ("text-classification", "image-classification", "audio-classification")


def _flag_bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def add_predict_parser(commands) -> None:
    """The `predict` sub-command's flags (names as in run_glue.py / TrainingArguments / the recipes)."""
    parser = commands.add_parser("predict", help="Score a file or folder with a saved classifier, into a CSV.")
    parser.add_argument("--model_name_or_path", required=True, help="A folder a run saved (its --output_dir).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--test_file", help="CSV / TSV / JSON / JSON Lines / parquet file of texts or of file paths.")
    source.add_argument("--test_dir", help="Folder of image or audio files (sub-folders included).")
    parser.add_argument("--output_file", required=True, help="The CSV to write (source_row,prediction,score,prob_*).")
    parser.add_argument("--per_device_eval_batch_size", type=int, default=8, help="Examples per forward pass.")
    for name, what in (("text", "text"), ("text_pair", "second text"), ("image", "image"), ("audio", "audio")):
        parser.add_argument(f"--{name}_column_name", help=f"Column of the {what} (default: found as the recipe does).")
    parser.add_argument("--max_length_seconds", type=float, help="Audio: seconds kept (default: the run's).")
    parser.add_argument("--delimiter", help="CSV delimiter (default: detected).")
    parser.add_argument("--encoding", help="Text encoding of the file (default: UTF-8).")
    parser.add_argument("--drop_invalid_examples", type=_flag_bool, default=False, help="Skip unusable rows.")
    parser.add_argument("--use_cpu", type=_flag_bool, default=False, help="Run on the CPU even with a GPU.")
    parser.add_argument("--trust_remote_code", type=_flag_bool, default=False, help="Allow the folder's own code.")


def run_predict(args: argparse.Namespace) -> int:
    """`hftl predict`: 0 on success; bad input prints one `error: ...` line and returns 2."""
    logging.basicConfig(format="%(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    try:
        count = predict(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {count} predictions to {args.output_file}")
    return 0


def model_task(path: str, trust_remote_code: bool = False) -> str:
    """The pipeline task of a saved classifier folder: the one whose Auto class maps its config to the class in its
    `architectures`.

    Raises:
        InputError: no such folder, a LoRA adapter alone, no config.json, or a model that is no text, image or audio
            classifier (e.g. a base model without a head).
    """
    from transformers import AutoConfig

    from hftl.modalities import AudioModality, ImageModality, TextModality

    flag = f"--model_name_or_path {path}"
    if not os.path.isdir(path):
        raise InputError(f"{flag}: no such folder. Give the folder a run saved its model to (its --output_dir).")
    if not os.path.isfile(os.path.join(path, "config.json")):
        if os.path.isfile(os.path.join(path, "adapter_config.json")):
            raise InputError(
                f"{flag} holds a LoRA adapter alone (a run with --merge_adapter false): merge it first "
                f"(peft's AutoPeftModelFor...Classification.from_pretrained(path).merge_and_unload().save_pretrained"
                f"(folder)), or train with --merge_adapter true and give its --output_dir."
            )
        raise InputError(f"{flag}: no config.json; not a saved model. Give the --output_dir of a run.")
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    architectures = config.architectures or []
    for modality in (TextModality, ImageModality, AudioModality):
        # the Auto class's config -> model class mapping, classes registered at run time (hftl's own) included
        model_class = modality.auto_model_class._model_mapping.get(type(config), None)
        if model_class is not None and model_class.__name__ in architectures:
            return modality.pipeline_task
    raise InputError(
        f"{flag}: a {config.model_type} model saved as {architectures or 'an unknown class'}, not a text, image or "
        f"audio classifier (e.g. a base model without a classification head). Give the --output_dir of an hftl run."
    )


def _modality(task: str):
    from hftl.modalities import AudioModality, ImageModality, TextModality

    return {m.pipeline_task: m for m in (TextModality(), ImageModality(), AudioModality())}[task]


def _run_flag(model_dir: str, name: str):
    """A flag of the run that saved `model_dir`, from its `hftl_config.yaml` (None if absent)."""
    import yaml

    path = os.path.join(model_dir, "hftl_config.yaml")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return (yaml.safe_load(handle) or {}).get(name)


def _modality_arguments(modality, args: argparse.Namespace):
    """The modality's flags: the column names given, and for audio the seconds kept (given, else the run's)."""
    if modality.name == "text":
        return modality.arguments_class(
            text_column_name=args.text_column_name, text_pair_column_name=args.text_pair_column_name
        )
    if modality.name == "image":
        return modality.arguments_class(image_column_name=args.image_column_name)
    seconds = args.max_length_seconds or _run_flag(args.model_name_or_path, "max_length_seconds") or 20.0
    return modality.arguments_class(audio_column_name=args.audio_column_name, max_length_seconds=seconds)


def _folder_files(folder: str, modality) -> list[str]:
    """The image or audio files under `folder`, sorted by path (names starting with '.' or '__' skipped).

    Raises:
        InputError: no such folder, a text model, or no file of the modality's extensions.
    """
    from hftl.data.loading import AUDIO_EXTENSIONS

    if modality.name == "text":
        raise InputError(f"--test_dir {folder}: a text model reads a file of texts; pass it with --test_file.")
    if not os.path.isdir(folder):
        raise InputError(f"--test_dir {folder}: no such folder.")
    if modality.name == "audio":
        extensions = AUDIO_EXTENSIONS
    else:
        from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

        extensions = tuple(ImageFolder.EXTENSIONS)
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        files += [os.path.join(root, n) for n in names if n.lower().endswith(extensions) and n[0] not in "._"]
    if not files:
        raise InputError(f"--test_dir {folder}: no {modality.name} files ({', '.join(extensions[:6])} ...).")
    return sorted(files)


def read_inputs(modality, margs, args: argparse.Namespace):
    """(the rows to score as a `Dataset`, its input columns, each row's 0-based row in the file, the folder's file
    paths or None), the input cells made usable (paths resolved against the file's folder) and checked.

    Raises:
        InputError: the file cannot be read, has no input column (or not the one named), or has unusable rows
            (named; `--drop_invalid_examples true` skips them).
    """
    from datasets import Dataset, DatasetDict

    from hftl.data.files import file_options, read_file
    from hftl.data.loading import RawData

    paths = None
    if args.test_dir:
        paths = _folder_files(args.test_dir, modality)
        dataset, where = Dataset.from_dict({modality.name: paths}), f"--test_dir {args.test_dir}"
    else:
        delimiter, encoding = file_options(args.delimiter, args.encoding)
        dataset, where = read_file("--test_file", args.test_file, delimiter, encoding), f"--test_file {args.test_file}"
    csv_like = bool(args.test_file) and args.test_file.lower().endswith((".csv", ".tsv"))
    files = {"train": args.test_file} if args.test_file else {}
    raw = RawData(DatasetDict(train=dataset), {"train": where}, where, csv_splits={"train"} if csv_like else set())
    raw.files = files
    columns = modality.input_columns(margs, raw)
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise InputError(f"{where}: no column {missing[0]!r}; its columns are {dataset.column_names}.")
    modality.prepare_raw(raw, columns, margs)
    dataset = raw.splits["train"]
    bad = [i for i, row in enumerate(dataset) if not all(modality.is_valid_input(row[c], margs) for c in columns)]
    if bad and not args.drop_invalid_examples:
        raise InputError(
            f"{raw.where('train', bad)}: {modality.input_problem}. Fix them, or pass --drop_invalid_examples true to "
            f"skip them (their rows are then missing from the output)."
        )
    skipped = set(bad)
    rows = [i for i in range(len(dataset)) if i not in skipped]
    if bad:
        logger.warning("Skipped %d unusable row(s) of %s: %s", len(bad), where, bad[:20])
    return dataset.select(rows), columns, rows, None if paths is None else [paths[i] for i in rows]


def _pipeline_inputs(modality, dataset, columns: list[str], margs, sampling_rate: int | None):
    """What `pipeline(...)` takes, one item per row, read lazily: texts (or {text, text_pair}), RGB images, clips."""
    if modality.name == "text":
        if len(columns) == 2:
            return ({"text": row[columns[0]], "text_pair": row[columns[1]]} for row in dataset)
        return (row[columns[0]] for row in dataset)
    if modality.name == "image":
        from hftl.modalities.image_io import load_rgb

        return (load_rgb(row[columns[0]]) for row in dataset)
    from hftl.modalities.audio_io import load_audio

    return (load_audio(row[columns[0]], sampling_rate, margs.max_length_seconds) for row in dataset)


def _device(use_cpu: bool) -> str:
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if use_cpu or accelerator is None or not accelerator.is_available():
        return "cpu"
    return str(accelerator.current_accelerator())


def predict(args: argparse.Namespace) -> int:
    """Score `--test_file` / `--test_dir` with the saved classifier and write `--output_file`; returns the rows
    written. Raises: InputError (see `model_task`, `read_inputs`), before the model loads."""
    from transformers import pipeline

    from hftl.evaluation import write_predictions

    if args.per_device_eval_batch_size < 1:
        raise InputError(f"--per_device_eval_batch_size must be >= 1, got {args.per_device_eval_batch_size}.")
    task = model_task(args.model_name_or_path, args.trust_remote_code)
    modality = _modality(task)
    margs = _modality_arguments(modality, args)
    dataset, columns, rows, paths = read_inputs(modality, margs, args)
    classifier = pipeline(
        task,
        model=args.model_name_or_path,
        device=_device(args.use_cpu),
        batch_size=args.per_device_eval_batch_size,
        trust_remote_code=args.trust_remote_code,
    )
    names = [classifier.model.config.id2label[i] for i in range(classifier.model.config.num_labels)]
    rate = getattr(getattr(classifier, "feature_extractor", None), "sampling_rate", None)
    options = {"truncation": True} if modality.name == "text" else {}  # cut where training cut (model_max_length)
    scored = classifier(_pipeline_inputs(modality, dataset, columns, margs, rate), top_k=len(names), **options)
    probabilities = np.zeros((len(rows), len(names)))
    index = {name: i for i, name in enumerate(names)}
    for row, scores in enumerate(scored):
        for entry in scores:
            probabilities[row, index[entry["label"]]] = entry["score"]
    os.makedirs(os.path.dirname(os.path.abspath(args.output_file)), exist_ok=True)
    if getattr(classifier.model.config, "problem_type", None) == "multi_label_classification":
        _write_label_sets(args, classifier.model.config, rows, probabilities, names)
    else:
        write_predictions(args.output_file, rows, probabilities.argmax(-1), names, probabilities, paths)
    return len(rows)


def _write_label_sets(args: argparse.Namespace, config, rows, scores: np.ndarray, names: list[str]) -> None:
    """A multi-label model's CSV, as its run wrote it (`hftl.multi_label.evaluation.write_predictions`): the labels
    whose pipeline score is above 0.5 (each label's threshold is folded into the saved bias), and each label's own
    probability p_k = sigmoid(logit(score_k) + logit(t_k)), the threshold taken back out.

    Shape: scores (N, C), the pipeline's sigmoid scores.
    """
    from hftl.multi_label.evaluation import write_predictions as write_label_sets
    from hftl.multi_label.thresholds import THRESHOLDS, sigmoid

    thresholds = getattr(config, THRESHOLDS, None) or {}
    cuts = np.array([float(thresholds.get(name, 0.5)) for name in names])
    clipped = np.clip(scores, 1e-12, 1 - 1e-12)
    probabilities = sigmoid(np.log(clipped / (1 - clipped)) + np.log(cuts / (1 - cuts)))
    delimiter = _run_flag(args.model_name_or_path, "label_delimiter") or "|"
    write_label_sets(args.output_file, rows, scores > 0.5, probabilities, names, delimiter)
