"""Losses against values computed by hand on two-pixel tensors."""

from __future__ import annotations

import math

import pytest
import torch

from segbench.methods.deep.losses import LOSSES, DiceLoss, FocalLoss, TverskyLoss, build_loss

LN3 = math.log(3.0)


def _logits() -> torch.Tensor:
    """Two pixels, two classes: softmax gives p = (0.25, 0.75) at pixel A and (0.75, 0.25) at pixel B."""
    return torch.tensor([[[[0.0, LN3]], [[LN3, 0.0]]]], requires_grad=True)  # (1, 2, 1, 2)


def _target(a: int, b: int) -> torch.Tensor:
    return torch.tensor([[[a, b]]])  # (1, 1, 2)


def _value(spec: str, target: torch.Tensor) -> float:
    return build_loss(spec)(_logits(), target).item()


def test_cross_entropy_by_hand():
    # Both pixels labelled 1: -(ln 0.75 + ln 0.25) / 2.
    assert _value("ce", _target(1, 1)) == pytest.approx(-(math.log(0.75) + math.log(0.25)) / 2, abs=1e-6)


def test_cross_entropy_leaves_ignored_pixels_out():
    assert _value("ce", _target(1, 255)) == pytest.approx(-math.log(0.75), abs=1e-6)


def test_binary_cross_entropy_by_hand():
    # One-vs-rest sigmoids. Pixel A (label 1): channel 0 logit 0 -> -ln(1 - 0.5); channel 1 logit ln3 -> -ln 0.75.
    # Pixel B (label 1): channel 0 logit ln3 -> -ln(1 - 0.75); channel 1 logit 0 -> -ln 0.5.
    expected = (-math.log(0.5) - math.log(0.75) - math.log(0.25) - math.log(0.5)) / 4
    assert _value("bce", _target(1, 1)) == pytest.approx(expected, abs=1e-6)


def test_focal_by_hand():
    # gamma = 2: p_t = 0.75 at A and 0.25 at B.
    expected = ((0.25**2) * -math.log(0.75) + (0.75**2) * -math.log(0.25)) / 2
    assert _value("focal", _target(1, 1)) == pytest.approx(expected, abs=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy():
    target = _target(1, 0)
    assert FocalLoss(gamma=0.0)(_logits(), target).item() == pytest.approx(_value("ce", target), abs=1e-6)


def test_dice_by_hand_with_both_classes():
    # Target A=1, B=0. Class 1: TP = 0.75, FP = 0.25, FN = 0.25 -> Dice 1.5 / 2 = 0.75; class 0 the same.
    assert _value("dice", _target(1, 0)) == pytest.approx(0.25, abs=1e-6)


def test_dice_leaves_a_class_absent_from_the_target_out():
    # Both pixels labelled 1: class 1 TP = 1.0, FP = 0, FN = 1.0 -> Dice 2 / 3; class 0 is absent.
    assert _value("dice", _target(1, 1)) == pytest.approx(1 - 2 / 3, abs=1e-6)


def test_tversky_by_hand():
    # alpha = 0.3, beta = 0.7; class 1: TI = 1 / (1 + 0.3 * 0 + 0.7 * 1).
    assert _value("tversky", _target(1, 1)) == pytest.approx(1 - 1 / 1.7, abs=1e-6)


def test_focal_tversky_by_hand():
    assert _value("focal_tversky", _target(1, 1)) == pytest.approx((1 - 1 / 1.7) ** 0.75, abs=1e-6)


def test_tversky_with_equal_weights_is_dice():
    target = _target(1, 0)
    assert TverskyLoss(alpha=0.5, beta=0.5)(_logits(), target).item() == pytest.approx(DiceLoss()(_logits(), target).item(), abs=1e-7)


def test_weighted_sum_and_spellings():
    target = _target(1, 0)
    combined = _value("0.5*ce + dice", target)
    assert combined == pytest.approx(0.5 * _value("ce", target) + _value("dice", target), abs=1e-6)
    assert _value("focal-tversky", target) == pytest.approx(_value("focal_tversky", target), abs=1e-7)
    assert [name for name, _ in build_loss("bce+2*dice").terms] == ["bce", "dice"]
    assert [w for _, w in build_loss("bce+2*dice").terms] == [1.0, 2.0]


@pytest.mark.parametrize("spec", ["", "ce+", "lovasz", "x*ce", "ce*0.5"])
def test_bad_specs_name_the_problem(spec):
    with pytest.raises(ValueError, match="loss"):
        build_loss(spec)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_ignores_and_backpropagates(name):
    loss_fn = build_loss(name)
    logits = torch.randn(2, 3, 5, 4, requires_grad=True)
    target = torch.randint(0, 3, (2, 5, 4))
    changed = logits.detach().clone()
    changed[:, :, 0, :] += 10 * torch.randn(2, 3, 4)  # only the first row differs...
    ignored = target.clone()
    ignored[:, 0, :] = 255  # ...and it is ignored, so the loss must not change
    assert loss_fn(logits, ignored).item() == pytest.approx(loss_fn(changed, ignored).item(), abs=1e-5)
    value = loss_fn(logits, target)
    value.backward()
    assert torch.isfinite(value) and logits.grad is not None and logits.grad.abs().sum() > 0
    # Every pixel ignored: zero, and still differentiable.
    empty = loss_fn(logits, torch.full_like(target, 255))
    assert empty.item() == 0.0 and empty.requires_grad


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_confident_correct_prediction_scores_lower(name):
    loss_fn = build_loss(name)
    target = torch.randint(0, 3, (1, 6, 6))
    # Logits +8 for the right class and -8 for the others (sigmoids near 0/1 too, for bce).
    good = 8.0 * (2 * torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() - 1)
    bad = 8.0 * (2 * torch.nn.functional.one_hot((target + 1) % 3, 3).permute(0, 3, 1, 2).float() - 1)
    assert float(loss_fn(good, target)) < 0.01 < float(loss_fn(bad, target))
