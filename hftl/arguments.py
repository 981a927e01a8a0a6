"""Command-line and config-file arguments shared by every recipe.

The recipes parse these dataclasses together with `transformers.TrainingArguments` through
`HfArgumentParser`, so every flag is spelled as in the transformers example scripts (`run_glue.py`,
`run_image_classification.py`, `run_audio_classification.py`). Each adaptation method adds its own flags
(`hftl/adaptation/methods/`); `hftl.config` parses them all and resolves their defaults once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hftl.adaptation.methods import method_names
from hftl.data.files import file_options
from hftl.errors import InputError
from hftl.ranking.auto import parse_feature_layer
from hftl.strategies import strategy_names

# label-shift-corrected forms of earlier releases: `--adaptation iwdann` = `--adaptation dann --importance_weighting`
IMPORTANCE_WEIGHTED_ALIASES = {"iwdann": "dann", "iwmmd": "mmd"}


@dataclass
class ModelArguments:
    """Which pretrained model to adapt."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Hub model id or local folder. Default: the recipe's packaged model (see README)."},
    )
    config_name: str | None = field(default=None, metadata={"help": "Config name or path, if not the model's."})
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer / processor name or path, if not the model's."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where to store models downloaded from the Hub."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the Hub model."})
    token: str | None = field(
        default=None, metadata={"help": "Hub token for private models (default: the one `hf auth login` stored)."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow a Hub model to run code from its repository. Off by default."}
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Re-initialise checkpoint weights whose shape differs (e.g. a head with other classes)."},
    )


@dataclass
class DataTrainingArguments:
    """Which data to train and evaluate on (names as in run_glue.py); shared by every modality."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A built-in dataset (list them with `hftl datasets`) or a Hub dataset id."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    train_file: str | None = field(default=None, metadata={"help": "CSV, JSON, JSON Lines or parquet training file."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation file, same format as train."})
    test_file: str | None = field(default=None, metadata={"help": "Test file, same format as train."})
    label_column_name: str = field(default="label", metadata={"help": "Label column (strings or integers)."})
    validation_split_percentage: float = field(
        default=10.0,
        metadata={"help": "Percent of train carved out (stratified, seeded) when no validation split is given."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N validation examples."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Keep the first N test examples."})
    drop_invalid_examples: bool = field(
        default=False,
        metadata={"help": "Drop rows with empty / non-string inputs or missing labels (counted) instead of failing."},
    )
    merge_label_variants: bool = field(
        default=False,
        metadata={"help": "Merge labels that differ only by case or spaces into their commonest spelling."},
    )
    delimiter: str | None = field(default=None, metadata={"help": "CSV / TSV delimiter, e.g. ';' (default: detected)."})
    encoding: str | None = field(default=None, metadata={"help": "Encoding of CSV / TSV / JSON files, e.g. latin-1."})

    def __post_init__(self):
        self.delimiter, self.encoding = file_options(self.delimiter, self.encoding)
        if self.dataset_name and self.train_file:
            raise InputError("Give either --dataset_name or --train_file, not both.")
        if (self.validation_file or self.test_file) and not self.train_file:
            raise InputError("--validation_file / --test_file need --train_file as well.")
        if not 0 < self.validation_split_percentage < 100:
            raise InputError(
                f"--validation_split_percentage must be between 0 and 100, got {self.validation_split_percentage}."
            )
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name} must be positive, got {value}.")


@dataclass
class TextArguments:
    """How texts become model inputs (text recipe; names as in run_glue.py)."""

    text_column_name: str | None = field(
        default=None,
        metadata={"help": "Text column (default: the first of 'text', 'sentence', 'sentence1', 'review', 'content')."},
    )
    text_pair_column_name: str | None = field(
        default=None, metadata={"help": "Second text column for sentence-pair tasks (e.g. 'sentence2')."}
    )
    max_seq_length: int = field(
        default=128, metadata={"help": "Tokens per text after tokenisation; longer texts are truncated."}
    )
    pad_to_max_length: bool = field(
        default=False, metadata={"help": "Pad every text to max_seq_length (default: pad each batch dynamically)."}
    )

    def __post_init__(self):
        if self.max_seq_length < 1:
            raise InputError(f"--max_seq_length must be positive, got {self.max_seq_length}.")


@dataclass
class FolderDataArguments:
    """Data laid out in folders, one sub-folder per class (`imagefolder` / `audiofolder`)."""

    train_dir: str | None = field(
        default=None, metadata={"help": "Folder of training files, one sub-folder per class."}
    )
    validation_dir: str | None = field(default=None, metadata={"help": "Folder of validation files, same layout."})
    test_dir: str | None = field(default=None, metadata={"help": "Folder of test files, same layout."})

    def folders(self) -> dict[str, str]:
        return {
            split: path
            for split, path in (("train", self.train_dir), ("validation", self.validation_dir), ("test", self.test_dir))
            if path
        }


@dataclass
class ImageArguments(FolderDataArguments):
    """How images become model inputs (image recipe; names as in run_image_classification.py)."""

    image_column_name: str | None = field(
        default=None,
        metadata={"help": "Column of images or image paths (default: image, img, image_path, path, file, filename)."},
    )
    augment: bool = field(
        default=True, metadata={"help": "Random resized crop (and flip, see --random_flip) of training images."}
    )
    random_flip: bool | None = field(
        default=None,
        metadata={"help": "Random horizontal flip of training images (default: on, off for built-in digit sets)."},
    )
    min_crop_scale: float = field(
        default=0.5, metadata={"help": "Smallest area fraction kept by the random resized crop."}
    )
    image_size: int | None = field(
        default=None,
        metadata={"help": "Resize images to N x N instead of the processor's size (saved with the processor)."},
    )

    def __post_init__(self):
        if not 0 < self.min_crop_scale <= 1:
            raise InputError(f"--min_crop_scale must be in (0, 1], got {self.min_crop_scale}.")
        if self.image_size is not None and self.image_size < 1:
            raise InputError(f"--image_size must be positive, got {self.image_size}.")


@dataclass
class AudioArguments(FolderDataArguments):
    """How audio clips become model inputs (speech recipe; names as in run_audio_classification.py)."""

    audio_column_name: str | None = field(
        default=None,
        metadata={"help": "Column of audio or audio paths (default: 'audio', 'file', 'path' or 'audio_path')."},
    )
    max_length_seconds: float = field(
        default=20.0,
        metadata={"help": "Longer clips are cropped: a random window in training, the first seconds in evaluation."},
    )
    min_length_seconds: float = field(
        default=0.1,
        metadata={
            "help": "Shorter clips are invalid (far below what speech encoders resolve); see --drop_invalid_examples."
        },
    )
    freeze_feature_encoder: bool = field(
        default=True,
        metadata={"help": "Freeze the convolutional feature encoder (wav2vec2-style CNN, Whisper's convs)."},
    )
    crop_whisper_input: bool = field(
        default=True,
        metadata={"help": "Whisper: run the encoder on the clip's frames only, not a 30 s window (hftl_whisper_crop)."},
    )

    def __post_init__(self):
        if not 0 < self.max_length_seconds < float("inf"):  # NaN fails too
            raise InputError(f"--max_length_seconds must be a positive number, got {self.max_length_seconds}.")
        if not 0 <= self.min_length_seconds < self.max_length_seconds:
            raise InputError(
                f"--min_length_seconds must be in [0, --max_length_seconds), got {self.min_length_seconds}."
            )


@dataclass
class StrategyArguments:
    """How much of the pretrained model adapts (shared by every modality)."""

    strategy: str = field(
        default="full",
        metadata={
            "choices": strategy_names(),
            "help": f"One of the registered strategies ({', '.join(strategy_names())}). "
            "full: fine-tune everything. feature_extraction: frozen backbone, train the head on cached "
            "features. freeze: freeze embeddings + first --num_frozen_layers layers. two_stage: head first, then "
            "the top --unfreeze_top_k layers at --stage2_learning_rate. lora: peft LoRA adapters + new modules.",
        },
    )
    num_frozen_layers: int | None = field(
        default=None, metadata={"help": "freeze: encoder layers frozen from the bottom (default: half of them)."}
    )
    unfreeze_top_k: int = field(default=2, metadata={"help": "two_stage: encoder layers unfrozen in stage 2."})
    stage1_num_train_epochs: float = field(
        default=1.0, metadata={"help": "two_stage: epochs of head-only training (at --learning_rate)."}
    )
    stage2_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "two_stage: learning rate of stage 2 (default: --learning_rate / 10 if you set --learning_rate, "
            "else the recipe's fine-tuning rate)."
        },
    )
    cache_features: bool = field(
        default=True,
        metadata={"help": "feature_extraction / two_stage stage 1: compute backbone features once and reuse them."},
    )
    feature_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Keep cached features in this folder and reuse them across runs of the same backbone weights, "
            "layer, data and preprocessing (keyed by their digests). Default: features live for one run only."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "lora: rank of the update matrices."})
    lora_alpha: float = field(default=16.0, metadata={"help": "lora: scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "lora: dropout on the adapter input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "lora: module names to adapt (default: the attention query/value projections)."},
    )
    feature_layer: int | str | None = field(
        default=None,
        metadata={
            "help": "Use encoder layer N (1 = the first) as the top of the backbone: the layers above it are removed "
            "from the model (and from the saved model). auto: the layer with the highest LogME on the source "
            "training data (see `hftl rank`). Default: all layers."
        },
    )
    merge_adapter: bool = field(
        default=True,
        metadata={
            "help": "lora: save the adapter merged into the base model, as a plain model, in output_dir (the adapter "
            "alone goes to output_dir/adapter). With false, output_dir holds only the adapter."
        },
    )

    def __post_init__(self):
        if self.num_frozen_layers is not None and self.num_frozen_layers < 0:
            raise InputError(f"--num_frozen_layers must be >= 0, got {self.num_frozen_layers}.")
        if self.unfreeze_top_k < 1:
            raise InputError(f"--unfreeze_top_k must be >= 1, got {self.unfreeze_top_k}.")
        if self.stage1_num_train_epochs <= 0:
            raise InputError(f"--stage1_num_train_epochs must be > 0, got {self.stage1_num_train_epochs}.")
        self.feature_layer = parse_feature_layer(self.feature_layer)
        if self.lora_r < 1:
            raise InputError(f"--lora_r must be >= 1, got {self.lora_r}.")
        if self.lora_target_modules and len(self.lora_target_modules) == 1 and "," in self.lora_target_modules[0]:
            self.lora_target_modules = [m.strip() for m in self.lora_target_modules[0].split(",") if m.strip()]


@dataclass
class AdaptationArguments:
    """Domain adaptation: unlabelled target data, the alignment method and the domain-gap report."""

    adaptation: str = field(
        default="none",
        metadata={
            "choices": ("none", "auto", *method_names(), *IMPORTANCE_WEIGHTED_ALIASES),
            "help": "none: source only. Every registered method (README) is a choice; iwdann / iwmmd: dann / mmd "
            "with --importance_weighting. auto: train candidates, keep one chosen without target labels (--auto_*).",
        },
    )
    importance_weighting: bool = field(
        default=False,
        metadata={
            "help": "Weight source examples by w_y = p_t(y) / p_s(y), the target class prior estimated without "
            "target labels (label-shift correction, IWDAN), in the classification and alignment losses."
        },
    )
    target_dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Target domain: a built-in or Hub dataset. Its train split is the unlabelled target data; its "
            "test split (else validation), if labelled, is what the target_* metrics report."
        },
    )
    target_dataset_config_name: str | None = field(default=None, metadata={"help": "Hub config of the target data."})
    target_train_file: str | None = field(
        default=None, metadata={"help": "Target domain examples (labels, if any, are never used for training)."}
    )
    target_test_file: str | None = field(
        default=None, metadata={"help": "Labelled target examples for the target_* metrics."}
    )
    target_train_dir: str | None = field(
        default=None, metadata={"help": "Target domain folder (image / speech; sub-folders are not used as labels)."}
    )
    target_test_dir: str | None = field(
        default=None, metadata={"help": "Labelled target folder, one sub-folder per class, for the target_* metrics."}
    )
    max_target_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N target examples."})
    max_target_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep the first N labelled target evaluation examples."}
    )
    trade_off: float = field(
        default=1.0, metadata={"help": "Weight of the alignment loss: L = L_cls + trade_off * L_align."}
    )
    grl_gamma: float = field(
        default=10.0,
        metadata={"help": "Rate of the schedule lambda_p = 2 / (1 + exp(-gamma p)) - 1, p = fraction of steps done."},
    )
    bottleneck_dim: int = field(
        default=256,
        metadata={
            "help": "feature_extraction with adaptation: width of the linear bottleneck trained (and aligned) on the "
            "cached features when the head is a single layer; folded into the classifier when saved."
        },
    )
    label_shift_estimator: Literal["bbse", "em", "em_bcts"] = field(
        default="bbse",
        metadata={
            "help": "How the target class prior is estimated without target labels, from a linear probe on source "
            "features: bbse (black-box shift estimation, Lipton et al. 2018), em (Saerens et al. 2002) or em_bcts "
            "(EM on posteriors calibrated by bias-corrected temperature scaling, Alexandari et al. 2020)."
        },
    )
    domain_gap_report: bool = field(
        default=False,
        metadata={
            "help": "Write domain_gap.json / domain_gap.png: MMD and proxy A-distance between source and target "
            "features before and after training, a 2-D projection, and the estimated target class prior."
        },
    )

    def __post_init__(self):
        if self.adaptation in IMPORTANCE_WEIGHTED_ALIASES:
            self.adaptation, self.importance_weighting = IMPORTANCE_WEIGHTED_ALIASES[self.adaptation], True
        if self.target_dataset_name and (self.target_train_file or self.target_train_dir):
            raise InputError("Give the target data either as --target_dataset_name or as files / folders, not both.")
        if (self.target_test_file or self.target_test_dir) and not (self.target_train_file or self.target_train_dir):
            raise InputError("--target_test_file / --target_test_dir need --target_train_file / --target_train_dir.")
        if self.adaptation != "none" and not self.has_target:
            raise InputError(
                f"--adaptation {self.adaptation} needs unlabelled target data: pass --target_dataset_name, "
                f"--target_train_file or --target_train_dir."
            )
        if self.importance_weighting and not self.has_target:
            raise InputError("--importance_weighting needs unlabelled target data to estimate its class prior.")
        if self.domain_gap_report and not self.has_target:
            raise InputError("--domain_gap_report needs target data (--target_dataset_name, --target_train_file ...).")
        if self.trade_off < 0:
            raise InputError(f"--trade_off must be >= 0, got {self.trade_off}.")
        if self.grl_gamma <= 0:
            raise InputError(f"--grl_gamma must be > 0, got {self.grl_gamma}.")
        if self.bottleneck_dim < 1:
            raise InputError(f"--bottleneck_dim must be positive, got {self.bottleneck_dim}.")
        for name in ("max_target_train_samples", "max_target_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name} must be positive, got {value}.")

    @property
    def adapts(self) -> bool:
        """Training differs from source-only: an alignment method or importance weighting."""
        return self.adaptation != "none" or self.importance_weighting

    @property
    def has_target(self) -> bool:
        return bool(self.target_dataset_name or self.target_train_file or self.target_train_dir)

    def target_folders(self) -> dict[str, str]:
        return {s: p for s, p in (("train", self.target_train_dir), ("test", self.target_test_dir)) if p}


@dataclass
class RunArguments:
    """Run-level switches that TrainingArguments lacks."""

    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Start afresh even if output_dir holds checkpoints (default: resume)."}
    )
