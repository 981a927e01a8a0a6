"""The model card of a multi-label run: its metrics, and a section naming the problem type and the thresholds."""

from __future__ import annotations

from hftl.multi_label.arguments import MULTI_LABEL
from hftl.multi_label.thresholds import MIN_POSITIVES, THRESHOLDS

CARD_METRICS = ("f1_micro", "f1_macro", "f1_samples", "subset_accuracy", "hamming_loss")
RESULTS_NOTE = (
    "Micro F1 pools every (example, label) decision; macro F1 averages the labels present in the split; samples F1 "
    "averages the examples; subset accuracy counts exact label sets; Hamming loss is the fraction of wrong decisions. "
    "The validation figures are optimistic: the thresholds were tuned on that split."
)


def _section(names: list[str], thresholds: dict[str, float], pipeline_task: str) -> str:
    rows = "\n".join(f"| {name} | {thresholds.get(name, 0.5):.4f} |" for name in names)
    return f"""
## Multi-label classification
Problem type `{MULTI_LABEL}`: each label is a yes / no decision (sigmoid outputs, trained with binary
cross-entropy). Each label's threshold was tuned to maximise its F1 on the validation split (0.5 without tuning, or
for a label with fewer than {MIN_POSITIVES} validation examples) and folded into the classifier's bias
(b_k -= logit(t_k)), so a label passes its threshold exactly when the pipeline's score for it is above 0.5. The
thresholds are also in `config.json` (`{THRESHOLDS}`); the model's own probability is
sigmoid(logit(score) + logit(t_k)).

| label | threshold |
|---|---|
{rows}

Every label above its threshold:
```python
from transformers import pipeline
classifier = pipeline("{pipeline_task}", model=path)
labels = [p["label"] for p in classifier(x, top_k=None) if p["score"] > 0.5]
```
A LoRA adapter loaded alone (`AutoPeftModel...`) needs `problem_type="{MULTI_LABEL}"` beside the labels.
"""


def card_problem(run) -> tuple[tuple[str, ...], str, str] | None:
    """`model_card`'s `problem` argument for a multi-label run (its metrics, note and section); None otherwise."""
    if not run.config.problem.multi_label:
        return None
    names = run.data.labels.names
    thresholds = getattr(run.loaded.model.config, THRESHOLDS, None) or {}
    return CARD_METRICS, RESULTS_NOTE, _section(names, thresholds, run.modality.pipeline_task)
