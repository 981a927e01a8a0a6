"""`--sentence_pooling`: which vector of a text model the classifier reads.

`AutoModelForSequenceClassification` puts a BERT-like model's pooler (first token -> dense -> tanh) under the
classifier. sentence-transformers models (all-MiniLM-L6-v2, hftl's packaged text model, among them) were trained
to give a pooled sentence embedding instead, and never through that layer: frozen, their pooler output is a poor
feature (the SpamAssassin easy -> hard pair: 0.626 target accuracy from the pooler, about 0.87 from the mean). With
pooling, the model becomes a `SentencePoolingForSequenceClassification` (`hftl.models.sentence_pooling`): the
backbone, its token states pooled, a linear classifier. Its features (the classifier's input, see `hftl.features`)
are then the pooled sentence embedding.

Modes: `mean` / `cls` / `max` pool the last token states (over non-padding tokens); `pooler` keeps the architecture's
own head; `auto` (default) uses the pooling a sentence-transformers folder declares (`modules.json`,
`1_Pooling/config.json`) when the backbone is frozen (`--strategy feature_extraction`), and the architecture's own
head otherwise: when nothing declares a pooling, when the checkpoint already has a trained classifier (a fine-tuned
classifier keeps the head it was trained with), and when the backbone trains (its head then trains with it, and
the saved model stays a plain transformers class that `pipeline(...)` loads without hftl's code).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from hftl.errors import InputError

logger = logging.getLogger("hftl")

SENTENCE_POOLING_CHOICES = ("auto", "mean", "cls", "max", "pooler")
# sentence-transformers' `Pooling` config keys -> hftl's mode
_ST_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}


@dataclass
class SentencePoolingArguments:
    """How a text model's token states become the vector its classifier reads."""

    sentence_pooling: str = field(
        default="auto",
        metadata={
            "help": "Text: the classifier reads 'mean' / 'max' (over non-padding tokens) or 'cls' (first token) of "
            "the last token states, or 'pooler' (the architecture's own head, e.g. BERT's tanh pooler). 'auto': with "
            "--strategy feature_extraction, the pooling of a sentence-transformers folder (1_Pooling/config.json); "
            "else, and for a checkpoint with a trained classifier, 'pooler'. Pooled models save as "
            "hftl_sentence_pooling (README).",
            "choices": SENTENCE_POOLING_CHOICES,
        },
    )

    def __post_init__(self):
        if self.sentence_pooling not in SENTENCE_POOLING_CHOICES:
            raise InputError(
                f"--sentence_pooling {self.sentence_pooling}: choose one of {', '.join(SENTENCE_POOLING_CHOICES)}."
            )


def check_sentence_pooling(args: SentencePoolingArguments, modality) -> None:
    """Raises: InputError for an explicit `--sentence_pooling` on a modality other than text."""
    if args.sentence_pooling != "auto" and modality.name != "text":
        raise InputError(
            f"--sentence_pooling {args.sentence_pooling} applies to text models; drop it for {modality.name} models."
        )


def _read_json(path: str, name: str, model_args) -> object | None:
    """`name` of the model folder or Hub repo `path`, parsed; None when it has no such file."""
    from transformers.utils import cached_file

    try:
        found = cached_file(
            path,
            name,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            token=model_args.token,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except OSError:
        return None
    if found is None:
        return None
    with open(found, encoding="utf-8") as handle:
        return json.load(handle)


def declared_pooling(path: str, model_args) -> tuple[str | None, str]:
    """The pooling a sentence-transformers folder declares: (mode or None, description).

    Reads `modules.json` (the `Pooling` module's folder) and that folder's `config.json` (`pooling_mode_*` keys). A
    `Normalize` module after it (unit length, for cosine similarity) is not applied: the classifier reads the pooled
    vector itself, its length included. The mode is None when the folder is not a
    sentence-transformers one, or declares a pooling hftl does not offer (several modes concatenated, `mean_sqrt_len`,
    `weightedmean`, `lasttoken`): the description then says which.
    """
    modules = _read_json(path, "modules.json", model_args)
    if not isinstance(modules, list):
        return None, "no sentence-transformers modules.json"
    types = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules if isinstance(m, dict)}
    if "Pooling" not in types:
        return None, "no Pooling module in modules.json"
    folder = types["Pooling"].get("path") or "1_Pooling"
    pooling = _read_json(path, f"{folder}/config.json", model_args)
    if not isinstance(pooling, dict):
        return None, f"no {folder}/config.json"
    on = sorted(key for key, value in pooling.items() if key.startswith("pooling_mode") and value is True)
    if len(on) != 1 or on[0] not in _ST_MODES:
        return None, f"{folder}/config.json pools with {on or 'no mode'}, which hftl does not offer"
    return _ST_MODES[on[0]], f"{folder}/config.json ({on[0]})"


