"""The parity check: the same inputs through PyTorch and through onnxruntime, compared logit by logit."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def session(path: str, threads: int | None = None):
    """An onnxruntime CPU `InferenceSession` of the graph at `path` (`threads`: intra-op threads, None: all cores)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def onnx_feed(graph, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The session's inputs from a batch of torch tensors, in the dtypes the graph declares (int64 ids, float32)."""
    types = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32, "tensor(bool)": bool}
    return {item.name: batch[item.name].numpy().astype(types.get(item.type)) for item in graph.get_inputs()}


def torch_logits(model, batch: dict[str, torch.Tensor]) -> np.ndarray:
    """(B, num_labels) float32 logits of the PyTorch model."""
    with torch.no_grad():
        return model(**batch).logits.float().numpy()


def onnx_logits(graph, batch: dict[str, torch.Tensor]) -> np.ndarray:
    """(B, num_labels) float32 logits of an onnxruntime session."""
    return graph.run(["logits"], onnx_feed(graph, batch))[0]


def compare(reference: list[np.ndarray], candidate: list[np.ndarray]) -> dict[str, Any]:
    """How far `candidate` logits are from `reference` ones, batch by batch.

    Args:
        reference, candidate: lists of (B_i, num_labels) logits, the same shapes.

    Returns:
        {"examples": sum of B_i, "max_abs_diff": max |candidate - reference| over every logit,
        "argmax_agreement": fraction of examples whose top class is the same}.

    Example:
        >>> compare([np.array([[0.0, 1.0], [2.0, 0.0]])], [np.array([[0.0, 1.5], [0.0, 0.1]])])
        {'examples': 2, 'max_abs_diff': 2.0, 'argmax_agreement': 0.5}
    """
    ours, theirs = np.concatenate(reference), np.concatenate(candidate)
    if ours.shape != theirs.shape:
        raise ValueError(f"logits of shape {theirs.shape} against {ours.shape}")
    return {
        "examples": int(ours.shape[0]),
        "max_abs_diff": float(np.abs(ours - theirs).max()),
        "argmax_agreement": float((ours.argmax(-1) == theirs.argmax(-1)).mean()),
    }
