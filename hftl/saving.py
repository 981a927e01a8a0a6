"""Step 12 of a run: the artifact (a plain Hugging Face model, or a LoRA adapter), its card, the resolved config,
and the push to the Hub."""

from __future__ import annotations

import dataclasses
import logging
import os

from hftl import hub
from hftl.config import RunConfig, write_config
from hftl.modelcard import model_card

logger = logging.getLogger("hftl")


def _card(modality, config: RunConfig, loaded, data, metrics, strategy, adaptation_text: str, counts):
    args, training = config.strategy, config.training
    trainable, total = counts
    return model_card(
        model_path=loaded.path,
        pipeline_task=modality.pipeline_task,
        data_description=data.source.description,
        hub_dataset=data.source.hub_dataset,
        strategy=args.strategy,
        strategy_details=strategy.description.format(**dataclasses.asdict(args)),
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
        adaptation=None if config.adaptation.adaptation == "none" else config.adaptation.adaptation,
        adaptation_details=adaptation_text,
    )


def save(modality, config: RunConfig, model, loaded, trained, data, metrics, strategy, adaptation_text, counts) -> None:
    """Save the model (the strategy decides how), then on the main process the config, the card, and push.

    Raises:
        PushError: `--push_to_hub` failed (the local output is complete).
    """
    output_dir = config.training.output_dir
    strategy.save(model, trained.trainer, loaded.processor, output_dir, config.strategy)
    if not trained.trainer.is_world_process_zero():
        return
    write_config(config, output_dir)
    card = _card(modality, config, loaded, data, metrics, strategy, adaptation_text, counts)
    card.save(os.path.join(output_dir, "README.md"))
    logger.info("Saved the model, its card and results to %s", output_dir)
    if config.push_to_hub:
        hub.push_to_hub(output_dir, config.training, token=config.hub_token)
