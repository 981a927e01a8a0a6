"""`--report_to`: the trackers a run logs to, through transformers' own callbacks (`transformers.integrations`).

transformers 5 parses `--report_to` as one string (its field is `str | list[str]`), so several trackers are given as
a comma-separated list, `--report_to tensorboard,trackio`, and a resolved config writes them back that way (a
`--config` file takes one value per flag). What each tracker receives is what `Trainer.log` passes to the
callbacks: the training loss and, for an adaptation run, its parts (`cls_loss`, `align_loss`, `grl_lambda`, ...,
see `hftl.trainer.HftlTrainer.log`), the learning rate, the gradient norm and every evaluation during training.
"""

from __future__ import annotations

from typing import Any


def split_trackers(value: Any) -> Any:
    """`"tensorboard,trackio"` -> `["tensorboard", "trackio"]`; any other value unchanged."""
    if isinstance(value, str) and "," in value:
        return [name.strip() for name in value.split(",") if name.strip()]
    return value


def joined_trackers(value: Any) -> str:
    """The resolved `report_to` list as the flag takes it: `[]` -> "none", `["a", "b"]` -> "a,b"."""
    if isinstance(value, str):
        return value
    return ",".join(value) if value else "none"


def name_run(training) -> None:
    """Without `--run_name`, name the run after `--output_dir` (as transformers 4 did; 5 leaves it unset).

    Unnamed, trackio files each `trackio.init` under a new random name: the final evaluations, which transformers
    logs after training has closed the run, would land in a second run beside the training curves.
    """
    if training.run_name is None:
        training.run_name = training.output_dir
