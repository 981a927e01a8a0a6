"""hftl's `Trainer`: transformers' own, with evaluation always in dataset order, crash-safe checkpoints and
length-grouped batches that a resumed run replays exactly.

Crash-safe checkpoints: transformers writes a checkpoint's files (model, optimizer, scheduler, RNG states,
`trainer_state.json`) one after another straight into `checkpoint-N`, so a process killed mid-save leaves a
`checkpoint-N` that lacks files, and `get_last_checkpoint` (auto-resume) picks it: the rerun then fails (no
`trainer_state.json`) or silently restarts the optimizer (no `optimizer.pt`). `HftlTrainer` writes each checkpoint into
`.checkpoint-N.partial/` and renames it into place once every file is written and flushed to disk;
`last_complete_checkpoint` is what hftl resumes from.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil

import torch
from torch.nn import functional as F
from torch.utils.data import SequentialSampler
from transformers import PreTrainedModel, Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, has_length, rotate_checkpoints

from hftl.adaptation.model import DomainAdaptationModel
from hftl.errors import InputError
from hftl.features import CachedFeatureHead

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


def _remove_partial_checkpoints(folder: str) -> None:
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


def _commit_checkpoint(staged: str, final: str, global_step: int) -> None:
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


class _EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' `LengthGroupedSampler` with each epoch's shuffle drawn from `seed + epoch`.

    transformers' sampler draws each epoch's permutation from torch's global generator when the epoch starts. A run
    resumed in the middle of epoch e >= 1 reaches that point with another generator state (the checkpoint's RNG state
    is restored only after the first batch), so it would skip other batches than the ones already trained on. Seeding
    each epoch (as accelerate's `SeedableRandomSampler` does for plain shuffling) makes the order a function of
    (seed, epoch), and resuming exact.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class HftlTrainer(Trainer):
    """`transformers.Trainer` whose evaluation keeps the dataset's order and whose checkpoints survive a kill.

    With `--train_sampling_strategy group_by_length`, transformers 5 also groups *evaluation* batches by length,
    so `predict()` returns predictions in a shuffled order; metrics survive (labels are shuffled alike) but
    per-example outputs (`test_predictions.csv`) would not match their rows.

    Checkpoints are written atomically (see `_save_checkpoint`); `train(resume_from_checkpoint=True)` resumes the last
    complete one, and an explicit checkpoint that is incomplete is refused.

    Losses count each example once, on one process or several: the training loss is the batch mean (see `__init__`),
    and a classifier's evaluation loss the mean over the examples (see `evaluation_loop`).
    """

    _staging_dir: str | None = None  # set while `_save_checkpoint` writes
    _length_sampler: _EpochSeededLengthGroupedSampler | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Classification models return the mean loss of their batch and ignore `num_items_in_batch`, although their
        # forward takes **kwargs. Left True, transformers takes that mean for a sum over the whole batch: it
        # multiplies it by the number of processes (2 processes: twice the gradients and the logged loss) and does
        # not divide it by the gradient accumulation steps.
        self.model_accepts_loss_kwargs = False

    def _get_eval_sampler(self, eval_dataset):
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """As transformers', but a classifier's `<prefix>_loss` is the mean cross-entropy over the examples, from the
        gathered logits.

        transformers averages batch means, weighting a short last batch as a full one and, with several processes,
        counting the examples repeated to even out the processes' batches. For the domain-adaptation wrapper it is
        its classifier's plain cross-entropy (not the importance-weighted training loss).
        """
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        model = self.accelerator.unwrap_model(self.model)
        if isinstance(model, DomainAdaptationModel):  # report the classifier's own (unweighted) cross-entropy
            model = model.classifier
        model = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
        key = f"{metric_key_prefix}_loss"
        if (
            key in output.metrics
            and isinstance(model, (PreTrainedModel, CachedFeatureHead))
            and logits is not None
            and output.label_ids is not None
            and logits.ndim == 2
        ):
            labels = torch.as_tensor(output.label_ids).long()
            output.metrics[key] = F.cross_entropy(torch.as_tensor(logits).float(), labels).item()
        return output

    # ---- exact resume of length-grouped batches ----

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            sampler = _EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
            self._length_sampler = sampler
        return sampler

    def _run_epoch(self, *args, **kwargs):
        # Set the epoch directly too: with several processes, the loader that skips a resumed epoch's first batches
        # wraps the sampler in accelerate's SkipBatchSampler(BatchSamplerShard(...)), which `set_epoch` does not reach.
        if self._length_sampler is not None and "epoch" in kwargs:
            self._length_sampler.set_epoch(kwargs["epoch"])
        return super()._run_epoch(*args, **kwargs)

    # ---- crash-safe checkpoints and resume ----

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`, after removing unfinished checkpoint saves; `True` resumes the last complete checkpoint.

        Raises:
            InputError: `resume_from_checkpoint` names an incomplete checkpoint.
        """
        output_dir = self.args.output_dir
        if self.args.should_save and output_dir:
            _remove_partial_checkpoints(output_dir)
        self.accelerator.wait_for_everyone()
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"No complete checkpoint found in output directory ({output_dir})")
        elif isinstance(resume_from_checkpoint, str):
            problem = checkpoint_problem(resume_from_checkpoint)
            if problem is not None:
                latest = last_complete_checkpoint(os.path.dirname(os.path.abspath(resume_from_checkpoint)))
                raise InputError(
                    f"--resume_from_checkpoint {resume_from_checkpoint} is not a complete checkpoint ({problem}); "
                    f"the last complete one beside it: {latest}."
                )
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _get_output_dir(self, trial) -> str:
        # Where `Trainer._save_checkpoint` puts `checkpoint-N`: the staging folder while `_save_checkpoint` runs.
        return self._staging_dir or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """Write `checkpoint-N` into `.checkpoint-N.partial/`, then rename it: a kill leaves no half checkpoint.

        Every process writes its part (the saving process the model, optimizer, scheduler and trainer state, each
        process its RNG state) into the staging folder. After a barrier, the saving process lists every file with its
        size in `hftl_checkpoint.json`, flushes all to disk, renames the folder to `checkpoint-N`, and only then
        rotates old checkpoints (`save_total_limit`), so the newest complete checkpoint is never deleted before the
        new one is in place. The other processes wait until it has.
        """
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = os.path.join(run_dir, f".{name}.partial")
        staged, final = os.path.join(staging, name), os.path.join(run_dir, name)
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)  # a save of this step that a killed run left
        self.accelerator.wait_for_everyone()
        self._staging_dir = staging
        try:
            super()._save_checkpoint(model, trial)  # its rotation sees only the staging folder: deletes nothing
        finally:
            self._staging_dir = None
        if self.state.best_model_checkpoint == staged:  # the new checkpoint is the best so far
            self.state.best_model_checkpoint = final
            if self.args.should_save:
                self.state.save_to_json(os.path.join(staged, TRAINER_STATE))
        self.accelerator.wait_for_everyone()  # every process has written its files
        if self.args.should_save:
            _commit_checkpoint(staged, final, self.state.global_step)
            shutil.rmtree(staging, ignore_errors=True)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()
