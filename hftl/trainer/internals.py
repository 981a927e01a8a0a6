"""Every place where hftl's Trainer relies on a private part of `transformers.Trainer`, in one module.

transformers has no public hook for these four needs:

- evaluation in dataset order (`_get_eval_sampler`): with `--train_sampling_strategy group_by_length`,
  transformers 5 also groups *evaluation* batches by length, so `predict()` would return predictions shuffled and
  `test_predictions.csv` would not match its rows;
- length-grouped training batches that a resumed run replays exactly (`_get_train_sampler`, `_run_epoch`);
- checkpoints written atomically (`_get_output_dir`, `_save_checkpoint`; see `hftl.trainer.checkpoints`);
- checkpoints loaded whole (`_load_from_checkpoint`, `_load_best_model`): transformers 5 saves a model with the
  original names of its weights (`save_pretrained` reverts its renamings, e.g. ViT's `encoder.layer.0.attention.
  attention.key` for `layers.0.attention.k_proj`) but loads a checkpoint with a plain `load_state_dict(strict=False)`,
  so a resumed ViT kept the backbone it had before training and only its head came from the checkpoint (rc 0, one
  "missing keys" warning); `--load_best_model_at_end` mixed the best head with the last backbone.

`RELIED_ON` lists the signatures these overrides expect; `tests/test_core_specs.py` fails loudly when a
transformers release changes one of them.
"""

from __future__ import annotations

import json
import os
import shutil

import torch
from safetensors import safe_open
from torch.utils.data import SequentialSampler
from transformers import PreTrainedModel
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, has_length, rotate_checkpoints
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from hftl.errors import InputError
from hftl.trainer.balance import BalancedSampler
from hftl.trainer.checkpoints import TRAINER_STATE, commit_checkpoint, last_complete_checkpoint
from hftl.writes import failed_write_message, write_failure

# private Trainer method -> the parameter names the overrides below rely on (`_run_epoch` is called with `epoch=`)
RELIED_ON = {
    "_get_eval_sampler": ("self", "eval_dataset"),
    "_get_train_sampler": ("self", "train_dataset"),
    "_run_epoch": ("self", "model", "epoch"),
    "_load_from_checkpoint": ("self", "resume_from_checkpoint", "model"),
    "_load_best_model": ("self",),
    "_get_output_dir": ("self", "trial"),
    "_save_checkpoint": ("self", "model", "trial"),
}


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
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


class TrainerInternals:
    """Mixin for a `transformers.Trainer` subclass: the private overrides described in the module docstring."""

    _staging_dir: str | None = None  # set while `_save_checkpoint` writes
    _data_record: dict | None = None  # what checkpoints record of the data trained on (`hftl.trainer.fingerprint`)
    _length_sampler: EpochSeededLengthGroupedSampler | BalancedSampler | None = None  # seeded by epoch
    balanced_labels = None  # the training labels, when batches are drawn class-balanced (`--balanced_sampling`)

    def _get_eval_sampler(self, eval_dataset):
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def _get_train_sampler(self, train_dataset=None):
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        if self.balanced_labels is not None:
            self._length_sampler = BalancedSampler(self.balanced_labels, seed)
            return self._length_sampler
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            sampler = EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
            self._length_sampler = sampler
        return sampler

    def _run_epoch(self, *args, **kwargs):
        # Set the epoch directly too: with several processes, the loader that skips a resumed epoch's first batches
        # wraps the sampler in accelerate's SkipBatchSampler(BatchSamplerShard(...)), which `set_epoch` does not reach.
        if self._length_sampler is not None and "epoch" in kwargs:
            self._length_sampler.set_epoch(kwargs["epoch"])
        return super()._run_epoch(*args, **kwargs)

    def _get_output_dir(self, trial) -> str:
        # Where `Trainer._save_checkpoint` puts `checkpoint-N`: the staging folder while `_save_checkpoint` runs.
        return self._staging_dir or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """Write `checkpoint-N` into `.checkpoint-N.partial/`, then rename it: a kill leaves no half checkpoint.

        Every process writes its part (the saving process the model, optimizer, scheduler and trainer state, each
        process its RNG state) into the staging folder. After a barrier, the saving process lists every file with its
        size and sha256 (and `_data_record`, the data trained on) in `hftl_checkpoint.json`,
        flushes all to disk, renames the folder to `checkpoint-N`, and only then rotates old checkpoints
        (`save_total_limit`), so the newest complete checkpoint is never deleted before the new one is in place. The
        other processes wait until it has. A full disk removes the staging folder and raises an `InputError`.
        """
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = os.path.join(run_dir, f".{name}.partial")
        staged, final = os.path.join(staging, name), os.path.join(run_dir, name)
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)  # a save of this step that a killed run left
        self.accelerator.wait_for_everyone()
        try:
            self._stage_checkpoint(model, trial, staging, staged, final)
            self.accelerator.wait_for_everyone()  # every process has written its files
            if self.args.should_save:
                commit_checkpoint(staged, final, self.state.global_step, self._data_record)
                shutil.rmtree(staging, ignore_errors=True)
        except Exception as error:
            reason = write_failure(error, run_dir)
            if reason is None:
                raise
            shutil.rmtree(staging, ignore_errors=True)
            kept = last_complete_checkpoint(run_dir)
            kept = f"The last complete checkpoint, {kept}, is kept: a rerun resumes from it. " if kept else ""
            raise InputError(failed_write_message(name, run_dir, reason, kept)) from None
        if self.args.should_save:
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()

    def _stage_checkpoint(self, model, trial, staging: str, staged: str, final: str) -> None:
        """transformers' `_save_checkpoint`, writing into `staging` (its rotation sees only that: deletes nothing)."""
        self._staging_dir = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_dir = None
        if self.state.best_model_checkpoint == staged:  # the new checkpoint is the best so far
            self.state.best_model_checkpoint = final
            if self.args.should_save:
                self.state.save_to_json(os.path.join(staged, TRAINER_STATE))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if not self._load_renamed_weights(resume_from_checkpoint, self.model if model is None else model):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self):
        if not self._load_renamed_weights(self.state.best_model_checkpoint, self.model):
            super()._load_best_model()

    def _load_renamed_weights(self, checkpoint: str, model) -> bool:
        """Load `checkpoint`'s model weights into `model` through `from_pretrained`, which maps their original names
        to the model's, when they were saved under other names than the model's; False (nothing done) otherwise."""
        if not isinstance(model, PreTrainedModel) or self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return False
        saved = _saved_weight_names(checkpoint)
        if saved is None or saved <= set(model.state_dict()):
            return False
        loaded = type(model).from_pretrained(checkpoint, dtype=model.dtype)
        model.load_state_dict(loaded.state_dict())
        return True


def _saved_weight_names(checkpoint: str) -> set[str] | None:
    """The names of the weights in `checkpoint`'s safetensors file(s), or None if it has none."""
    index = os.path.join(checkpoint, SAFE_WEIGHTS_INDEX_NAME)
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as handle:
            return set(json.load(handle)["weight_map"])
    path = os.path.join(checkpoint, SAFE_WEIGHTS_NAME)
    if not os.path.isfile(path):
        return None
    with safe_open(path, framework="pt") as handle:
        return set(handle.keys())
