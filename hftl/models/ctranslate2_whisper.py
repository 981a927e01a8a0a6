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


def whisper_state_dict(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map CTranslate2 Whisper variables onto `WhisperForConditionalGeneration` parameter names (float32)."""
    state: dict[str, torch.Tensor] = {}

    def put(name: str, array: np.ndarray) -> None:
        state[name] = torch.from_numpy(np.array(array, dtype=np.float32))

    norms = {"gamma": "weight", "beta": "bias"}
    for name, array in variables.items():
        if array.ndim == 0:
            continue  # scalars: activation, number of heads ...
        side = "encoder" if name.startswith("encoder/") else "decoder"
        base = f"model.{side}"
        layer = re.match(r"(encoder|decoder)/layer_(\d+)/(.*)", name)
        if layer is None:
            rest = name.split("/", 1)[1]
            if rest.startswith(("conv1/", "conv2/")):
                put(f"{base}.{rest.replace('/', '.')}", array)
            elif rest == "position_encodings/encodings":
                put(f"{base}.embed_positions.weight", array)
            elif rest == "embeddings/weight":
                put(f"{base}.embed_tokens.weight", array)
            elif rest.startswith("layer_norm/"):
                put(f"{base}.layer_norm.{norms[rest.split('/')[1]]}", array)
            elif rest == "projection/weight":
                put("proj_out.weight", array)
            else:
                raise ValueError(f"unmapped CTranslate2 variable {name}")
            continue
        prefix = f"{base}.layers.{layer.group(2)}"
        block, _, leaf = layer.group(3).rpartition("/")
        kind = leaf if leaf in ("weight", "bias") else norms[leaf]
        if block == "self_attention/layer_norm":
            put(f"{prefix}.self_attn_layer_norm.{kind}", array)
        elif block == "attention/layer_norm":
            put(f"{prefix}.encoder_attn_layer_norm.{kind}", array)
        elif block == "ffn/layer_norm":
            put(f"{prefix}.final_layer_norm.{kind}", array)
        elif block == "ffn/linear_0":
            put(f"{prefix}.fc1.{kind}", array)
        elif block == "ffn/linear_1":
            put(f"{prefix}.fc2.{kind}", array)
        elif block == "self_attention/linear_0":  # fused q, k, v
            for part, piece in zip(("q_proj", "k_proj", "v_proj"), np.split(array, 3, axis=0), strict=True):
                if not (part == "k_proj" and kind == "bias"):
                    put(f"{prefix}.self_attn.{part}.{kind}", piece)
        elif block == "self_attention/linear_1":
            put(f"{prefix}.self_attn.out_proj.{kind}", array)
        elif block == "attention/linear_0":
            put(f"{prefix}.encoder_attn.q_proj.{kind}", array)
        elif block == "attention/linear_1":  # fused k, v
            for part, piece in zip(("k_proj", "v_proj"), np.split(array, 2, axis=0), strict=True):
                if not (part == "k_proj" and kind == "bias"):
                    put(f"{prefix}.encoder_attn.{part}.{kind}", piece)
        elif block == "attention/linear_2":
            put(f"{prefix}.encoder_attn.out_proj.{kind}", array)
        else:
            raise ValueError(f"unmapped CTranslate2 variable {name}")
    if "proj_out.weight" not in state:  # tied to the token embeddings (a CTranslate2 alias)
        state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    return state
