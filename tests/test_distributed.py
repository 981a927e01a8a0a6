"""Two real CPU processes (gloo) against one, for every recipe: evaluation counts each example once, and two
processes with per-device batch B train the same weights as one process with batch 2B.

Each case runs a recipe script under `torchrun --nproc_per_node 2` (or `accelerate launch` with
`accelerate_configs/two_cpu_processes.yaml`) and the same recipe in this process with the doubled batch, then
compares `all_results.json`, the prediction files and the saved `model.safetensors`.

The comparison is exact up to float32 rounding only when both runs see the same examples in the same batches and
draw no random numbers in training: dropout, LayerDrop and SpecAugment are off in the models below (each process
would draw its own masks), image and audio augmentation is off, sampling is `random` (the seeded permutation is the
same in both runs; `group_by_length` builds other groups for another batch size), and every batch is full (DDP
averages per-process means; a short last batch would weigh its examples differently).
"""

import csv
import json
import os
import re
import shutil
import socket

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from helpers import ROOT, make_image, make_texts, make_tone, recipe_defaults, run_python, write_csv
from safetensors.torch import load_file

from hftl.modalities import AudioModality, ImageModality, TextModality
from hftl.pipeline import run_classification

CONFIG_DIR = os.path.join(ROOT, "accelerate_configs")
TWO_CPU_CONFIG = os.path.join(CONFIG_DIR, "two_cpu_processes.yaml")

# float32 sums in another order (per-process means averaged by DDP vs one mean over the doubled batch; 1 vs 2 torch
# threads) after a few Adam steps: measured at most ~1e-7 on these models.
WEIGHT_TOLERANCE = 1e-5
METRIC_TOLERANCE = 1e-5

NUM_EVAL_EXAMPLES = 9  # with 2 processes and per-device eval batch 5: rank 0 gets 5, rank 1 gets 4 (+1 padding)
PER_DEVICE_TRAIN_BATCH = 4
COMMON = [
    "--num_train_epochs", "1",
    "--per_device_eval_batch_size", "5",
    "--learning_rate", "5e-3",
    "--train_sampling_strategy", "random",
    "--eval_strategy", "no",
    "--save_strategy", "no",
    "--logging_steps", "1",
    "--disable_tqdm", "true",
    "--report_to", "none",
    "--seed", "7",
]  # fmt: skip

SPEECH = ["--max_length_seconds", "3"]  # longer than every clip (0.5-1.5 s): no random crop in training

RECIPES = {
    "text": ("text_classification", TextModality),
    "image": ("image_classification", ImageModality),
    "speech": ("speech_classification", AudioModality),
}

# (id, recipe, model fixture, data fixture, launcher, recipe flags)
RECIPE_CASES = [
    ("text-full-accelerate-config", "text", "bert_no_dropout", "text_data", "accelerate", ["--strategy", "full"]),
    (
        "text-freeze-gradient-checkpointing",
        "text",
        "bert_no_dropout",
        "text_data",
        "torchrun",
        ["--strategy", "freeze", "--num_frozen_layers", "2", "--activation_checkpointing", "true"],
    ),
    ("text-lora", "text", "bert_no_dropout", "text_data", "torchrun", ["--strategy", "lora", "--lora_dropout", "0"]),
    (  # every process draws the same class-balanced order (seeded by epoch) and accelerate splits it into batches
        "text-balanced-sampling",
        "text",
        "bert_no_dropout",
        "text_data",
        "torchrun",
        ["--strategy", "full", "--balanced_sampling", "true"],
    ),
    (
        "image-full",
        "image",
        "vit_no_dropout",
        "image_data",
        "torchrun",
        ["--strategy", "full", "--image_size", "32", "--augment", "false"],
    ),
    (  # SpecAugment is off, so wav2vec2's `masked_spec_embed` trains but is never used: under checkpointing DDP
        # refuses that ("parameters that were not used in producing loss") unless told to look for unused ones
        "speech-wav2vec2-frozen-feature-encoder-gradient-checkpointing",
        "speech",
        "wav2vec2_no_dropout",
        "audio_data",
        "torchrun",
        ["--strategy", "full", "--freeze_feature_encoder", "true", "--activation_checkpointing", "true", *SPEECH],
    ),
    (
        "speech-whisper-feature-extraction",  # the speech recipe's default: cached encoder features, head trained
        "speech",
        "whisper_no_dropout",
        "audio_data",
        "torchrun",
        ["--strategy", "feature_extraction", *SPEECH],
    ),
]

