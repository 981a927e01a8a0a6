"""hftl's `Trainer`: transformers' own, with evaluation always in dataset order."""

from __future__ import annotations

from torch.utils.data import SequentialSampler
from transformers import Trainer
from transformers.trainer_utils import has_length


class HftlTrainer(Trainer):
    """`transformers.Trainer` whose evaluation and prediction keep the dataset's order.

    With `--train_sampling_strategy group_by_length`, transformers 5 also groups *evaluation* batches by length,
    so `predict()` returns predictions in a shuffled order; metrics survive (labels are shuffled alike) but
    per-example outputs (`test_predictions.csv`) would not match their rows.
    """

    def _get_eval_sampler(self, eval_dataset):
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None
