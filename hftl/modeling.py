"""Step 4 of a run: the pretrained classifier with a head for the run's classes, and its processor."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from safetensors import SafetensorError
from torch import nn
from transformers import AutoConfig

from hftl.config import RunConfig
from hftl.data.checks import LabelInfo
from hftl.errors import InputError
from hftl.multi_label.thresholds import unfold_saved_thresholds
from hftl.sentence_pooling import apply_sentence_pooling
from hftl.strategies import keep_bottom_layers
from hftl.temperature_scaling import forget_saved_temperature

logger = logging.getLogger("hftl")


@dataclass(frozen=True)
class LoadedModel:
    """The model to adapt.

    Attributes:
        model: the classifier (`AutoModelFor...Classification`), with `id2label` / `label2id` set.
        processor: its tokenizer, image processor or feature extractor, configured by the modality's flags.
        path: the folder or Hub id it was loaded from.
        new_parameters: names of the parameters the checkpoint did not provide or that were re-initialised.
    """

    model: nn.Module
    processor: object
    path: str
    new_parameters: list[str]


@contextlib.contextmanager
def _user_files(flag: str, path: str, what: str):
    """Errors the user's model files cause while `what` loads, as an `InputError` naming `flag` and `path`.

    `hftl.model_source` checks the files before anything loads; this catches what a static check cannot see (a
    pickle that builds its objects dynamically, a Hub model's files).
    """
    try:
        yield
    except InputError:
        raise
    except Exception as error:
        text = " ".join(str(error).split())
        if type(error).__name__ == "UnpicklingError" or "weights_only" in text:
            raise InputError(
                f"{flag} {path}: the {what}'s pickled weights were refused: unpickling them would run code. Use the "
                f"model's model.safetensors, or convert the weights to safetensors yourself if you trust their source."
            ) from None
        if "trust_remote_code" in text:
            raise InputError(
                f"{flag} {path}: the {what} needs custom code, which is not run unless you pass --trust_remote_code "
                f"true. Pass it only if you trust the source (read the code first)."
            ) from None
        if isinstance(error, SafetensorError):
            raise InputError(
                f"{flag} {path}: the {what}'s safetensors weights are damaged ({text[:200]}). Download or save the "
                f"model again."
            ) from None
        if isinstance(error, OSError) or "Unrecognized" in text:
            raise InputError(f"{flag} {path}: the {what} did not load: {text[:500]}") from None
        raise


def _from_pretrained(auto_class, config: RunConfig, path: str, labels: LabelInfo):
    """(model, names of new parameters). Raises: InputError when checkpoint weights do not fit the classes."""
    model_args = config.model
    common = dict(
        cache_dir=model_args.cache_dir,
        revision=model_args.model_revision,
        token=model_args.token,
        trust_remote_code=model_args.trust_remote_code,
    )
    flag = "--config_name" if model_args.config_name else "--model_name_or_path"
    with _user_files(flag, model_args.config_name or path, "model config"):
        model_config = AutoConfig.from_pretrained(
            model_args.config_name or path,
            num_labels=len(labels.names),
            id2label=labels.id2label,
            label2id=labels.label2id,
            problem_type=config.problem.problem_type,
            **common,
        )
    try:
        with _user_files("--model_name_or_path", path, "model"):
            model, info = auto_class.from_pretrained(
                path,
                config=model_config,
                ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
                output_loading_info=True,
                **common,
            )
    except RuntimeError as error:
        if "mismatch" in str(error).lower():
            raise InputError(
                f"{path}: checkpoint weights do not fit {len(labels.names)} classes ({error}). "
                f"Pass --ignore_mismatched_sizes to re-initialise them."
            ) from None
        raise
    mismatched = [key[0] if isinstance(key, tuple) else key for key in info.get("mismatched_keys", [])]
    new = sorted(set(info.get("missing_keys", [])) | set(mismatched))
    if new:
        logger.warning("Newly initialised (trained from scratch): %s", new)
    return model, new


def load_model(modality, config: RunConfig, labels: LabelInfo) -> LoadedModel:
    """Load the processor and the classifier (`--model_name_or_path`, else the modality's packaged model), keep the
    encoder layers up to `--feature_layer`, and let the modality adjust both to its inputs."""
    path = config.model.model_name_or_path or modality.default_model()
    flag = "--tokenizer_name" if config.model.tokenizer_name else "--model_name_or_path"
    with _user_files(flag, config.model.tokenizer_name or path, "tokenizer / processor"):
        processor = modality.load_processor(config.model, path)
    processor = modality.configure_processor(processor, config.inputs)
    model, new = _from_pretrained(modality.auto_model_class, config, path, labels)
    unfold_saved_thresholds(model, labels.names, new)  # a multi-label model hftl saved: its probabilities back
    forget_saved_temperature(model)  # a calibrated model hftl saved: its T is part of its weights now
    if config.strategy.feature_layer is not None:
        keep_bottom_layers(model, config.strategy.feature_layer)
    model, new = apply_sentence_pooling(modality, config, path, model, new)  # text: --sentence_pooling
    model = modality.prepare_model(model, config.inputs, processor)
    return LoadedModel(model, processor, path, new)
