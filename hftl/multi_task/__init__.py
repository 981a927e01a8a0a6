"""Multi-task learning: several classification tasks learnt at once by one shared backbone, one head per task.

`--tasks` lists the tasks (each with its own data flags); `run_multi_task` loads each task's data with the
single-task checks, trains one `MultiTaskModel` with hftl's Trainer (one task per batch, `--task_sampling`; losses
weighted `--task_weighting`), and exports each task as a plain classifier in `output_dir/tasks/<name>/`.
"""

from hftl.multi_task.arguments import MultiTaskArguments, TaskSpec, check_multi_task_flags
from hftl.multi_task.model import MultiTaskModel, UncertaintyWeighting
from hftl.multi_task.sampling import TaskBatchSampler, task_order

__all__ = [
    "MultiTaskArguments",
    "MultiTaskModel",
    "TaskBatchSampler",
    "TaskSpec",
    "UncertaintyWeighting",
    "check_multi_task_flags",
    "task_order",
]
