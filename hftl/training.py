"""The shared run: data -> checks -> model -> strategy -> Trainer -> metrics -> saved model, card and results.

Every recipe calls `run_classification` with its `Modality`; nothing below depends on the modality.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import transformers
import yaml
from torch import nn
from transformers import AutoConfig, TrainingArguments, set_seed

from hftl import adaptation, hub
from hftl.adaptation.run import TargetData
from hftl.arguments import (
    AdaptationArguments,
    DataTrainingArguments,
    ModelArguments,
    RunArguments,
    StrategyArguments,
    parse_args,
    resolved_config,
)
from hftl.data import LabelInfo, check_and_encode, load_raw_data
from hftl.errors import InputError
from hftl.features import (
    CachedFeatureHead,
    cache_is_exact,
    cached_extract,
    dataset_digest,
    extract_features,
    feature_dataset,
    feature_head,
    module_digest,
)
from hftl.metrics import flat_per_class, metrics_function, per_class_report, save_confusion_matrix, save_report
from hftl.modalities.base import Modality
from hftl.modelcard import model_card
from hftl.strategies import (
    DEFAULT_LEARNING_RATES,
    ModelParts,
    apply_strategy,
    backbone_name,
    keep_bottom_layers,
    log_parameter_counts,
    model_parts,
    unfreeze_top,
)
from hftl.trainer import HftlTrainer, last_complete_checkpoint

logger = logging.getLogger("hftl")


def argument_types(modality: Modality) -> tuple[type, ...]:
    """The dataclasses a recipe parses: model, data, the modality's own, strategy, adaptation, run and
    `TrainingArguments`."""
    return (
        ModelArguments,
        DataTrainingArguments,
        modality.arguments_class,
        StrategyArguments,
        AdaptationArguments,
        RunArguments,
        TrainingArguments,
    )


CONFIG_FILE = "hftl_config.yaml"

STRATEGY_DETAILS = {
    "full": "every parameter fine-tuned.",
    "feature_extraction": "backbone frozen; only the classification head trained (on cached backbone features).",
    "freeze": "embeddings and the first {num_frozen_layers} encoder layers frozen; the rest fine-tuned.",
    "two_stage": "stage 1 trained the head with the backbone frozen ({stage1_num_train_epochs} epoch(s)); stage 2 "
    "unfroze the top {unfreeze_top_k} encoder layers at learning rate {stage2_learning_rate}.",
    "lora": "LoRA adapters (r={lora_r}, alpha={lora_alpha}) on {lora_target_modules}; the head trained in full.",
}


@dataclass
class Stage:
    """What one training stage ran with, for the final evaluation and the results."""

    trainer: HftlTrainer
    eval_dataset: Any
    test_dataset: Any
    metrics: dict[str, float]
    target_test_dataset: Any = None
    target_train_dataset: Any = None  # what the domain-gap report reads (model-ready or cached features)
    source_train_dataset: Any = None
    feature_model: Any = None  # the trained model, and the layer whose input the domain-gap report reads
    feature_layer: Any = None
    feature_collator: Any = None


def _setup_logging(training_args: TrainingArguments) -> None:
    """hftl logs at INFO on the main process (WARNING on the others); transformers follows `--log_level`."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    transformers_level = training_args.get_process_log_level()
    transformers.utils.logging.set_verbosity(transformers_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    logger.setLevel(logging.INFO if training_args.should_log else transformers_level)


def _cpu_processes_without_accelerator() -> None:
    """Under `torchrun --nproc_per_node N` (or accelerate's multi-GPU launcher) on a machine without a GPU, train as
    one job of N CPU processes (gloo).

    transformers joins CPU processes only with `--use_cpu` (or ACCELERATE_USE_CPU); without it each process trains
    alone on all the data (world size 1), and all of them write the same output_dir. Must run before
    `TrainingArguments` is built (it sets up the processes).
    """
    import torch

    accelerator = getattr(torch, "accelerator", None)
    has_accelerator = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_accelerator:
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")


def _find_unused_parameters_with_checkpointing(training_args: TrainingArguments) -> None:
    """Several processes and activation checkpointing: let DDP look for parameters that a step left unused.

    transformers turns DDP's `find_unused_parameters` off under checkpointing (the reentrant kind breaks with it), so
    a trainable parameter that some step does not use (wav2vec2's `masked_spec_embed` without SpecAugment, a layer
    that LayerDrop skipped) stops the run: "parameters that were not used in producing loss". transformers 5
    checkpoints non-reentrantly unless asked otherwise, which works with it on. An explicit
    `--ddp_find_unused_parameters` wins.
    """
    kwargs = {
        k: v
        for k, v in (training_args.activation_checkpointing_kwargs or {}).items()
        if k not in ("every_n_layers", "offload")
    }
    reentrant = bool(kwargs) and kwargs.get("use_reentrant", True)  # torch's default when kwargs are given
    if (
        training_args.world_size > 1
        and training_args.activation_checkpointing
        and training_args.ddp_find_unused_parameters is None
        and not reentrant
    ):
        training_args.ddp_find_unused_parameters = True


def _strategy_learning_rates(
    strategy_args: StrategyArguments, training_args: TrainingArguments, explicit: set[str]
) -> None:
    """Without --learning_rate, head-only and LoRA training use their own default rate (`DEFAULT_LEARNING_RATES`)."""
    fine_tuning_rate = training_args.learning_rate
    if "learning_rate" not in explicit and strategy_args.strategy in DEFAULT_LEARNING_RATES:
        training_args.learning_rate = DEFAULT_LEARNING_RATES[strategy_args.strategy]
        logger.info(
            "No --learning_rate given: using %g for strategy '%s'.", training_args.learning_rate, strategy_args.strategy
        )
    if strategy_args.strategy == "two_stage" and strategy_args.stage2_learning_rate is None:
        explicit_rate = "learning_rate" in explicit
        strategy_args.stage2_learning_rate = training_args.learning_rate / 10 if explicit_rate else fine_tuning_rate


def load_model(auto_class, model_args: ModelArguments, model_path: str, labels: LabelInfo):
    """Load a pretrained classifier with a head for `labels`.

    Returns:
        (model, names of the parameters the checkpoint did not provide or that were re-initialised).
    """
    common = dict(
        cache_dir=model_args.cache_dir,
        revision=model_args.model_revision,
        token=model_args.token,
        trust_remote_code=model_args.trust_remote_code,
    )
    config = AutoConfig.from_pretrained(
        model_args.config_name or model_path,
        num_labels=len(labels.names),
        id2label=labels.id2label,
        label2id=labels.label2id,
        **common,
    )
    try:
        model, info = auto_class.from_pretrained(
            model_path,
            config=config,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
            output_loading_info=True,
            **common,
        )
    except RuntimeError as error:
        if "size mismatch" in str(error) or "mismatch" in str(error).lower():
            raise InputError(
                f"{model_path}: checkpoint weights do not fit {len(labels.names)} classes ({error}). "
                f"Pass --ignore_mismatched_sizes to re-initialise them."
            ) from None
        raise
    mismatched = [key[0] if isinstance(key, tuple) else key for key in info.get("mismatched_keys", [])]
    new = sorted(set(info.get("missing_keys", [])) | set(mismatched))
    if new:
        logger.warning("Newly initialised (trained from scratch): %s", new)
    return model, new


# flags that change which parameters exist or train: a checkpoint made with other values cannot be resumed
RESUME_KEYS = (
    "model_name_or_path",
    "strategy",
    "num_frozen_layers",
    "unfreeze_top_k",
    "lora_r",
    "lora_alpha",
    "lora_target_modules",
    "freeze_feature_encoder",
    "crop_whisper_input",
    "feature_layer",
    "adaptation",
    "bottleneck_dim",
    "discriminator_hidden_size",
)


def _check_resumable(config: dict[str, Any], training_args: TrainingArguments, run_args: RunArguments) -> None:
    """Refuse, before any model loads, to auto-resume checkpoints that a run with other strategy flags wrote.

    Raises:
        InputError: output_dir holds checkpoints and a config whose strategy flags differ from this run's.
    """
    output_dir = training_args.output_dir
    previous_path = os.path.join(output_dir, CONFIG_FILE)
    if (
        run_args.overwrite_output_dir
        or training_args.resume_from_checkpoint is not None
        or not training_args.do_train
        or not os.path.isfile(previous_path)
        or last_complete_checkpoint(output_dir) is None
    ):
        return
    with open(previous_path, encoding="utf-8") as handle:
        previous = yaml.safe_load(handle) or {}
    changed = {k: (previous[k], config.get(k)) for k in RESUME_KEYS if k in previous and previous[k] != config.get(k)}
    if changed:
        details = ", ".join(f"{k}: {old!r} then, {new!r} now" for k, (old, new) in changed.items())
        raise InputError(
            f"--output_dir {output_dir} holds checkpoints of a run with other settings ({details}), which this run "
            f"would resume. Pass --overwrite_output_dir to start afresh there, or choose another --output_dir."
        )


RESULT_FILES = (
    "all_results.json",
    "*_results.json",
    "*_report.json",
    "*_confusion_matrix.png",
    "*_predictions.csv",
    "domain_gap.json",
    "domain_gap.png",
    "label_shift.json",
)


def _remove_stale_results(output_dir: str) -> None:
    """Delete the results an earlier run left in `output_dir` (the Trainer merges metrics into `all_results.json`,
    so a run without, say, target data would otherwise report the earlier run's target_* figures)."""
    import glob

    stale = sorted({path for pattern in RESULT_FILES for path in glob.glob(os.path.join(output_dir, pattern))})
    for path in stale:
        os.remove(path)
    if stale:
        logger.info("Removed %d result file(s) of an earlier run from %s.", len(stale), output_dir)


def _write_config(config: dict[str, Any], output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, CONFIG_FILE), "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)


def _resume_checkpoint(training_args: TrainingArguments, run_args: RunArguments) -> str | None:
    if training_args.resume_from_checkpoint is not None:
        return training_args.resume_from_checkpoint
    if run_args.overwrite_output_dir or not os.path.isdir(training_args.output_dir):
        return None
    last = last_complete_checkpoint(training_args.output_dir)
    if last is not None:
        logger.warning("Resuming from %s (pass --overwrite_output_dir to start afresh).", last)
    return last


def _trainer(model, args, datasets, collator, processor, num_labels) -> HftlTrainer:
    return HftlTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=datasets.get("train"),
        eval_dataset=datasets.get("validation"),
        processing_class=processor,
        compute_metrics=metrics_function(num_labels),
    )


