"""Where the model comes from, checked before any data or model loads: `--model_name_or_path`, `--config_name`,
`--tokenizer_name` and `--cache_dir`.

A local folder must hold a readable `config.json` of a model type transformers knows (or custom code that
`--trust_remote_code true` allows), weights (`model.safetensors` or `pytorch_model.bin`, sharded or not) and
tokenizer / processor files; a pickled checkpoint that would run code when loaded is refused, naming what it would
run. A name that is not a folder here must be a Hub id, and with `HF_HUB_OFFLINE` set it must be in the cache:
otherwise the user mistyped a path, and hears so rather than "not a valid model identifier".
"""

from __future__ import annotations

import json
import os

from hftl.errors import InputError

CONFIG_FILE = "config.json"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
PROCESSOR_FILES = (
    "tokenizer_config.json",
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "preprocessor_config.json",
    "processor_config.json",
)


def _is_repo_id(name: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _in_cache(repo_id: str, model_args) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        repo_id, CONFIG_FILE, cache_dir=model_args.cache_dir, revision=model_args.model_revision
    )
    return isinstance(found, str)


def locate(flag: str, name: str, model_args) -> str | None:
    """The local folder `name` names, or None for a Hub id (left to transformers: cached or downloaded).

    Raises:
        InputError: `name` is a file, or neither a folder nor a Hub id, or (offline) a Hub id not in the cache.
    """
    from huggingface_hub import constants

    if os.path.isdir(name):
        return name
    if os.path.exists(name):
        raise InputError(f"{flag} {name}: a file, not a folder. Give the model's folder or a Hub model id.")
    hint = " (`~` is not expanded here: write the full path)" if os.path.isdir(os.path.expanduser(name)) else ""
    if not _is_repo_id(name):
        raise InputError(f"{flag} {name}: no such folder{hint}, and not a Hub model id either. Check the path.")
    if constants.HF_HUB_OFFLINE and not _in_cache(name, model_args):
        cache = model_args.cache_dir or constants.HF_HUB_CACHE
        raise InputError(
            f"{flag} {name}: no such folder, and not a Hub model in the cache ({cache}) while HF_HUB_OFFLINE is "
            f"set. Check the path, or download the model once with HF_HUB_OFFLINE unset."
        )
    return None


def _read_config(flag: str, folder: str) -> dict:
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(path):
        found = sorted(os.listdir(folder))[:8]
        raise InputError(
            f"{flag} {folder}: no {CONFIG_FILE}, so not a Hugging Face model folder (it holds {found or 'nothing'}). "
            f"Give the folder `save_pretrained` wrote, or a Hub model id."
        )
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except json.JSONDecodeError as error:
        raise InputError(f"{flag} {folder}: {CONFIG_FILE} line {error.lineno}: {error.msg} (not valid JSON).") from None
    if not isinstance(config, dict):
        raise InputError(f"{flag} {folder}: {CONFIG_FILE} must hold a JSON object.")
    return config


def check_model_type(flag: str, where: str, config: dict, trust_remote_code: bool) -> None:
    """A config (as read from `config.json`) transformers can build without running code, or code the user trusts.

    Raises:
        InputError: custom code (`auto_map`) without `--trust_remote_code true`, or an unknown `model_type`.
    """
    import transformers
    from transformers import CONFIG_MAPPING

    import hftl.models  # registers hftl's own model types

    own = {
        hftl.models.EfficientNetLiteConfig.model_type,
        hftl.models.CroppedWhisperConfig.model_type,
        hftl.models.SentencePoolingConfig.model_type,
    }
    if config.get("auto_map") and config.get("model_type") not in own:  # hftl's own types load its registered code
        if trust_remote_code:
            return
        files = sorted({f"{str(v).split('.')[0]}.py" for v in config["auto_map"].values() if isinstance(v, str)})
        raise InputError(
            f"{flag} {where}: the model needs custom code ({', '.join(files) or 'auto_map'}), which is not run "
            f"unless you pass --trust_remote_code true. Pass it only if you trust the source (read the code first)."
        )
    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise InputError(
            f"{flag} {where}: {CONFIG_FILE} has model_type {model_type!r}, which transformers "
            f"{transformers.__version__} does not know. Upgrade transformers if the model is newer, or fix "
            f"{CONFIG_FILE}."
        )


def _check_pickles(flag: str, folder: str, names: list[str]) -> None:
    """Pickled weights (`pytorch_model.bin`) that name objects torch refuses to unpickle with `weights_only=True`.

    The pickle is disassembled, not run (`torch.serialization.get_unsafe_globals_in_checkpoint`).
    """
    from torch.serialization import get_unsafe_globals_in_checkpoint

    for name in names:
        unsafe = get_unsafe_globals_in_checkpoint(os.path.join(folder, name))
        if unsafe:
            raise InputError(
                f"{flag} {folder}: {name} is a pickle that is refused because unpickling it would run code "
                f"({', '.join(unsafe[:3])}). Use the model's model.safetensors, or convert the weights to "
                f"safetensors yourself if you trust their source."
            )


def _check_weights(flag: str, folder: str) -> None:
    present = [name for name in WEIGHT_FILES if os.path.isfile(os.path.join(folder, name))]
    if not present:
        raise InputError(
            f"{flag} {folder}: no weights ({' or '.join(WEIGHT_FILES[::2])}, sharded or not). Give the folder "
            f"`save_pretrained` wrote."
        )
    if any(name.startswith("model.safetensors") for name in present):
        return  # transformers prefers safetensors: the pickle, if any, is never read
    shards = ["pytorch_model.bin"] if "pytorch_model.bin" in present else []
    if "pytorch_model.bin.index.json" in present:
        with open(os.path.join(folder, "pytorch_model.bin.index.json"), encoding="utf-8") as handle:
            shards = sorted(set(json.load(handle).get("weight_map", {}).values()))
    _check_pickles(flag, folder, shards)


def _check_processor(flag: str, folder: str, from_model: bool) -> None:
    if any(os.path.isfile(os.path.join(folder, name)) for name in PROCESSOR_FILES):
        return
    fix = " Pass --tokenizer_name with a folder or Hub id that has them." if from_model else ""
    raise InputError(f"{flag} {folder}: no tokenizer or processor files (one of {', '.join(PROCESSOR_FILES)}).{fix}")


def check_model_sources(model_args) -> None:
    """Check `--model_name_or_path`, `--config_name` and `--tokenizer_name` (`ModelArguments`) before anything loads;
    a Hub id is checked only offline (that it is cached). None of them given: the recipe's packaged model.

    Raises:
        InputError: naming the flag, the path and the fix (see the module docstring).
    """
    model = (
        locate("--model_name_or_path", model_args.model_name_or_path, model_args)
        if model_args.model_name_or_path
        else None
    )
    config = locate("--config_name", model_args.config_name, model_args) if model_args.config_name else model
    if config is not None:
        flag = "--config_name" if model_args.config_name else "--model_name_or_path"
        check_model_type(flag, config, _read_config(flag, config), model_args.trust_remote_code)
    if model is not None:
        _check_weights("--model_name_or_path", model)
    if model_args.tokenizer_name:
        tokenizer = locate("--tokenizer_name", model_args.tokenizer_name, model_args)
        if tokenizer is not None:
            _check_processor("--tokenizer_name", tokenizer, from_model=False)
    elif model is not None:
        _check_processor("--model_name_or_path", model, from_model=True)
