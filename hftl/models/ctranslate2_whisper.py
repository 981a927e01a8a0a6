"""Read a CTranslate2 Whisper model (faster-whisper's `model.bin`) into transformers' Whisper weights.

CTranslate2's binary format (version 6, `ctranslate2/specs/model_spec.py`): a uint32 version, the spec name and
revision, then for each variable its name, rank, dims (uint32), dtype id, byte count and raw bytes, then aliases.
Attention projections are fused there (self-attention: q, k, v in one `linear_0`; cross-attention: k, v in one
`linear_1`) and Whisper's key projections carry a zero bias that transformers does not have.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable

import numpy as np
import torch

# CTranslate2 DataType ids -> numpy dtypes (scalars such as `num_heads` use the integer types)
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ctranslate2(chunks: Iterable[str]) -> dict[str, np.ndarray]:
    """Variables of a CTranslate2 `model.bin`, given as the paths of its consecutive parts.

    Raises:
        ValueError: the file is not a CTranslate2 model of binary version 6, or holds an unknown dtype.
    """
    data = b"".join(open(path, "rb").read() for path in chunks)
    offset = 0

    def take(fmt: str):
        nonlocal offset
        values = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return values

    def string() -> str:
        nonlocal offset
        (length,) = take("H")
        text = data[offset : offset + length - 1].decode("utf-8")
        offset += length
        return text

    (version,) = take("I")
    if version != 6:
        raise ValueError(f"CTranslate2 binary version {version}, expected 6")
    string(), take("I")  # spec name, revision
    (count,) = take("I")
    variables = {}
    for _ in range(count):
        name = string()
        (rank,) = take("B")
        shape = take(f"{rank}I") if rank else ()
        (dtype,) = take("B")
        (size,) = take("I")
        if dtype not in _DTYPES:
            raise ValueError(f"{name}: unknown CTranslate2 dtype id {dtype}")
        variables[name] = np.frombuffer(
            data, dtype=_DTYPES[dtype], count=size // np.dtype(_DTYPES[dtype]).itemsize, offset=offset
        ).reshape(shape)
        offset += size
    return variables


# CTranslate2 block of a layer -> transformers module (per layer); fused projections are split in `_layer_entries`
_LAYER_BLOCKS = {
    "self_attention/layer_norm": "self_attn_layer_norm",
    "attention/layer_norm": "encoder_attn_layer_norm",
    "ffn/layer_norm": "final_layer_norm",
    "ffn/linear_0": "fc1",
    "ffn/linear_1": "fc2",
    "self_attention/linear_1": "self_attn.out_proj",
    "attention/linear_0": "encoder_attn.q_proj",
    "attention/linear_2": "encoder_attn.out_proj",
}
# fused CTranslate2 projections -> the transformers projections they hold, in order
_FUSED = {
    "self_attention/linear_0": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "attention/linear_1": ("encoder_attn.k_proj", "encoder_attn.v_proj"),
}
_NORMS = {"gamma": "weight", "beta": "bias"}


def _top_level_name(base: str, name: str, rest: str) -> str:
    """transformers name of a variable outside the layers (`rest`: its name after `encoder/` or `decoder/`)."""
    if rest.startswith(("conv1/", "conv2/")):
        return f"{base}.{rest.replace('/', '.')}"
    fixed = {
        "position_encodings/encodings": f"{base}.embed_positions.weight",
        "embeddings/weight": f"{base}.embed_tokens.weight",
        "projection/weight": "proj_out.weight",
    }
    if rest in fixed:
        return fixed[rest]
    if rest.startswith("layer_norm/"):
        return f"{base}.layer_norm.{_NORMS[rest.split('/')[1]]}"
    raise ValueError(f"unmapped CTranslate2 variable {name}")


def _layer_entries(prefix: str, name: str, block: str, kind: str, array: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(transformers name, array) pairs of one layer variable; fused projections are split (k has no bias)."""
    if block in _LAYER_BLOCKS:
        return [(f"{prefix}.{_LAYER_BLOCKS[block]}.{kind}", array)]
    if block in _FUSED:
        parts = _FUSED[block]
        pieces = zip(parts, np.split(array, len(parts), axis=0), strict=True)
        return [
            (f"{prefix}.{part}.{kind}", piece)
            for part, piece in pieces
            if not (part.endswith("k_proj") and kind == "bias")
        ]
    raise ValueError(f"unmapped CTranslate2 variable {name}")


def whisper_state_dict(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map CTranslate2 Whisper variables onto `WhisperForConditionalGeneration` parameter names (float32).

    Raises:
        ValueError: a variable that has no transformers counterpart.
    """
    entries: list[tuple[str, np.ndarray]] = []
    for name, array in variables.items():
        if array.ndim == 0:
            continue  # scalars: activation, number of heads ...
        base = "model.encoder" if name.startswith("encoder/") else "model.decoder"
        layer = re.match(r"(encoder|decoder)/layer_(\d+)/(.*)", name)
        if layer is None:
            entries.append((_top_level_name(base, name, name.split("/", 1)[1]), array))
            continue
        block, _, leaf = layer.group(3).rpartition("/")
        kind = leaf if leaf in ("weight", "bias") else _NORMS[leaf]
        entries += _layer_entries(f"{base}.layers.{layer.group(2)}", name, block, kind, array)
    state = {key: torch.from_numpy(np.array(value, dtype=np.float32)) for key, value in entries}
    if "proj_out.weight" not in state:  # tied to the token embeddings (a CTranslate2 alias)
        state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    return state
