"""Battery cases of the speech recipe's inputs: sampling rates, encodings, channels, broken or odd clips, audio
paths in CSV / JSON files, column names and length flags, on the tiny wav2vec2 and Whisper models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from battery import QUICK, Case, Error, Handled, Result, log_says, speech_run

A = "speech"
W2V, WHISPER = "tiny_wav2vec2_dir", "tiny_whisper_dir"


def _tone(seconds: float = 1.0, rate: int = 16_000, label: str = "low", seed: int = 99, channels: int = 1):
    from helpers import make_tone

    samples = make_tone(label, seed, rate, seconds)
    return np.stack([samples * (1 - 0.1 * c) for c in range(channels)], axis=1) if channels > 1 else samples


def _write(path: Path, samples, rate: int, subtype: str | None = None) -> str:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate, subtype=subtype)
    return str(path)


def _folder(folder: Path, split: str, rate: int, ext: str = "wav", channels: int = 1, count: int = 12) -> str:
    """An audiofolder split of `count` one-second tones at `rate` Hz, `channels` channels, as `ext` files."""
    for i in range(count):
        label = ("low", "high")[i % 2]
        _write(folder / split / label / f"{i}.{ext}", _tone(1.0, rate, label, i, channels), rate)
    return str(folder / split)


def _run_at(rate: int, ext: str = "wav", channels: int = 1, model: str = W2V, validation_rate: int | None = None):
    """A run whose train (and validation) clips are all at `rate` Hz."""

    def build(folder, assets):
        train = _folder(folder, "train", rate, ext, channels)
        validation = _folder(folder, "val", validation_rate or rate, ext, channels, count=6)
        argv = speech_run(folder, assets, model=model, train=train)
        return argv + ["--validation_dir", validation]

    return build


def _with_file(write, *flags: str, model: str = W2V):
    """A working run, plus one clip written by `write(path_without_suffix) -> None` into train/low/."""

    def build(folder, assets):
        argv = speech_run(folder, assets, *flags, model=model)
        write(folder / "train" / "low" / "odd")
        return argv

    return build


def _samples(result: Result, key: str = "train_samples") -> int:
    return json.loads((result.output_dir / "all_results.json").read_text())[key]


def _trained_on(count: int, evaluated: int = 6):
    def check(result: Result) -> None:
        assert _samples(result) == count and _samples(result, "eval_samples") == evaluated, (result.output_dir,)
        assert np.isfinite(json.loads((result.output_dir / "all_results.json").read_text())["eval_loss"])

    return check


# ---- clip writers (one odd clip each) -----------------------------------------------------------------------------


def _at_1_hz(path: Path) -> None:  # 200 kB of 16-bit samples whose header says 1 Hz: 6 GB once resampled whole
    _write(path.with_suffix(".wav"), np.random.default_rng(0).integers(-3000, 3000, 100_000).astype(np.int16), 1)


def _truncated(path: Path) -> None:
    _write(path.with_suffix(".wav"), _tone(2.0), 16_000)
    data = path.with_suffix(".wav").read_bytes()
    path.with_suffix(".wav").write_bytes(data[: len(data) // 2])


def _header_only(path: Path) -> None:
    _write(path.with_suffix(".wav"), _tone(1.0), 16_000)
    path.with_suffix(".wav").write_bytes(path.with_suffix(".wav").read_bytes()[:30])


def _empty(path: Path) -> None:
    _write(path.with_suffix(".wav"), np.zeros(0, dtype=np.float32), 16_000)


def _silent(path: Path) -> None:
    _write(path.with_suffix(".wav"), np.zeros(16_000, dtype=np.float32), 16_000)


def _nan(path: Path) -> None:
    samples = _tone(1.0)
    samples[500] = np.nan
    _write(path.with_suffix(".wav"), samples, 16_000, "FLOAT")


def _inf(path: Path) -> None:
    samples = _tone(1.0)
    samples[500] = np.inf
    _write(path.with_suffix(".wav"), samples, 16_000, "DOUBLE")


def _subtype(subtype: str, scale: float = 1.0):
    def write(path: Path) -> None:
        _write(path.with_suffix(".wav"), _tone(1.0) * scale, 16_000, subtype)

    return write


def _channels(count: int, rate: int = 16_000, ext: str = ".wav"):
    def write(path: Path) -> None:
        _write(path.with_suffix(ext), _tone(1.0, rate, channels=count), rate)

    return write


def _long(path: Path) -> None:  # 10 minutes at 44.1 kHz (53 MB): read and resampled only up to the window
    samples = np.tile(_tone(1.0, 44_100), 600)
    _write(path.with_suffix(".wav"), samples, 44_100, "PCM_16")


def _samples_only(count: int):
    def write(path: Path) -> None:
        _write(path.with_suffix(".wav"), _tone(1.0)[:count], 16_000)

    return write


def _text_named_wav(path: Path) -> None:
    path.with_suffix(".wav").write_text("this is a note, not audio\n" * 40)


# ---- audio paths in CSV / JSON files ------------------------------------------------------------------------------


def _table(kind: str = "csv", column: str = "audio", cells=None, flags=(), model: str = W2V):
    """A run on CSV / JSON Lines files in data/ whose `column` holds clip paths relative to data/ (clips in
    data/clips/); `cells(paths) -> cells` may break the train file's."""

    def build(folder, assets):
        from helpers import write_csv

        files = {}
        for split, count in (("train", 12), ("validation", 6)):
            rows = []
            for i in range(count):
                label = ("low", "high")[i % 2]
                _write(folder / "data" / "clips" / f"{split}{i}.wav", _tone(1.0, 16_000, label, i), 16_000)
                rows.append({column: f"clips/{split}{i}.wav", "label": label})
            if split == "train" and cells:
                for row, cell in zip(rows, cells([row[column] for row in rows]), strict=True):
                    row[column] = cell
            files[split] = folder / "data" / f"{split}.{kind}"
            if kind == "csv":
                write_csv(files[split], rows)
            else:
                files[split].write_text("".join(json.dumps(row) + "\n" for row in rows))
        return [
            "--model_name_or_path", assets[model], "--train_file", str(files["train"]),
            "--validation_file", str(files["validation"]), "--output_dir", str(folder / "out"), *QUICK, *flags,
        ]  # fmt: skip

    return build


