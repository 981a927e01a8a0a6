#!/usr/bin/env python
"""Fine-tune a pretrained image model for classification, with a choice of adaptation strategy.

    accelerate launch recipes/image_classification.py            # packaged EfficientNet-Lite0 on built-in MNIST
    accelerate launch recipes/image_classification.py \\
        --model_name_or_path google/vit-base-patch16-224-in21k --train_dir photos/train --validation_dir photos/val \\
        --strategy lora --output_dir out

Flags are those of transformers' `run_image_classification.py` and `TrainingArguments`, plus hftl's strategy
flags; `--help` lists them, `--config file.yaml` reads them from a file.
"""

import sys

from hftl.modalities import ImageModality
from hftl.recipes import main

# What a run with no flags does: measured on a 2-core CPU (README, "Main jobs").
DEFAULTS = dict(
    output_dir="outputs/image_classification",
    ignore_mismatched_sizes=True,  # checkpoints come with a head for other classes (ImageNet)
    do_train=True,
    do_eval=True,
    do_predict=True,
    num_train_epochs=2,
    learning_rate=1e-3,
    warmup_steps=0.06,
    per_device_train_batch_size=32,
    per_device_eval_batch_size=64,
    eval_strategy="epoch",
    save_strategy="epoch",
    save_total_limit=2,
    logging_steps=20,
)

if __name__ == "__main__":
    sys.exit(main(ImageModality(), DEFAULTS))
