"""What `hftl export` reads: a saved Hugging Face classifier folder (what a recipe's `--output_dir` holds), checked
before its weights load, then loaded with its processor the way `pipeline(...)` would."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from hftl.errors import InputError

# modality -> (Auto model class, its mapping of config classes to model classes, Auto processor class), by name:
# transformers' own lazy imports resolve them; classes registered with the Auto class (hftl's own) are in the mapping
KINDS = {
    "text": ("AutoModelForSequenceClassification", "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING", "AutoTokenizer"),
    "image": ("AutoModelForImageClassification", "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING", "AutoImageProcessor"),
    "audio": ("AutoModelForAudioClassification", "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING", "AutoFeatureExtractor"),
}
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass
class SavedClassifier:
    """A loaded classifier folder.

    Attributes:
        path: the folder.
        modality: "text", "image" or "audio".
        model: the `AutoModelFor...Classification` in eval mode, as `from_pretrained(path)` gives it.
        processor: its tokenizer / image processor / feature extractor, from the same folder.
    """

    path: str
    modality: str
    model: Any
    processor: Any


def _not_a_model(model_dir: str) -> str | None:
    """Why `model_dir` is not a saved model folder (no weights are read); None when it looks like one."""
    if not os.path.isdir(model_dir):
        return "is not a folder" if os.path.exists(model_dir) else "does not exist"
    files = set(os.listdir(model_dir))
    if "config.json" not in files and "adapter_config.json" in files:
        return (
            "holds a LoRA adapter only (--merge_adapter false): export a merged model (rerun with --merge_adapter "
            "true, or merge it with peft's merge_and_unload and save_pretrained)"
        )
    if "config.json" not in files:
        return "has no config.json: it is not a saved Hugging Face model"
    if not files & set(WEIGHT_FILES):
        return f"has a config.json but no weights ({' or '.join(WEIGHT_FILES[::2])})"
    return None


def classifier_modality(model_dir: str) -> str:
    """The modality of the classifier saved in `model_dir`, read from its config.json alone.

    Returns:
        "text", "image" or "audio": the one whose Auto classification class maps the folder's config class to one of
        its `architectures` (so a backbone saved without its head, e.g. `BertModel`, is refused).

    Raises:
        InputError: not a folder, no config.json or weights, an adapter alone, an unknown model type, or not a
            sequence / image / audio classifier.
    """
    import transformers

    problem = _not_a_model(model_dir)
    if problem:
        raise InputError(f"{model_dir} {problem}. Give the --output_dir of a recipe run (a saved classifier).")
    try:
        config = transformers.AutoConfig.from_pretrained(model_dir)
    except (ValueError, OSError, KeyError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{model_dir}: its config.json cannot be read by transformers or hftl: {reason}") from None
    architectures = set(config.architectures or ())
    for modality, (_, mapping_name, _) in KINDS.items():
        mapping = getattr(transformers, mapping_name)
        if type(config) in mapping and mapping[type(config)].__name__ in architectures:
            return modality
    saved = ", ".join(sorted(architectures)) or "no architectures"
    raise InputError(
        f"{model_dir} holds a {config.model_type} model ({saved}), not a text, image or audio classifier that "
        f"hftl exports (AutoModelForSequenceClassification, AutoModelForImageClassification, "
        f"AutoModelForAudioClassification). Export the --output_dir of a recipe run."
    )


def load_classifier(model_dir: str) -> SavedClassifier:
    """Load a saved classifier and its processor (see `classifier_modality` for the checks made first).

    Raises:
        InputError: see `classifier_modality`; or no processor (tokenizer / image processor / feature extractor)
            saved beside the model.
    """
    import transformers

    modality = classifier_modality(model_dir)
    auto_model, _, auto_processor = (getattr(transformers, name) for name in KINDS[modality])
    try:
        processor = auto_processor.from_pretrained(model_dir)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(
            f"{model_dir}: no {auto_processor.__name__[4:]} saved beside the model ({type(error).__name__}); the "
            f"export needs it to build inputs. Save it there with processor.save_pretrained({model_dir!r})."
        ) from None
    model = auto_model.from_pretrained(model_dir).eval()
    return SavedClassifier(path=model_dir, modality=modality, model=model, processor=processor)
