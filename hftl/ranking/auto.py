"""`--feature_layer auto`: before training, rank the layers of the run's model on the source training data (never
target labels) and crop the model at the best one, as `--feature_layer N` would.

The rule is `hftl rank`'s (`hftl.ranking.table.RANKING_RULE`): highest LogME, ties by fewer parameters. Only stacks
of identical layers can be cropped (BERT-like text encoders, ViT, Whisper and wav2vec2 encoders); models whose blocks
change width (EfficientNet-Lite, ResNet) are refused with a pointer to `hftl rank`, which compares their stages.
The table is logged and written to `layer_ranking.json`; the choice goes to `all_results.json` (`feature_layer_auto`)
and the model card. `hftl_config.yaml` keeps `feature_layer: auto`, so a resumed run chooses again, from the same
features (read back from `--feature_cache_dir` when given), and finds the same layer.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

logger = logging.getLogger("hftl")

AUTO = "auto"
MAX_EXAMPLES = 2000  # source training examples the scores read (a seeded random subset)


STRATEGY_LAYER_FLAGS = {"freeze": ("num_frozen_layers",), "two_stage": ("unfreeze_top_k",)}  # capped at the layer


@dataclass(frozen=True)
class LayerChoice:
    """The layer `--feature_layer auto` chose.

    Attributes:
        layer: 1-based encoder layer the model is cropped at; of: the model's layer count.
        rows: the ranked candidates (`hftl.ranking.table`), best first.
    """

    layer: int
    of: int
    rows: list[dict]
    given: dict = dataclasses.field(default_factory=dict)  # strategy flags as given, before capping at the layer

    def metrics(self) -> dict[str, float]:
        """What `all_results.json` records: the layer, and the scores of the chosen candidate."""
        best = self.rows[0]
        return {"feature_layer_auto": self.layer, **{f"feature_layer_auto_{k}": best[k] for k in _SCORE_KEYS}}

    def card_text(self) -> str:
        """One sentence for the model card."""
        best = self.rows[0]
        return (
            f" Encoder layer {self.layer} of {self.of} chosen before training by `--feature_layer auto` (LogME "
            f"{best['logme']:.4f} on the source training data, the highest of the {len(self.rows)} layers; "
            f"H-score {best['h_score']:.4f}, TransRate {best['transrate']:.4f}); the layers above it were removed."
        )


_SCORE_KEYS = ("logme", "h_score", "transrate")


def parse_feature_layer(value) -> int | str | None:
    """`--feature_layer`'s value: None, "auto" or an int >= 1 (from its text).

    Raises:
        InputError: anything else.
    """
    from hftl.errors import InputError

    if value is None or value == AUTO:
        return value
    if not str(value).strip().isdigit() or int(value) < 1:
        raise InputError(f"--feature_layer must be an integer >= 1 or auto, got {value!r}.")
    return int(value)


def check_auto_layer(modality, model_args, strategy_args) -> None:
    """With `--feature_layer auto`, refuse a model whose layers cannot be cropped, from its config alone (built on
    the meta device: no weights read), before any data or weights load.

    Raises:
        InputError: the model's layer stack changes width (e.g. EfficientNet-Lite blocks, ResNet stages).
    """
    if strategy_args.feature_layer != AUTO:
        return
    import torch
    from transformers import AutoConfig

    from hftl.errors import InputError
    from hftl.ranking.layers import uniform_layers
    from hftl.strategies.parts import backbone_name, layer_list

    path = model_args.config_name or model_args.model_name_or_path or modality.default_model()
    config = AutoConfig.from_pretrained(path, trust_remote_code=model_args.trust_remote_code)
    with torch.device("meta"):
        model = modality.auto_model_class.from_config(config, trust_remote_code=model_args.trust_remote_code)
    _, stack = layer_list(getattr(model, backbone_name(model)))
    if not uniform_layers(stack):
        raise InputError(
            f"--feature_layer auto: {type(model).__name__}'s blocks change width from stage to stage, and hftl crops "
            f"only stacks of identical layers (BERT-like, ViT, Whisper, wav2vec2). Compare its stages with `hftl rank` "
            f"and drop --feature_layer."
        )


def choose_feature_layer(modality, config, data):
    """(the config with `--feature_layer` set to the chosen layer, the `LayerChoice`), or (config, None) when
    `--feature_layer` is not `auto`. With `--strategy freeze`, `--num_frozen_layers` is capped at the chosen layer.
    """
    if config.strategy.feature_layer != AUTO:
        return config, None
    from hftl.ranking.candidates import model_candidates
    from hftl.ranking.table import RANKING_RULE, format_table, rank_rows, score_candidate

    candidates, labels = model_candidates(modality, config, data, use_target=False, max_examples=MAX_EXAMPLES)
    rows = rank_rows([score_candidate(candidate, labels, config.training.seed) for candidate in candidates])
    choice = LayerChoice(rows[0]["layer"], len(rows), rows)
    logger.info("--feature_layer auto (%s):\n%s", RANKING_RULE, format_table(rows))
    logger.info("--feature_layer auto chose encoder layer %d of %d.", choice.layer, choice.of)
    strategy, capped = dataclasses.replace(config.strategy, feature_layer=choice.layer), {}
    for name in STRATEGY_LAYER_FLAGS.get(strategy.strategy, ()):  # freeze / two_stage: at most the layers kept
        value = getattr(strategy, name)
        if value is not None and value > choice.layer:
            logger.info("--%s %d capped at the chosen layer %d.", name, value, choice.layer)
            capped[name] = value
            strategy = dataclasses.replace(strategy, **{name: choice.layer})
    choice = dataclasses.replace(choice, given=capped)  # hftl_config.yaml keeps them: a rerun chooses and caps again
    return dataclasses.replace(config, strategy=strategy, layer_choice=choice), choice


def report_layer_choice(config, trained) -> dict[str, float]:
    """Write `layer_ranking.json` and the choice's metrics (`layer_choice_results.json`, merged into
    `all_results.json` by the Trainer), on the main process; return the metrics ({} without `--feature_layer auto`).
    """
    choice = getattr(config, "layer_choice", None)
    if choice is None:
        return {}
    from hftl.ranking.table import write_ranking

    output_dir, metrics = config.training.output_dir, choice.metrics()
    if trained.trainer.is_world_process_zero():
        os.makedirs(output_dir, exist_ok=True)
        write_ranking(choice.rows, os.path.join(output_dir, "layer_ranking.json"), {"chosen_layer": choice.layer})
    trained.trainer.save_metrics("layer_choice", metrics)  # the main process writes; all_results.json merges them
    return metrics