def _replace(index: int, value):
    return lambda paths: [value if i == index else p for i, p in enumerate(paths)]


def _dropped(count: int):
    return log_says(rf"Dropped {count} invalid row")


def _flags(*flags: str, model: str = W2V):
    return lambda folder, assets: speech_run(folder, assets, *flags, model=model)


def _odd(pattern: str) -> Error:
    """The check names the odd clip (train/low/odd.*) and says what is wrong with it."""
    return Error(rf"invalid row.*odd\.\w+ \({pattern}")


CASES = [
    # sampling rates, formats and channels that training reads (soundfile + soxr, no FFmpeg, no torchaudio)
    Case("speech-rate-8k", A, _run_at(8_000), Handled(_trained_on(12)), recipe=A),
    Case("speech-rate-22k-flac", A, _run_at(22_050, "flac"), Handled(_trained_on(12)), recipe=A),
    Case(
        "speech-rate-44k-stereo-whisper",
        A,
        _run_at(44_100, channels=2, model=WHISPER),
        Handled(_trained_on(12)),
        recipe=A,
    ),
    Case(
        "speech-rates-mixed-whisper",
        A,
        _run_at(8_000, "flac", model=WHISPER, validation_rate=48_000),
        Handled(_trained_on(12)),
        recipe=A,
    ),
    Case("speech-rate-11025-clip", A, _with_file(_channels(1, 11_025)), Handled(_trained_on(13)), recipe=A),
    Case("speech-rate-192k-clip", A, _with_file(_channels(2, 192_000, ".flac")), Handled(_trained_on(13)), recipe=A),
    Case("speech-six-channels", A, _with_file(_channels(6, 48_000)), Handled(_trained_on(13)), recipe=A),
    Case("speech-ogg-vorbis", A, _with_file(_channels(1, 22_050, ".ogg")), Handled(_trained_on(13)), recipe=A),
    Case("speech-mp3", A, _with_file(_channels(2, 44_100, ".mp3")), Handled(_trained_on(13)), recipe=A),
    Case("speech-pcm-u8", A, _with_file(_subtype("PCM_U8")), Handled(_trained_on(13)), recipe=A),
    Case("speech-pcm-24", A, _with_file(_subtype("PCM_24")), Handled(_trained_on(13)), recipe=A),
    Case("speech-float-beyond-one", A, _with_file(_subtype("FLOAT", 3.0)), Handled(_trained_on(13)), recipe=A),
    Case("speech-silent-clip", A, _with_file(_silent), Handled(_trained_on(13)), recipe=A),
    Case("speech-truncated-data", A, _with_file(_truncated), Handled(_trained_on(13)), recipe=A),
    Case(
        "speech-ten-minute-clip",
        A,
        _with_file(_long, "--max_length_seconds", "2"),
        Handled(_trained_on(13)),
        recipe=A,
        timeout=120,
    ),
    # clips that cannot be trained on: named by path with the reason, or dropped when asked
    Case("speech-header-1hz", A, _with_file(_at_1_hz), _odd(r".*1 Hz.*header"), recipe=A, timeout=60),
    Case(
        "speech-header-1hz-dropped",
        A,
        _with_file(_at_1_hz, "--drop_invalid_examples", "true"),
        Handled(_dropped(1)),
        recipe=A,
        timeout=60,
    ),
    Case("speech-truncated-header", A, _with_file(_header_only), _odd("unreadable"), recipe=A),
    Case("speech-text-named-wav", A, _with_file(_text_named_wav), _odd("unreadable.*not recogni[sz]ed"), recipe=A),
    Case("speech-empty-clip", A, _with_file(_empty), _odd("empty"), recipe=A),
    Case("speech-nan-samples", A, _with_file(_nan), _odd("NaN"), recipe=A),
    Case("speech-inf-samples", A, _with_file(_inf), _odd("NaN or infinite"), recipe=A),
    Case("speech-too-short", A, _with_file(_samples_only(320)), _odd(r"0\.020 s.*--min_length_seconds"), recipe=A),
    Case(
        "speech-below-receptive-field",
        A,
        _with_file(_samples_only(10), "--min_length_seconds", "0"),
        Error(r"--min_length_seconds.*25 samples"),
        recipe=A,
    ),
    Case(
        "speech-tiny-clip-whisper",
        A,
        _with_file(_samples_only(10), "--min_length_seconds", "0", model=WHISPER),
        Handled(_trained_on(13)),
        recipe=A,
    ),
    # audio paths in CSV / JSON files, audio columns
    Case("speech-csv-relative-paths", A, _table(), Handled(_trained_on(12)), recipe=A),
    Case("speech-json-relative-paths", A, _table("json"), Handled(_trained_on(12)), recipe=A),
    Case(
        "speech-csv-missing-file",
        A,
        _table(cells=_replace(3, "clips/missing.wav")),
        Error(r"missing\.wav \(no such file"),
        recipe=A,
    ),
    Case(
        "speech-csv-missing-file-dropped",
        A,
        _table(cells=_replace(3, "clips/missing.wav"), flags=("--drop_invalid_examples", "true")),
        Handled(_dropped(1)),
        recipe=A,
    ),
    Case("speech-csv-empty-cell", A, _table(cells=_replace(5, "")), Error(r"row.*empty cell"), recipe=A),
    Case("speech-json-null-cell", A, _table("json", cells=_replace(5, None)), Error(r"row.*empty cell"), recipe=A),
    Case(
        "speech-csv-every-file-missing",
        A,
        _table(
            cells=lambda paths: [f"gone/{i}.wav" for i in range(len(paths))], flags=("--drop_invalid_examples", "true")
        ),
        Error(r"every row is invalid"),
        recipe=A,
    ),
    Case(
        "speech-csv-numbers-as-paths",
        A,
        _table(cells=lambda paths: list(range(len(paths)))),
        Error(r"column 'audio'.*(path|audio)"),
        recipe=A,
    ),
    Case(
        "speech-wrong-audio-column",
        A,
        _flags("--audio_column_name", "wav"),
        Error(r"--audio_column_name.*'wav'.*audio"),
        recipe=A,
    ),
    Case("speech-no-audio-column", A, _table(column="clip"), Error(r"no audio column.*--audio_column_name"), recipe=A),
    Case(
        "speech-named-audio-column",
        A,
        _table(column="clip", flags=("--audio_column_name", "clip")),
        Handled(_trained_on(12)),
        recipe=A,
    ),
    # length flags
    Case("speech-max-length-zero", A, _flags("--max_length_seconds", "0"), Error(r"--max_length_seconds"), recipe=A),
    Case(
        "speech-max-length-negative", A, _flags("--max_length_seconds", "-3"), Error(r"--max_length_seconds"), recipe=A
    ),
    Case("speech-max-length-nan", A, _flags("--max_length_seconds", "nan"), Error(r"--max_length_seconds"), recipe=A),
    Case("speech-max-length-inf", A, _flags("--max_length_seconds", "inf"), Error(r"--max_length_seconds"), recipe=A),
    Case(
        "speech-min-above-max",
        A,
        _flags("--min_length_seconds", "3", "--max_length_seconds", "2"),
        Error(r"--min_length_seconds"),
        recipe=A,
    ),
    Case(
        "speech-whisper-window-over-30s",
        A,
        _flags("--max_length_seconds", "40", model=WHISPER),
        Handled(log_says(r"reads at most 30 s of a clip")),
        recipe=A,
    ),
    Case(
        "speech-window-under-receptive-field",
        A,
        _flags("--min_length_seconds", "0", "--max_length_seconds", "0.001"),
        Error(r"--\w+_length_seconds.*samples"),
        recipe=A,
    ),
]
