"""Tests for ``segbench.measure.calibration``: a per-pixel brute-force oracle, hand-computed cases, and
``sklearn.metrics.brier_score_loss`` (without its halving of the binary case, which is then our convention)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from segbench.measure.calibration import Calibration

IGNORE = 255


def _random_proba(rng, num_classes, shape, sharpness=3.0):
    logits = rng.normal(size=(num_classes, *shape)) * sharpness
    e = np.exp(logits - logits.max(axis=0))
    return (e / e.sum(axis=0)).astype(np.float32)


def _brute(probas, truths, ignores, num_classes, bins=15):
    """Loop over every kept pixel of every image: bin by lo < conf <= hi, sum squared one-hot errors."""
    count, conf_sum, correct, brier = np.zeros(bins), np.zeros(bins), np.zeros(bins), 0.0
    for proba, truth, ignore in zip(probas, truths, ignores):
        for i in range(truth.shape[0]):
            for j in range(truth.shape[1]):
                if truth[i, j] == IGNORE or (ignore is not None and ignore[i, j]):
                    continue
                p = proba[:, i, j].astype(np.float64)
                conf, top = p.max(), int(np.argmax(p))
                k = next(b for b in range(bins) if b / bins < conf <= (b + 1) / bins or (b == 0 and conf == 0))
                count[k] += 1
                conf_sum[k] += conf
                correct[k] += top == truth[i, j]
                brier += sum((p[c] - (c == truth[i, j])) ** 2 for c in range(num_classes))
    n = count.sum()
    ece = sum(count[k] / n * abs(correct[k] / count[k] - conf_sum[k] / count[k]) for k in range(bins) if count[k])
    return ece, brier / n, count, correct


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_classes = 2 + seed % 3
    cal = Calibration(num_classes, ignore_index=IGNORE)
    probas, truths, ignores = [], [], []
    for _ in range(3):
        shape = (int(rng.integers(4, 9)), int(rng.integers(4, 9)))
        proba = _random_proba(rng, num_classes, shape, sharpness=0.5 + seed)
        truth = rng.integers(0, num_classes, size=shape).astype(np.uint8)
        truth[rng.random(shape) < 0.1] = IGNORE
        ignore = rng.random(shape) < 0.2 if seed % 2 else None
        cal.update(proba, truth, ignore_mask=ignore)
        probas.append(proba), truths.append(truth), ignores.append(ignore)
    ece, brier, count, correct = _brute(probas, truths, ignores, num_classes)
    result = cal.compute()
    assert result["ece"] == pytest.approx(ece, abs=1e-9)
    assert result["brier"] == pytest.approx(brier, abs=1e-9)
    diagram = cal.reliability()
    np.testing.assert_array_equal(diagram["count"], count)
    filled = count > 0
    np.testing.assert_allclose(np.array(diagram["accuracy"])[filled], correct[filled] / count[filled])
    assert np.isnan(np.array(diagram["accuracy"])[~filled]).all()


def test_hand_computed_ece() -> None:
    """Four pixels at confidence 0.9 (bin 13, (13/15, 14/15]), three right; two at 0.7 (bin 10), one right."""
    p1 = np.array([[0.9, 0.9, 0.9, 0.1, 0.7, 0.3]], dtype=np.float32)
    proba = np.stack([1 - p1, p1])  # (2, 1, 6)
    truth = np.array([[1, 1, 1, 1, 1, 1]])
    cal = Calibration(2)
    cal.update(proba, truth)
    # bin 13: conf 0.9, acc 3/4 -> gap 0.15 over 4 pixels; bin 10: conf 0.7, acc 1/2 -> gap 0.2 over 2 pixels
    assert cal.compute()["ece"] == pytest.approx((4 * 0.15 + 2 * 0.2) / 6, abs=1e-6)
    assert cal.reliability()["count"][13] == 4 and cal.reliability()["count"][10] == 2


def test_bin_edges_are_right_closed() -> None:
    """A confidence of exactly 2/3 = 10/15 falls in bin 9, (9/15, 10/15]."""
    proba = np.array([[[2 / 3]], [[1 / 3]]])
    cal = Calibration(2)
    cal.update(proba, np.array([[0]]))
    assert cal.reliability()["count"][9] == 1


def test_brier_against_sklearn_binary_and_multiclass() -> None:
    rng = np.random.default_rng(0)
    for num_classes in (2, 4):
        proba = _random_proba(rng, num_classes, (7, 9)).astype(np.float64)
        proba /= proba.sum(axis=0)  # exact sums in float64, as sklearn checks
        truth = rng.integers(0, num_classes, size=(7, 9))
        cal = Calibration(num_classes)
        cal.update(proba, truth)
        flat = proba.reshape(num_classes, -1).T
        if num_classes == 2:
            halved = brier_score_loss(truth.ravel(), flat[:, 1])  # sklearn's default for two classes
            assert cal.compute()["brier"] == pytest.approx(2 * halved)
        expected = brier_score_loss(truth.ravel(), flat, labels=list(range(num_classes)), scale_by_half=False)
        assert cal.compute()["brier"] == pytest.approx(expected)


def test_nothing_counted_is_nan_and_bad_shapes_name_the_fix() -> None:
    cal = Calibration(2)
    cal.update(np.full((2, 2, 2), 0.5), np.full((2, 2), IGNORE))
    assert np.isnan(cal.compute()["ece"]) and np.isnan(cal.compute()["brier"])
    with pytest.raises(ValueError, match="at the truth's resolution"):
        cal.update(np.full((3, 2, 2), 1 / 3), np.zeros((2, 2), int))
