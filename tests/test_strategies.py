"""Each strategy trains exactly the parameters it promises (tiny BERT built from a config)."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from hftl.arguments import StrategyArguments
from hftl.errors import InputError
from hftl.strategies import count_parameters, get_strategy, model_parts
from hftl.strategies.two_stage import unfreeze_top


def apply_strategy(model, parts, args, task_type=None):
    return get_strategy(args.strategy).apply(model, parts, args, task_type)


def _load(path, num_labels=3):
    model, info = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=num_labels, output_loading_info=True
    )
    return model, model_parts(model, info["missing_keys"])


def _size(model, *prefixes):
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefixes))


def _trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_parts_of_bert(tiny_bert_dir):
    model, parts = _load(tiny_bert_dir)
    assert parts.backbone_prefix == "bert"
    assert parts.layers == [f"bert.encoder.layer.{i}" for i in range(4)]
    assert all(n.startswith("bert.embeddings.") for n in parts.embeddings) and parts.embeddings
    assert parts.after_layers == ["bert.pooler.dense.weight", "bert.pooler.dense.bias"]
    assert parts.head == ["classifier.weight", "classifier.bias"]
    assert parts.new == ["classifier.bias", "classifier.weight"]


def test_full(tiny_bert_dir):
    model, parts = _load(tiny_bert_dir)
    model = apply_strategy(model, parts, StrategyArguments(strategy="full"))
    trainable, total = count_parameters(model)
    assert trainable == total


def test_feature_extraction_trains_only_the_head(tiny_bert_dir):
    model, parts = _load(tiny_bert_dir)
    apply_strategy(model, parts, StrategyArguments(strategy="feature_extraction"))
    assert _trainable_names(model) == {"classifier.weight", "classifier.bias"}
    assert count_parameters(model)[0] == 32 * 3 + 3


@pytest.mark.parametrize("n", [0, 1, 3, 4])
def test_freeze_first_n_layers_and_embeddings(tiny_bert_dir, n):
    model, parts = _load(tiny_bert_dir)
    apply_strategy(model, parts, StrategyArguments(strategy="freeze", num_frozen_layers=n))
    frozen = ("bert.embeddings.",) + tuple(f"bert.encoder.layer.{i}." for i in range(n))
    trainable, total = count_parameters(model)
    assert trainable == total - _size(model, *frozen)
    assert not any(model.get_parameter(name).requires_grad for name in parts.embeddings)


def test_freeze_too_many_layers(tiny_bert_dir):
    model, parts = _load(tiny_bert_dir)
    with pytest.raises(InputError, match="--num_frozen_layers 5 exceeds the model's 4 encoder layers"):
        apply_strategy(model, parts, StrategyArguments(strategy="freeze", num_frozen_layers=5))


def test_two_stage(tiny_bert_dir):
    model, parts = _load(tiny_bert_dir)
    apply_strategy(model, parts, StrategyArguments(strategy="two_stage", unfreeze_top_k=1))
    assert _trainable_names(model) == {"classifier.weight", "classifier.bias"}
    unfreeze_top(model, parts, 1)
    expected = _size(model, "bert.encoder.layer.3.", "bert.pooler.", "classifier.")
    assert count_parameters(model)[0] == expected


def test_new_modules_train_even_inside_a_frozen_backbone(tiny_bert_dir):
    model, info = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=2, output_loading_info=True
    )
    parts = model_parts(model, list(info["missing_keys"]) + ["bert.pooler.dense.weight", "bert.pooler.dense.bias"])
    apply_strategy(model, parts, StrategyArguments(strategy="feature_extraction"))
    assert "bert.pooler.dense.weight" in _trainable_names(model)


def test_lora_counts_and_modules_to_save(tiny_bert_dir):
    model, parts = _load(tiny_bert_dir)
    peft_model = apply_strategy(model, parts, StrategyArguments(strategy="lora", lora_r=4), task_type="SEQ_CLS")
    # 4 layers x (query, value) x (A: 4x32 + B: 32x4) + classifier copy (32*3 + 3)
    expected = 4 * 2 * (4 * 32 + 32 * 4) + (32 * 3 + 3)
    assert count_parameters(peft_model)[0] == expected
    assert "classifier" in peft_model.peft_config["default"].modules_to_save


def test_lora_unknown_target_lists_candidates(tiny_bert_dir):
    model, parts = _load(tiny_bert_dir)
    with pytest.raises(InputError, match=r"\['q_proj'\] match no module.*Candidates: \[.*'query'.*'value'"):
        apply_strategy(model, parts, StrategyArguments(strategy="lora", lora_target_modules=["q_proj"]))


def test_lora_comma_separated_targets():
    assert StrategyArguments(strategy="lora", lora_target_modules=["query, key"]).lora_target_modules == [
        "query",
        "key",
    ]


def test_frozen_parameters_do_not_change_in_training(tiny_bert_dir):
    model, parts = _load(tiny_bert_dir, num_labels=2)
    apply_strategy(model, parts, StrategyArguments(strategy="freeze", num_frozen_layers=2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = {"input_ids": torch.randint(5, 30, (4, 8)), "labels": torch.tensor([0, 1, 0, 1])}
    model(**batch).loss.backward()
    optimizer.step()
    for name, parameter in model.named_parameters():
        changed = not torch.equal(before[name], parameter)
        assert changed == parameter.requires_grad, name