@dataclass
class Domain:
    """The target domain of a run and how the model adapts to it (see `hftl.adaptation`).

    Attributes:
        args: the adaptation flags.
        target: the target data (model-ready splits set).
        shift: source and estimated target class priors (None when not estimated).
        layer_name: name of the classification layer in the plain model; its input is aligned.
        feature_size: width of that input.
        pretrained: features of the first head module's input before training ("train", "validation",
            "target_train" -> (N, F)), reused by the feature cache and the domain-gap report.
    """

    args: AdaptationArguments
    target: TargetData
    shift: Any
    layer_name: str
    feature_size: int
    pretrained: dict[str, np.ndarray]

    @property
    def adapts(self) -> bool:
        return self.args.adaptation != "none"


def _train_cached_head(
    model,
    head,
    ready,
    features_of,
    collator,
    training_args,
    num_epochs,
    learning_rate,
    num_labels,
    output_dir,
    final,
    domain: Domain | None = None,
) -> Stage:
    """Extract backbone features once, then train the head on them (see `hftl.features`).

    `final`: this stage's model is the one evaluated on test (feature_extraction), not a first stage (two_stage).
    With `domain` (final stage only), target features are cached too; with an adaptation method, a linear bottleneck
    (when the head is one layer) is trained under the alignment loss and then folded into the classifier.
    """
    import time

    start = time.perf_counter()
    device = training_args.device
    model.to(device)
    domain = domain if final else None
    adapts = domain is not None and domain.adapts and training_args.do_train
    wanted = {
        "train": training_args.do_train or domain is not None,
        "validation": training_args.do_eval,
        "test": training_args.do_predict and final,
    }
    needed = {split: dataset for split, dataset in ready.items() if wanted.get(split)}
    if domain is not None:
        needed["target_train"] = domain.target.unaugmented["train"]
        if domain.target.labelled:
            needed["target_test"] = domain.target.unaugmented["test"]
    reused = domain.pretrained if domain is not None else {}
    cached = {
        split: feature_dataset(
            torch.from_numpy(reused[split]) if split in reused else features_of(model, dataset, head[0][1], split),
            dataset,
        )
        for split, dataset in needed.items()
    }
    extraction_seconds = time.perf_counter() - start
    num_examples = sum(len(d) for split, d in needed.items() if split not in reused)
    logger.info("Extracted features of %d examples in %.1f s.", num_examples, extraction_seconds)
    args = dataclasses.replace(
        training_args,
        output_dir=output_dir,
        num_train_epochs=num_epochs,
        learning_rate=learning_rate,
        save_strategy="no",
        load_best_model_at_end=False,
        push_to_hub=False,
        remove_unused_columns=False,
        gradient_checkpointing=False,
        train_sampling_strategy="random",  # cached features have no length to group by
    )
    modules = [module for _, module in head]
    folds = None
    if adapts:
        if len(modules) == 1:  # a single linear head: align the output of a new linear bottleneck instead
            bottleneck = nn.Linear(modules[0].in_features, domain.args.bottleneck_dim)
            top = nn.Linear(domain.args.bottleneck_dim, num_labels)
            head_model, folds = CachedFeatureHead([bottleneck, top]), (bottleneck, top, modules[0])
            logger.info("Training a %d-wide linear bottleneck under the alignment loss.", domain.args.bottleneck_dim)
        else:
            head_model = CachedFeatureHead(modules)
        last = f"head.{len(head_model.head) - 1}"
        training_model = adaptation.run.adaptation_model(
            head_model, last, head_model.head[-1].in_features, domain.args, domain.shift
        )
        trainer = adaptation.run.adapt_trainer(
            training_model,
            args,
            cached["train"],
            cached["target_train"],
            cached.get("validation"),
            None,
            compute_metrics=metrics_function(num_labels),
        )
    else:
        head_model = CachedFeatureHead(modules)
        trainer = HftlTrainer(
            model=head_model,
            args=args,
            train_dataset=cached.get("train"),
            eval_dataset=cached.get("validation"),
            compute_metrics=metrics_function(num_labels),
        )
    metrics = {}
    if training_args.do_train:
        metrics = dict(trainer.train().metrics)
    metrics["feature_extraction_runtime"] = round(extraction_seconds, 4)
    metrics["feature_extraction_samples_per_second"] = round(num_examples / max(extraction_seconds, 1e-9), 3)
    stage = Stage(
        trainer,
        cached.get("validation"),
        cached.get("test"),
        metrics,
        target_test_dataset=cached.get("target_test"),
        target_train_dataset=cached.get("target_train"),
        source_train_dataset=cached.get("train"),
        feature_model=head_model,
        feature_layer=head_model.head[-1],
        feature_collator=None,
    )
    if folds is not None:  # the saved model is the plain classifier: bottleneck and top folded into its layer
        adaptation.run.fold_bottleneck(*folds)
    return stage