DANN = ["--adaptation", "dann", "--discriminator_dropout", "0", "--discriminator_hidden_size", "16"]
DOMAIN_ADAPTATION_CASES = [  # the target data: the validation folder (unlabelled) and the test folder
    (
        "image-full-dann",
        "image",
        "vit_no_dropout",
        "image_domain_data",
        "torchrun",
        ["--strategy", "full", "--image_size", "32", "--augment", "false", *DANN],
    ),
    (
        "speech-whisper-feature-extraction-dann",
        "speech",
        "whisper_no_dropout",
        "audio_domain_data",
        "torchrun",
        ["--strategy", "feature_extraction", *SPEECH, *DANN],
    ),
]  # LoRA + DANN on text: `test_two_processes_lora_dann` below, which also compares the discriminators

CASES = RECIPE_CASES + DOMAIN_ADAPTATION_CASES


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _without_randomness(model_dir: str, destination) -> str:
    """A copy of `model_dir` whose config turns off dropout, LayerDrop and SpecAugment (random in training)."""
    shutil.copytree(model_dir, destination)
    path = os.path.join(destination, "config.json")
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    for key, value in list(config.items()):
        if isinstance(value, float) and key.endswith(("dropout", "dropout_prob", "layerdrop")):
            config[key] = 0.0
    if "apply_spec_augment" in config:
        config["apply_spec_augment"] = False
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(config, handle)
    return str(destination)


@pytest.fixture
def bert_no_dropout(tiny_bert_dir, tmp_path):
    return _without_randomness(tiny_bert_dir, tmp_path / "bert")


@pytest.fixture
def vit_no_dropout(tiny_vit_dir, tmp_path):
    return _without_randomness(tiny_vit_dir, tmp_path / "vit")


@pytest.fixture
def wav2vec2_no_dropout(tiny_wav2vec2_dir, tmp_path):
    return _without_randomness(tiny_wav2vec2_dir, tmp_path / "wav2vec2")


@pytest.fixture
def whisper_no_dropout(tiny_whisper_dir, tmp_path):
    return _without_randomness(tiny_whisper_dir, tmp_path / "whisper")


@pytest.fixture
def text_data(tmp_path) -> dict[str, str]:
    """32 training texts (4 full batches of 8), 9 validation and 9 test texts."""
    return {
        "train_file": write_csv(tmp_path / "train.csv", make_texts(32, seed=1)),
        "validation_file": write_csv(tmp_path / "validation.csv", make_texts(NUM_EVAL_EXAMPLES, seed=2)),
        "test_file": write_csv(tmp_path / "test.csv", make_texts(NUM_EVAL_EXAMPLES, seed=3)),
    }


def _folders(tmp_path, name, write) -> dict[str, str]:
    """train / validation / test class folders of 16 / 9 / 9 files, two classes; `write(folder, label, index)`."""
    labels = {"image": ("stripes", "dots"), "audio": ("low", "high")}[name]
    folders = {}
    for split, count in (("train", 16), ("validation", NUM_EVAL_EXAMPLES), ("test", NUM_EVAL_EXAMPLES)):
        for i in range(count):
            label = labels[i % 2]
            folder = tmp_path / name / split / label
            folder.mkdir(parents=True, exist_ok=True)
            write(folder, label, i + 100 * len(split))
        folders[f"{split}_dir"] = str(tmp_path / name / split)
    return folders


@pytest.fixture
def image_data(tmp_path) -> dict[str, str]:
    return _folders(tmp_path, "image", lambda folder, label, i: make_image(label, i).save(folder / f"{i}.png"))


@pytest.fixture
def audio_data(tmp_path) -> dict[str, str]:
    import soundfile

    def write(folder, label, i):
        soundfile.write(folder / f"{i}.wav", make_tone(label, i, 16_000, 0.5 + (i % 3) * 0.5), 16_000)

    return _folders(tmp_path, "audio", write)


def _with_target(folders: dict[str, str]) -> dict[str, str]:
    """Folder data plus target data: its validation folder as unlabelled target, its test folder as target test."""
    return {**folders, "target_train_dir": folders["validation_dir"], "target_test_dir": folders["test_dir"]}


@pytest.fixture
def image_domain_data(image_data) -> dict[str, str]:
    return _with_target(image_data)


@pytest.fixture
def audio_domain_data(audio_data) -> dict[str, str]:
    return _with_target(audio_data)


def _flags(model_dir, data, output_dir, batch, extra) -> list[str]:
    flags = ["--model_name_or_path", model_dir, "--output_dir", str(output_dir)]
    for key, value in data.items():
        flags += [f"--{key}", value]
    return flags + COMMON + ["--per_device_train_batch_size", str(batch)] + list(extra)


def _launch_two_processes(launcher: str, script: str, flags: list[str]):
    port = str(_free_port())
    if launcher == "accelerate":
        command = ["-m", "accelerate.commands.launch", "--config_file", TWO_CPU_CONFIG, "--main_process_port", port]
    else:
        command = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    return run_python([*command, script, *flags], timeout=600)


