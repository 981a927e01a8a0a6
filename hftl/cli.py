"""The `hftl` command: `hftl datasets` lists the built-in datasets."""

from __future__ import annotations

import argparse
import sys

from hftl.data.builtin import BUILTIN_DATASETS


def _list_datasets(modality: str | None) -> None:
    for entry in BUILTIN_DATASETS.values():
        if modality and entry.modality != modality:
            continue
        print(f"{entry.name}  [{entry.modality}]\n    {entry.description}\n    source: {entry.source}\n"
              f"    splits: {entry.split_rule}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hftl", description="hftl: transfer learning on the Hugging Face stack.")
    commands = parser.add_subparsers(dest="command", required=True)
    datasets = commands.add_parser("datasets", help="List the built-in datasets (use them with --dataset_name).")
    datasets.add_argument("--modality", choices=["text", "image", "audio"], help="Only this modality.")
    args = parser.parse_args(argv)
    if args.command == "datasets":
        _list_datasets(args.modality)
    return 0


if __name__ == "__main__":
    sys.exit(main())
