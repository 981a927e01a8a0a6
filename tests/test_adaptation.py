"""The maths of domain adaptation: gradient reversal, the lambda schedule, MMD, the discriminator, label shift."""

import math
import pickle

import numpy as np
import pytest
import torch

from hftl.adaptation import (
    AdaptationTask,
    DomainAdversarialLoss,
    DomainDiscriminator,
    GradientReversalLayer,
    PairedDomainDataset,
    bbse_prior,
    em_prior,
    estimate_target_prior,
    gradient_reverse,
    grl_lambda,
    importance_weights,
    multiple_kernel_mmd,
)
from hftl.adaptation.methods import get_method
from hftl.training.cached_head import CachedFeatureHead, fold_bottleneck


def make_task(head, layer: str, method: str, feature_size: int, class_weights=None) -> AdaptationTask:
    """A training task of `method` ("none" for importance weighting alone) on a small head."""
    alignment = None
    if method != "none":
        cls = get_method(method)
        args = cls.arguments_class() if cls.arguments_class else None
        if hasattr(args, "discriminator_hidden_size"):
            args.discriminator_hidden_size = 8
        alignment = cls.from_arguments(feature_size, 3, 10.0, args)
    return AdaptationTask(head, layer, alignment, 1.0, class_weights)


def test_grl_forward_is_identity_and_backward_is_minus_lambda_grad():
    x = torch.randn(5, 3, requires_grad=True)
    weights = torch.randn(5, 3)
    for coefficient in (0.0, 0.3, 1.0, 2.5):
        y = GradientReversalLayer()(x, coefficient)
        assert torch.equal(y, x)
        (grad,) = torch.autograd.grad((y * weights).sum(), x)
        torch.testing.assert_close(grad, -coefficient * weights)


def test_grl_gradcheck():
    # gradcheck compares the analytic backward with finite differences of the forward (the identity): at
    # coefficient -1 the reversed gradient is the identity's own gradient, so gradcheck must pass; at +1 it must not
    x = torch.randn(4, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gradient_reverse(t, -1.0), (x,))
    assert not torch.autograd.gradcheck(lambda t: gradient_reverse(t, 1.0), (x,), raise_exception=False)


def test_grl_lambda_schedule():
    assert grl_lambda(0.0) == 0.0
    assert grl_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert grl_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert grl_lambda(1.0) == pytest.approx(1.0, abs=1e-4)
    assert grl_lambda(2.0) == grl_lambda(1.0)  # progress is clipped
    values = [grl_lambda(p / 100) for p in range(101)]
    assert all(b > a for a, b in zip(values, values[1:], strict=False))


def test_discriminator_gradient_reaches_the_backbone_reversed():
    torch.manual_seed(0)
    backbone = torch.nn.Linear(6, 4)
    loss = DomainAdversarialLoss(DomainDiscriminator(4, hidden_size=8, dropout=0.0))
    x_s, x_t = torch.randn(7, 6), torch.randn(5, 6) + 1.0

    def backbone_grad(coefficient):
        backbone.zero_grad()
        loss.zero_grad()
        loss(backbone(x_s), backbone(x_t), coefficient).backward()
        return backbone.weight.grad.clone(), loss.discriminator[0].weight.grad.clone()

    reversed_grad, disc_grad = backbone_grad(1.0)
    plain_grad, disc_grad_plain = backbone_grad(-1.0)  # -1: no reversal
    assert reversed_grad.abs().sum() > 0
    torch.testing.assert_close(reversed_grad, -plain_grad)
    torch.testing.assert_close(disc_grad, disc_grad_plain)  # the discriminator itself is trained normally


def test_domain_loss_is_picklable_and_weighted():
    loss = DomainAdversarialLoss(DomainDiscriminator(4, hidden_size=8, dropout=0.0))
    copy = pickle.loads(pickle.dumps(loss))
    f_s, f_t = torch.randn(3, 4), torch.randn(2, 4)
    torch.testing.assert_close(copy(f_s, f_t), loss(f_s, f_t))
    # weights that put all source mass on one example equal that example alone
    torch.testing.assert_close(loss(f_s, f_t, w_s=torch.tensor([0.0, 2.0, 0.0])), loss(f_s[1:2], f_t))