def _train(
    model,
    parts: ModelParts,
    ready,
    unaugmented,
    features_of,
    collator,
    processor,
    labels: LabelInfo,
    strategy_args: StrategyArguments,
    training_args: TrainingArguments,
    run_args: RunArguments,
    domain: Domain | None = None,
) -> Stage:
    """Run the strategy's training stage(s); return the last one (with `domain`: adapted to the target)."""
    num_labels = len(labels.names)
    strategy = strategy_args.strategy
    head_only = strategy in ("feature_extraction", "two_stage")
    cached_stage = None
    if head_only:
        head = feature_head(model, num_labels)
        head_names = [name for name, _ in head]
        epochs = (
            training_args.num_train_epochs
            if strategy == "feature_extraction"
            else strategy_args.stage1_num_train_epochs
        )
        stage_dir = (
            training_args.output_dir
            if strategy == "feature_extraction"
            else os.path.join(training_args.output_dir, "stage1")
        )
        if strategy_args.cache_features and cache_is_exact(model, head_names):
            cached_stage = _train_cached_head(
                model,
                head,
                unaugmented(),
                features_of,
                collator,
                training_args,
                epochs,
                training_args.learning_rate,
                num_labels,
                stage_dir,
                final=strategy == "feature_extraction",
                domain=domain,
            )
        else:
            if strategy_args.cache_features:
                logger.warning(
                    "Features not cached: parameters outside the head %s train too (%s); the "
                    "backbone runs at every step.",
                    head_names,
                    sorted({n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad})[:8],
                )
            if strategy == "two_stage":
                stage1_args = dataclasses.replace(
                    training_args,
                    output_dir=stage_dir,
                    num_train_epochs=epochs,
                    save_strategy="no",
                    load_best_model_at_end=False,
                    push_to_hub=False,
                )
                trainer = _trainer(model, stage1_args, ready, collator, processor, num_labels)
                if training_args.do_train:
                    trainer.train()
        if strategy == "feature_extraction" and cached_stage is not None:
            return cached_stage

    stage1_metrics = {}
    if strategy == "two_stage":
        if cached_stage is not None:
            stage1_metrics = {f"stage1_{k}": v for k, v in cached_stage.metrics.items()}
        unfreeze_top(model, parts, strategy_args.unfreeze_top_k)
        log_parameter_counts(model, f"Stage 2 (top {strategy_args.unfreeze_top_k} layers unfrozen)")
        training_args = dataclasses.replace(training_args, learning_rate=strategy_args.stage2_learning_rate)

    feature_model, feature_layer = model, None
    if domain is not None and domain.adapts and training_args.do_train:
        if training_args.train_sampling_strategy == "group_by_length":
            logger.info("Adaptation pairs source and target batches: training batches are sampled at random.")
            training_args = dataclasses.replace(training_args, train_sampling_strategy="random")
        feature_model = adaptation.run.adaptation_model(
            model,
            adaptation.run.wrapped_name(model, domain.layer_name),
            domain.feature_size,
            domain.args,
            domain.shift,
        )
        trainer = adaptation.run.adapt_trainer(
            feature_model,
            training_args,
            ready["train"],
            domain.target.ready["train"],
            ready.get("validation"),
            collator,
            processing_class=processor,
            compute_metrics=metrics_function(num_labels),
        )
        feature_model, feature_layer = model, model.get_submodule(feature_model.feature_layer)
    else:
        trainer = _trainer(model, training_args, ready, collator, processor, num_labels)
    metrics = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=_resume_checkpoint(training_args, run_args))
        metrics = dict(result.metrics)
    metrics.update(stage1_metrics)
    if feature_layer is None and domain is not None:
        feature_layer = model.get_submodule(adaptation.run.wrapped_name(model, domain.layer_name))
    return Stage(
        trainer,
        ready.get("validation"),
        ready.get("test"),
        metrics,
        target_test_dataset=domain.target.unaugmented.get("test") if domain and domain.target.labelled else None,
        target_train_dataset=domain.target.unaugmented["train"] if domain else None,
        source_train_dataset=unaugmented()["train"] if domain else None,
        feature_model=feature_model,
        feature_layer=feature_layer,
        feature_collator=collator,
    )