def _results(output_dir) -> dict:
    with open(os.path.join(output_dir, "all_results.json"), encoding="utf-8") as handle:
        return json.load(handle)


def _predictions(output_dir, prefix) -> list[tuple[int, str]]:
    with open(os.path.join(output_dir, f"{prefix}_predictions.csv"), encoding="utf-8") as handle:
        return [(int(row["source_row"]), row["prediction"]) for row in csv.DictReader(handle)]


@pytest.mark.distributed
@pytest.mark.parametrize(
    "recipe, model_fixture, data_fixture, launcher, extra", [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_two_processes_match_one(request, tmp_path, recipe, model_fixture, data_fixture, launcher, extra):
    model_dir = request.getfixturevalue(model_fixture)
    data = request.getfixturevalue(data_fixture)
    script_name, modality = RECIPES[recipe]
    two, one = tmp_path / "two_processes", tmp_path / "one_process"

    done = _launch_two_processes(
        launcher,
        os.path.join(ROOT, "recipes", f"{script_name}.py"),
        _flags(model_dir, data, two, PER_DEVICE_TRAIN_BATCH, extra),
    )
    assert "World size 2 (distributed)" in done.stdout + done.stderr
    assert "parameters that were not used in producing loss" not in done.stderr
    run_classification(
        modality(),
        recipe_defaults(script_name),
        _flags(model_dir, data, one, 2 * PER_DEVICE_TRAIN_BATCH, extra),
    )

    # evaluation: every example exactly once, in order, with the one-process metrics
    results_two, results_one = _results(two), _results(one)
    for prefix in ("eval", "test", "target") if "--adaptation" in extra else ("eval", "test"):
        assert results_two[f"{prefix}_samples"] == NUM_EVAL_EXAMPLES
        predictions = _predictions(two, prefix)
        assert [row for row, _ in predictions] == list(range(NUM_EVAL_EXAMPLES))
        assert predictions == _predictions(one, prefix)
        for name in ("loss", "accuracy", "f1"):
            key = f"{prefix}_{name}"
            assert results_two[key] == pytest.approx(results_one[key], abs=METRIC_TOLERANCE), key
    # training: the same examples, loss and weights as one process with batch 2B
    assert results_two["train_samples"] == results_one["train_samples"]
    assert results_two["train_loss"] == pytest.approx(results_one["train_loss"], abs=METRIC_TOLERANCE)
    weights_two = load_file(two / "model.safetensors")
    weights_one = load_file(one / "model.safetensors")
    assert weights_two.keys() == weights_one.keys()
    differences = {name: (weights_two[name] - weights_one[name]).abs().max().item() for name in weights_one}
    worst = max(differences, key=differences.get)
    assert differences[worst] <= WEIGHT_TOLERANCE, (worst, differences[worst])
    if "feature_extraction" not in extra:  # (there only the new head trains: nothing to compare with the checkpoint)
        assert _changed_by_training(model_dir, weights_one), "no weight changed: the comparison would prove nothing"


def _changed_by_training(model_dir, trained) -> list[str]:
    """Names of the tensors of `trained` that differ from the starting checkpoint's (names compared without their
    first part, which the checkpoint and the classifier may name differently: `bert.`, `model.`)."""
    start = {}
    for name, value in load_file(os.path.join(model_dir, "model.safetensors")).items():
        start[name] = start[name.split(".", 1)[-1]] = value
    changed = []
    for name, value in trained.items():
        before = start.get(name, start.get(name.split(".", 1)[-1]))
        if before is not None and not before.equal(value):
            changed.append(name)
    return changed


# ---- the configs ------------------------------------------------------------------------------------------------

CONFIGS = sorted(name for name in os.listdir(CONFIG_DIR) if name.endswith(".yaml"))


def test_every_config_is_there():
    expected = {"cpu", "two_cpu_processes", "single_gpu", "multi_gpu", "fsdp", "deepspeed_zero2", "multi_node"}
    assert expected <= {name.removesuffix(".yaml") for name in CONFIGS}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_parses_and_says_how_to_launch_it(name):
    path = os.path.join(CONFIG_DIR, name)
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert lines[0].startswith("# ") and len(lines[0]) > 20  # when to use it
    assert re.fullmatch(rf"#   accelerate launch --config_file accelerate_configs/{name}( .*)?", lines[1])
    config = load_config_from_file(path)  # what `accelerate launch` reads; refuses unknown keys
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    assert config.num_processes == raw["num_processes"]
    # the nested sections are read as launch flags (`fsdp_config.x` -> `--fsdp_x`): each must be one
    flags = {action.dest for action in launch_command_parser()._actions}
    for section in ("fsdp_config", "deepspeed_config"):
        for key in raw.get(section, {}):
            assert key in flags, f"{name}: {section}.{key} is no `accelerate launch` flag"
    # and the launcher's own validation of the resolved flags passes
    args = launch_command_parser().parse_args(["--config_file", path, "train.py"])
    _validate_launch_command(args)


CAPTURE_DISCRIMINATOR = """
import os, sys
from safetensors.torch import save_file
import hftl.training.stages as run

trainers = []
original = run.task_trainer
def capture(*args, **kwargs):
    trainers.append(original(*args, **kwargs))
    return trainers[-1]
run.task_trainer = capture
sys.argv = [sys.argv[0], *[a for i, a in enumerate(sys.argv[1:]) if not (i == 0 and a == "--")]]
import runpy
try:
    runpy.run_path(os.environ["RECIPE"], run_name="__main__")
except SystemExit as done:
    if done.code:
        raise
state = trainers[-1].accelerator.unwrap_model(trainers[-1].model).alignment.state_dict()
save_file({k: v.contiguous() for k, v in state.items()}, os.environ["DUMP"].format(rank=os.environ.get("RANK", "0")))
"""


@pytest.fixture
def text_domain_data(text_data, tmp_path) -> dict[str, str]:
    """`text_data` plus 24 unlabelled target texts and 9 labelled target test texts."""
    unlabelled = [{"text": row["text"]} for row in make_texts(24, seed=11)]
    return {
        **text_data,
        "target_train_file": write_csv(tmp_path / "target_train.csv", unlabelled),
        "target_test_file": write_csv(tmp_path / "target_test.csv", make_texts(NUM_EVAL_EXAMPLES, seed=12)),
    }


@pytest.mark.distributed
def test_two_processes_lora_dann(bert_no_dropout, text_domain_data, tmp_path):
    """LoRA + DANN on two processes: target evaluated once per example, same weights as one process with batch 2B,
    and the domain discriminator identical on both processes (and to the one-process run's)."""
    script = tmp_path / "capture.py"
    script.write_text(CAPTURE_DISCRIMINATOR)
    recipe = os.path.join(ROOT, "recipes", "text_classification.py")
    extra = ["--strategy", "lora", "--lora_dropout", "0", "--adaptation", "dann", "--discriminator_dropout", "0"]
    extra += ["--discriminator_hidden_size", "16"]
    two, one = tmp_path / "two_processes", tmp_path / "one_process"
    os.environ.update(RECIPE=recipe, DUMP=str(tmp_path / "discriminator-{rank}.safetensors"))
    try:
        port = str(_free_port())
        run_python(
            ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port, str(script), "--"]
            + _flags(bert_no_dropout, text_domain_data, two, PER_DEVICE_TRAIN_BATCH, extra),
            timeout=600,
        )
        os.environ["DUMP"] = str(tmp_path / "one-{rank}.safetensors")
        run_python(
            [str(script), "--", *_flags(bert_no_dropout, text_domain_data, one, 2 * PER_DEVICE_TRAIN_BATCH, extra)]
        )
    finally:
        os.environ.pop("RECIPE", None)
        os.environ.pop("DUMP", None)

    rank0, rank1 = (load_file(tmp_path / f"discriminator-{r}.safetensors") for r in (0, 1))
    single = load_file(tmp_path / "one-0.safetensors")
    for key, value in rank0.items():
        assert (value - rank1[key]).abs().max().item() == 0.0, key  # DDP keeps the replicas bit-identical
        assert (value - single[key]).abs().max().item() <= WEIGHT_TOLERANCE, key
    results_two, results_one = _results(two), _results(one)
    assert results_two["target_samples"] == NUM_EVAL_EXAMPLES
    assert _predictions(two, "target") == _predictions(one, "target")
    for name in ("loss", "accuracy"):
        assert results_two[f"target_{name}"] == pytest.approx(results_one[f"target_{name}"], abs=METRIC_TOLERANCE)
    weights_two, weights_one = load_file(two / "model.safetensors"), load_file(one / "model.safetensors")
    worst = max((weights_two[k] - weights_one[k]).abs().max().item() for k in weights_one)
    assert worst <= WEIGHT_TOLERANCE
    # the loss parts are logged as means over the processes: the two halves' mean is the doubled batch's value
    logged_two, logged_one = _loss_parts(two), _loss_parts(one)
    assert len(logged_two) == len(logged_one) > 0
    for entry_two, entry_one in zip(logged_two, logged_one, strict=True):
        for key in ("cls_loss", "align_loss", "grl_lambda"):
            assert entry_two[key] == pytest.approx(entry_one[key], abs=METRIC_TOLERANCE), (key, entry_two, entry_one)


def _loss_parts(output_dir) -> list[dict]:
    """The training log entries that carry loss parts (`trainer_state.json` of the output folder)."""
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry for entry in history if "align_loss" in entry]