def test_mmd_zero_for_identical_samples_and_growing_with_shift():
    torch.manual_seed(0)
    x = torch.randn(200, 5)
    assert abs(multiple_kernel_mmd(x[:100], x[100:]).item()) < 0.02
    assert multiple_kernel_mmd(x, x, estimator="biased").item() == pytest.approx(0.0, abs=1e-6)
    values = [multiple_kernel_mmd(x[:100], x[100:] + shift).item() for shift in (0.25, 0.5, 1.0, 2.0)]
    assert values[0] > 0.005
    assert all(b > a for a, b in zip(values, values[1:], strict=False))


def test_mmd_unequal_batch_sizes_match_a_direct_computation():
    torch.manual_seed(1)
    f_s, f_t = torch.randn(7, 3), torch.randn(4, 3) + 0.5
    multipliers = (0.5, 1.0, 2.0)
    joint = torch.cat([f_s, f_t])
    sq = torch.cdist(joint, joint).pow(2)
    sigma2 = sq.sum() / (11 * 10)

    def k(a, b):
        d = torch.cdist(a, b).pow(2)
        return torch.stack([torch.exp(-d / (m * sigma2)) for m in multipliers]).mean(0)

    kss, ktt, kst = k(f_s, f_s), k(f_t, f_t), k(f_s, f_t)
    biased = kss.mean() + ktt.mean() - 2 * kst.mean()
    unbiased = (kss.sum() - kss.trace()) / 42 + (ktt.sum() - ktt.trace()) / 12 - 2 * kst.mean()
    torch.testing.assert_close(multiple_kernel_mmd(f_s, f_t, multipliers, "biased"), biased)
    torch.testing.assert_close(multiple_kernel_mmd(f_s, f_t, multipliers, "unbiased"), unbiased)
    # equal weights are no weights; other weights give the weighted means
    torch.testing.assert_close(multiple_kernel_mmd(f_s, f_t, multipliers, w_s=torch.ones(7)), unbiased)
    w = torch.tensor([2.0, 1, 1, 1, 1, 1, 1])
    weighted = multiple_kernel_mmd(f_s, f_t, multipliers, "biased", w_s=w)
    a = w / w.sum()
    expected = a @ kss @ a + ktt.mean() - 2 * a @ kst.mean(1)
    torch.testing.assert_close(weighted, expected)


@pytest.mark.parametrize("method", ["dann", "mmd"])
@pytest.mark.parametrize("weighted", [False, True])
def test_alignment_under_bf16_autocast_on_cpu(method, weighted):
    torch.manual_seed(0)
    head = CachedFeatureHead([torch.nn.Linear(6, 4), torch.nn.Linear(4, 3)])
    weights = torch.tensor([1.0, 2.0, 0.5]) if weighted else None
    model = make_task(head, "head.1", method, 4, class_weights=weights)
    model.train()
    model.training_progress = 0.5
    batch = {
        "features": torch.randn(5, 6),
        "labels": torch.tensor([0, 1, 2, 1, 0]),
        "target_features": torch.randn(3, 6),
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(**batch)
    assert output["loss"].dtype == torch.float32 and torch.isfinite(output["loss"])
    assert torch.isfinite(output["align_loss"]) and torch.isfinite(output["cls_loss"])
    torch.testing.assert_close(output["loss"], output["cls_loss"] + output["align_loss"])
    output["loss"].backward()
    assert head.head[0].weight.grad.abs().sum() > 0
    pickle.loads(pickle.dumps(model))  # picklable with the progress attribute set


def test_adaptation_model_is_the_classifier_in_evaluation():
    torch.manual_seed(0)
    head = CachedFeatureHead([torch.nn.Linear(6, 3)])
    model = make_task(head, "head.0", "dann", 6).eval()
    features, labels = torch.randn(4, 6), torch.tensor([0, 1, 2, 0])
    output = model(features=features, labels=labels)
    torch.testing.assert_close(output["logits"], head(features)["logits"])
    torch.testing.assert_close(output["loss"], head(features, labels)["loss"])
    assert "align_loss" not in output


def test_paired_dataset_pairing_depends_on_index_and_epoch_only():
    source = [{"x": i, "labels": i % 2} for i in range(5)]
    target = [{"x": 100 + i, "labels": 0} for i in range(3)]
    a, b = PairedDomainDataset(source, target, seed=3), PairedDomainDataset(source, target, seed=3)
    assert [a[i] for i in range(5)] == [b[i] for i in range(5)]
    assert "target_labels" not in a[0]
    seen = set()
    for epoch in range(3):
        a.epoch = epoch
        seen |= {a[i]["target_x"] for i in range(5)}
    assert seen == {100, 101, 102}


def test_fold_bottleneck_is_exact():
    torch.manual_seed(0)
    bottleneck, top, classifier = torch.nn.Linear(6, 4), torch.nn.Linear(4, 3), torch.nn.Linear(6, 3)
    x = torch.randn(5, 6)
    expected = top(bottleneck(x))
    fold_bottleneck(bottleneck, top, classifier)
    torch.testing.assert_close(classifier(x), expected)


def _shifted_gaussians(prior, n, rng, num_classes=3):
    labels = rng.choice(num_classes, size=n, p=prior)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])[:num_classes]
    return centres[labels] + rng.normal(size=(n, 2)), labels