def _evaluate(
    stage: Stage, dataset, rows: list[int] | None, title: str, prefix: str, labels: LabelInfo, output_dir: str
) -> dict[str, float]:
    """Predict `dataset`; metrics (prefixed), report, confusion matrix and predictions CSV in `output_dir`."""
    trainer = stage.trainer
    output = trainer.predict(dataset, metric_key_prefix=prefix)
    metrics = dict(output.metrics)
    metrics[f"{prefix}_samples"] = len(dataset)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    predictions = np.asarray(logits).argmax(-1)
    if trainer.is_world_process_zero():
        if output.label_ids is not None:
            report = per_class_report(predictions, np.asarray(output.label_ids), labels.names)
            metrics.update(flat_per_class(report, prefix))
            save_report(report, os.path.join(output_dir, f"{prefix}_report.json"))
            save_confusion_matrix(report, os.path.join(output_dir, f"{prefix}_confusion_matrix.png"), title)
        rows = rows if rows is not None else list(range(len(predictions)))
        with open(os.path.join(output_dir, f"{prefix}_predictions.csv"), "w", encoding="utf-8") as handle:
            handle.write("source_row,prediction\n")  # source_row: 0-based row of the example in its file / split
            handle.writelines(f"{row},{labels.names[p]}\n" for row, p in zip(rows, predictions, strict=True))
    trainer.log_metrics(prefix, metrics)
    trainer.save_metrics(prefix, metrics)
    return metrics


