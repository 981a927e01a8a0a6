"""Reading audio clips, the one way hftl trains, evaluates and serves them.

A clip is decoded with soundfile (libsndfile: WAV, FLAC, OGG, MP3 ...; no FFmpeg), down-mixed to mono by averaging
its channels, cut to the samples the model will see, then resampled with soxr to the feature extractor's rate.
Cutting comes first, so memory stays bounded by `--max_length_seconds` whatever the file's length or the rate its
header claims. Training (`AudioModality.preprocess`), evaluation and `load_audio` (what to hand to
`pipeline("audio-classification")`) all call `read_clip`, so a saved model sees at serving time what it saw in
training.
"""

from __future__ import annotations

import io
import math
import os
import random

import numpy as np

MIN_SAMPLING_RATE = 1_000  # Hz. Lower header rates are wrong headers: speech needs several kHz.
_BLOCK_FRAMES = 1 << 16  # frames checked at a time (bounded memory on long files)


def _source(cell):
    """What soundfile opens for an undecoded cell ({"bytes", "path"}), or None."""
    if isinstance(cell, dict) and cell.get("bytes"):
        return io.BytesIO(cell["bytes"])
    if isinstance(cell, dict) and cell.get("path"):
        return cell["path"]
    return None


def _array(cell) -> tuple[np.ndarray, int] | None:
    """(samples, rate) of a cell that holds samples ({"array" or "raw", "sampling_rate"}), else None."""
    if not isinstance(cell, dict):
        return None
    samples = cell.get("array") if cell.get("array") is not None else cell.get("raw")
    if samples is None:
        return None
    if hasattr(samples, "numpy"):  # a torch tensor
        samples = samples.detach().cpu().numpy()
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim > 2 or (samples.ndim == 2 and samples.shape[1] > samples.shape[0]):
        raise ValueError(
            f"audio of shape {samples.shape}: hftl takes (samples,) or (samples, channels), as soundfile reads it "
            f"(for (channels, samples), pass the transpose)."
        )
    return samples, int(cell["sampling_rate"])


def _mono(samples: np.ndarray) -> np.ndarray:
    """(samples,) float32: the mean of the channels of (samples, channels) input."""
    samples = np.asarray(samples, dtype=np.float32)
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def check_sampling_rate(rate: int, where: str) -> None:
    """Raises: ValueError naming `where` when `rate` (Hz) is below `MIN_SAMPLING_RATE`."""
    if rate < MIN_SAMPLING_RATE:
        raise ValueError(
            f"{where}: its header says {rate} Hz, below {MIN_SAMPLING_RATE} Hz; fix the header's rate or re-encode "
            f"the clip at its true rate."
        )


def _open(cell):
    """A `soundfile.SoundFile` (or an in-memory stand-in) for a cell; use it in a `with` block.

    Raises:
        ValueError: the cell holds no audio (an empty cell); soundfile's error when the file does not open.
    """
    held = _array(cell)
    if held is not None:
        return _Held(_mono(held[0]), held[1])
    source = _source(cell)
    if source is None:
        raise ValueError(f"not an audio clip: {type(cell).__name__}")
    import soundfile

    return soundfile.SoundFile(source)


def _where(cell) -> str:
    return str(cell["path"]) if isinstance(cell, dict) and cell.get("path") else "the audio"


