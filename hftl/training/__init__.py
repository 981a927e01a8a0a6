"""Training: the strategy's stages, head-only training on cached inputs, and the Trainers they run."""

from hftl.training.result import Trained
from hftl.training.stages import train_stages

__all__ = ["Trained", "train_stages"]
