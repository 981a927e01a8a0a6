"""`hftl rank`: which model, and which of its layers, to start from, judged on frozen features before any training.

    hftl rank --model_name_or_path MODEL_A MODEL_B --dataset_name mnist --target_dataset_name optdigits \\
        --max_train_samples 1000 --output_file rank.json

Every other flag is a recipe flag (data, columns, lengths, `--feature_cache_dir`, `--per_device_eval_batch_size`
...), read and checked by the recipe's own parser, for every model, before any data or model loads.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from hftl.errors import InputError

logger = logging.getLogger("hftl")

MODALITIES = ("text", "image", "audio")


def add_rank_parser(commands) -> None:
    """The `rank` sub-command's own flags; the recipe flags after them are passed through."""
    parser = commands.add_parser(
        "rank",
        help="Rank models and their layers by LogME / H-score / TransRate on frozen features, before training.",
        description="Recipe flags (--dataset_name, --train_file, --target_dataset_name, --max_train_samples, "
        "--feature_cache_dir ...) are accepted as the recipes accept them.",
        allow_abbrev=False,  # a recipe flag must never be taken for an abbreviation of one of these
    )
    parser.add_argument("--model_name_or_path", nargs="+", required=True, help="Candidate models (folders or Hub ids).")
    parser.add_argument("--output_file", required=True, help="The JSON file to write (the ranked candidates).")
    parser.add_argument(
        "--modality", choices=MODALITIES, help="text, image or audio (default: the built-in dataset's)."
    )
    parser.add_argument(
        "--max_examples",
        type=int,
        default=2000,
        help="Examples per domain (a seeded random subset of the training split) that the scores read.",
    )


def _modality(name: str | None, flags: list[str]):
    from hftl.data.builtin import BUILTIN_DATASETS
    from hftl.modalities import AudioModality, ImageModality, TextModality

    if name is None:
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--dataset_name")
        known, _ = pre.parse_known_args(flags)
        entry = BUILTIN_DATASETS.get(known.dataset_name) if known.dataset_name else None
        if entry is None:
            raise InputError("hftl rank: pass --modality text, image or audio (known only for built-in datasets).")
        name = entry.modality
    return {"text": TextModality, "image": ImageModality, "audio": AudioModality}[name]()


def rank(args: argparse.Namespace, flags: list[str]) -> list[dict]:
    """Score every layer of every model of `args.model_name_or_path` on the data that `flags` name; print the ranked
    table and write it to `args.output_file`. Returns the ranked rows (see `hftl.ranking.table`).

    Raises:
        InputError: bad flags, data or model files (flags and data checked before any model loads).
    """
    from hftl.config import resolve_config
    from hftl.data.domains import load_data
    from hftl.ranking.candidates import model_candidates
    from hftl.ranking.table import format_table, rank_rows, score_candidate, write_ranking

    if args.max_examples < 2:
        raise InputError(f"--max_examples must be >= 2, got {args.max_examples}.")
    folder = os.path.dirname(os.path.abspath(args.output_file))
    modality = _modality(args.modality, flags)
    defaults = {
        "output_dir": os.path.join(folder, "hftl_rank"),
        "per_device_eval_batch_size": 32,
        "strategy": "feature_extraction",  # frozen features: a sentence-transformers model's own sentence embedding
        "ignore_mismatched_sizes": True,  # the head is never used: the features are its input
    }
    configs = [resolve_config(modality, defaults, [*flags, "--model_name_or_path", m]) for m in args.model_name_or_path]
    data = load_data(modality, configs[0])
    rows = []
    for config in configs:
        logger.info("Ranking the layers of %s", config.model.model_name_or_path)
        candidates, labels = model_candidates(modality, config, data, max_examples=args.max_examples)
        rows += [score_candidate(candidate, labels, config.training.seed) for candidate in candidates]
    ranked = rank_rows(rows)
    print(format_table(ranked))
    os.makedirs(folder, exist_ok=True)
    about = {
        "source": data.source.description,
        "target": data.target.description if data.target else None,
        "labels": data.labels.names,
        "max_examples": args.max_examples,
    }
    write_ranking(ranked, args.output_file, about)
    print(f"Wrote {args.output_file}")
    return ranked


def run_rank(args: argparse.Namespace, flags: list[str]) -> int:
    """`hftl rank`: 0 on success; bad input prints one `error: ...` line and returns 2."""
    try:
        rank(args, flags)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