@pytest.mark.parametrize("estimator", ["bbse", "em"])
def test_prior_estimation_recovers_a_shifted_prior(estimator):
    rng = np.random.default_rng(0)
    source_prior, target_prior = [1 / 3, 1 / 3, 1 / 3], [0.7, 0.2, 0.1]
    x_train, y_train = _shifted_gaussians(source_prior, 3000, rng)
    x_val, y_val = _shifted_gaussians(source_prior, 3000, rng)
    x_target, _ = _shifted_gaussians(target_prior, 4000, rng)
    estimated_source, estimated, _ = estimate_target_prior(
        x_train, y_train, x_val, y_val, x_target, 3, estimator=estimator
    )
    assert np.abs(estimated_source - source_prior).max() < 0.03
    assert np.abs(estimated - target_prior).max() < 0.05, estimated
    weights = importance_weights(estimated, estimated_source)
    assert weights[0] > 1.5 and weights[2] < 0.5


def test_bbse_and_em_on_exact_posteriors():
    # a perfect classifier: BBSE and EM must return the target's class shares exactly
    eye = np.eye(2)
    source_labels = np.array([0, 0, 1, 1])
    target = eye[[0, 0, 0, 1]]
    np.testing.assert_allclose(bbse_prior(eye[source_labels], source_labels, target), [0.75, 0.25])
    np.testing.assert_allclose(em_prior(target, np.array([0.5, 0.5])), [0.75, 0.25], atol=1e-6)


def test_zero_importance_weights_keep_losses_finite():
    # a class the target prior estimate puts at 0 gets weight 0; a batch of only that class must not give NaN
    torch.manual_seed(0)
    for method in ("dann", "mmd", "none"):
        head = CachedFeatureHead([torch.nn.Linear(6, 4), torch.nn.Linear(4, 2)])
        weights = torch.tensor([0.0, 2.0])
        model = make_task(head, "head.1", method, 4, class_weights=weights)
        model.train()
        model.training_progress = 0.5
        output = model(
            features=torch.randn(3, 6), labels=torch.zeros(3, dtype=torch.long), target_features=torch.randn(3, 6)
        )
        assert torch.isfinite(output["loss"]), method
        output["loss"].backward()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
        model.eval()  # evaluation reports the plain (unweighted) cross-entropy
        features, labels = torch.randn(4, 6), torch.tensor([0, 1, 0, 1])
        torch.testing.assert_close(model(features=features, labels=labels)["loss"], head(features, labels)["loss"])


def test_bbse_without_a_class_in_the_heldout_data_falls_back_to_em(caplog):
    rng = np.random.default_rng(0)
    x_train, y_train = _shifted_gaussians([1 / 3, 1 / 3, 1 / 3], 1500, rng)
    x_val, y_val = _shifted_gaussians([0.5, 0.5, 0.0], 600, rng)  # no class 2 in the held-out split
    x_target, _ = _shifted_gaussians([0.7, 0.2, 0.1], 3000, rng)
    _, estimated, used = estimate_target_prior(x_train, y_train, x_val, y_val, x_target, 3, estimator="bbse")
    assert "Estimating the target prior by EM instead" in caplog.text
    assert used == "em"  # label_shift.json and the card once said "bbse" after this fallback
    assert np.abs(estimated - [0.7, 0.2, 0.1]).max() < 0.05
