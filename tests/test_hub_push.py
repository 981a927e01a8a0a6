"""`--push_to_hub` against a local stand-in Hub (tests/stand_in_hub.py), with huggingface_hub's own client.

The recipe and the loading run in fresh processes: huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and
HF_HUB_DISABLE_XET when it is imported. Only these processes are online, and only to the stand-in on 127.0.0.1.
"""

import ast
import json
import math
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml
from helpers import ROOT, recipe_args, recipe_defaults
from stand_in_hub import StandInHub

TOKEN = "hf_standInSecret0123456789abcdefXYZ"
RECIPE = os.path.join(ROOT, "recipes", "text_classification.py")
FAST = (
    "--num_train_epochs 2 --per_device_train_batch_size 16 --learning_rate 5e-3 --logging_steps 5 "
    "--disable_tqdm true --eval_strategy epoch --save_strategy epoch"
).split()
TEXTS = ["good great film", "awful boring plot", "the movie was fine and lovely", "weak dull story"]
LABELS = dict(num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})

# Loads what the spec names, from the Hub when it is a repo id: pipelines (label -> score for each text), a LoRA
# adapter on its base model (logits), model cards (metadata). Prints one JSON line.
LOAD = r"""
import json, sys
import torch
from huggingface_hub import ModelCard, hf_hub_download
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

spec = json.loads(sys.argv[1])
revision = spec.get("revision", "main")  # of the Hub repos; local folders have none
out = {"pipelines": {}, "cards": {}}
for name, model in spec.get("pipelines", {}).items():
    classifier = pipeline("text-classification", model=model, top_k=None, revision=revision)
    out["pipelines"][name] = [{d["label"]: d["score"] for d in row} for row in classifier(spec["texts"])]
if "adapter" in spec:
    from peft import PeftModel

    a = spec["adapter"]
    base = AutoModelForSequenceClassification.from_pretrained(a["base"], **a["labels"])
    model = PeftModel.from_pretrained(base, a["repo"], subfolder=a["subfolder"], revision=revision).eval()
    tokenizer = AutoTokenizer.from_pretrained(a["repo"], subfolder=a["subfolder"], revision=revision)
    with torch.no_grad():
        logits = model(**tokenizer(spec["texts"], padding=True, return_tensors="pt")).logits
    out["adapter_logits"] = logits.tolist()
for repo in spec.get("cards", []):
    data = ModelCard.load(hf_hub_download(repo, "README.md", revision=revision)).data
    out["cards"][repo] = {**data.to_dict(), "eval_results": [vars(r) for r in data.eval_results or []]}
print(json.dumps(out))
"""


def _env(hub_url: str, tmp_path, **extra: str) -> dict[str, str]:
    """Online to the stand-in only: its endpoint, Xet off (the stand-in speaks LFS), a fresh HF_HOME, no token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=hub_url,
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HOME=str(tmp_path / "hf_home"),
        TOKENIZERS_PARALLELISM="false",
        **extra,
    )
    return env


def _python(args: list[str], env: dict[str, str], cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd or ROOT
    )


def _recipe(tiny_bert_dir, text_files, output_dir, env, *flags) -> subprocess.CompletedProcess:
    args = recipe_args(tiny_bert_dir, text_files, output_dir, *FAST, "--push_to_hub", "true", *flags)
    return _python([RECIPE, *args], env)


def _load(spec: dict, env: dict[str, str]) -> dict:
    done = _python(["-c", LOAD, json.dumps({"texts": TEXTS, **spec})], env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_no_token(output_dir, *texts: str) -> None:
    """The token is in no file of the output folder (checkpoints included) and in none of `texts` (the logs)."""
    for folder, _, names in os.walk(output_dir):
        for name in names:
            with open(os.path.join(folder, name), "rb") as handle:
                assert TOKEN.encode() not in handle.read(), os.path.join(folder, name)
    for text in texts:
        assert TOKEN not in text
    assert "hub_token" not in yaml.safe_load(open(os.path.join(output_dir, "hftl_config.yaml")))


def _assert_pushed(hub: StandInHub, repo_id: str, output_dir, expected: list[str], revision="main") -> dict:
    """The repo holds `expected` as written locally, and no checkpoint, training state or pickle."""
    files = hub.files(repo_id, revision)
    for name in expected:
        assert files.get(name) == (output_dir / name).read_bytes(), name
    assert not [p for p in files if p.startswith(("checkpoint-", "stage1/", "runs/")) or p.endswith(".bin")]
    return files


def _assert_safetensors_only(output_dir) -> None:
    """Weights (model, adapter, checkpoints) are safetensors; the only pickle is the Trainer's training_args.bin."""
    assert {p.name for p in output_dir.rglob("*.bin")} <= {"training_args.bin"}
    assert {p.name for p in output_dir.rglob("*.pt*")} <= {"optimizer.pt", "scheduler.pt", "rng_state.pth"}
    assert list(output_dir.rglob("*.safetensors"))


