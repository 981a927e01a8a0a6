#!/usr/bin/env python
"""Fine-tune a pretrained text model for classification, with a choice of adaptation strategy.

    accelerate launch recipes/text_classification.py            # packaged MiniLM on the built-in reviews
    accelerate launch recipes/text_classification.py \\
        --model_name_or_path bert-base-uncased --train_file train.csv --validation_file dev.csv \\
        --text_column_name review --label_column_name sentiment --strategy lora --output_dir out

Flags are those of transformers' `run_glue.py` and `TrainingArguments`, plus hftl's strategy flags;
`--help` lists them, `--config file.yaml` reads them from a file.
"""

import sys

from hftl.modalities import TextModality
from hftl.recipes import main

# What a run with no flags does: measured on a 2-core CPU (README, "Main job").
DEFAULTS = dict(
    output_dir="outputs/text_classification",
    do_train=True,
    do_eval=True,
    do_predict=True,
    num_train_epochs=2,
    learning_rate=1e-4,
    warmup_steps=0.06,
    per_device_train_batch_size=32,
    per_device_eval_batch_size=128,
    train_sampling_strategy="group_by_length",
    eval_strategy="epoch",
    save_strategy="epoch",
    save_total_limit=2,
    logging_steps=50,
)

if __name__ == "__main__":
    sys.exit(main(TextModality(), DEFAULTS))
