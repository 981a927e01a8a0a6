#!/usr/bin/env python
"""Fine-tune a pretrained speech model for audio classification, with a choice of adaptation strategy.

    accelerate launch recipes/speech_classification.py            # packaged Whisper-base, built-in language ID
    accelerate launch recipes/speech_classification.py \\
        --model_name_or_path facebook/wav2vec2-base --train_dir calls/train --validation_dir calls/val \\
        --max_length_seconds 10 --strategy freeze --output_dir out

Flags are those of transformers' `run_audio_classification.py` and `TrainingArguments`, plus hftl's strategy
flags; `--help` lists them, `--config file.yaml` reads them from a file.
"""

import sys

from hftl.modalities import AudioModality
from hftl.recipes import main

# What a run with no flags does: measured on a 2-core CPU (README, "Main jobs"). Feature extraction: fine-tuning
# Whisper-base's encoder runs at about 3 clips/s on 2 CPU cores; its cached features train the head in seconds.
DEFAULTS = dict(
    output_dir="outputs/speech_classification",
    strategy="feature_extraction",
    max_length_seconds=8.0,
    do_train=True,
    do_eval=True,
    do_predict=True,
    num_train_epochs=30,
    warmup_steps=0.1,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=32,
    eval_strategy="epoch",
    save_strategy="epoch",
    save_total_limit=2,
    logging_steps=20,
)

if __name__ == "__main__":
    sys.exit(main(AudioModality(), DEFAULTS))
