"""Checkpoints that say what they hold: a sha256 of each file and a record of the data trained on, checked when a
run resumes; output folders that cannot be written, and disks that fill up, end in one clear error.

The end-to-end faults (signals, full disks, corrupted checkpoints, reruns with other data) are in
`battery_faults.py`; these are the pieces, tested directly.
"""

import contextlib
import json
import os
import shutil
import subprocess

import pytest
import torch
from datasets import Dataset
from transformers import TrainingArguments

from hftl.errors import InputError
from hftl.output import check_writable
from hftl.trainer import (
    CHECKPOINT_MANIFEST,
    HftlTrainer,
    checkpoint_problem,
    commit_checkpoint,
    last_complete_checkpoint,
)
from hftl.trainer.fingerprint import data_record, dataset_sha256, record_differences
from hftl.writes import output_writes, write_failure

FILES = {"model.safetensors": b"m" * 100, "optimizer.pt": b"o" * 50, "trainer_state.json": b'{"global_step": 1}'}


def _commit(folder, step: int, files=FILES, data=None) -> str:
    staged = folder / f".checkpoint-{step}.partial" / f"checkpoint-{step}"
    staged.mkdir(parents=True)
    for name, content in files.items():
        (staged / name).write_bytes(content)
    commit_checkpoint(str(staged), str(folder / f"checkpoint-{step}"), step, data)
    shutil.rmtree(folder / f".checkpoint-{step}.partial")
    return str(folder / f"checkpoint-{step}")


def test_a_checkpoint_overwritten_with_as_many_other_bytes_is_skipped_for_the_last_good_one(tmp_path, caplog):
    good = _commit(tmp_path, 2)
    changed = _commit(tmp_path, 4)
    manifest = json.load(open(os.path.join(changed, CHECKPOINT_MANIFEST)))
    assert set(manifest["sha256"]) == set(FILES) and manifest["files"]["model.safetensors"] == 100
    assert last_complete_checkpoint(str(tmp_path)) == changed  # verified once (and remembered) ...
    with open(os.path.join(changed, "model.safetensors"), "r+b") as handle:
        handle.write(b"\xff\xff\xff\x7f")  # ... then 4 bytes change: the same size, NaN where they were
    assert "model.safetensors does not match the sha256" in checkpoint_problem(changed)
    with caplog.at_level("WARNING", logger="hftl"):
        assert last_complete_checkpoint(str(tmp_path)) == good
    assert "Not resuming from" in caplog.text and "checkpoint-4" in caplog.text and "model.safetensors" in caplog.text


def test_a_manifest_of_sizes_only_still_counts_and_a_file_is_no_checkpoint(tmp_path):
    old = _commit(tmp_path, 2)
    manifest = json.load(open(os.path.join(old, CHECKPOINT_MANIFEST)))
    del manifest["sha256"], manifest["data"]  # as an earlier hftl wrote it
    json.dump(manifest, open(os.path.join(old, CHECKPOINT_MANIFEST), "w"))
    assert checkpoint_problem(old) is None
    (tmp_path / "a_file").write_text("x")
    assert checkpoint_problem(str(tmp_path / "a_file")) == "a file, not a folder"
    assert checkpoint_problem(str(tmp_path / "nothing")) == "no such folder"


def test_the_data_record_follows_content_not_objects_or_paths(tmp_path):
    rows = {"input_ids": [[1, 2, 3], [4, 5]], "labels": [0, 1]}
    assert dataset_sha256(Dataset.from_dict(rows)) == dataset_sha256(Dataset.from_dict(dict(rows)))
    assert dataset_sha256(Dataset.from_dict(rows)) != dataset_sha256(Dataset.from_dict({**rows, "labels": [1, 0]}))
    shuffled = Dataset.from_dict(rows).select([1, 0])  # through its indices: the order the Trainer reads
    assert dataset_sha256(shuffled) == dataset_sha256(
        Dataset.from_dict({"input_ids": [[4, 5], [1, 2, 3]], "labels": [1, 0]})
    )
    for folder in ("a", "b"):  # the same image files in two folders: the same data
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "0.png").write_bytes(b"png bytes")
    by_path = [
        dataset_sha256(Dataset.from_dict({"image": [{"bytes": None, "path": str(tmp_path / f / "0.png")}]}))
        for f in "ab"
    ]
    assert by_path[0] == by_path[1]
    (tmp_path / "b" / "0.png").write_bytes(b"other bytes")
    assert (
        dataset_sha256(Dataset.from_dict({"image": [{"bytes": None, "path": str(tmp_path / "b" / "0.png")}]}))
        != by_path[0]
    )


def test_an_adapting_run_records_its_target_examples_too():
    from hftl.adaptation.pairing import PairedDomainDataset

    source = Dataset.from_dict({"input_ids": [[1, 2], [3]], "labels": [0, 1]})
    paired = dataset_sha256(PairedDomainDataset(source, Dataset.from_dict({"input_ids": [[5], [6]]})))
    assert paired is not None and paired != dataset_sha256(source)
    assert paired != dataset_sha256(PairedDomainDataset(source, Dataset.from_dict({"input_ids": [[5], [7]]})))
    assert dataset_sha256([1, 2]) is None  # a dataset of unknown kind: no digest, nothing compared


