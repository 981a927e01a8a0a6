"""What a checkpoint was trained on: the class names and the training examples, recorded in the checkpoint's manifest
when it is committed and compared when a run resumes it.

Without this record, a rerun into the same `--output_dir` with other data resumes the old checkpoint: with other
examples of the same classes it skips the batches it believes done, trains on the rest and saves the model with the
new class names (the old weights relabelled); with another number of classes it fails in `load_state_dict`. The
record holds:

- `labels`: the class names in id order (the model config's `id2label`);
- `train_examples`: the number of training examples;
- `train_sha256`: a digest of their content as the Trainer reads it (every column of the `datasets.Dataset`, e.g.
  `input_ids` and `labels`; an image or audio file that the dataset references by path counts by its bytes, so the
  same files in another folder are the same data).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

_BATCH = 1000  # rows hashed at a time


def _file_cell(value: Any) -> Any:
    """An undecoded `Image` / `Audio` cell ({"bytes", "path"}) as its content: the bytes, or the sha256 of the file."""
    if not isinstance(value, dict) or set(value) != {"bytes", "path"} or value["bytes"] is not None:
        return value
    path = value["path"]
    if not path or not os.path.isfile(path):
        return value
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _hf_dataset_sha256(dataset) -> str:
    """sha256 of a `datasets.Dataset`'s rows in order (its Arrow data, through its indices; no transform applied)."""
    arrow = dataset.with_format("arrow")
    names = sorted(arrow.column_names)
    digest = hashlib.sha256(repr(names).encode())
    for start in range(0, len(arrow), _BATCH):
        table = arrow[start : start + _BATCH]
        for name in names:
            column = table.column(name)
            cells = column.to_pylist()
            if column.type.num_fields == 2 and {f.name for f in column.type} == {"bytes", "path"}:
                cells = [_file_cell(cell) for cell in cells]
            digest.update(repr(cells).encode())
    return digest.hexdigest()


def dataset_sha256(dataset) -> str | None:
    """A content digest of a training dataset: a `datasets.Dataset`, or a dataset that pairs several (as
    `PairedDomainDataset` pairs source and target, or a list of them as `TaskMixture` holds), digested in attribute
    order; None for anything else."""
    from datasets import Dataset

    if isinstance(dataset, Dataset):
        return _hf_dataset_sha256(dataset)
    values = getattr(dataset, "__dict__", {}).values()
    parts = [v for value in values for v in (value if isinstance(value, list | tuple) else [value])]  # TaskMixture's
    parts = [value for value in parts if isinstance(value, Dataset)]
    if not parts:
        return None
    return hashlib.sha256("".join(_hf_dataset_sha256(part) for part in parts).encode()).hexdigest()


def _label_names(model) -> list[str] | None:
    """The class names of the first (sub)module whose config has `id2label`, in id order; None if none has."""
    for module in model.modules():
        id2label = getattr(getattr(module, "config", None), "id2label", None)
        if isinstance(id2label, dict) and id2label:
            return [str(id2label[i]) for i in sorted(id2label, key=int)]
    return None


def data_record(dataset, model) -> dict[str, Any]:
    """The record of the data `model` trains on from `dataset` (see the module docstring); unknown parts are None."""
    return {
        "labels": _label_names(model),
        "train_examples": len(dataset) if dataset is not None and hasattr(dataset, "__len__") else None,
        "train_sha256": dataset_sha256(dataset),
    }


def record_differences(then: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's data record (`then`) and this run's (`now`), said for a user; parts that
    either side does not know are not compared."""
    differences = []
    for key, what in (("labels", "classes"), ("train_examples", "training examples")):
        if then.get(key) is not None and now.get(key) is not None and then[key] != now[key]:
            differences.append(f"{what}: {then[key]} then, {now[key]} now")
    old, new = then.get("train_sha256"), now.get("train_sha256")
    if not differences and old is not None and new is not None and old != new:
        differences.append(f"the training examples' content (sha256 {old[:12]}... then, {new[:12]}... now)")
    return differences
