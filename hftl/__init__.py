"""hftl: transfer learning on the Hugging Face stack.

Adapt a pretrained text, image or speech model to your own small, shifted data with one command (see `recipes/`).
Importing hftl registers its model classes (`hftl.models`: EfficientNet-Lite, cropped Whisper) with transformers'
Auto classes, so `pipeline(...)` loads folders hftl saved without `trust_remote_code`. The run itself is
`hftl.pipeline.run_classification`; "How hftl is built" in the README maps its steps to the files.
`hftl.load_audio(path, sampling_rate)` reads a clip for `pipeline("audio-classification")` the way training read it.
"""

import hftl.models  # noqa: F401  (registers the Auto classes)
from hftl.errors import InputError

__version__ = "0.1.0"
__all__ = ["InputError", "__version__", "load_audio"]


def __getattr__(name: str):
    """`hftl.load_audio`, imported on first use (the modalities it lives beside cost a second to import)."""
    if name == "load_audio":
        from hftl.modalities.audio_io import load_audio

        return load_audio
    raise AttributeError(f"module 'hftl' has no attribute {name!r}")
