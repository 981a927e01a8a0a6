"""Steps 8d and 11 of a run: the artifact (a plain Hugging Face model, or a LoRA adapter), its card, the resolved
config and the push to the Hub."""

from __future__ import annotations

import dataclasses
import logging
import os

from hftl import hub
from hftl.adaptation.build import card_text
from hftl.config import RunConfig, write_config
from hftl.context import RunContext
from hftl.export.step import export_step
from hftl.modelcard import model_card
from hftl.multi_label.card import card_problem
from hftl.strategies import get_strategy
from hftl.writes import output_writes

logger = logging.getLogger("hftl")


def _adaptation_name(config: RunConfig, auto: bool = False) -> str | None:
    """The card's adaptation tag: the method, `+ importance weighting` when set; None for source-only training.
    `auto`: chosen by `--adaptation auto` (`auto + ` first; source only is then `auto + none`)."""
    method, weighted = config.adaptation.adaptation, config.adaptation.importance_weighting
    if auto:
        return f"auto + {_adaptation_name(config) or 'none'}"
    if method == "none":
        return "importance_weighting" if weighted else None
    return f"{method} + importance_weighting" if weighted else method


def _card(run: RunContext, metrics: dict[str, float] | None, counts: tuple[int, int]):
    config, data, loaded = run.config, run.data, run.loaded
    args, training, strategy = config.strategy, config.training, get_strategy(config.strategy.strategy)
    trainable, total = counts
    return model_card(
        model_path=loaded.path,
        pipeline_task=run.modality.pipeline_task,
        data_description=data.source.description,
        hub_dataset=data.source.hub_dataset,
        strategy=args.strategy,
        strategy_details=strategy.description.format(**dataclasses.asdict(args))
        + (config.layer_choice.card_text() if config.layer_choice else ""),
        labels=data.labels,
        metrics=metrics,
        hyperparameters={
            "learning_rate": training.learning_rate,
            "num_train_epochs": training.num_train_epochs,
            "per_device_train_batch_size": training.per_device_train_batch_size,
            "gradient_accumulation_steps": training.gradient_accumulation_steps,
            "seed": training.seed,
            "trainable_parameters": f"{trainable:,} of {total:,}",
        },
        is_adapter=args.strategy == "lora" and not args.merge_adapter,
        custom_code=getattr(type(loaded.model), "_auto_class", None) is not None,  # register_for_auto_class
        adaptation=_adaptation_name(config, run.selection is not None),
        adaptation_details=card_text(config, run.shift, data.target.description, run.selection) if data.target else "",
        usage=run.modality.pipeline_usage(run.processor, config.inputs),
        problem=card_problem(run),
    )


def save_model(run: RunContext, model, trained, counts: tuple[int, int]) -> None:
    """Save the trained model before anything else can fail (the strategy decides how), then on the main process
    the resolved config and a card marked "not evaluated" (`publish` rewrites it with the metrics).

    Args:
        model: the trained model (a peft model for LoRA); counts: its (trainable, total) parameters.

    Raises:
        InputError: the disk filled up (or turned read-only) while saving; what was half-written is removed.
    """
    config, output_dir = run.config, run.config.training.output_dir
    with output_writes(output_dir, "the trained model"):  # a full disk: one clear error, half-written files removed
        get_strategy(config.strategy.strategy).save(model, trained.trainer, run.processor, output_dir, config.strategy)
        if trained.trainer.is_world_process_zero():
            write_config(config, output_dir)
            _card(run, None, counts).save(os.path.join(output_dir, "README.md"))
    if trained.trainer.is_world_process_zero():
        logger.info("Saved the model to %s (before evaluation, so that an evaluation error loses nothing)", output_dir)


def publish(run: RunContext, trained, metrics: dict[str, float], counts: tuple[int, int]) -> None:
    """After evaluation: on the main process the card with the metrics, the ONNX export (`--export_onnx`) and the
    push (the `onnx/` folder with it); then wait for every process and close the process group.

    Raises:
        InputError: the disk filled up while writing the card.
        ExportError: the ONNX graph's logits differ from the model's (the model and its card are saved; no push).
        PushError: `--push_to_hub` failed (the local output is complete).
    """
    config, output_dir = run.config, run.config.training.output_dir
    try:
        if trained.trainer.is_world_process_zero():
            with output_writes(output_dir, "the model card"):
                _card(run, metrics, counts).save(os.path.join(output_dir, "README.md"))
            logger.info("Saved the model card and results to %s", output_dir)
            export_step(run, trained)
            if config.push_to_hub:
                hub.push_to_hub(output_dir, config.training, token=config.hub_token)
    finally:
        _finish(trained.trainer)


def _finish(trainer) -> None:
    """Wait for every process, then close the process group (a process that exits with it open may abort)."""
    import torch.distributed as dist

    trainer.accelerator.wait_for_everyone()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
