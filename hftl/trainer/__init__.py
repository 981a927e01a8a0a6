"""hftl's Trainer and its crash-safe checkpoints."""

from hftl.trainer.checkpoints import (
    CHECKPOINT_MANIFEST,
    check_resumable,
    checkpoint_problem,
    commit_checkpoint,
    last_complete_checkpoint,
)
from hftl.trainer.trainer import HftlTrainer

__all__ = [
    "CHECKPOINT_MANIFEST",
    "HftlTrainer",
    "check_resumable",
    "checkpoint_problem",
    "commit_checkpoint",
    "last_complete_checkpoint",
]
