"""The inputs the parity check runs: built-in sample texts / images / clips, or the user's own files, turned into
model inputs by the saved processor exactly as hftl's evaluation does (tokenizer with padding, image processor,
`AudioCollator`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from hftl.errors import InputError

SAMPLE_TEXTS = (
    "A warm, funny and beautifully acted film.",
    "Dull.",
    "The plot wanders for two hours and never finds its way back, despite a committed cast and some lovely shots.",
    "I would watch it again tomorrow!",
    "Not bad, not good: forgettable.",
    "An overlong, overwrought mess.",
    "Quietly brilliant.",
    "Its second half drags, but the ending makes up for it.",
)
TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")


def sample_examples(modality: str, count: int, sampling_rate: int | None = None, seed: int = 0) -> list[Any]:
    """`count` deterministic raw examples: texts, RGB PIL images (odd sizes, patterns and noise) or mono clips.

    Args:
        modality: "text", "image" or "audio".
        sampling_rate: the feature extractor's rate (Hz), for audio: clips of 0.5 to 2.25 s of tones and noise.

    Returns:
        A list of str, `PIL.Image.Image` (RGB) or float32 arrays of shape (samples,).
    """
    rng = np.random.default_rng(seed)
    if modality == "text":
        return [SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)] for i in range(count)]
    if modality == "image":
        from PIL import Image

        images = []
        for i in range(count):
            height, width = 40 + 13 * i, 56 + 7 * (i % 5)
            y, x = np.mgrid[0:height, 0:width]
            pattern = np.stack([(x * (i + 1)) % 256, (y * 3 + 40 * i) % 256, ((x + y) * 5) % 256], axis=-1)
            noise = rng.integers(0, 64, size=pattern.shape)
            images.append(Image.fromarray(np.clip(pattern + noise, 0, 255).astype(np.uint8), "RGB"))
        return images
    clips = []
    for i in range(count):
        t = np.arange(int(sampling_rate * (0.5 + 0.25 * i))) / sampling_rate
        tone = 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t) + 0.05 * rng.standard_normal(t.shape)
        clips.append(tone.astype(np.float32))
    return clips


def _files(paths: list[str]) -> list[str]:
    """Every file named, or found (sorted, recursively) under a folder named."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            found += sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise InputError(f"--samples {path}: no such file or folder.")
    return found


def _texts(path: str) -> list[str]:
    """The texts of a .txt file (one per line) or of a table's text column (text, sentence, review ...)."""
    import pandas as pd

    from hftl.modalities.text import DEFAULT_TEXT_COLUMNS

    if not path.endswith(TABLE_SUFFIXES):
        with open(path, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]
    if path.endswith((".json", ".jsonl")):
        table = pd.read_json(path, lines=path.endswith(".jsonl"))
    else:
        table = pd.read_csv(path, sep="\t" if path.endswith(".tsv") else ",")
    column = next((c for c in DEFAULT_TEXT_COLUMNS if c in table.columns), None)
    if column is None:
        raise InputError(
            f"--samples {path}: no text column among {list(table.columns)} (one of {DEFAULT_TEXT_COLUMNS})."
        )
    return [str(text) for text in table[column].dropna() if str(text).strip()]


def read_examples(modality: str, paths: list[str], count: int, sampling_rate: int | None = None) -> list[Any]:
    """Up to `count` raw examples from the user's files, read as hftl's training read them.

    Args:
        paths: text: .txt files (one text per line) or .csv / .tsv / .json / .jsonl tables with a text column;
            image / audio: files, or folders searched recursively.
        sampling_rate: the feature extractor's rate (Hz), for audio (`hftl.load_audio` resamples to it).

    Raises:
        InputError: a path that does not exist, a file that is not readable as the modality's input, or no example.
    """
    from hftl.modalities.audio_io import load_audio
    from hftl.modalities.image_io import load_rgb

    examples: list[Any] = []
    for path in _files(paths):
        if len(examples) >= count:
            break
        try:
            if modality == "text":
                examples += _texts(path)
            elif modality == "image":
                examples.append(load_rgb({"path": path, "bytes": None}))
            else:
                examples.append(load_audio(path, sampling_rate)["raw"])
        except InputError:
            raise
        except Exception as error:  # PIL, soundfile and pandas each raise their own errors
            raise InputError(f"--samples {path}: not readable as {modality} input ({error}).") from None
    if not examples:
        raise InputError(f"--samples {' '.join(paths)}: no {modality} example found.")
    return examples[:count]


def model_inputs(modality: str, processor, examples: list[Any], accepted: set[str]) -> dict[str, Any]:
    """One batch of model inputs (torch tensors) for `examples`, as hftl's evaluation builds them.

    Args:
        accepted: the names the model's forward takes; processor outputs it does not take are dropped.

    Returns:
        {name: tensor}: text `input_ids`, `attention_mask` (, `token_type_ids`) of shape (B, S), padded to the
        longest text and truncated to the tokenizer's maximum; image `pixel_values` (B, C, H, W); audio
        `input_values` (B, samples) or `input_features` (B, mel bins, frames), with `attention_mask` when the
        feature extractor returns one.
    """
    if modality == "text":
        batch = processor(examples, padding=True, truncation=True, return_tensors="pt")
    elif modality == "image":
        batch = processor(images=examples, return_tensors="pt")
    else:
        from hftl.modalities.audio import AudioCollator

        batch = AudioCollator(processor)([{"audio_samples": clip} for clip in examples])
    return {name: value for name, value in dict(batch).items() if name in accepted}