def _assert_same_predictions(hub_rows, local_rows) -> None:
    for hub_row, local_row in zip(hub_rows, local_rows, strict=True):
        assert hub_row.keys() == local_row.keys() == {"negative", "positive"}
        for label, score in local_row.items():
            assert hub_row[label] == pytest.approx(score, abs=1e-5)


def _assert_card(card: dict, output_dir, strategy: str, library_name: str = "transformers") -> None:
    assert card["library_name"] == library_name and card["pipeline_tag"] == "text-classification"
    assert {"hftl", "text-classification", f"strategy-{strategy}"} <= set(card["tags"])
    assert card["labels"] == ["negative", "positive"]
    assert card["metrics"] == ["accuracy", "balanced_accuracy", "precision", "recall", "f1"]
    results = json.load(open(output_dir / "all_results.json"))
    values = {(r["dataset_split"], r["metric_type"]): r["metric_value"] for r in card["eval_results"]}
    assert values[("test", "accuracy")] == pytest.approx(results["test_accuracy"], abs=1e-4)
    assert values[("validation", "f1")] == pytest.approx(results["eval_f1"], abs=1e-4)


def test_push_full_model_then_pipeline_from_the_hub(tiny_bert_dir, text_files, tmp_path):
    output_dir = tmp_path / "full"
    with StandInHub(tmp_path / "hub", tokens={TOKEN: "alice"}) as hub:
        env = _env(hub.url, tmp_path, HF_TOKEN=TOKEN)  # the token from the environment
        done = _recipe(tiny_bert_dir, text_files, output_dir, env, "--hub_model_id", "alice/tiny-full")
        assert done.returncode == 0, done.stderr[-3000:]
        assert (output_dir / "checkpoint-8").is_dir()  # exists locally, must not be pushed
        model_files = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
        run_files = ["README.md", "hftl_config.yaml", "all_results.json", "test_report.json"]
        _assert_pushed(hub, "alice/tiny-full", output_dir, model_files + run_files)
        assert any(m == "PUT" and p.startswith("/lfs-objects/") for m, p, _ in hub.requests)  # weights: via LFS
        writes = [(p, t) for m, p, t in hub.requests if m == "POST" and not p.startswith("/lfs-objects/")]
        assert writes and all(token == TOKEN for _, token in writes)
        assert "Pushed" in done.stdout and "alice/tiny-full" in done.stdout

        loaded = _load(
            {"pipelines": {"hub": "alice/tiny-full", "local": str(output_dir)}, "cards": ["alice/tiny-full"]}, env
        )
        downloads = {p.split("/", 5)[-1] for m, p, _ in hub.requests if m == "GET" and "/resolve/" in p}
        assert {"model.safetensors", "config.json", "tokenizer.json"} <= downloads  # from the stand-in, not the disk
        assert hub.unknown == []
    _assert_same_predictions(loaded["pipelines"]["hub"], loaded["pipelines"]["local"])
    _assert_card(loaded["cards"]["alice/tiny-full"], output_dir, "full")
    _assert_safetensors_only(output_dir)
    _assert_no_token(output_dir, done.stdout, done.stderr)


