"""`--sentence_pooling`: a sentence-transformers folder's pooling becomes the classifier's input, the saved model
serves the run's predictions through `pipeline(...)`, and `pooler` keeps the architecture's head."""

import csv
import inspect
import json
import shutil

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import make_texts, recipe_args, recipe_defaults, run_python, write_csv
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertModel,
    DataCollatorWithPadding,
    pipeline,
)

from hftl.errors import InputError
from hftl.features import capture_inputs, extract_features, feature_layer
from hftl.modalities import TextModality
from hftl.models import SentencePoolingForSequenceClassification
from hftl.models.sentence_pooling import pool_tokens
from hftl.pipeline import run_classification
from hftl.sentence_pooling import SentencePoolingArguments, declared_pooling, resolve_pooling

FAST = (
    "--num_train_epochs 2 --per_device_train_batch_size 8 --learning_rate 5e-3 --logging_steps 1 "
    "--disable_tqdm true --report_to none --strategy feature_extraction"
).split()


def _sentence_transformers_folder(source: str, target, mode: str = "pooling_mode_mean_tokens"):
    """A copy of model folder `source` laid out as a sentence-transformers model (modules.json, 1_Pooling)."""
    shutil.copytree(source, target)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (target / "modules.json").write_text(json.dumps(modules))
    (target / "1_Pooling").mkdir()
    flags = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens")
    pooling = {"word_embedding_dimension": 32, **{flag: flag == mode for flag in flags}}
    (target / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return str(target)


@pytest.fixture
def st_bert_dir(tiny_bert_dir, tmp_path) -> str:
    return _sentence_transformers_folder(tiny_bert_dir, tmp_path / "st_bert")


@pytest.fixture
def target_files(tmp_path) -> dict[str, str]:
    unlabelled = [{"text": row["text"], "label": "positive"} for row in make_texts(40, seed=7)]
    return {
        "target_train_file": write_csv(tmp_path / "target_train.csv", unlabelled),
        "target_test_file": write_csv(tmp_path / "target_test.csv", make_texts(18, seed=8)),
    }


def _run(model_dir, files, output_dir, *flags):
    args = recipe_args(model_dir, files, output_dir, *FAST, *flags)
    return run_classification(TextModality(), recipe_defaults("text_classification"), args)


def _rows(path):
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_pool_tokens_known_values():
    hidden = torch.tensor([[[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    torch.testing.assert_close(pool_tokens(hidden, mask, "mean"), torch.tensor([[2.0, 1.0], [7.0, 8.0]]))
    torch.testing.assert_close(pool_tokens(hidden, mask, "max"), torch.tensor([[3.0, 4.0], [9.0, 10.0]]))
    torch.testing.assert_close(pool_tokens(hidden, mask, "cls"), hidden[:, 0])
    torch.testing.assert_close(pool_tokens(hidden, None, "mean"), hidden.mean(dim=1))


def test_declared_pooling_reads_the_sentence_transformers_layout(tiny_bert_dir, tmp_path):
    from hftl.arguments import ModelArguments

    args = ModelArguments()
    assert declared_pooling(tiny_bert_dir, args)[0] is None  # a plain model folder
    mean = _sentence_transformers_folder(tiny_bert_dir, tmp_path / "mean")
    assert declared_pooling(mean, args)[0] == "mean"
    cls = _sentence_transformers_folder(tiny_bert_dir, tmp_path / "cls", "pooling_mode_cls_token")
    assert declared_pooling(cls, args)[0] == "cls"
    odd = _sentence_transformers_folder(tiny_bert_dir, tmp_path / "odd", "pooling_mode_mean_sqrt_len_tokens")
    mode, why = declared_pooling(odd, args)
    assert mode is None and "does not offer" in why


def test_auto_keeps_a_trained_classifier(st_bert_dir):
    """`auto` pools a frozen sentence-transformers folder whose classifier is new; a trained head, or a backbone that
    trains, keeps the architecture's head."""
    from hftl.arguments import ModelArguments

    model = AutoModelForSequenceClassification.from_pretrained(st_bert_dir, num_labels=2)
    auto, model_args = SentencePoolingArguments(), ModelArguments()
    assert resolve_pooling(auto, st_bert_dir, model, ["classifier.bias", "classifier.weight"], model_args) == "mean"
    assert resolve_pooling(auto, st_bert_dir, model, [], model_args) is None
    # a backbone that trains keeps its architecture's head (a plain transformers model)
    new = ["classifier.bias", "classifier.weight"]
    assert resolve_pooling(auto, st_bert_dir, model, new, model_args, frozen=False) is None
    assert resolve_pooling(SentencePoolingArguments("pooler"), st_bert_dir, model, ["classifier.weight"], None) is None
    assert resolve_pooling(SentencePoolingArguments("max"), st_bert_dir, model, [], None) == "max"


def test_features_are_the_masked_mean_and_pipeline_serves_the_run(st_bert_dir, text_files, target_files, tmp_path):
    """A frozen run with MMD (bottleneck folded into the classifier): the saved model is the pooled classifier,
    its features are the masked mean of the pretrained model's last token states, and `pipeline(...)` gives the
    probabilities of the run's prediction files, with hftl imported or, trusting the saved code, without."""
    output_dir = tmp_path / "mean"
    _run(st_bert_dir, {**text_files, **target_files}, output_dir, "--adaptation", "mmd")
    config = json.loads((output_dir / "config.json").read_text())
    assert config["model_type"] == "hftl_sentence_pooling" and config["sentence_pooling"] == "mean"
    assert "AutoModelForSequenceClassification" in config["auto_map"]
    assert (output_dir / "modeling_sentence_pooling.py").exists()

    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    assert isinstance(model, SentencePoolingForSequenceClassification)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    texts = [row["text"] for row in _rows(text_files["test_file"])]
    texts[0] = texts[0] + " " + texts[1]  # unequal lengths: padding inside a batch
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = BertModel.from_pretrained(st_bert_dir).eval()(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = (hidden * mask).sum(1) / mask.sum(1)
    dataset = Dataset.from_dict(dict(tokenizer(texts)))
    collator = DataCollatorWithPadding(tokenizer)
    features = extract_features(model, dataset, collator, 4, feature_layer(model, 2)[1])
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)

    classifier = pipeline("text-classification", model=str(output_dir), top_k=None)
    for split, file in (("test", text_files["test_file"]), ("target", target_files["target_test_file"])):
        rows, saved = _rows(file), _rows(output_dir / f"{split}_predictions.csv")
        served = classifier([row["text"] for row in rows], truncation=True)
        for scores, row in zip(served, saved, strict=True):
            for entry in scores:
                assert entry["score"] == pytest.approx(float(row[f"prob_{entry['label']}"]), abs=1e-5)

    # a process without hftl loads the saved code (auto_map) when trusted
    code = (
        "import sys; from transformers import pipeline; "
        f"c = pipeline('text-classification', model={str(output_dir)!r}, trust_remote_code=True); "
        f"assert 'hftl' not in sys.modules; print(c({texts[-1]!r}, truncation=True)[0]['score'])"
    )
    served = float(run_python(["-c", code]).stdout.strip().splitlines()[-1])
    assert served == pytest.approx(float(_rows(output_dir / "test_predictions.csv")[-1]["score"]), abs=1e-5)


def test_pooler_keeps_the_architecture_head(st_bert_dir, text_files, tmp_path):
    output_dir = tmp_path / "pooler"
    _run(st_bert_dir, text_files, output_dir, "--sentence_pooling", "pooler", "--num_train_epochs", "1")
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    assert model.config.model_type == "bert" and type(model).__name__ == "BertForSequenceClassification"
    pretrained = BertModel.from_pretrained(st_bert_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    batch = tokenizer(["good great film", "bad"], padding=True, return_tensors="pt")
    with torch.no_grad(), capture_inputs(model.classifier) as captured:
        model(**batch)
        np.testing.assert_allclose(captured[0].numpy(), pretrained(**batch).pooler_output.numpy(), atol=1e-6)


def test_explicit_mean_on_a_plain_folder_full_fine_tuning(tiny_bert_dir, text_files, tmp_path):
    """`mean` on a folder that declares no pooling; the whole model trains through the pooling and reloads."""
    output_dir = tmp_path / "full"
    metrics = _run(
        tiny_bert_dir, text_files, output_dir, "--sentence_pooling", "mean", "--strategy", "full", "--do_predict",
        "false", "--num_train_epochs", "1",
    )  # fmt: skip
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    assert model.config.sentence_pooling == "mean"
    assert metrics["trainable_parameters"] == sum(p.numel() for p in model.parameters())
    # segment ids reach the backbone (text pairs): the Trainer keeps the inputs the forward signature names
    assert "token_type_ids" in inspect.signature(model.forward).parameters
    batch = AutoTokenizer.from_pretrained(output_dir)(["good great film"], return_tensors="pt")
    with torch.no_grad():
        other = model(**{**batch, "token_type_ids": torch.ones_like(batch["token_type_ids"])}).logits
        assert not torch.allclose(model(**batch).logits, other)
    with pytest.raises(InputError, match="--sentence_pooling pooler"):
        _run(str(output_dir), text_files, tmp_path / "again", "--sentence_pooling", "pooler")


def test_sentence_pooling_is_text_only():
    from hftl.config import resolve_config
    from hftl.modalities import ImageModality

    with pytest.raises(InputError, match="--sentence_pooling mean applies to text"):
        resolve_config(ImageModality(), {}, ["--output_dir", "x", "--sentence_pooling", "mean"])