def test_record_differences_name_what_changed():
    then = {"labels": ["neg", "pos"], "train_examples": 32, "train_sha256": "a" * 64}
    assert record_differences(then, dict(then)) == []
    assert record_differences(then, {**then, "labels": ["bad", "good"]}) == [
        "classes: ['neg', 'pos'] then, ['bad', 'good'] now"
    ]
    assert record_differences(then, {**then, "train_examples": 40, "train_sha256": "b" * 64}) == [
        "training examples: 32 then, 40 now"
    ]
    assert "content" in record_differences(then, {**then, "train_sha256": "b" * 64})[0]
    assert record_differences({"labels": None}, {"labels": ["a"]}) == []  # unknown then: nothing to compare


def _trainer(folder, rows) -> HftlTrainer:
    args = TrainingArguments(output_dir=str(folder), use_cpu=True, report_to="none", save_strategy="no")
    return HftlTrainer(model=torch.nn.Linear(2, 2), args=args, train_dataset=Dataset.from_dict(rows))


def test_a_checkpoint_of_other_data_is_refused_before_training(tmp_path):
    rows = {"x": [[0.0, 1.0], [1.0, 0.0]], "labels": [0, 1]}
    checkpoint = _commit(tmp_path, 2, data=data_record(Dataset.from_dict(rows), torch.nn.Linear(2, 2)))
    trainer = _trainer(tmp_path, {**rows, "labels": [1, 0]})
    with pytest.raises(InputError, match=r"checkpoint-2 was trained on other data .*content.*--overwrite_output_dir"):
        trainer.train(resume_from_checkpoint=checkpoint)


def test_a_checkpoint_saved_under_original_weight_names_resumes_whole(tiny_vit_dir, tmp_path):
    """transformers 5 saves ViT's weights under their original names (`encoder.layer.0.attention.attention.key`)
    and its Trainer loaded them with `load_state_dict(strict=False)`: the backbone stayed as it was before training."""
    from safetensors import safe_open
    from transformers import ViTForImageClassification

    trained = ViTForImageClassification.from_pretrained(tiny_vit_dir, num_labels=2, ignore_mismatched_sizes=True)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(1.0)
    trained.save_pretrained(tmp_path / "checkpoint-2")
    with safe_open(tmp_path / "checkpoint-2" / "model.safetensors", framework="pt") as handle:
        assert not set(handle.keys()) <= set(trained.state_dict())  # the names differ: the case being tested
    fresh = ViTForImageClassification.from_pretrained(tiny_vit_dir, num_labels=2, ignore_mismatched_sizes=True)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    HftlTrainer(model=fresh, args=args)._load_from_checkpoint(str(tmp_path / "checkpoint-2"))
    for name, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name


@contextlib.contextmanager
def _tmpfs(path, size_kib: int, read_only: bool = False):
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kib}k" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_is_recognised_from_each_library_and_half_written_files_go(tmp_path):
    from safetensors.torch import save_file

    with _tmpfs(tmp_path / "disk", 64) as disk:
        (disk / "kept.txt").write_text("written before")
        tensors = {"w": torch.zeros(100_000)}
        for write in (lambda: save_file(tensors, disk / "m.safetensors"), lambda: torch.save(tensors, disk / "o.pt")):
            with pytest.raises(Exception) as raised:
                write()
            assert write_failure(raised.value, str(disk)) == "no space left on the device"
        os.remove(disk / "o.pt")
        with pytest.raises(InputError, match=r"Could not write the model into --output_dir .*disk: no space left"):
            with output_writes(str(disk), "the model"):
                (disk / "config.json").write_text("{}")
                torch.save(tensors, disk / "o.pt")
        assert sorted(os.listdir(disk)) == ["kept.txt"]
    assert write_failure(RuntimeError("something else"), str(tmp_path)) is None


def test_output_dir_that_cannot_be_written_is_refused(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match=r"--output_dir .*file\.txt is a file, not a folder"):
        check_writable(str(tmp_path / "file.txt"))
    with pytest.raises(InputError, match=r"--output_dir .*file\.txt/out lies under .*file\.txt, which is a file"):
        check_writable(str(tmp_path / "file.txt" / "out"))
    check_writable(str(tmp_path / "new" / "out"))  # created later: its parent can be written
    assert not (tmp_path / "new").exists() and os.listdir(tmp_path) == ["file.txt"]  # the probe is gone
    with _tmpfs(tmp_path / "ro", 64, read_only=True) as read_only:
        with pytest.raises(InputError, match=r"--output_dir .*ro/out cannot be written \(in .*ro, where .*read-only"):
            check_writable(str(read_only / "out"))
