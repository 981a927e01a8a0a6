"""One shared backbone, one classification layer per task, and the weighted sum of the tasks' losses.

`MultiTaskModel` wraps the first task's `...ForSequence/Image/AudioClassification` model (or the peft model LoRA
makes of it): task 0 uses the model's own classification layer, every other task a copy of it sized to its classes,
applied to the same features (the classification layer's input). Everything below that layer is shared. The Trainer
trains, checkpoints and resumes the wrapper; `hftl.multi_task.export` saves one plain classifier per task.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from hftl.features import capture_inputs
from hftl.wrapping import ClassifierWrapper


class UncertaintyWeighting(nn.Module):
    """Learned task weights: loss = sum_t exp(-s_t) * L_t + s_t, with s_t = log sigma_t^2.

    Source: Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry and
    Semantics", CVPR 2018 (arXiv:1705.07115), in the form of its eq. 7 with s = log sigma^2 (the form its
    implementation trains, for numerical stability). s_t starts at 0 (every weight 1).

    Shape:
        losses: (T,) the tasks' losses (zero where a task has no example in the batch); present: (T,) bool, the
        tasks in the batch. Returns a scalar.

    Example:
        >>> weighting = UncertaintyWeighting(2)
        >>> weighting(torch.tensor([1.0, 2.0]), torch.tensor([True, True]))
        tensor(3., grad_fn=<SumBackward0>)
    """

    def __init__(self, num_tasks: int):
        super().__init__()
        self.log_variances = nn.Parameter(torch.zeros(num_tasks))

    def forward(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        s = self.log_variances
        terms = torch.exp(-s) * losses + s
        # absent tasks count 0 * their term: every parameter takes part in every step (DDP needs no unused-parameter
        # search), and their s_t does not move
        return (terms * present.to(terms.dtype)).sum()


class MultiTaskModel(ClassifierWrapper):
    """A classifier shared by several tasks: task t's logits are head t applied to the classifier's features.

    Args:
        classifier: the first task's classification model (or its peft model), returning `logits` (N, C_0).
        feature_layer: the name (in `classifier`) of its classification layer, whose input (N, F) are the features.
        heads: the other tasks' classification layers (F -> C_t), in task order (see `sized_head`).
        weights: each task's fixed loss weight w_t (ignored with `uncertainty`).
        uncertainty: learn the weights (`UncertaintyWeighting`) instead.

    Inputs: the classifier's inputs, `task_ids` (N,) and `labels` (N,) (each task's class ids).
    Returns: {"logits": (N, C_t) of the batch's task, "loss"} and with `uncertainty` each task's weight exp(-s_t) as
    "task_weight_<t>" (logged with the loss). A batch mixing tasks is refused: the sampler draws one task per batch.
    """

    def __init__(self, classifier: nn.Module, feature_layer: str, heads: list[nn.Linear], weights: list[float],
                 uncertainty: bool = False):  # fmt: skip
        super().__init__()
        self.classifier = classifier
        self.feature_layer = feature_layer
        self.heads = nn.ModuleList(heads)
        self.register_buffer("task_weights", torch.tensor(weights, dtype=torch.float32), persistent=False)
        self.weighting = UncertaintyWeighting(len(weights)) if uncertainty else None

    def head(self, task: int) -> nn.Linear:
        """Task `task`'s classification layer."""
        return self.classifier.get_submodule(self.feature_layer) if task == 0 else self.heads[task - 1]

    def forward(self, task_ids: torch.Tensor, labels: torch.Tensor | None = None, **inputs) -> dict[str, torch.Tensor]:
        task = int(task_ids[0])
        if bool((task_ids != task).any()):
            raise ValueError("a batch mixes tasks; TaskBatchSampler draws one task per batch")
        with capture_inputs(self.classifier.get_submodule(self.feature_layer)) as captured:
            own = self.classifier(**inputs)["logits"]
        features = captured[-1]
        all_logits = [own, *(head(features) for head in self.heads)]
        output = {"logits": all_logits[task]}
        if labels is None:
            return output
        loss = F.cross_entropy(all_logits[task].float(), labels)
        unused = sum(logits.sum() * 0.0 for t, logits in enumerate(all_logits) if t != task)  # see UncertaintyWeighting
        if self.weighting is None:
            output["loss"] = self.task_weights[task] * loss + unused
            return output
        losses = torch.stack([loss if t == task else loss.new_zeros(()) for t in range(len(all_logits))])
        present = torch.arange(len(all_logits), device=loss.device) == task
        output["loss"] = self.weighting(losses, present) + unused
        output.update({f"task_weight_{t}": w.detach() for t, w in enumerate(torch.exp(-self.weighting.log_variances))})
        return output


def sized_head(layer: nn.Linear, num_labels: int) -> nn.Linear:
    """A new `nn.Linear` like `layer` with `num_labels` outputs, initialised as transformers initialises a head
    (normal weights of the layer's own standard deviation scale, zero bias)."""
    head = nn.Linear(layer.in_features, num_labels, bias=layer.bias is not None)
    head = head.to(device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        head.weight.normal_(0.0, float(layer.weight.std()) if layer.weight.numel() > 1 else 0.02)
        if head.bias is not None:
            head.bias.zero_()
    return head