def _save(model, stage: Stage, processor, output_dir: str, strategy_args: StrategyArguments) -> None:
    """Save the artifact: a plain Hugging Face model in `output_dir` (LoRA: merged, adapter in `adapter/`)."""
    trainer = stage.trainer
    if strategy_args.strategy == "lora":
        if trainer.is_world_process_zero():
            adapter_dir = os.path.join(output_dir, "adapter") if strategy_args.merge_adapter else output_dir
            model.save_pretrained(adapter_dir)
            processor.save_pretrained(adapter_dir)
            if strategy_args.merge_adapter:
                model.merge_and_unload().save_pretrained(output_dir)
                processor.save_pretrained(output_dir)
            logger.info("Saved the LoRA adapter to %s", adapter_dir)
    elif trainer.model is model:
        trainer.save_model(output_dir)  # handles FSDP / DeepSpeed gathering and the main-process check
    elif trainer.is_world_process_zero():
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)


def _domain(model, target: TargetData, args: AdaptationArguments, unaugmented, features_of, labels, training_args):
    """Set up adaptation before the strategy is applied: the aligned layer, and (when adapting or reporting) the
    pretrained features of source and target and the label shift they show."""
    num_labels = len(labels.names)
    layer_name, feature_size = adaptation.run.alignment_layer(model, num_labels)
    pretrained, shift = {}, None
    if args.adaptation != "none" or args.domain_gap_report:
        source = unaugmented()
        datasets = {
            "train": source["train"],
            "validation": source["validation"],
            "target_train": target.unaugmented["train"],
        }
        layer = feature_head(model, num_labels)[0][1]
        pretrained = {split: features_of(model, dataset, layer, split).numpy() for split, dataset in datasets.items()}
        shift = adaptation.run.estimate_label_shift(
            {
                "train": pretrained["train"],
                "validation": pretrained["validation"],
                "target": pretrained["target_train"],
            },
            {split: np.asarray(source[split]["labels"]) for split in ("train", "validation")},
            num_labels,
            args,
            training_args.seed,
        )
    return Domain(args, target, shift, layer_name, feature_size, pretrained)


