"""CDAN+E, MCC and self-training (`hftl/adaptation/methods/{cdan,mcc,self_training}.py`): the maths on random
tensors, each method through the text recipe, and a resumed CDAN run."""

import json
import math
import pickle
import shutil

import pytest
import torch
from helpers import make_texts, recipe_args, recipe_defaults, write_csv
from safetensors.torch import load_file
from torch.nn import functional as F

from hftl.adaptation.methods import DomainOutputs, get_method, method_names
from hftl.adaptation.methods.cdan import CDAN, entropy_weights, multilinear_map
from hftl.adaptation.methods.mcc import class_confusion_loss
from hftl.adaptation.methods.self_training import pseudo_label_loss
from hftl.adaptation.task import AdaptationTask
from hftl.modalities import TextModality
from hftl.pipeline import run_classification
from hftl.training.cached_head import CachedFeatureHead

NEW = ("cdan", "mcc", "self_training")


def _method(name: str, feature_size: int = 4, num_labels: int = 3, **flags):
    cls = get_method(name)
    args = cls.arguments_class(**flags)
    return cls.from_arguments(feature_size, num_labels, 10.0, args)


# ---- the maths ------------------------------------------------------------------------------------------------


def test_multilinear_map_of_known_vectors_and_the_size_rule():
    f, g = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.5, 0.0, 2.0]])
    expected = [0.5, 1.0, 1.5, 0.0, 0.0, 0.0, 2.0, 4.0, 6.0]  # g_c * f_k at c * F + k
    assert multilinear_map(f, g)[0].tolist() == expected
    # exact map up to F * C = 4096 (the paper's rule), the randomized one beyond, or as the flag says
    assert CDAN(2048, 2, hidden_size=4).map is None
    big = CDAN(2048, 3, hidden_size=4, randomized_dim=32)
    assert big.map is not None and big.adversarial.discriminator[0].in_features == 32
    assert _method("cdan", 4, 3, cdan_randomized=True, cdan_randomized_dim=16).map.r_f.shape == (4, 16)
    # the randomized map estimates the exact map's inner products: E <T(x), T(y)> = <f_x, f_y> <g_x, g_y>
    torch.manual_seed(0)
    (f1, f2), (g1, g2) = torch.randn(2, 1, 5), torch.softmax(torch.randn(2, 1, 3), -1)
    exact = (multilinear_map(f1, g1) * multilinear_map(f2, g2)).sum().item()
    estimate = (lambda m: (m(f1, g1) * m(f2, g2)).sum().item())(CDAN(5, 3, randomized=True, randomized_dim=20000).map)
    assert estimate == pytest.approx(exact, abs=0.1 * max(1.0, abs(exact)))


def test_entropy_weights_are_two_for_one_hot_and_one_plus_one_over_c_for_uniform():
    p = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    torch.testing.assert_close(entropy_weights(p), torch.tensor([2.0, 1.25]))


def test_cdan_weights_each_domain_by_entropy_and_source_weights():
    torch.manual_seed(0)
    loss = CDAN(4, 3, hidden_size=8, dropout=0.0)
    f_s, f_t = torch.randn(5, 4), torch.randn(6, 4)
    g_s, g_t = torch.randn(5, 3) * 3, torch.randn(6, 3) * 3
    parts = loss(DomainOutputs(f_s, g_s), DomainOutputs(f_t, g_t), progress=1.0)

    def bce(features, logits, truth):
        d = loss.adversarial.discriminator(multilinear_map(features, logits.softmax(-1)))
        return F.binary_cross_entropy_with_logits(d, torch.full_like(d, truth), reduction="none")

    e_s, e_t = entropy_weights(g_s.softmax(-1)), entropy_weights(g_t.softmax(-1))
    expected = 0.5 * ((bce(f_s, g_s, 1.0) * e_s).sum() / e_s.sum() + (bce(f_t, g_t, 0.0) * e_t).sum() / e_t.sum())
    torch.testing.assert_close(parts["align_loss"], expected)
    # importance weights multiply the source weights: a source example weighing 0 drops out
    w_s = torch.tensor([1.0, 0, 0, 0, 0])
    alone = loss(DomainOutputs(f_s[:1], g_s[:1]), DomainOutputs(f_t, g_t), progress=1.0)["align_loss"]
    weighted = loss(DomainOutputs(f_s, g_s), DomainOutputs(f_t, g_t), progress=1.0, w_s=w_s)["align_loss"]
    torch.testing.assert_close(weighted, alone)


