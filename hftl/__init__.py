"""hftl: transfer learning on the Hugging Face stack.

Adapt a pretrained text, image or speech model to your own small, shifted data with one command
(see `recipes/`). The library parts, in the order a run uses them:

- `hftl.arguments`: flags and `--config` files (dataclasses + `TrainingArguments`);
- `hftl.data`: built-in datasets, loading, checks and label encoding;
- `hftl.modalities`: raw examples -> model inputs, per modality;
- `hftl.strategies`: full, feature_extraction, freeze, two_stage, lora;
- `hftl.features`: cached backbone features for head-only training;
- `hftl.metrics`, `hftl.modelcard`: results and the model card;
- `hftl.training`: the shared run that ties them together.
"""

from hftl.errors import InputError

__version__ = "0.1.0"
__all__ = ["InputError", "__version__"]
