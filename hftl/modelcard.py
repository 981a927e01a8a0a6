"""The model card (`README.md`) written beside every saved model."""

from __future__ import annotations

import os

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hftl.assets import hub_id_of
from hftl.data.checks import LabelInfo

_METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1")
_MACRO_NOTE = (
    "Precision, recall and F1 are macro averages over the classes present in each split (macro recall is balanced "
    "accuracy)."
)


def _results_table(metrics: dict[str, float] | None, names=_METRICS, note: str = _MACRO_NOTE) -> str:
    if metrics is None:  # the card written with the model, before evaluation; evaluation rewrites it
        return "Not evaluated: the model was saved before evaluation, which did not finish (see the run's log)."
    rows = []
    for prefix, name in (("eval", "validation"), ("test", "test"), ("target", "target domain")):
        values = [metrics.get(f"{prefix}_{m}") for m in names]
        if any(v is not None for v in values):
            cells = " | ".join("" if v is None else f"{v:.4f}" for v in values)
            rows.append(f"| {name} | {cells} |")
    if not rows:
        return "No evaluation was run."
    header = "| split | " + " | ".join(names) + " |\n|---|" + "---|" * len(names)
    return header + "\n" + "\n".join(rows) + f"\n\n{note}"


def _eval_results(
    metrics: dict[str, float], pipeline_task: str, hub_dataset: str | None, data_description: str, names=_METRICS
) -> list[EvalResult] | None:
    """The validation and test metrics as the Hub's `model-index` (shown as the card's evaluation results)."""
    results = [
        EvalResult(
            task_type=pipeline_task,
            dataset_type=hub_dataset or "custom",
            dataset_name=hub_dataset or data_description,
            dataset_split=split,
            metric_type=metric,
            metric_name=f"macro {metric}" if metric in ("precision", "recall", "f1") else metric,
            metric_value=round(float(metrics[f"{prefix}_{metric}"]), 4),
        )
        for prefix, split in (("eval", "validation"), ("test", "test"))
        for metric in names
        if metrics.get(f"{prefix}_{metric}") is not None
    ]
    return results or None


def _card_data(
    model_path, pipeline_task, hub_dataset, strategy, labels, metrics, is_adapter, adaptation, description, names
):
    """The card's metadata (YAML header)."""
    base_model = hub_id_of(model_path)
    tags = ["hftl", pipeline_task, f"strategy-{strategy.replace('_', '-')}"] + (["lora"] if is_adapter else [])
    if adaptation:
        tags += [f"adaptation-{part.strip().replace('_', '-')}" for part in adaptation.split("+")]
    base_name = os.path.basename(os.path.normpath(model_path))
    data = ModelCardData(
        library_name="peft" if is_adapter else "transformers",
        pipeline_tag=pipeline_task,
        base_model=base_model,
        datasets=[hub_dataset] if hub_dataset else None,
        metrics=list(names),
        tags=tags,
        labels=list(labels.names),
        model_name=f"{base_name}-hftl-{strategy.replace('_', '-')}",
        eval_results=_eval_results(metrics, pipeline_task, hub_dataset, description, names),
    )
    return data


def _loader_text(pipeline_task, labels: LabelInfo, is_adapter: bool, custom_code: bool, strategy: str, usage) -> str:
    """The card's "How to load" section; `usage`: how to call the pipeline on raw inputs (or None)."""
    if is_adapter:
        loader = (
            "This folder holds a LoRA adapter. The base model's config does not know the labels, so pass them:\n"
            "```python\nfrom peft import AutoPeftModelForSequenceClassification  # or the Auto class of your modality\n"
            "model = AutoPeftModelForSequenceClassification.from_pretrained(\n"
            f"    path, num_labels={len(labels.names)}, "
            f"id2label={labels.id2label}, label2id={labels.label2id}\n)\n```"
        )
    elif custom_code:
        loader = (
            "The architecture's code is saved beside the weights (`auto_map` in config.json); read it, then:\n"
            f'```python\nfrom transformers import pipeline\nclassifier = pipeline("{pipeline_task}", model=path, '
            "trust_remote_code=True)\n```\nIn a process that imported `hftl`, `trust_remote_code` is not needed."
        )
    else:
        loader = (
            f'```python\nfrom transformers import pipeline\nclassifier = pipeline("{pipeline_task}", model=path)\n```'
        )
    if strategy == "lora" and not is_adapter:
        loader += (
            "\n\nThe LoRA adapter alone (a few MB) is in `adapter/`; this folder holds it merged into the base model."
        )
    return loader + (f"\n\n{usage}" if usage else "")


def _label_rows(labels: LabelInfo) -> str:
    counts = labels.counts.get("train", [0] * len(labels.names))
    return "\n".join(f"| {i} | {name} | {counts[i]} |" for i, name in enumerate(labels.names))


def _hyper_rows(hyperparameters: dict[str, object]) -> str:
    return "\n".join(f"- `{key}`: {value}" for key, value in hyperparameters.items())


def _adaptation_line(adaptation: str | None, details: str) -> str:
    return f"\n\nDomain adaptation: `{adaptation}`. {details}".rstrip() if adaptation else ""


def model_card(
    *,
    model_path: str,
    pipeline_task: str,
    data_description: str,
    hub_dataset: str | None,
    strategy: str,
    strategy_details: str,
    labels: LabelInfo,
    metrics: dict[str, float] | None,
    hyperparameters: dict[str, object],
    is_adapter: bool,
    custom_code: bool = False,
    adaptation: str | None = None,
    adaptation_details: str = "",
    usage: str | None = None,
    problem: tuple[tuple[str, ...], str, str] | None = None,
) -> ModelCard:
    """A `huggingface_hub.ModelCard` naming base model, data, strategy, labels and metrics.

    The metadata (YAML header) holds `library_name`, `pipeline_tag`, `base_model` (when it is a Hub model),
    `datasets` (a Hub dataset), `tags` (`hftl`, the task, `strategy-<name>`, `adaptation-<name>`), `labels` (by id),
    the metric names and their values as `model-index`.

    `custom_code`: the architecture's code is saved beside the weights (hftl's EfficientNet-Lite, cropped Whisper).
    `adaptation`: the run's domain-adaptation method ("dann", "mmd" ...) or None; `usage`: `Modality.pipeline_usage`.
    `metrics`: None before evaluation (the card saved with the model says it is not evaluated yet).
    `problem`: a multi-label run's (metric names, note under the results, own section), see `hftl.multi_label.card`.
    """
    names, note, section = problem or (_METRICS, _MACRO_NOTE, "")
    data = _card_data(model_path, pipeline_task, hub_dataset, strategy, labels, metrics or {}, is_adapter, adaptation,
                      data_description, names)  # fmt: skip
    return ModelCard(f"""---
{data.to_yaml()}
---

# {pipeline_task} model trained with hftl

Adapted from **{hub_id_of(model_path) or model_path}** with hftl (strategy: `{strategy}`).

## Data
{data_description}

## Adaptation strategy
`{strategy}`: {strategy_details}{_adaptation_line(adaptation, adaptation_details)}

## Labels
| id | label | training examples |
|---|---|---|
{_label_rows(labels)}
{section}
## Results
{_results_table(metrics, names, note)}

## Training hyper-parameters
{_hyper_rows(hyperparameters)}

## How to load
{_loader_text(pipeline_task, labels, is_adapter, custom_code, strategy, usage)}
""")
