"""Deep CORAL (`hftl/adaptation/methods/coral.py`): the maths, and the method through the text recipe."""

import json
import pickle

import numpy as np
import pytest
import torch
from helpers import recipe_args, recipe_defaults

from hftl.adaptation.methods import DomainOutputs, get_method
from hftl.adaptation.methods.coral import coral_loss, covariance
from hftl.modalities import TextModality
from hftl.pipeline import run_classification


def test_covariance_matches_numpy_and_weights_select_examples():
    torch.manual_seed(0)
    x = torch.randn(9, 3)
    np.testing.assert_allclose(covariance(x).numpy(), np.cov(x.numpy(), rowvar=False), atol=1e-5)
    # integer weights equal repeating the examples (numpy's frequency weights)
    w = torch.tensor([2.0, 1, 1, 1, 1, 1, 1, 1, 3])
    expected = np.cov(x.numpy(), rowvar=False, aweights=w.numpy())
    np.testing.assert_allclose(covariance(x, w).numpy(), expected, atol=1e-5)


def test_coral_is_zero_for_equal_covariances_and_grows_with_scale():
    torch.manual_seed(0)
    x = torch.randn(200, 4)
    assert coral_loss(x, x + 5.0).item() == pytest.approx(0.0, abs=1e-6)  # a shift of the mean is not seen
    values = [coral_loss(x, scale * x).item() for scale in (1.5, 2.0, 3.0)]
    assert 0 < values[0] < values[1] < values[2]
    assert coral_loss(x, 2 * x).item() == pytest.approx((covariance(x) * 3).pow(2).sum().item() / 64, rel=1e-4)


def test_coral_gradient_reaches_both_domains_under_autocast():
    method = get_method("coral").from_arguments(4, 2, 10.0, None)
    f_s, f_t = torch.randn(6, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts = method(DomainOutputs(f_s, None), DomainOutputs(f_t * 2, None), progress=0.3)
    assert parts["align_loss"].dtype == torch.float32
    parts["align_loss"].backward()
    assert f_s.grad.abs().sum() > 0 and f_t.grad.abs().sum() > 0
    pickle.loads(pickle.dumps(method))


def test_coral_through_the_text_recipe(tiny_bert_dir, text_files, tmp_path):
    target = {"target_train_file": text_files["validation_file"], "target_test_file": text_files["test_file"]}
    args = recipe_args(
        tiny_bert_dir, {**text_files, **target}, tmp_path, "--adaptation", "coral", "--logging_steps", "1"
    )
    args += ["--num_train_epochs", "1", "--report_to", "none", "--disable_tqdm", "true"]
    metrics = run_classification(TextModality(), recipe_defaults("text_classification"), args)
    history = json.load(open(tmp_path / "trainer_state.json"))["log_history"]
    assert any(abs(entry.get("align_loss", 0)) > 0 for entry in history)
    assert "target_accuracy" in metrics
    assert "Deep CORAL" in (tmp_path / "README.md").read_text()
