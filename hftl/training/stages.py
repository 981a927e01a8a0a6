"""Step 8 of a run: train the strategy's stages in order; the last one is adapted to the target domain, if any."""

from __future__ import annotations

import logging

from hftl.adaptation.build import build_task
from hftl.context import RunContext
from hftl.features import cache_is_exact, head_modules, wrapped_name
from hftl.imbalance import loss_weights
from hftl.output import resume_checkpoint
from hftl.strategies import Stage
from hftl.training.cached_head import train_cached_head
from hftl.training.checkpointing import keep_gradients_flowing
from hftl.training.early_stopping import early_stopping_metrics
from hftl.training.result import Trained
from hftl.training.trainers import classifier_trainer, stage_arguments, task_trainer

logger = logging.getLogger("hftl")


def _train_model(model, stage: Stage, run: RunContext) -> Trained:
    """Train the whole model (its trainable parameters) for one stage; in the final stage of an adapting run, as a
    training task on source examples paired with target examples."""
    training, inputs, layer = run.config.training, run.inputs, run.layer
    args = stage_arguments(training, stage)
    source = inputs.source.training
    if stage.final and run.adapts_in_training:
        name = wrapped_name(model, layer.name)
        task = build_task(model, name, layer.size, run.num_labels, run.config, run.shift, loss_weights(run))
        target_train = inputs.target.training["train"]
        trainer = task_trainer(task, args, source["train"], target_train, source.get("validation"), run)
    else:
        train = source.get("train") if training.do_train else None
        trainer = classifier_trainer(model, args, train, source.get("validation"), run)
    metrics = {}
    if training.do_train:
        resume = resume_checkpoint(run.config) if stage.final else None
        metrics = dict(trainer.train(resume_from_checkpoint=resume).metrics)
        metrics.update(early_stopping_metrics(trainer))
    target = inputs.target
    return Trained(
        trainer,
        {
            "eval": source.get("validation"),
            "test": source.get("test"),
            "target": target.plain.get("test") if target is not None and run.data.target.labelled_test else None,
        },
        metrics,
        report_model=model,
        report_layer=model.get_submodule(wrapped_name(model, layer.name)) if layer is not None else None,
        report_data={"train": inputs.source.plain["train"], "target_train": target.plain["train"] if target else None},
        report_collator=inputs.collator,
    )


def train_stages(model, parts, strategy, run: RunContext) -> Trained:
    """Run `strategy.stages(...)` in order and return the last stage's outcome.

    A head-only stage trains on cached head inputs when `--cache_features` is on and nothing outside the head
    trains; otherwise the backbone runs at every step.

    Args:
        model: the model `strategy` was applied to; parts: its `ModelParts`.
        run: what the steps before training produced.
    """
    config = run.config
    keep_gradients_flowing(model, config.training)  # frozen layers under reentrant checkpointing
    earlier: dict[str, float] = {}
    trained = None
    for stage in strategy.stages(config.strategy, config.training):
        if stage.prepare is not None:
            stage.prepare(model, parts)
        head = head_modules(model, run.num_labels) if stage.head_only else []
        cached = stage.head_only and config.strategy.cache_features and cache_is_exact(model, [n for n, _ in head])
        if stage.head_only and config.strategy.cache_features and not cached:
            trainable = sorted({n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad})
            logger.warning(
                "Features not cached: parameters outside the head %s train too (%s); the backbone runs at every step.",
                [n for n, _ in head],
                trainable[:8],
            )
        if cached:
            trained = train_cached_head(model, head, stage, run)
        else:
            trained = _train_model(model, stage, run)
        if not stage.final:
            earlier.update({f"{stage.name}_{k}": v for k, v in trained.metrics.items()})
    trained.metrics.update(earlier)
    return trained