def decode(cell) -> tuple[np.ndarray, int]:
    """Decode a whole audio cell: an undecoded `datasets` Audio dict (`bytes` or `path`), or a dict of samples
    (`array` or `raw`, plus `sampling_rate`).

    Returns:
        (samples, sampling rate): mono float32 samples of shape (samples,), the mean of the channels; rate in Hz.

    Raises:
        ValueError: the cell holds no audio; soundfile's error when the file does not decode.
    """
    with _open(cell) as clip:
        return _mono(clip.read(-1, dtype="float32")), clip.samplerate


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample (samples,) from `rate` to `target` Hz with soxr (high quality); unchanged when the rates agree."""
    if rate == target:
        return samples
    import soxr

    return soxr.resample(samples, rate, target).astype(np.float32)


def _margin(rate: int, target: int) -> int:
    """Source samples read past the window, so that soxr's filter sees there what it sees on the whole clip
    (measured: a few hundred output samples' worth for its high-quality filter; 2048 leaves room)."""
    return 2048 * max(1, math.ceil(rate / target))


def read_clip(cell, sampling_rate: int, max_samples: int | None = None, random_start: bool = False) -> np.ndarray:
    """The samples a model sees of one clip: mono, cut to `max_samples` at `sampling_rate`, resampled.

    Args:
        cell: what `decode` takes.
        sampling_rate: the model's rate (its feature extractor's `sampling_rate`), Hz.
        max_samples: keep at most this many samples at `sampling_rate` (None: the whole clip).
        random_start: a longer clip is cut at a random place (training); else its start is kept (evaluation).

    Returns:
        float32 samples of shape (n,), n <= max_samples. Only the window and a short margin are read and resampled
        (the result equals resampling the whole clip, then cutting), so a long file or a header claiming a tiny rate
        costs no more than the window.

    Raises:
        ValueError: no audio, or a rate below `MIN_SAMPLING_RATE` (see `check_sampling_rate`).
    """
    with _open(cell) as clip:
        check_sampling_rate(clip.samplerate, _where(cell))
        rate, total = clip.samplerate, clip.frames
        need = total if max_samples is None else min(total, math.ceil(max_samples * rate / sampling_rate))
        start = random.randint(0, total - need) if random_start and total > need else 0
        clip.seek(start)
        samples = _mono(clip.read(min(total - start, need + _margin(rate, sampling_rate)), dtype="float32"))
    return resample(samples, rate, sampling_rate)[:max_samples]


def clip_problem(cell, min_length_seconds: float = 0.0) -> str | None:
    """Why a clip cannot be trained on ("no such file", "empty", "NaN or infinite samples" ...), or None.

    The file is read in blocks of `_BLOCK_FRAMES` frames: memory stays bounded whatever its length.
    """
    source = _source(cell)
    if source is None and _array(cell) is None:
        return "empty cell"
    if isinstance(source, str) and not os.path.exists(source):
        return "no such file"
    frames = 0
    try:
        with _open(cell) as clip:
            rate = clip.samplerate
            if rate < MIN_SAMPLING_RATE:
                return (
                    f"its header says {rate} Hz, below {MIN_SAMPLING_RATE} Hz: fix the header's rate or re-encode the "
                    f"clip at its true rate"
                )
            while len(block := clip.read(_BLOCK_FRAMES, dtype="float32")):
                if not np.isfinite(block).all():
                    return "NaN or infinite samples"
                frames += len(block)
    except Exception as error:  # libsndfile's errors, and OSError (a folder, no permission)
        return f"unreadable by soundfile: {getattr(error, 'error_string', None) or error}"
    if frames == 0:
        return "empty: no samples"
    if frames < min_length_seconds * rate:
        return f"{frames / rate:.3f} s, shorter than --min_length_seconds"
    return None


def load_audio(audio, sampling_rate: int, max_length_seconds: float | None = None) -> dict:
    """What to give `pipeline("audio-classification")`: a clip read exactly as hftl's evaluation read it.

    transformers' pipeline decodes a file path with FFmpeg and resamples an array with torchaudio, neither of which
    hftl needs (nor training used: soundfile and soxr); this reads the clip the way training did, so the pipeline's
    probabilities equal those of the run's evaluation.

    Args:
        audio: a file path (str or os.PathLike), a file's bytes, or a dict of samples
            {"array" (or "raw"): (samples,) or (samples, channels), "sampling_rate": Hz}, e.g. a decoded
            `datasets` Audio cell.
        sampling_rate: the model's rate, Hz: `classifier.feature_extractor.sampling_rate`.
        max_length_seconds: keep the first this many seconds, as evaluation did (the run's `--max_length_seconds`,
            written in `hftl_config.yaml` beside the model); None: the whole clip.

    Returns:
        {"raw": float32 array of shape (samples,), "sampling_rate": sampling_rate}.

    Raises:
        ValueError: not audio, an empty clip, NaN samples or a rate below 1 kHz (named with the file).
        soundfile.LibsndfileError: a file libsndfile cannot decode.

    Example:
        >>> from transformers import pipeline
        >>> classifier = pipeline("audio-classification", model="outputs/speech_classification")
        >>> classifier(hftl.load_audio("clip.flac", classifier.feature_extractor.sampling_rate, max_length_seconds=8))
    """
    if isinstance(audio, str | os.PathLike):
        cell = {"path": os.fspath(audio), "bytes": None}
    else:
        cell = {"path": None, "bytes": audio} if isinstance(audio, bytes) else audio
    window = None if max_length_seconds is None else int(max_length_seconds * sampling_rate)
    samples = read_clip(cell, sampling_rate, window)
    if not len(samples) or not np.isfinite(samples).all():
        raise ValueError(f"{_where(cell)}: {'NaN or infinite samples' if len(samples) else 'empty: no samples'}.")
    return {"raw": samples, "sampling_rate": sampling_rate}


class _Held:
    """Samples already in memory, read like a `soundfile.SoundFile`."""

    def __init__(self, samples: np.ndarray, rate: int):
        self.samples, self.samplerate, self.frames, self.position = samples, rate, len(samples), 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def seek(self, frame: int) -> None:
        self.position = frame

    def read(self, frames: int = -1, dtype: str = "float32") -> np.ndarray:
        stop = len(self.samples) if frames < 0 else self.position + frames
        block = self.samples[self.position : stop].astype(dtype)
        self.position += len(block)
        return block
