"""What `--adaptation auto` keeps of each finished candidate, so that a stopped run loses no finished work.

In `output_dir/candidates/<name>/`, each file written atomically (a temporary file renamed into place), the record
last, so that a record means a finished candidate:

- `weights.safetensors`: the candidate's trained parameters (those that trained) and the model's buffers;
- `outputs.npz`: its `CandidateOutputs` (what the label-free scorers read);
- `candidate.json`: the candidate, the fingerprint of its flags, training time and metrics, its training log and,
  when the target test split is labelled, its true target accuracy (never used for the choice).

A rerun with the same flags reuses a record whose fingerprint matches; a record of other flags is retrained.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hftl.adaptation.scorers import CandidateOutputs
from hftl.config import RunConfig

logger = logging.getLogger("hftl")

RECORD_FILE, OUTPUTS_FILE, WEIGHTS_FILE = "candidate.json", "outputs.npz", "weights.safetensors"
# flags that do not change what a candidate learns (the others must match for a record to be reused)
VOLATILE_FLAGS = {
    "overwrite_output_dir", "output_dir", "logging_dir", "do_predict", "push_to_hub", "hub_model_id",
    "hub_private_repo", "hub_strategy", "report_to", "run_name", "project", "logging_steps", "logging_strategy",
    "logging_first_step", "disable_tqdm", "log_level", "log_level_replica", "dataloader_num_workers",
    "export_onnx", "export_quantize", "temperature_scaling", "domain_gap_report", "feature_cache_dir",
    "auto_methods", "auto_trade_offs", "auto_importance_weighting",
}  # fmt: skip


def fingerprint(config: RunConfig) -> str:
    """SHA-256 (first 16 hex digits) of the candidate's flags, volatile ones left out."""
    values = {k: v for k, v in config.as_dict().items() if k not in VOLATILE_FLAGS}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def _replace_into(path: str, write) -> None:
    """`write(temporary_path)`, then rename the temporary file to `path` (atomic on one file system)."""
    root, extension = os.path.splitext(path)
    temporary = f"{root}.{os.getpid()}.partial{extension}"
    write(temporary)
    os.replace(temporary, path)


def trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters of `model` that train (`requires_grad`) and its saved buffers, copied to the CPU."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    names |= {n for n, _ in model.named_buffers()}
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items() if k in names}


def load_trained_state(model: torch.nn.Module, folder: str) -> None:
    """Load a candidate's `weights.safetensors` into `model` (the strategy applied to the pretrained model).

    Raises:
        RuntimeError: the file names a tensor the model lacks (it was trained with another strategy or model).
    """
    result = model.load_state_dict(load_file(os.path.join(folder, WEIGHTS_FILE)), strict=False)
    if result.unexpected_keys:
        raise RuntimeError(f"{folder}: weights the model lacks: {result.unexpected_keys[:5]}")


def write_record(folder: str, record: dict, outputs: CandidateOutputs, state: dict[str, torch.Tensor]) -> None:
    """Write a finished candidate: weights, outputs, then the record (see the module docstring)."""
    os.makedirs(folder, exist_ok=True)
    _replace_into(os.path.join(folder, WEIGHTS_FILE), lambda path: save_file(state, path))
    arrays = {k: v for k, v in vars(outputs).items() if isinstance(v, np.ndarray)}

    def save_arrays(path: str) -> None:
        with open(path, "wb") as handle:
            np.savez(handle, seed=outputs.seed, **arrays)

    _replace_into(os.path.join(folder, OUTPUTS_FILE), save_arrays)

    def save_json(path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2)

    _replace_into(os.path.join(folder, RECORD_FILE), save_json)


def read_record(folder: str, key: str) -> tuple[dict, CandidateOutputs] | None:
    """A finished candidate's (record, outputs) when its fingerprint is `key`, else None (not finished, or trained
    with other flags: then it is retrained)."""
    paths = [os.path.join(folder, name) for name in (RECORD_FILE, OUTPUTS_FILE, WEIGHTS_FILE)]
    if not all(os.path.isfile(path) for path in paths):
        return None
    with open(paths[0], encoding="utf-8") as handle:
        record = json.load(handle)
    if record.get("fingerprint") != key:
        logger.warning("%s was trained with other flags: training it again.", folder)
        return None
    with np.load(paths[1]) as arrays:
        values = {k: arrays[k] for k in arrays.files}
    seed = int(values.pop("seed"))
    return record, CandidateOutputs(**values, seed=seed)