@pytest.mark.parametrize("name", NEW)
def test_gradients_reach_the_features_under_autocast(name):
    torch.manual_seed(0)
    head = CachedFeatureHead([torch.nn.Linear(6, 4), torch.nn.Linear(4, 3)])
    flags = {"cdan": {"cdan_discriminator_hidden_size": 8}, "self_training": {"pseudo_label_threshold": 0.4}}
    task = AdaptationTask(head, "head.1", _method(name, **flags.get(name, {})), 1.0, torch.tensor([1.0, 2.0, 0.5]))
    task.train()
    task.training_progress = 0.5
    batch = {
        "features": torch.randn(5, 6),
        "labels": torch.tensor([0, 1, 2, 1, 0]),
        "target_features": torch.randn(7, 6),
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = task(**batch)
    assert output["loss"].dtype == torch.float32 and output["align_loss"].shape == ()
    assert torch.isfinite(output["align_loss"]) and output["align_loss"] > 0
    (grad,) = torch.autograd.grad(output["align_loss"], head.head[0].weight)  # the layer before the features
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    pickle.loads(pickle.dumps(task))


def test_cdan_gradient_is_reversed_and_follows_the_schedule():
    torch.manual_seed(0)
    loss = CDAN(4, 2, hidden_size=8, dropout=0.0)
    f_s, f_t = torch.randn(5, 4, requires_grad=True), torch.randn(6, 4)
    g_s, g_t = torch.randn(5, 2), torch.randn(6, 2)
    grads = {}
    for progress in (0.0, 1.0):
        parts = loss(DomainOutputs(f_s, g_s), DomainOutputs(f_t, g_t), progress)
        (grads[progress],) = torch.autograd.grad(parts["align_loss"], f_s)
    assert grads[0.0].abs().sum() == 0  # lambda_0 = 0
    # at lambda ~ 1 the features move to raise the discriminator's loss: the opposite of its own gradient
    mapped = multilinear_map(f_s, g_s.softmax(-1))
    d = loss.adversarial.discriminator(torch.cat([mapped, multilinear_map(f_t, g_t.softmax(-1))]))
    plain = F.binary_cross_entropy_with_logits(d[:5], torch.ones(5), weight=entropy_weights(g_s.softmax(-1)))
    assert (grads[1.0] * torch.autograd.grad(plain, f_s)[0]).sum() < 0


def test_mcc_known_values():
    # confident one-hot predictions of distinct classes confuse nothing; uniform ones confuse (C - 1) / C
    assert class_confusion_loss(torch.eye(3) * 100).item() == pytest.approx(0.0, abs=1e-6)
    assert class_confusion_loss(torch.zeros(5, 4)).item() == pytest.approx(0.75)
    # against a loop over the paper's definitions (eqs. 1-7), with column normalisation
    torch.manual_seed(0)
    logits, t = torch.randn(6, 3), 2.5
    p = torch.softmax(logits / t, -1)
    h = -(p * p.log()).sum(-1)
    w = 6 * (1 + torch.exp(-h)) / (1 + torch.exp(-h)).sum()
    c = torch.tensor([[sum(w[i] * p[i, j] * p[i, k] for i in range(6)) for k in range(3)] for j in range(3)])
    c = c / c.sum(0, keepdim=True)
    assert class_confusion_loss(logits, t).item() == pytest.approx((c.sum() - c.trace()).item() / 3, rel=1e-5)


def test_mcc_stays_finite_when_a_class_is_never_predicted():
    # class 2's probability underflows to 0 in float32 on every example: 0 / 0 before the fix, NaN for the whole run
    logits = torch.tensor([[300.0, 0.0, -300.0], [0.0, 300.0, -300.0], [5.0, 1.0, -300.0]], requires_grad=True)
    loss = class_confusion_loss(logits)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() == pytest.approx(class_confusion_loss(logits[:, :2].detach()).item() * 2 / 3, abs=1e-6)


def test_mcc_reads_the_target_logits_only():
    torch.manual_seed(0)
    mcc = _method("mcc", mcc_temperature=2.0)
    g_t = torch.randn(6, 3, requires_grad=True)
    target = DomainOutputs(torch.randn(6, 4), g_t)
    plain = mcc(DomainOutputs(torch.randn(5, 4), torch.randn(5, 3)), target, 0.5)["align_loss"]
    weighted = mcc(DomainOutputs(torch.randn(5, 4), torch.randn(5, 3)), target, 0.5, w_s=torch.rand(5))["align_loss"]
    assert plain.item() == weighted.item() == class_confusion_loss(g_t, 2.0).item()
    plain.backward()
    assert torch.isfinite(g_t.grad).all() and g_t.grad.abs().sum() > 0


def test_self_training_masks_unconfident_examples():
    logits = torch.tensor([[0.2, 0.0, 0.1], [0.0, 0.3, 0.0]], requires_grad=True)
    loss, share = pseudo_label_loss(logits, 0.9)
    assert loss.item() == 0.0 and share.item() == 0.0  # no confident example: nothing to learn
    loss.backward()
    assert logits.grad.abs().sum() == 0
    confident = torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, 4.0], [0.1, 0.0, 0.0], [0.0, 6.0, 0.0]])
    loss, share = pseudo_label_loss(confident, 0.9)
    kept = [0, 1, 3]
    expected = F.cross_entropy(confident[kept], torch.tensor([0, 2, 1]), reduction="sum") / 4
    assert share.item() == 0.75 and loss.item() == pytest.approx(expected.item())
    assert pseudo_label_loss(confident, 0.3)[1].item() == 1.0
    parts = _method("self_training")(DomainOutputs(None, None), DomainOutputs(None, confident), 0.0)
    assert parts["pseudo_label_share"].item() == 0.75


