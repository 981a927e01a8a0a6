"""The Trainers a stage runs: a classifier on its own, or a training task on source examples paired with target
examples."""

from __future__ import annotations

import dataclasses
import logging

from transformers import TrainingArguments

from hftl.adaptation.pairing import AdaptationCallback, DomainPairCollator, PairedDomainDataset
from hftl.imbalance import balanced_labels, loss_weights
from hftl.metrics import metrics_function
from hftl.multi_label.metrics import multi_label_loss
from hftl.strategies import Stage
from hftl.trainer import HftlTrainer
from hftl.training.early_stopping import early_stopping_callbacks

logger = logging.getLogger("hftl")


def stage_arguments(training: TrainingArguments, stage: Stage, **overrides) -> TrainingArguments:
    """The `TrainingArguments` of `stage`: its epochs, rate and folder; an earlier stage saves no checkpoints."""
    values = dict(
        output_dir=stage.output_dir, num_train_epochs=stage.num_train_epochs, learning_rate=stage.learning_rate
    )
    if not stage.final:
        values.update(save_strategy="no", load_best_model_at_end=False, push_to_hub=False)
    values.update(overrides)
    if all(getattr(training, key) == value for key, value in values.items()):
        return training
    return dataclasses.replace(training, **values)


def classifier_trainer(model, args, train, evaluation, run, model_inputs: bool = True) -> HftlTrainer:
    """A Trainer of `model` on `train` (None when not training), evaluated on `evaluation`; a multi-label run's loss
    is binary cross-entropy on the logits, whatever the model's own loss.

    `model_inputs`: the datasets hold the modality's inputs (batched by its collator, saved with its processor);
    False for cached head inputs. `--class_weights`, `--balanced_sampling` and early stopping are applied here.
    """
    return HftlTrainer(
        model=model,
        args=args,
        data_collator=run.inputs.collator if model_inputs else None,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=run.processor if model_inputs else None,
        compute_metrics=metrics_function(run.num_labels, run.config.problem.multi_label),
        compute_loss_func=multi_label_loss if run.config.problem.multi_label else None,
        callbacks=early_stopping_callbacks(run.config, args),
        class_weights=loss_weights(run) if train is not None else None,
        balanced_labels=balanced_labels(run, train),
    )


def task_trainer(task, args, source, target, evaluation, run, model_inputs: bool = True) -> HftlTrainer:
    """A Trainer of a training task (`AdaptationTask`) on source examples paired with target examples.

    Batches are sampled at random (pairing does not group by length), or class-balanced with `--balanced_sampling`;
    the datasets hold model inputs only, so no column is removed by name. `--class_weights` are the task's own (see
    `build_task`).
    """
    if args.train_sampling_strategy == "group_by_length":
        logger.info("Adaptation pairs source and target batches: training batches are sampled at random.")
    args = dataclasses.replace(args, train_sampling_strategy="random", remove_unused_columns=False)
    paired = PairedDomainDataset(source, target, seed=args.seed)
    return HftlTrainer(
        model=task,
        args=args,
        train_dataset=paired,
        eval_dataset=evaluation,
        data_collator=DomainPairCollator(run.inputs.collator if model_inputs else None),
        processing_class=run.processor if model_inputs else None,
        callbacks=[AdaptationCallback(task, paired), *early_stopping_callbacks(run.config, args)],
        compute_metrics=metrics_function(run.num_labels),
        balanced_labels=balanced_labels(run, source),
    )
