"""Writing into the output folder: a disk that fills up (or turns read-only) while a run writes becomes one clear
error naming the folder and the fix, with what the failed write left half-written removed.

Libraries report a full disk each their own way: `OSError` with errno ENOSPC (Python's `open().write`),
`SafetensorError("... No space left on device (os error 28)")` (safetensors), `RuntimeError("[enforce fail at
inline_container.cc] ... unexpected pos ...")` without any errno (`torch.save`). `write_failure` recognises all three.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Iterator

from hftl.errors import InputError

logger = logging.getLogger("hftl")

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EFBIG: "a file grew over the file system's limit",
}
_NEARLY_FULL = 16 << 20  # bytes still free on a disk that a write without errno has just filled


def write_failure(error: BaseException, folder: str) -> str | None:
    """Why writing into `folder` failed, when `error` says the disk is full, over quota or read-only; else None.

    A `torch.save` failure carries no errno: it counts as a full disk when under 16 MiB are left there.
    """
    if isinstance(error, OSError) and error.errno in _REASONS:
        return _REASONS[error.errno]
    message = str(error)
    if "No space left on device" in message or "os error 28" in message:
        return _REASONS[errno.ENOSPC]
    if "Read-only file system" in message or "os error 30" in message:
        return _REASONS[errno.EROFS]
    if isinstance(error, RuntimeError) and ("inline_container" in message or "PytorchStreamWriter" in message):
        existing = os.path.abspath(folder)
        while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        if shutil.disk_usage(existing).free < _NEARLY_FULL:
            return _REASONS[errno.ENOSPC]
    return None


def failed_write_message(what: str, folder: str, reason: str, kept: str = "") -> str:
    """The one-line error for a write of `what` into `folder` that failed for `reason` (`kept`: what is safe)."""
    return (
        f"Could not write {what} into --output_dir {folder}: {reason}. {kept}Free space there (or make it writable) "
        f"and rerun the same command, or choose another --output_dir."
    )


def _files(folder: str) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every file under `folder` outside checkpoint folders."""
    found = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if "checkpoint-" not in d]
        for name in names:
            path = os.path.join(root, name)
            with contextlib.suppress(OSError):
                stat = os.stat(path)
                found[path] = (stat.st_size, stat.st_mtime_ns)
    return found


@contextlib.contextmanager
def output_writes(folder: str, what: str) -> Iterator[None]:
    """Write `what` into `folder` inside this block: a full or read-only disk raises one clear `InputError`, after
    the files the block created or changed there (outside checkpoint folders) are removed, being half-written.

    Raises:
        InputError: the disk is full, over quota or read-only (see `write_failure`); other errors pass unchanged.
    """
    before = _files(folder)
    try:
        yield
    except Exception as error:
        reason = write_failure(error, folder)
        if reason is None:
            raise
        written = sorted(path for path, stat in _files(folder).items() if before.get(path) != stat)
        for path in written:
            with contextlib.suppress(OSError):
                os.remove(path)
        if written:
            logger.warning("Removed %d half-written file(s) from %s: %s", len(written), folder, written)
        raise InputError(failed_write_message(what, folder, reason)) from None
