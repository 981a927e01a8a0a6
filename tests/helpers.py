"""Helpers shared by the tests: recipe runs, deterministic tiny data (texts, images, tones)."""

import importlib.util
import os
import random
import zlib

WORDS_BY_LABEL = {
    "positive": ["good", "great", "fine", "nice", "superb", "lovely"],
    "negative": ["bad", "awful", "poor", "dull", "boring", "weak"],
}
FILLER = ["the", "film", "was", "a", "plot", "very", "and", "story", "movie", "it"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
IMAGE_MODES = ("RGB", "L", "RGBA", "P", "I;16")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def recipe_defaults(name: str) -> dict:
    """The DEFAULTS of `recipes/<name>.py`, so that tests run each recipe as its command line does."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", os.path.join(ROOT, "recipes", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DEFAULTS


def run_python(args: list[str], cwd=None, timeout: int = 900):
    """Run `python ARGS` in a fresh process (offline), assert it succeeded, return the completed process."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def saved_weights(folder) -> dict:
    """name -> tensor: every tensor of the model saved in `folder` and, for LoRA, of the adapter beside it."""
    from safetensors.torch import load_file

    tensors = {}
    for name in ("model.safetensors", os.path.join("adapter", "adapter_model.safetensors")):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            tensors.update({f"{name}:{key}": value for key, value in load_file(path).items()})
    return tensors


def assert_same_weights(folder, reference) -> None:
    """The model saved in `folder` is bit-identical to the one in `reference` (`torch.equal`, every tensor)."""
    import torch

    ours, theirs = saved_weights(folder), saved_weights(reference)
    assert ours.keys() == theirs.keys() and ours
    different = [key for key in ours if not torch.equal(ours[key], theirs[key])]
    assert not different, {key: (ours[key] - theirs[key]).abs().max().item() for key in different[:5]}


def resumed_step(output: str) -> int:
    """The step of the checkpoint a run's log says it resumed from (asserts that it says so)."""
    import re

    match = re.search(r"Resuming from \S*checkpoint-(\d+)", output)
    assert match, output[-3000:]
    return int(match.group(1))


def recipe_args(model_dir: str, data: dict[str, str], output_dir, *flags: str) -> list[str]:
    """Command-line flags of a recipe run: the model, the data (flag name -> value), the output folder, more flags."""
    args = ["--model_name_or_path", model_dir, "--output_dir", str(output_dir)]
    for key, value in data.items():
        args += [f"--{key}", value]
    return args + list(flags)


def make_texts(n: int, seed: int = 0) -> list[dict]:
    """`n` rows {text, label}: the label decides which sentiment words a text holds."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = rng.sample(FILLER, 4) + rng.sample(WORDS_BY_LABEL[label], 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_csv(path, rows: list[dict]) -> str:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def make_image(label: str, index: int, mode: str = "RGB", size=(20, 16)):
    """A synthetic image whose class is visible: 'stripes' has horizontal bars, 'dots' a grid of bright points."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(index)
    height, width = size[1], size[0]
    array = rng.integers(0, 40, (height, width)).astype(np.float64)
    if label == "stripes":
        array[::4, :] = 230
    else:
        array[::4, ::4] = 230
    array = array.clip(0, 255)
    if mode == "I;16":  # 16-bit storage of 8-bit values (hftl refuses values above 255, which pipeline(...) clips)
        return Image.fromarray(array.astype(np.uint16))
    gray = Image.fromarray(array.astype(np.uint8), mode="L")
    if mode == "L":
        return gray
    rgb = gray.convert("RGB")
    if mode == "RGBA":
        rgba = rgb.convert("RGBA")
        rgba.putalpha(255)
        return rgba
    if mode == "P":
        return rgb.convert("P", palette=Image.ADAPTIVE, colors=16)
    return rgb


def make_tone(label: str, index: int, rate: int = 16_000, seconds: float = 1.0, stereo: bool = False):
    """A noisy tone whose pitch gives the class: 'low' around 220 Hz, 'high' around 880 Hz."""
    import numpy as np

    rng = np.random.default_rng(index)
    t = np.arange(int(rate * seconds)) / rate
    frequency = (220 if label == "low" else 880) * (1 + 0.05 * rng.standard_normal())
    samples = 0.5 * np.sin(2 * np.pi * frequency * t) + 0.05 * rng.standard_normal(len(t))
    samples = samples.astype(np.float32)
    return np.stack([samples, 0.5 * samples], axis=1) if stereo else samples


def seed_of(*parts) -> int:
    """A seed derived from `parts`, the same in every process (unlike `hash()`, which Python salts per process)."""
    return zlib.crc32(repr(parts).encode("utf-8")) % 10_000