def _domain_reports(domain: Domain, stage: Stage, labels: LabelInfo, training_args, args, output_dir) -> dict:
    """Label-shift figures and, with --domain_gap_report, the domain-gap report; returns scalar metrics."""
    metrics = {}
    if domain.shift is not None:
        metrics["label_shift_total_variation"] = round(domain.shift.total_variation, 4)
        if stage.trainer.is_world_process_zero():
            with open(os.path.join(output_dir, "label_shift.json"), "w", encoding="utf-8") as handle:
                json.dump(domain.shift.as_dict(labels.names), handle, indent=2)
    if not args.domain_gap_report or not stage.trainer.is_world_process_zero():
        return metrics
    source = np.asarray(stage.source_train_dataset["labels"])
    before = (domain.pretrained["train"], source, domain.pretrained["target_train"], None)
    after = None
    if training_args.do_train and stage.feature_layer is not None:
        limit = adaptation.run.REPORT_EXAMPLES
        subsets = {
            "train": stage.source_train_dataset.select(range(min(limit, len(stage.source_train_dataset)))),
            "target_train": stage.target_train_dataset.select(range(min(limit, len(stage.target_train_dataset)))),
        }
        trained = adaptation.run.pretrained_features(
            stage.feature_model,
            stage.feature_layer,
            subsets,
            stage.feature_collator,
            training_args.per_device_eval_batch_size,
            training_args.device,
            lambda split: None,
        )
        after = (trained["train"], source[:limit], trained["target_train"], None)
    report = adaptation.run.write_domain_gap_report(output_dir, before, after, domain.shift, labels, training_args.seed)
    for when in ("before", "after"):
        for key, value in report.get(when, {}).items():
            if value is not None:
                metrics[f"domain_gap_{when}_{key}"] = value
    return metrics


ADAPTATION_DETAILS = {
    "dann": "Domain-adversarial training (Ganin et al., JMLR 2016): a domain discriminator behind a gradient reversal "
    "layer, on the features entering the classification layer",
    "mmd": "Multi-kernel MMD between source and target features entering the classification layer (Long et al., "
    "ICML 2015)",
}


def _adaptation_details(args: AdaptationArguments, domain: Domain | None) -> str:
    """One paragraph for the model card: method, trade-off, target data, label-shift correction."""
    if domain is None or args.adaptation == "none":
        return ""
    method = adaptation.base_method(args.adaptation)
    text = f"{ADAPTATION_DETAILS[method]}; trade-off {args.trade_off}. Target data: {domain.target.description}."
    if args.adaptation.startswith("iw") and domain.shift is not None:
        prior = ", ".join(f"{p:.3f}" for p in domain.shift.target_prior)
        text += (
            f" Source classes re-weighted to the target class prior estimated without target labels "
            f"({domain.shift.estimator}: {prior})."
        )
    return text + " The domain discriminator / alignment loss is a training-time part and is not in this model."


