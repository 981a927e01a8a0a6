"""`lora`: peft LoRA adapters on the backbone, the head and new modules trained in full; saved merged or alone."""

from __future__ import annotations

import logging
import os

from torch import nn

from hftl.errors import InputError
from hftl.strategies.base import Strategy, register_strategy
from hftl.strategies.parts import backbone_name

logger = logging.getLogger("hftl")

# LoRA target modules by model type, for models without attention projections of a common name
LORA_TARGET_MODULES = {
    "hftl_efficientnet_lite": ["expand_conv", "project_conv"],
    "resnet": ["convolution"],
    "convnext": ["pwconv1", "pwconv2"],
}
# attention projections, most specific first: the first group whose names all exist in the backbone is the default
ATTENTION_PROJECTIONS = (
    ("query", "value"),
    ("q_proj", "v_proj"),
    ("q_lin", "v_lin"),
    ("query_proj", "value_proj"),
    ("q", "v"),
    ("Wqkv",),
    ("qkv",),
    ("c_attn",),
    ("query_key_value",),
)


def lora_target_modules(model: nn.Module, requested: list[str] | None) -> list[str]:
    """The LoRA target modules: `requested`, or the model's attention query / value projections.

    Defaults come from `LORA_TARGET_MODULES` for the model type, else from the first group of
    `ATTENTION_PROJECTIONS` whose names all exist in the backbone (names change between transformers versions:
    ViT's `query` became `q_proj` in 5.x, so they are looked up, not assumed).

    Raises:
        InputError: a requested name matches no module, or no default applies; the message lists the candidate
            names (the leaf names of the backbone's `nn.Linear` / `nn.Conv*` modules).
    """
    prefix = backbone_name(model)
    leaves = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if name.startswith(prefix + ".") and isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d)
    }
    if requested:
        missing = [t for t in requested if t not in leaves]
        if missing:
            raise InputError(
                f"--lora_target_modules {missing} match no module of {type(model).__name__}. "
                f"Candidates: {sorted(leaves)}."
            )
        return list(requested)
    model_type = getattr(model.config, "model_type", "")
    groups = [LORA_TARGET_MODULES[model_type]] if model_type in LORA_TARGET_MODULES else []
    for group in groups + [list(group) for group in ATTENTION_PROJECTIONS]:
        if all(name in leaves for name in group):
            return group
    raise InputError(
        f"No default LoRA target modules for {type(model).__name__} (model type '{model_type}'). Pass "
        f"--lora_target_modules, choosing among: {sorted(leaves)}."
    )


@register_strategy
class LoRA(Strategy):
    name = "lora"
    description = "LoRA adapters (r={lora_r}, alpha={lora_alpha}) on {lora_target_modules}; the head trained in full."
    default_learning_rate = 2e-3  # adapters need far larger steps than full fine-tuning (measured, README)
    resume_keys = ("lora_r", "lora_alpha", "lora_target_modules")

    def search_space(self, args, layer_count):
        """--lora_r and --lora_alpha: half, the same and twice their values."""
        r, alpha = args.lora_r, args.lora_alpha
        return {
            "lora_r": {"choices": sorted({max(1, r // 2), r, 2 * r})},
            "lora_alpha": {"choices": [alpha / 2, alpha, alpha * 2]},
        }

    def apply(self, model, parts, args, task_type):
        """Wrap `model` in peft LoRA adapters; the head and every new module train in full and are saved.

        Returns:
            A `peft.PeftModel`.
        """
        from peft import LoraConfig, get_peft_model

        head_modules = sorted({name.split(".", 1)[0] for name in parts.head})
        new_modules = sorted({name.rsplit(".", 1)[0] for name in parts.new if "." in name})
        new_in_backbone = [m for m in new_modules if m.startswith(parts.backbone_prefix + ".")]
        config = LoraConfig(
            r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout,
            target_modules=lora_target_modules(model, args.lora_target_modules),
            modules_to_save=head_modules + new_in_backbone,
            task_type=task_type,
        )
        logger.info(
            "LoRA on %s (r=%d, alpha=%g); trained and saved in full: %s",
            config.target_modules,
            args.lora_r,
            args.lora_alpha,
            config.modules_to_save,
        )
        return get_peft_model(model, config)

    def save(self, model, trainer, processor, output_dir, args) -> None:
        """The adapter in `output_dir/adapter` and the merged model in `output_dir` (`--merge_adapter false`: the
        adapter alone, in `output_dir`)."""
        if not trainer.is_world_process_zero():
            return
        adapter_dir = os.path.join(output_dir, "adapter") if args.merge_adapter else output_dir
        model.save_pretrained(adapter_dir)
        processor.save_pretrained(adapter_dir)
        if args.merge_adapter:
            model.merge_and_unload().save_pretrained(output_dir)
            processor.save_pretrained(output_dir)
        logger.info("Saved the LoRA adapter to %s", adapter_dir)
