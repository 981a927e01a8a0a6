"""The shared run: data -> checks -> model -> strategy -> Trainer -> metrics -> saved model, card and results.

Every recipe calls `run_classification` with its `Modality`; nothing below depends on the modality.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import transformers
import yaml
from transformers import AutoConfig, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from hftl import hub
from hftl.arguments import (
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
    extract_features,
    feature_dataset,
    feature_head,
)
from hftl.metrics import flat_per_class, metrics_function, per_class_report, save_confusion_matrix, save_report
from hftl.modalities.base import Modality
from hftl.modelcard import model_card
from hftl.strategies import (
    DEFAULT_LEARNING_RATES,
    ModelParts,
    apply_strategy,
    log_parameter_counts,
    model_parts,
    unfreeze_top,
)
from hftl.trainer import HftlTrainer

logger = logging.getLogger("hftl")


def argument_types(modality: Modality) -> tuple[type, ...]:
    """The dataclasses a recipe parses: model, data, the modality's own, strategy, run and `TrainingArguments`."""
    return (
        ModelArguments,
        DataTrainingArguments,
        modality.arguments_class,
        StrategyArguments,
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
        or get_last_checkpoint(output_dir) is None
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


def _write_config(config: dict[str, Any], output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, CONFIG_FILE), "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)


def _resume_checkpoint(training_args: TrainingArguments, run_args: RunArguments) -> str | None:
    if training_args.resume_from_checkpoint is not None:
        return training_args.resume_from_checkpoint
    if run_args.overwrite_output_dir or not os.path.isdir(training_args.output_dir):
        return None
    last = get_last_checkpoint(training_args.output_dir)
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


def _train_cached_head(
    model, head, ready, lengths, collator, training_args, num_epochs, learning_rate, num_labels, output_dir, final
) -> Stage:
    """Extract backbone features once, then train the head on them (see `hftl.features`).

    `final`: this stage's model is the one evaluated on test (feature_extraction), not a first stage (two_stage).
    """
    import time

    start = time.perf_counter()
    device = training_args.device
    model.to(device)
    wanted = {
        "train": training_args.do_train,
        "validation": training_args.do_eval,
        "test": training_args.do_predict and final,
    }
    needed = {split: dataset for split, dataset in ready.items() if wanted.get(split)}
    cached = {
        split: feature_dataset(
            extract_features(
                model, dataset, collator, training_args.per_device_eval_batch_size, head[0][1], device, lengths(split)
            ),
            dataset,
        )
        for split, dataset in needed.items()
    }
    extraction_seconds = time.perf_counter() - start
    num_examples = sum(len(d) for d in needed.values())
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
    trainer = HftlTrainer(
        model=CachedFeatureHead([module for _, module in head]),
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
    return Stage(trainer, cached.get("validation"), cached.get("test"), metrics)


def _train(
    model,
    parts: ModelParts,
    ready,
    unaugmented,
    lengths,
    collator,
    processor,
    labels: LabelInfo,
    strategy_args: StrategyArguments,
    training_args: TrainingArguments,
    run_args: RunArguments,
) -> Stage:
    """Run the strategy's training stage(s); return the last one."""
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
                lengths,
                collator,
                training_args,
                epochs,
                training_args.learning_rate,
                num_labels,
                stage_dir,
                final=strategy == "feature_extraction",
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

    trainer = _trainer(model, training_args, ready, collator, processor, num_labels)
    metrics = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=_resume_checkpoint(training_args, run_args))
        metrics = dict(result.metrics)
    metrics.update(stage1_metrics)
    return Stage(trainer, ready.get("validation"), ready.get("test"), metrics)


def _evaluate(stage: Stage, split: str, prefix: str, labels: LabelInfo, output_dir: str) -> dict[str, float]:
    dataset = stage.eval_dataset if split == "validation" else stage.test_dataset
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
            save_confusion_matrix(report, os.path.join(output_dir, f"{prefix}_confusion_matrix.png"), f"{split} split")
        rows = labels.source_rows.get(split, list(range(len(predictions))))
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
    parsed, explicit = parse_args(argument_types(modality), defaults, args)
    model_args, data_args, modality_args, strategy_args, run_args, training_args = parsed
    for key, value in modality.training_overrides.items():
        setattr(training_args, key, value)
    _setup_logging(training_args)
    _strategy_learning_rates(strategy_args, training_args, explicit)
    push_to_hub = training_args.push_to_hub
    training_args.push_to_hub = False  # the finished folder is pushed once, with its card, by `hub.push_to_hub`
    hub_token = hub.take_token(training_args)  # kept out of the training_args.bin that the Trainer pickles
    config = resolved_config(model_args, data_args, modality_args, strategy_args, run_args, training_args)
    config["push_to_hub"] = push_to_hub
    _check_resumable(config, training_args, run_args)
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

    # 2. model and inputs
    model_path = model_args.model_name_or_path or modality.default_model()
    if model_args.model_name_or_path is None:
        for key, value in modality.default_model_flags.items():
            if key not in explicit:
                setattr(modality_args, key, value)
    processor = modality.configure_processor(modality.load_processor(model_args, model_path), modality_args)
    model, new_parameters = load_model(modality.auto_model_class, model_args, model_path, labels)
    model = modality.prepare_model(model, modality_args, processor)
    ready = modality.preprocess(splits, processor, columns, modality_args, training_args)
    collator = modality.data_collator(processor, modality_args)

    def unaugmented():  # deterministic inputs for feature caching
        return modality.preprocess(splits, processor, columns, modality_args, training_args, augment=False)

    def lengths(split: str):  # example sizes, for length-sorted feature extraction
        return modality.example_lengths(splits[split], columns)

    # 3. strategy
    parts = model_parts(model, new_parameters)
    if strategy_args.strategy == "freeze" and strategy_args.num_frozen_layers is None:
        strategy_args.num_frozen_layers = len(parts.layers) // 2
    model = apply_strategy(model, parts, strategy_args, modality.peft_task_type)
    modality.after_strategy(model, modality_args)
    trainable, total = log_parameter_counts(model, f"Strategy '{strategy_args.strategy}'")

    if training_args.should_save:  # written before training too, so that a resume can be checked against it
        _write_config(config, training_args.output_dir)

    # 4. train, 5. evaluate
    stage = _train(
        model,
        parts,
        ready,
        unaugmented,
        lengths,
        collator,
        processor,
        labels,
        strategy_args,
        training_args,
        run_args,
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
        metrics.update(_evaluate(stage, "validation", "eval", labels, output_dir))
    if training_args.do_predict and stage.test_dataset is not None:
        metrics.update(_evaluate(stage, "test", "test", labels, output_dir))

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
        ).save(os.path.join(output_dir, "README.md"))
        logger.info("Saved the model, its card and results to %s", output_dir)
        if push_to_hub:
            hub.push_to_hub(output_dir, training_args, token=hub_token)
    return metrics
