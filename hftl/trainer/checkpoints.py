"""Crash-safe checkpoints: each one is written into a hidden staging folder and renamed into place once complete.

transformers writes a checkpoint's files (model, optimizer, scheduler, RNG states, `trainer_state.json`) one after
another straight into `checkpoint-N`, so a process killed mid-save leaves a `checkpoint-N` that lacks files, and
`get_last_checkpoint` (auto-resume) picks it: the rerun then fails (no `trainer_state.json`) or silently restarts the
optimizer (no `optimizer.pt`). hftl writes each checkpoint into `.checkpoint-N.partial/` and renames it into place
once every file is written and flushed to disk; `last_complete_checkpoint` is what hftl resumes from.

Each committed checkpoint holds a manifest, `hftl_checkpoint.json`: every file's size and sha256, and a record of
the data it was trained on (`hftl.trainer.fingerprint`). A file changed after the commit (truncated, or overwritten
with as many other bytes) makes the checkpoint incomplete, so a resume takes the last good one instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from typing import Any

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hftl.errors import InputError

logger = logging.getLogger("hftl")

CHECKPOINT_MANIFEST = "hftl_checkpoint.json"  # every file of a checkpoint with its size and sha256, written last
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_PARTIAL = re.compile(rf"^\.{PREFIX_CHECKPOINT_DIR}-(\d+)\.partial$")  # hidden: transformers' globs never match it


def read_manifest(path: str) -> dict[str, Any] | None:
    """The `hftl_checkpoint.json` of checkpoint `path` ({"global_step", "files": name -> bytes, "sha256": name ->
    hex digest, "data": the data record}), or None when it has none.

    Raises:
        ValueError: the manifest is there but unreadable (its message says why).
    """
    manifest = os.path.join(path, CHECKPOINT_MANIFEST)
    if not os.path.isfile(manifest):
        return None
    try:
        with open(manifest, encoding="utf-8") as handle:
            content = json.load(handle)
        if not isinstance(content["files"], dict):
            raise TypeError("'files' is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"unreadable {CHECKPOINT_MANIFEST} ({error})") from None
    return content


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# (checkpoint path, every file's (name, size, mtime)) -> its content problem: a checkpoint is hashed once per process
# (the output folder check, the resume and the Trainer all ask), again only if a file has changed since
_verified: dict[tuple, str | None] = {}


_warned: set[tuple[str, str]] = set()  # (checkpoint, problem) already logged by `last_complete_checkpoint`


def _content_problem(path: str, digests: dict[str, str]) -> str | None:
    """The first file of `path` whose sha256 differs from the one in `digests`, said as a problem; or None."""
    stats = tuple((name, *_stat(os.path.join(path, name))) for name in sorted(digests))
    key = (os.path.abspath(path), stats)
    if key not in _verified:
        _verified[key] = next(
            (
                f"{name} does not match the sha256 recorded when the checkpoint was written (its content changed)"
                for name in sorted(digests)
                if _sha256(os.path.join(path, name)) != digests[name]
            ),
            None,
        )
    return _verified[key]


def _stat(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def checkpoint_problem(path: str) -> str | None:
    """Why `path` is not a complete checkpoint, or None when it is.

    A checkpoint that hftl wrote is complete when every file listed in its `hftl_checkpoint.json` is there with the
    listed size and sha256 (manifests of older hftl versions list sizes only). One without that manifest (written by
    plain transformers or an older hftl) counts as complete when its `trainer_state.json`, which transformers writes
    after the model, optimizer, scheduler and RNG states, is readable.
    """
    if not os.path.exists(path):
        return "no such folder"
    if not os.path.isdir(path):
        return "a file, not a folder"
    try:
        manifest = read_manifest(path)
    except ValueError as error:
        return str(error)
    if manifest is not None:
        for name, size in manifest["files"].items():
            file = os.path.join(path, name)
            if not os.path.isfile(file):
                return f"{name} missing"
            if os.path.getsize(file) != size:
                return f"{name} has {os.path.getsize(file)} bytes, {size} were written"
        return _content_problem(path, manifest.get("sha256", {}))
    try:
        with open(os.path.join(path, TRAINER_STATE), encoding="utf-8") as handle:
            json.load(handle)
    except FileNotFoundError:
        return f"{TRAINER_STATE} missing"
    except (OSError, ValueError) as error:
        return f"unreadable {TRAINER_STATE} ({error})"
    return None


def last_complete_checkpoint(folder: str) -> str | None:
    """The complete `checkpoint-N` in `folder` with the highest N (see `checkpoint_problem`), or None.

    Unlike transformers' `get_last_checkpoint`, which takes the highest N whatever it holds, this skips (with a
    warning, once per process) checkpoints that a killed save left incomplete or whose files changed since.
    Unfinished hftl saves (`.checkpoint-N.partial`) never match.
    """
    if not os.path.isdir(folder):
        return None
    found = sorted(
        ((int(match.group(1)), name) for name in os.listdir(folder) if (match := _CHECKPOINT.match(name))),
        reverse=True,
    )
    for _, name in found:
        path = os.path.join(folder, name)
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        if os.path.isdir(path) and (path, problem) not in _warned:
            _warned.add((path, problem))
            logger.warning("Not resuming from %s, incomplete or changed since it was written: %s.", path, problem)
    return None


def check_resumable(path: str) -> None:
    """Raise an `InputError` naming `--resume_from_checkpoint` when `path` is not a complete checkpoint.

    Raises:
        InputError: `path` is missing, a file, or incomplete (see `checkpoint_problem`); the message names the last
            complete checkpoint beside it, if any.
    """
    problem = checkpoint_problem(path)
    if problem is not None:
        latest = last_complete_checkpoint(os.path.dirname(os.path.abspath(path)))
        beside = f"the last complete one beside it: {latest}" if latest else "there is no complete one beside it"
        raise InputError(f"--resume_from_checkpoint {path} is not a complete checkpoint ({problem}); {beside}.")


def remove_partial_checkpoints(folder: str) -> None:
    """Delete the staging folders of checkpoint saves that a killed process left in `folder`."""
    if not os.path.isdir(folder):
        return
    for name in sorted(os.listdir(folder)):
        if _PARTIAL.match(name):
            logger.warning("Removing %s, left by a checkpoint save that did not finish.", os.path.join(folder, name))
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def _fsync(path: str, strict: bool) -> None:
    """Flush a file (`strict`: errors raise) or a folder's entries (errors ignored: some filesystems refuse) to disk."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        if strict:
            raise
        return
    try:
        os.fsync(descriptor)
    except OSError:
        if strict:
            raise
    finally:
        os.close(descriptor)


def commit_checkpoint(staged: str, final: str, global_step: int, data: dict[str, Any] | None = None) -> None:
    """Write the manifest of `staged` (every file's size and sha256, and `data`: the record of the data it was
    trained on, see `hftl.trainer.fingerprint`), flush everything to disk, then rename `staged` to `final` (atomic).
    """
    files, digests = {}, {}
    for root, _, names in os.walk(staged):
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, staged)] = os.path.getsize(path)
            digests[os.path.relpath(path, staged)] = _sha256(path)
    manifest = {"global_step": global_step, "files": files, "sha256": digests, "data": data}
    with open(os.path.join(staged, CHECKPOINT_MANIFEST), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1)
    for root, _, names in os.walk(staged):
        for name in names:
            _fsync(os.path.join(root, name), strict=True)
        _fsync(root, strict=False)
    if os.path.exists(final):  # the same step saved again (e.g. a rerun with --overwrite_output_dir)
        os.rename(final, os.path.join(os.path.dirname(staged), "replaced"))  # removed with the staging folder
    os.rename(staged, final)
    _fsync(os.path.dirname(final), strict=False)  # the rename itself
