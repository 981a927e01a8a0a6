#!/usr/bin/env python
"""Image and speech training throughput on the packaged models, and Whisper's short-clip speed-up.

Prints one table:
- image: EfficientNet-Lite0 at 128 x 128 on built-in MNIST, `full` training and `feature_extraction` extraction;
- speech: Whisper-base (cropped) on built-in real spoken-language clips (max 4 s), `freeze` (top 2 of 6 layers
  trained) and `feature_extraction` extraction;
- Whisper encoder on 2 s clips: the 30 s window transformers uses vs hftl's cropped input (ms per clip, batch 8),
  and the cosine similarity of the clip-pooled encoder states of the two.

    HF_HUB_OFFLINE=1 python benchmarks/image_speech_throughput.py
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers

from hftl.assets import packaged_speech_model
from hftl.data import load_builtin
from hftl.modalities import AudioModality, ImageModality
from hftl.modalities.audio import decode, resample
from hftl.pipeline import run_classification

COMMON = [
    "--do_eval",
    "false",
    "--do_predict",
    "false",
    "--do_train",
    "true",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
    "--disable_tqdm",
    "true",
    "--report_to",
    "none",
    "--logging_steps",
    "10000",
]


def training_speed(modality, flags) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return run_classification(modality, {}, ["--output_dir", tmp, *COMMON, *flags])


def whisper_crop_speedup(clips: int = 16, seconds: float = 2.0, batch: int = 8):
    from transformers import WhisperFeatureExtractor, WhisperForAudioClassification

    from hftl.models import CroppedWhisperForAudioClassification

    folder = packaged_speech_model()
    full = WhisperForAudioClassification.from_pretrained(folder, num_labels=5).eval()
    cropped = CroppedWhisperForAudioClassification.from_pretrained(folder, num_labels=5).eval()
    cropped.load_state_dict(full.state_dict())
    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    audio = load_builtin("spoken_language_id_real")["train"]["audio"][:clips]
    window = int(seconds * 16_000)
    samples = []
    for path in audio:
        clip = resample(*decode({"path": path, "bytes": None}), 16_000)[:window]
        samples.append(np.pad(clip, (0, window - len(clip))))
    timings, cosines = {"full": 0.0, "cropped": 0.0}, []
    with torch.inference_mode():
        for start in range(0, clips, batch):
            inputs = extractor(
                samples[start : start + batch], sampling_rate=16_000, return_tensors="pt", return_attention_mask=True
            )
            began = time.perf_counter()
            states_full = full.encoder(inputs.input_features).last_hidden_state
            timings["full"] += time.perf_counter() - began
            began = time.perf_counter()
            states_cropped, mask = cropped.encode(inputs.input_features, inputs.attention_mask)
            timings["cropped"] += time.perf_counter() - began
            frames = states_cropped.shape[1]
            pooled_full = states_full[:, :frames].mean(1)
            pooled_cropped = states_cropped.mean(1)
            cosines += torch.nn.functional.cosine_similarity(pooled_full, pooled_cropped, dim=-1).tolist()
    return {k: 1000 * v / clips for k, v in timings.items()}, float(np.mean(cosines))


def main() -> None:
    transformers.utils.logging.set_verbosity_error()
    rows = []
    image_flags = ["--max_train_samples", "512", "--ignore_mismatched_sizes", "true"]
    image = training_speed(
        ImageModality(), image_flags + ["--num_train_epochs", "1", "--per_device_train_batch_size", "32"]
    )
    rows.append(("image: EfficientNet-Lite0 128px, full, training", f"{image['train_samples_per_second']:.1f}"))
    image_fe = training_speed(
        ImageModality(), image_flags + ["--strategy", "feature_extraction", "--per_device_eval_batch_size", "64"]
    )
    rows.append(
        (
            "image: EfficientNet-Lite0 128px, feature extraction (one pass)",
            f"{image_fe['feature_extraction_samples_per_second']:.1f}",
        )
    )
    speech = training_speed(
        AudioModality(),
        [
            "--max_train_samples",
            "160",
            "--num_train_epochs",
            "1",
            "--strategy",
            "freeze",
            "--num_frozen_layers",
            "4",
            "--max_length_seconds",
            "4",
            "--per_device_train_batch_size",
            "16",
        ],
    )
    rows.append(
        (
            "speech: Whisper-base cropped, freeze 4 of 6 layers, training (clips <= 4 s)",
            f"{speech['train_samples_per_second']:.1f}",
        )
    )
    speech_fe = training_speed(
        AudioModality(),
        [
            "--max_train_samples",
            "320",
            "--strategy",
            "feature_extraction",
            "--max_length_seconds",
            "4",
            "--per_device_eval_batch_size",
            "16",
        ],
    )
    rows.append(
        (
            "speech: Whisper-base cropped, feature extraction (one pass, clips <= 4 s)",
            f"{speech_fe['feature_extraction_samples_per_second']:.1f}",
        )
    )
    per_clip, cosine = whisper_crop_speedup()

    width = max(len(r[0]) for r in rows)
    print(f"\nImage and speech throughput, torch threads {torch.get_num_threads()}")
    print(f"| {'run'.ljust(width)} | samples/s |")
    print(f"|{'-' * (width + 2)}|-----------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value:>9} |")
    print("\nWhisper-base encoder on 2 s clips (batch 8):")
    print("| input | ms per clip |")
    print("|---|---|")
    print(f"| 30 s window (transformers) | {per_clip['full']:.0f} |")
    print(f"| cropped to the clip (hftl) | {per_clip['cropped']:.0f} |")
    print(f"speed-up {per_clip['full'] / per_clip['cropped']:.1f}x; cosine of clip-pooled encoder states {cosine:.3f}")


if __name__ == "__main__":
    main()
