"""Crash-safe checkpoints: each one is written into a hidden staging folder and renamed into place once complete.

transformers writes a checkpoint's files (model, optimizer, scheduler, RNG states, `trainer_state.json`) one after
another straight into `checkpoint-N`, so a process killed mid-save leaves a `checkpoint-N` that lacks files, and
`get_last_checkpoint` (auto-resume) picks it: the rerun then fails (no `trainer_state.json`) or silently restarts the
optimizer (no `optimizer.pt`). hftl writes each checkpoint into `.checkpoint-N.partial/` and renames it into place
once every file is written and flushed to disk; `last_complete_checkpoint` is what hftl resumes from.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger("hftl")

CHECKPOINT_MANIFEST = "hftl_checkpoint.json"  # every file of a checkpoint with its size, written last
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_PARTIAL = re.compile(rf"^\.{PREFIX_CHECKPOINT_DIR}-(\d+)\.partial$")  # hidden: transformers' globs never match it


def checkpoint_problem(path: str) -> str | None:
    """Why `path` is not a complete checkpoint, or None when it is.

    A checkpoint that hftl wrote is complete when every file listed in its `hftl_checkpoint.json` is there with the
    listed size. One without that manifest (written by plain transformers or an older hftl) counts as complete when its
    `trainer_state.json`, which transformers writes after the model, optimizer, scheduler and RNG states, is readable.
    """
    if not os.path.isdir(path):
        return "no such folder"
    manifest = os.path.join(path, CHECKPOINT_MANIFEST)
    if os.path.isfile(manifest):
        try:
            with open(manifest, encoding="utf-8") as handle:
                files = json.load(handle)["files"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            return f"unreadable {CHECKPOINT_MANIFEST} ({error})"
        for name, size in files.items():
            file = os.path.join(path, name)
            if not os.path.isfile(file):
                return f"{name} missing"
            if os.path.getsize(file) != size:
                return f"{name} has {os.path.getsize(file)} bytes, {size} were written"
        return None
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
    warning) checkpoints that a killed save left incomplete. Unfinished hftl saves (`.checkpoint-N.partial`) never
    match.
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
        if os.path.isdir(path):
            logger.warning("Not resuming from %s, an incomplete checkpoint: %s.", path, problem)
    return None


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


def commit_checkpoint(staged: str, final: str, global_step: int) -> None:
    """Write the manifest of `staged`, flush everything to disk, then rename `staged` to `final` (atomic)."""
    files = {}
    for root, _, names in os.walk(staged):
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, staged)] = os.path.getsize(path)
    with open(os.path.join(staged, CHECKPOINT_MANIFEST), "w", encoding="utf-8") as handle:
        json.dump({"global_step": global_step, "files": files}, handle, indent=1)
    for root, _, names in os.walk(staged):
        for name in names:
            _fsync(os.path.join(root, name), strict=True)
        _fsync(root, strict=False)
    if os.path.exists(final):  # the same step saved again (e.g. a rerun with --overwrite_output_dir)
        os.rename(final, os.path.join(os.path.dirname(staged), "replaced"))  # removed with the staging folder
    os.rename(staged, final)
    _fsync(os.path.dirname(final), strict=False)  # the rename itself