def test_push_lora_adapter_and_merged_model(tiny_bert_dir, text_files, tmp_path):
    output_dir = tmp_path / "lora"
    with StandInHub(tmp_path / "hub", tokens={TOKEN: "alice"}) as hub:
        env = _env(hub.url, tmp_path)
        os.makedirs(env["HF_HOME"], exist_ok=True)
        with open(os.path.join(env["HF_HOME"], "token"), "w") as handle:  # where `hf auth login` stores it
            handle.write(TOKEN)
        # no --hub_model_id: the output folder's name in the token owner's namespace, alice/lora; on a new branch
        done = _recipe(tiny_bert_dir, text_files, output_dir, env, "--strategy", "lora", "--hub_revision", "dev")
        assert done.returncode == 0, done.stderr[-3000:]
        adapter = ["adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/tokenizer.json"]
        pushed = ["model.safetensors", "README.md", "hftl_config.yaml"] + adapter
        _assert_pushed(hub, "alice/lora", output_dir, pushed, revision="dev")
        assert list(hub.files("alice/lora")) == [".gitattributes"]  # main untouched
        spec = {
            "revision": "dev",
            "pipelines": {"hub": "alice/lora", "local": str(output_dir)},
            "adapter": {"repo": "alice/lora", "subfolder": "adapter", "base": tiny_bert_dir, "labels": LABELS},
            "cards": ["alice/lora"],
        }
        loaded = _load(spec, env)
        assert hub.unknown == []
    _assert_same_predictions(loaded["pipelines"]["hub"], loaded["pipelines"]["local"])
    local = loaded["pipelines"]["local"]
    # the adapter on its base model (from the Hub) computes what the merged model (local) computes
    for logits, scores in zip(loaded["adapter_logits"], local, strict=True):
        total = sum(math.exp(x) for x in logits)
        assert [math.exp(x) / total for x in logits] == pytest.approx(
            [scores["negative"], scores["positive"]], abs=1e-4
        )
    _assert_card(loaded["cards"]["alice/lora"], output_dir, "lora")
    _assert_safetensors_only(output_dir)
    _assert_no_token(output_dir, done.stdout, done.stderr)


def _assert_local_output_complete(output_dir) -> None:
    for name in ("model.safetensors", "config.json", "README.md", "hftl_config.yaml", "all_results.json"):
        assert (output_dir / name).is_file(), name


def test_refused_token_keeps_the_output_and_the_retry_command_works(tiny_bert_dir, text_files, tmp_path):
    output_dir = tmp_path / "out"
    with StandInHub(tmp_path / "hub", tokens={TOKEN: "alice"}, reject_all=True) as hub:  # the Hub answers 401
        env = _env(hub.url, tmp_path)
        done = _recipe(tiny_bert_dir, text_files, output_dir, env, "--hub_model_id", "alice/tiny", "--hub_token", TOKEN)
        assert done.returncode == 1, done.stderr[-3000:]
        assert (
            "error: Push to the Hub (alice/tiny) failed while creating the repository: the Hub refused the token"
            in done.stderr
        )
        assert "401" in done.stderr and TOKEN in hub.tokens_seen()  # the --hub_token was sent, and refused
        _assert_local_output_complete(output_dir)
        _assert_no_token(output_dir, done.stdout, done.stderr)

        hub.reject_all = False  # the token works again: the printed command pushes the same files
        command = re.search(r"push it later with `([^`]+)`", done.stderr).group(1)
        hf, *words = shlex.split(command)  # the `hf` CLI installed beside this Python
        hf = os.path.join(os.path.dirname(sys.executable), hf)
        retry = subprocess.run([hf, *words], capture_output=True, text=True, env={**env, "HF_TOKEN": TOKEN})
        assert retry.returncode == 0, retry.stderr[-3000:]
        _assert_pushed(hub, "alice/tiny", output_dir, ["model.safetensors", "README.md", "hftl_config.yaml"])


