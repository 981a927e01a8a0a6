"""Step 1 of a run: parse the flags and resolve every default once, into a `RunConfig` that no later step changes.

Flags come from the recipe's defaults, a `--config` YAML / JSON file and the command line (lowest first), parsed by
`HfArgumentParser` into the argument dataclasses (`hftl.arguments`, each adaptation method's own, the modality's)
and `TrainingArguments`, every value checked on the way (`hftl.validation`, `hftl.flag_checks`, `hftl.config_file`)
and the model's folder or Hub id too (`hftl.model_source`), before any data or model loads. Resolving fills in what
depends on the choices made: a strategy's learning rate, its model-dependent values (`--num_frozen_layers`, the
stage-2 rate), the packaged model's flags (`--image_size`), whether built-in digits may be mirrored (`--random_flip`).
`hftl_config.yaml` records exactly these values.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import transformers
from transformers import AutoConfig, TrainingArguments

from hftl import hub
from hftl.adaptation.auto import AUTO, AutoAdaptationArguments
from hftl.adaptation.methods import get_method, method_names
from hftl.arguments import AdaptationArguments, DataTrainingArguments, ModelArguments, RunArguments, StrategyArguments
from hftl.calibration import CalibrationArguments
from hftl.config_file import dump_config, load_config_file
from hftl.errors import InputError
from hftl.export.arguments import ExportArguments
from hftl.flag_checks import check_flag_values
from hftl.model_source import check_model_sources
from hftl.multi_label.arguments import ProblemArguments
from hftl.multi_task.arguments import MultiTaskArguments
from hftl.ranking.auto import check_auto_layer
from hftl.search import HPSearchArguments
from hftl.sentence_pooling import SentencePoolingArguments, check_sentence_pooling
from hftl.strategies import Defaults, get_strategy
from hftl.strategies.parts import encoder_layer_count
from hftl.tracking import joined_trackers, name_run, split_trackers
from hftl.training_flags import TrainingControlArguments, resolve_early_stopping
from hftl.validation import FlagParser, build_arguments

logger = logging.getLogger("hftl")

CONFIG_FILE = "hftl_config.yaml"


@dataclass(frozen=True)
class RunConfig:
    """Every resolved flag of a run, grouped by the dataclass that defines it.

    Attributes:
        model, data, inputs, strategy, adaptation, run, training: the parsed argument dataclasses (`inputs`: the
            modality's own, e.g. `TextArguments`).
        problem: `--problem_type` and the multi-label flags (`hftl.multi_label`).
        methods: each registered adaptation method's flags, by method name.
        calibration: the calibration step's flags (`--temperature_scaling`).
        push_to_hub: `--push_to_hub` (the Trainer's own push is turned off: the finished folder is pushed once).
        hub_token: `--hub_token`, kept out of `training` (the Trainer pickles it into every checkpoint).
        search: the hyper-parameter search flags (`hftl.search`).
        control: early stopping and class imbalance (`hftl.training_flags`).
        export: `--export_onnx` and `--export_quantize` (`hftl.export`).
        pooling: `--sentence_pooling` (`hftl.sentence_pooling`).
        auto: the flags of `--adaptation auto` (`hftl.adaptation.auto`).
        multi_task: `--tasks` and the multi-task flags (`hftl.multi_task`).
    """

    model: ModelArguments
    data: DataTrainingArguments
    inputs: Any
    strategy: StrategyArguments
    adaptation: AdaptationArguments
    run: RunArguments
    training: TrainingArguments
    methods: dict[str, Any] = field(default_factory=dict)
    push_to_hub: bool = False
    hub_token: str | None = field(default=None, repr=False)
    calibration: CalibrationArguments = field(default_factory=CalibrationArguments)
    search: HPSearchArguments = field(default_factory=HPSearchArguments)
    control: TrainingControlArguments = field(default_factory=TrainingControlArguments)
    problem: ProblemArguments = field(default_factory=ProblemArguments)
    export: ExportArguments = field(default_factory=ExportArguments)
    pooling: SentencePoolingArguments = field(default_factory=SentencePoolingArguments)
    layer_choice: Any = None  # `hftl.ranking.auto.LayerChoice`: the layer --feature_layer auto chose
    auto: AutoAdaptationArguments = field(default_factory=AutoAdaptationArguments)
    multi_task: MultiTaskArguments = field(default_factory=MultiTaskArguments)

    @property
    def method(self):
        """The flags of the chosen `--adaptation` method (None for `none` or a method without flags)."""
        return self.methods.get(self.adaptation.adaptation)

    def as_dict(self) -> dict[str, Any]:
        """Every flag and its value, as a flat mapping that `--config` accepts back (secrets left out)."""
        parts = (
            self.model,
            self.data,
            self.inputs,
            self.strategy,
            self.adaptation,
            self.run,
            self.calibration,
            self.search,
            self.control,
            self.problem,
            self.export,
            self.pooling,
            self.auto,
            self.multi_task,
        )
        values = resolved_config(*parts, *[m for m in self.methods.values() if m is not None], self.training)
        values["push_to_hub"] = self.push_to_hub
        if self.layer_choice is not None:  # the flag as given: a resumed run chooses again, from the same features
            values.update(feature_layer="auto", **self.layer_choice.given)
        return values

    def resume_keys(self) -> tuple[str, ...]:
        """Flags that change which parameters exist or train: checkpoints made with other values are not resumed."""
        name = self.adaptation.adaptation
        method = () if name in ("none", AUTO) else get_method(name).resume_keys
        return RESUME_KEYS + get_strategy(self.strategy.strategy).resume_keys + method


# flags that change which parameters exist or train, whatever the strategy and method
RESUME_KEYS = (
    "model_name_or_path",
    "strategy",
    "freeze_feature_encoder",
    "crop_whisper_input",
    "sentence_pooling",
    "feature_layer",
    "adaptation",
    "importance_weighting",
    "bottleneck_dim",
    "tasks",
    "task_weighting",
)


def argument_types(modality) -> tuple[type, ...]:
    """The dataclasses a recipe parses, in order: model, data, the modality's, strategy, adaptation, run,
    calibration, search, training control, problem type, export, sentence pooling, auto, multi-task, each method's
    flags, then
    `TrainingArguments`."""
    methods = [get_method(name).arguments_class for name in method_names()]
    return (
        ModelArguments,
        DataTrainingArguments,
        modality.arguments_class,
        StrategyArguments,
        AdaptationArguments,
        RunArguments,
        CalibrationArguments,
        HPSearchArguments,
        TrainingControlArguments,
        ProblemArguments,
        ExportArguments,
        SentencePoolingArguments,
        AutoAdaptationArguments,
        MultiTaskArguments,
        *[m for m in methods if m is not None],
        TrainingArguments,
    )


def parse_args(
    dataclass_types: tuple[type, ...], defaults: dict[str, Any] | None = None, args: list[str] | None = None
) -> tuple[tuple, set[str]]:
    """Parse flags into the given dataclasses (and `TrainingArguments`), checking every value before any is used.

    Precedence, lowest first: the dataclass defaults, the recipe's `defaults`, the `--config` file, the command line.

    Returns:
        (the dataclass instances, the names of the flags the user set on the command line or in the config file).

    Raises:
        InputError: an unknown flag, a value of the wrong type or out of range, a bad combination (see
            `hftl.validation` and `hftl.flag_checks`), or a bad config file (see `hftl.config_file`).
    """
    parser = FlagParser(dataclass_types)
    parser.add_argument("--config", default=None, help="YAML or JSON file of flag values (flags override it).")
    parser.set_defaults(**(defaults or {}))
    pre_parser = FlagParser((), add_help=False)
    pre_parser.add_argument("--config", default=None)
    known, _ = pre_parser.parse_known_args(args)
    explicit: set[str] = set()
    if known.config:
        actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
        values = load_config_file(known.config, actions)
        parser.set_defaults(**values)
        explicit |= set(values)
    namespace = parser.parse_flags(args)
    if hasattr(namespace, "report_to"):
        namespace.report_to = split_trackers(namespace.report_to)
    check_flag_values(vars(namespace))
    parsed = build_arguments(parser, namespace)
    for token in args if args is not None else sys.argv[1:]:
        if token.startswith("--"):
            explicit.add(token[2:].split("=", 1)[0].replace("-", "_"))
    return parsed, explicit


def resolved_config(*arguments: Any) -> dict[str, Any]:
    """Every flag value of the parsed dataclasses, as a flat mapping that `--config` accepts back.

    Secrets (`token`, `hub_token`) are left out.
    """
    config: dict[str, Any] = {}
    for obj in arguments:
        for f in dataclasses.fields(obj):
            if not f.init or f.name.startswith("_") or f.name in ("token", "hub_token"):
                continue
            value = getattr(obj, f.name)
            if hasattr(value, "value"):  # enums such as IntervalStrategy
                value = value.value
            elif dataclasses.is_dataclass(value):  # e.g. accelerator_config
                value = dataclasses.asdict(value)
            if isinstance(obj, TrainingArguments) and f.name == "report_to":
                value = joined_trackers(value)
            try:
                json.dumps(value)
            except TypeError:
                value = str(value)
            config[f.name] = value
    return config


def setup_logging(training) -> None:
    """hftl logs at INFO on the main process (WARNING on the others); transformers follows `--log_level`."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training.get_process_log_level()
    transformers.utils.logging.set_verbosity(level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    logger.setLevel(logging.INFO if training.should_log else level)
    logger.info("World size %d (%s), device %s.", training.world_size, training.parallel_mode.value, training.device)


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


def _resolve_training(training: TrainingArguments, modality, strategy_name: str, explicit: set[str]) -> None:
    """The modality's Trainer settings, DDP's unused-parameter search under checkpointing, the strategy's rate.

    Several processes and activation checkpointing: transformers turns DDP's `find_unused_parameters` off (the
    reentrant kind breaks with it), so a trainable parameter that some step does not use (wav2vec2's
    `masked_spec_embed` without SpecAugment, a layer LayerDrop skipped) stops the run. transformers 5 checkpoints
    non-reentrantly unless asked otherwise, which works with it on. An explicit `--ddp_find_unused_parameters` wins.
    """
    from hftl.training.checkpointing import uses_reentrant_checkpointing  # hftl.training imports this module

    for key, value in modality.training_overrides.items():
        setattr(training, key, value)
    if training.world_size > 1 and training.activation_checkpointing and training.ddp_find_unused_parameters is None:
        training.ddp_find_unused_parameters = None if uses_reentrant_checkpointing(training) else True
    rate = get_strategy(strategy_name).default_learning_rate
    if "learning_rate" not in explicit and rate is not None:
        training.learning_rate = rate
        logger.info("No --learning_rate given: using %g for strategy '%s'.", rate, strategy_name)


def layer_count(modality, model_args: ModelArguments, feature_layer: int | None) -> int:
    """The model's encoder layers (after --feature_layer), read from its config without loading weights."""
    path = model_args.config_name or model_args.model_name_or_path or modality.default_model()
    try:
        config = AutoConfig.from_pretrained(
            path,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            token=model_args.token,
            trust_remote_code=model_args.trust_remote_code,
        )
    except OSError as error:
        raise InputError(
            f"--model_name_or_path {path}: no model config found ({error}); --strategy freeze reads its layer count. "
            f"Pass a model folder or Hub id, or --num_frozen_layers."
        ) from None
    count = encoder_layer_count(modality.auto_model_class, config, model_args.trust_remote_code)
    return min(count, feature_layer) if isinstance(feature_layer, int) else count


def _resolve_inputs(modality, inputs, model_args: ModelArguments, data_args, explicit: set[str]):
    """The modality's flags: the packaged default model's own values (unless set), then the modality's defaults."""
    if model_args.model_name_or_path is None:
        flags = {k: v for k, v in modality.default_model_flags.items() if k not in explicit}
        inputs = dataclasses.replace(inputs, **flags) if flags else inputs
    return modality.resolve_arguments(inputs, data_args, model_args)


def resolve_config(modality, defaults: dict[str, Any] | None = None, args: list[str] | None = None) -> RunConfig:
    """Parse the flags (see `parse_args`) and resolve every default (see the module docstring).

    Raises:
        InputError: bad flags or config file (before any data or model is read).
    """
    _cpu_processes_without_accelerator()
    parsed, explicit = parse_args(argument_types(modality), defaults, args)
    model, data, inputs, strategy, adaptation, run, *groups, training = parsed
    calibration, search, control, problem, export, pooling, auto, multi_task, *method_args = groups
    check_model_sources(model)
    check_auto_layer(modality, model, strategy)  # --feature_layer auto: a model whose layers can be cropped
    check_sentence_pooling(pooling, modality)
    setup_logging(training)
    fine_tuning_rate = training.learning_rate
    _resolve_training(training, modality, strategy.strategy, explicit)
    name_run(training)
    search.objective_metric = training.metric_for_best_model if "metric_for_best_model" in explicit else None
    training = resolve_early_stopping(training, control, explicit)
    push, training.push_to_hub = training.push_to_hub, False
    token = hub.take_token(training)
    count = functools.cache(partial(layer_count, modality, model, strategy.feature_layer))
    defaults = Defaults(fine_tuning_rate, "learning_rate" in explicit, count)
    strategy = get_strategy(strategy.strategy).resolve(strategy, defaults)
    if adaptation.adaptation != "none" and strategy.strategy == "feature_extraction" and not strategy.cache_features:
        raise InputError(
            "--strategy feature_extraction with --adaptation trains a bottleneck on cached features: drop "
            "--cache_features false, or choose a strategy that trains the backbone (full, freeze, two_stage, lora)."
        )
    by_class = {type(a): a for a in method_args}
    methods = {name: by_class.get(get_method(name).arguments_class) for name in method_names()}
    inputs = _resolve_inputs(modality, inputs, model, data, explicit)
    return RunConfig(
        model,
        data,
        inputs,
        strategy,
        adaptation,
        run,
        training,
        methods,
        push,
        token,
        calibration=calibration,
        search=search,
        control=control,
        problem=problem,
        export=export,
        pooling=pooling,
        auto=auto,
        multi_task=multi_task,
    )


def write_config(config: RunConfig, output_dir: str) -> None:
    """Write `output_dir/hftl_config.yaml`: every resolved flag (usable as `--config`)."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, CONFIG_FILE), "w", encoding="utf-8") as handle:
        dump_config(config.as_dict(), handle)