def resolve_pooling(
    args: SentencePoolingArguments, path: str, model, new_parameters: list[str], model_args, frozen: bool = True
):
    """The pooling mode the model gets, or None to keep its architecture's head (see the module docstring);
    `frozen`: the backbone is frozen (`--strategy feature_extraction`), the only case `auto` pools in.

    Raises:
        InputError: `pooler` asked of a model hftl saved with pooling (it has no pooler any more).
    """
    from hftl.models import SentencePoolingForSequenceClassification
    from hftl.strategies.parts import backbone_name

    choice = args.sentence_pooling
    if isinstance(model, SentencePoolingForSequenceClassification):
        if choice == "pooler":
            raise InputError(
                f"--sentence_pooling pooler: {path} is a pooled model (hftl_sentence_pooling, "
                f"{model.config.sentence_pooling}), it has no pooler; drop the flag or choose mean, cls or max."
            )
        return None if choice == "auto" else choice
    if choice == "pooler":
        return None
    if choice != "auto":
        return choice
    mode, where = declared_pooling(path, model_args)
    prefix = backbone_name(model) + "."
    if not any(not name.startswith(prefix) for name in new_parameters):  # no new head parameter: a trained head
        logger.info("--sentence_pooling auto: %s has a trained classifier; it keeps its own head.", path)
        return None
    if mode is None:
        logger.info("--sentence_pooling auto: %s: %s; the architecture's own head reads the tokens.", path, where)
        return None
    if not frozen:
        logger.info(
            "--sentence_pooling auto: %s declares %s, but the backbone trains, so the architecture's own head trains "
            "with it (--sentence_pooling %s to pool anyway).",
            path,
            where,
            mode,
        )
        return None
    logger.info("--sentence_pooling auto: %s pools with %s.", path, where)
    return mode


def apply_sentence_pooling(modality, config, path: str, model, new_parameters: list[str]):
    """(model, new parameter names): a text model with the pooling `--sentence_pooling` resolves to (see
    `resolve_pooling`), or `model` unchanged.

    The pooled model shares the loaded backbone's modules and has a new linear classifier (`classifier.weight`,
    `classifier.bias`, listed as new); the architecture's pooler and head are dropped.
    """
    from hftl.models import SentencePoolingForSequenceClassification
    from hftl.strategies.parts import backbone_name

    if modality.name != "text":
        return model, new_parameters
    frozen = config.strategy.strategy == "feature_extraction"
    mode = resolve_pooling(config.pooling, path, model, new_parameters, config.model, frozen)
    if mode is None:
        return model, new_parameters
    if isinstance(model, SentencePoolingForSequenceClassification):
        model.config.sentence_pooling = mode
        return model, new_parameters
    prefix = backbone_name(model)
    pooled = SentencePoolingForSequenceClassification.from_backbone(getattr(model, prefix), mode)
    logger.info(
        "Sentence pooling '%s': the classifier reads the pooled token states (%s).", mode, type(pooled).__name__
    )
    names = {name for name, _ in pooled.named_parameters()}
    renamed = [
        pooled.base_model_prefix + name[len(prefix) :] for name in new_parameters if name.startswith(prefix + ".")
    ]
    return pooled, sorted({name for name in renamed if name in names} | {"classifier.weight", "classifier.bias"})