def run_classification(modality: Modality, defaults: dict[str, Any] | None = None, args: list[str] | None = None):
    """Parse flags, then check the data, adapt the model, train, evaluate and save (see the module docstring).

    Args:
        modality: how raw examples become model inputs.
        defaults: the recipe's flag defaults (a `--config` file and the command line override them).
        args: the command line (default: `sys.argv[1:]`).

    Returns:
        All metrics, as written to `all_results.json`.

    Raises:
        InputError: bad flags or data, raised before any model is loaded.
    """
    _cpu_processes_without_accelerator()
    parsed, explicit = parse_args(argument_types(modality), defaults, args)
    model_args, data_args, modality_args, strategy_args, adaptation_args, run_args, training_args = parsed
    for key, value in modality.training_overrides.items():
        setattr(training_args, key, value)
    _find_unused_parameters_with_checkpointing(training_args)
    _setup_logging(training_args)
    logger.info(
        "World size %d (%s), device %s.",
        training_args.world_size,
        training_args.parallel_mode.value,
        training_args.device,
    )
    _strategy_learning_rates(strategy_args, training_args, explicit)
    push_to_hub = training_args.push_to_hub
    training_args.push_to_hub = False  # the finished folder is pushed once, with its card, by `hub.push_to_hub`
    hub_token = hub.take_token(training_args)  # kept out of the training_args.bin that the Trainer pickles
    config = resolved_config(
        model_args, data_args, modality_args, strategy_args, adaptation_args, run_args, training_args
    )
    config["push_to_hub"] = push_to_hub
    _check_resumable(config, training_args, run_args)
    if (
        adaptation_args.adaptation != "none"
        and strategy_args.strategy == "feature_extraction"
        and not strategy_args.cache_features
    ):
        raise InputError(
            "--strategy feature_extraction with --adaptation trains a bottleneck on cached features: drop "
            "--cache_features false, or choose a strategy that trains the backbone (full, freeze, two_stage, lora)."
        )
    set_seed(training_args.seed)

    # 1. data, checked before any model is loaded
    raw = load_raw_data(
        data_args.dataset_name,
        data_args.dataset_config_name,
        data_args.train_file,
        data_args.validation_file,
        data_args.test_file,
        default_dataset=modality.default_dataset,
        cache_dir=model_args.cache_dir,
        token=model_args.token,
        folders=getattr(modality_args, "folders", dict)(),
        folder_builder=modality.folder_builder,
    )
    columns = modality.input_columns(modality_args, raw)
    modality.prepare_raw(raw, columns, modality_args)
    splits, labels = check_and_encode(
        raw,
        columns,
        data_args.label_column_name,
        modality.is_valid_input,
        modality.input_problem,
        drop_invalid_examples=data_args.drop_invalid_examples,
        merge_label_variants=data_args.merge_label_variants,
        validation_split_percentage=data_args.validation_split_percentage,
        seed=training_args.seed,
        max_train_samples=data_args.max_train_samples,
        max_eval_samples=data_args.max_eval_samples,
        max_predict_samples=data_args.max_predict_samples,
        describe_input=modality.describe_input,
    )
    logger.info("Data: %s", raw.description)
    logger.info("Splits: %s; classes: %s", {s: len(d) for s, d in splits.items()}, labels.names)
    target = None
    if adaptation_args.has_target:
        target = adaptation.run.load_target(
            modality,
            modality_args,
            adaptation_args,
            columns,
            data_args.label_column_name,
            labels,
            model_args,
            data_args,
        )

    # 2. model and inputs
    model_path = model_args.model_name_or_path or modality.default_model()
    if model_args.model_name_or_path is None:
        for key, value in modality.default_model_flags.items():
            if key not in explicit:
                setattr(modality_args, key, value)
    processor = modality.configure_processor(modality.load_processor(model_args, model_path), modality_args)
    model, new_parameters = load_model(modality.auto_model_class, model_args, model_path, labels)
    if strategy_args.feature_layer is not None:
        keep_bottom_layers(model, strategy_args.feature_layer)
    model = modality.prepare_model(model, modality_args, processor)
    ready = modality.preprocess(splits, processor, columns, modality_args, training_args)
    collator = modality.data_collator(processor, modality_args)
    deterministic = {}

    def unaugmented():  # deterministic inputs for feature caching
        if not deterministic:
            deterministic.update(
                modality.preprocess(splits, processor, columns, modality_args, training_args, augment=False)
            )
        return deterministic

    def lengths(split: str):  # example sizes, for length-sorted feature extraction
        if split.startswith("target_"):
            return modality.example_lengths(target.splits[split.removeprefix("target_")], columns)
        return modality.example_lengths(splits[split], columns)

    def features_of(extracting_model, dataset, layer, split: str):  # inputs of `layer`, (N, F), maybe cached on disk
        def compute():
            batch_size = training_args.per_device_eval_batch_size
            device = training_args.device
            return extract_features(extracting_model, dataset, collator, batch_size, layer, device, lengths(split))

        if strategy_args.feature_cache_dir is None:
            return compute()
        backbone = extracting_model.get_submodule(backbone_name(extracting_model))
        layer_name = next(name for name, module in extracting_model.named_modules() if module is layer)
        key = {
            "model": [
                type(extracting_model).__name__,
                module_digest(backbone),
                extracting_model.config.to_json_string(),
            ],
            "layer": layer_name,
            "data": [len(dataset), dataset_digest(dataset)],
            "inputs": [dataclasses.asdict(modality_args), repr(processor), collator.__class__.__name__],
        }
        return cached_extract(strategy_args.feature_cache_dir, key, compute)

    domain = None
    if target is not None:
        target.ready = modality.preprocess(target.splits, processor, columns, modality_args, training_args)
        target.unaugmented = modality.preprocess(
            target.splits, processor, columns, modality_args, training_args, augment=False
        )
        domain = _domain(model, target, adaptation_args, unaugmented, features_of, labels, training_args)

    # 3. strategy
    parts = model_parts(model, new_parameters)
    if strategy_args.strategy == "freeze" and strategy_args.num_frozen_layers is None:
        strategy_args.num_frozen_layers = len(parts.layers) // 2
    model = apply_strategy(model, parts, strategy_args, modality.peft_task_type)
    modality.after_strategy(model, modality_args)
    trainable, total = log_parameter_counts(model, f"Strategy '{strategy_args.strategy}'")

    if training_args.should_save:  # written before training too, so that a resume can be checked against it
        _remove_stale_results(training_args.output_dir)
        _write_config(config, training_args.output_dir)

    # 4. train, 5. evaluate
    stage = _train(
        model,
        parts,
        ready,
        unaugmented,
        features_of,
        collator,
        processor,
        labels,
        strategy_args,
        training_args,
        run_args,
        domain,
    )
    output_dir = training_args.output_dir
    os.makedirs(output_dir, exist_ok=True)
    metrics: dict[str, float] = {}
    if training_args.do_train:
        stage.metrics.update(train_samples=len(ready["train"]), trainable_parameters=trainable, total_parameters=total)
        stage.trainer.log_metrics("train", stage.metrics)
        stage.trainer.save_metrics("train", stage.metrics)
        metrics.update(stage.metrics)
    if training_args.do_eval and stage.eval_dataset is not None:
        rows = labels.source_rows.get("validation")
        metrics.update(_evaluate(stage, stage.eval_dataset, rows, "validation split", "eval", labels, output_dir))
    if training_args.do_predict and stage.test_dataset is not None:
        rows = labels.source_rows.get("test")
        metrics.update(_evaluate(stage, stage.test_dataset, rows, "test split", "test", labels, output_dir))
    if stage.target_test_dataset is not None and (training_args.do_eval or training_args.do_predict):
        rows = domain.target.rows.get("test")
        metrics.update(_evaluate(stage, stage.target_test_dataset, rows, "target domain", "target", labels, output_dir))
    if domain is not None:
        domain_metrics = _domain_reports(domain, stage, labels, training_args, adaptation_args, output_dir)
        if domain_metrics:
            stage.trainer.save_metrics("domain", domain_metrics)
            metrics.update(domain_metrics)

    # 6. save: model (or adapter), processor, card, results, resolved config
    _save(model, stage, processor, output_dir, strategy_args)
    if stage.trainer.is_world_process_zero():
        _write_config(config, output_dir)
        details = STRATEGY_DETAILS[strategy_args.strategy].format(**dataclasses.asdict(strategy_args))
        model_card(
            model_path=model_path,
            pipeline_task=modality.pipeline_task,
            data_description=raw.description,
            hub_dataset=raw.hub_dataset,
            strategy=strategy_args.strategy,
            strategy_details=details,
            labels=labels,
            metrics=metrics,
            hyperparameters={
                "learning_rate": training_args.learning_rate,
                "num_train_epochs": training_args.num_train_epochs,
                "per_device_train_batch_size": training_args.per_device_train_batch_size,
                "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
                "seed": training_args.seed,
                "trainable_parameters": f"{trainable:,} of {total:,}",
            },
            is_adapter=strategy_args.strategy == "lora" and not strategy_args.merge_adapter,
            custom_code=getattr(type(model), "_auto_class", None) is not None,  # register_for_auto_class
            adaptation=None if adaptation_args.adaptation == "none" else adaptation_args.adaptation,
            adaptation_details=_adaptation_details(adaptation_args, domain),
        ).save(os.path.join(output_dir, "README.md"))
        logger.info("Saved the model, its card and results to %s", output_dir)
        if push_to_hub:
            hub.push_to_hub(output_dir, training_args, token=hub_token)
    return metrics