def test_unreachable_hub_keeps_the_output(tiny_bert_dir, text_files, tmp_path):
    hub = StandInHub(tmp_path / "hub").start()
    url = hub.url
    hub.stop()  # the server is down: connections are refused
    output_dir = tmp_path / "out"
    env = _env(url, tmp_path, HF_TOKEN=TOKEN)
    done = _recipe(tiny_bert_dir, text_files, output_dir, env, "--hub_model_id", "alice/tiny")
    assert done.returncode == 1, done.stderr[-3000:]
    assert (
        f"error: Push to the Hub (alice/tiny) failed while creating the repository: could not reach {url}"
        in done.stderr
    )
    assert "push it later with `hf upload alice/tiny" in done.stderr
    _assert_local_output_complete(output_dir)
    _assert_no_token(output_dir, done.stdout, done.stderr)


def test_no_token_is_said_before_any_request(tmp_path, monkeypatch):
    from huggingface_hub import constants
    from transformers import TrainingArguments

    from hftl.errors import PushError
    from hftl.hub import push_to_hub

    for name in ("HF_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))  # nobody ran `hf auth login`
    (tmp_path / "out").mkdir()
    with pytest.raises(PushError, match=r"\(alice/tiny\) not attempted: no token. Pass --hub_token, set HF_TOKEN"):
        push_to_hub(str(tmp_path / "out"), TrainingArguments(str(tmp_path / "out"), hub_model_id="alice/tiny"))


def _unsafe_loads(source: str) -> list[str]:
    """Calls in `source` that can unpickle: torch.load without weights_only=True, pickle / dill / joblib /
    cloudpickle imports, numpy loads with allow_pickle=True, pandas.read_pickle."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [m for m in modules if m.split(".")[0] in ("pickle", "dill", "joblib", "cloudpickle")]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            keywords = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
            name = ast.unparse(node.func)
            if name == "torch.load" and keywords.get("weights_only") is not True:
                found.append(ast.unparse(node))
            elif node.func.attr == "read_pickle" or keywords.get("allow_pickle") is True:
                found.append(ast.unparse(node))
    return found


def test_unsafe_loads_are_found():
    source = "import pickle\nimport torch\ntorch.load(f(x), map_location='cpu')\nnp.load(p, allow_pickle=True)\n"
    assert _unsafe_loads(source) == ["pickle", "torch.load(f(x), map_location='cpu')", "np.load(p, allow_pickle=True)"]
    assert _unsafe_loads("torch.load(f(x), map_location='cpu', weights_only=True)") == []


def test_security_defaults():
    from hftl.config import argument_types, parse_args
    from hftl.modalities import AudioModality, ImageModality, TextModality

    # trust_remote_code is off unless asked, in every recipe
    for modality, recipe in ((TextModality(), "text"), (ImageModality(), "image"), (AudioModality(), "speech")):
        parsed, _ = parse_args(argument_types(modality), recipe_defaults(f"{recipe}_classification"), [])
        assert parsed[0].trust_remote_code is False
    # nothing in hftl unpickles (weights are written as safetensors: see the push tests)
    for folder, _, names in os.walk(os.path.join(ROOT, "hftl")):
        for name in (n for n in names if n.endswith(".py")):
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                assert _unsafe_loads(handle.read()) == [], os.path.join(folder, name)


def test_card_names_the_adaptation_method():
    from huggingface_hub import ModelCard

    from hftl.data.checks import LabelInfo
    from hftl.modelcard import model_card

    common = dict(
        model_path="/models/tiny_bert",
        pipeline_task="text-classification",
        data_description="local files (train.csv)",
        hub_dataset=None,
        strategy="full",
        strategy_details="every parameter fine-tuned.",
        labels=LabelInfo(["negative", "positive"], {"train": [3, 4]}),
        metrics={"test_accuracy": 0.75},
        hyperparameters={},
        is_adapter=False,
    )
    plain, dann = model_card(**common), model_card(**common, adaptation="dann")
    assert plain.content == model_card(**common, adaptation=None).content
    assert "adaptation-" not in plain.content and "Domain adaptation" not in plain.content
    assert "Domain adaptation: `dann`." in dann.content
    data = ModelCard(dann.content).data
    assert data.tags == ["hftl", "text-classification", "strategy-full", "adaptation-dann"]
    assert data.labels == ["negative", "positive"] and data.eval_results[0].metric_value == 0.75