def test_flags_are_checked():
    from hftl.errors import InputError

    for name, flags, match in [
        ("mcc", {"mcc_temperature": 0.0}, "--mcc_temperature"),
        ("self_training", {"pseudo_label_threshold": 1.5}, "--pseudo_label_threshold"),
        ("cdan", {"cdan_randomized_dim": 0}, "--cdan_randomized_dim"),
    ]:
        with pytest.raises(InputError, match=match):
            get_method(name).arguments_class(**flags)


# ---- through the recipe ---------------------------------------------------------------------------------------

FAST = "--num_train_epochs 2 --per_device_train_batch_size 8 --learning_rate 5e-3 --logging_steps 1".split()
FAST += ["--disable_tqdm", "true", "--report_to", "none", "--cdan_discriminator_hidden_size", "16"]


@pytest.fixture
def target_files(tmp_path) -> dict[str, str]:
    return {
        "target_train_file": write_csv(tmp_path / "target_train.csv", make_texts(40, seed=7)),
        "target_test_file": write_csv(tmp_path / "target_test.csv", make_texts(18, seed=8)),
    }


def _run(model_dir, text_files, target_files, output_dir, *flags):
    args = recipe_args(model_dir, {**text_files, **target_files}, output_dir, *FAST, *flags)
    return run_classification(TextModality(), recipe_defaults("text_classification"), args)


def test_the_benchmark_lists_the_new_methods():
    import importlib.util

    from helpers import ROOT

    spec = importlib.util.spec_from_file_location("benchmark", f"{ROOT}/benchmarks/domain_adaptation.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    assert set(NEW) <= set(method_names())
    assert {*NEW, *(f"iw{name}" for name in NEW)} <= set(benchmark.METHODS)


@pytest.mark.parametrize(
    "method, flags, logged, card",
    [
        (
            "mcc",
            ["--strategy", "feature_extraction", "--importance_weighting"],
            "align_loss",
            "Minimum Class Confusion",
        ),
        ("self_training", ["--pseudo_label_threshold", "0.5"], "pseudo_label_share", "Self-training"),
        ("cdan", ["--strategy", "feature_extraction"], "align_loss", "Conditional domain-adversarial"),
    ],
)
def test_method_through_the_text_recipe(tiny_bert_dir, text_files, target_files, tmp_path, method, flags, logged, card):
    output_dir = tmp_path / method
    metrics = _run(tiny_bert_dir, text_files, target_files, output_dir, "--adaptation", method, *flags)
    history = json.load(open(output_dir / "trainer_state.json"))["log_history"]
    values = [entry[logged] for entry in history if logged in entry]
    assert values and all(math.isfinite(v) for v in values) and max(values) > 0
    assert 0 <= metrics["target_accuracy"] <= 1
    assert card in (output_dir / "README.md").read_text()


def test_cdan_resumes_its_discriminator_and_map(tiny_bert_dir, text_files, target_files, tmp_path):
    flags = ["--adaptation", "cdan", "--importance_weighting", "--cdan_randomized", "true"]
    flags += [
        "--cdan_randomized_dim",
        "32",
        "--save_strategy",
        "steps",
        "--save_steps",
        "6",
        "--save_total_limit",
        "5",
        "--seed",
        "3",
    ]
    whole = tmp_path / "whole"
    _run(tiny_bert_dir, text_files, target_files, whole, *flags)
    resumed = tmp_path / "resumed"  # a run that stopped after its step-6 checkpoint, then resumed
    shutil.copytree(whole / "checkpoint-6", resumed / "checkpoint-6")
    checkpoint = str(resumed / "checkpoint-6")
    metrics = _run(tiny_bert_dir, text_files, target_files, resumed, *flags, "--resume_from_checkpoint", checkpoint)
    assert "Conditional domain-adversarial" in (resumed / "README.md").read_text()
    assert 0 <= metrics["target_accuracy"] <= 1
    first, second = (
        load_file(whole / "checkpoint-16" / "model.safetensors"),
        load_file(resumed / "checkpoint-16" / "model.safetensors"),
    )
    assert {"alignment.map.r_f", "alignment.map.r_g"} <= set(first)
    assert any(key.startswith("alignment.adversarial.discriminator.") for key in first)
    for key, value in first.items():  # the discriminator, the random map and the classifier all continue exactly
        torch.testing.assert_close(second[key], value, atol=1e-5, rtol=1e-4)
    assert not any("alignment" in key for key in load_file(whole / "model.safetensors"))
