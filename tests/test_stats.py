"""Bootstrap intervals, dataset-level scores of resampled confusion matrices, Wilcoxon and Holm."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests

from segbench.measure.metrics import scores_from_confusion
from segbench.report.stats import bootstrap_ci, confusion_score, holm, weighted_nanmean, wilcoxon_p


def test_weighted_nanmean_matches_explicit_resample():
    values = np.array([0.1, np.nan, 0.5, 0.9])
    weights = np.array([[1, 1, 1, 1], [0, 2, 2, 0], [3, 1, 0, 0]])
    got = weighted_nanmean(values, weights)
    expected = [np.nanmean(np.repeat(values, w)) for w in weights]
    np.testing.assert_allclose(got, expected)
    assert np.isnan(weighted_nanmean(values, np.array([0, 4, 0, 0])))  # only an undefined image drawn


@pytest.mark.parametrize("score", ["dice", "iou"])
def test_confusion_score_matches_metrics_on_summed_matrices(score):
    rng = np.random.default_rng(0)
    cms = rng.integers(0, 50, (6, 3, 3))
    cms[:, 2, :] = 0  # class 2 never in the truth...
    cms[:, :, 2] = 0  # ...nor predicted: undefined, left out of the mean
    weights = np.array([2, 0, 1, 1, 0, 2])
    summed = (cms * weights[:, None, None]).sum(0)
    ref = scores_from_confusion(summed)
    assert confusion_score(cms, weights, score=score, class_index=None) == pytest.approx(ref[f"mean_{score}"])
    assert confusion_score(cms, weights, score=score, class_index=1) == pytest.approx(ref[score][1])
    assert np.isnan(confusion_score(cms, weights, score=score, class_index=2))


def test_bootstrap_interval_contains_estimate_and_is_reproducible():
    rng = np.random.default_rng(3)
    x = rng.beta(5, 2, 40)
    ci = bootstrap_ci(lambda w: weighted_nanmean(x, w), len(x))
    assert ci.estimate == pytest.approx(x.mean())
    assert ci.low < ci.estimate < ci.high and ci.high - ci.low < 0.2
    assert ci == bootstrap_ci(lambda w: weighted_nanmean(x, w), len(x))  # fixed seed
    # Same BCa interval as scipy resampling the values themselves with the same seed.
    ref = scipy.stats.bootstrap((x,), np.mean, method="BCa", n_resamples=2000, rng=np.random.default_rng(0))
    assert ci.low == pytest.approx(ref.confidence_interval.low, abs=1e-9)
    assert ci.high == pytest.approx(ref.confidence_interval.high, abs=1e-9)


def test_bootstrap_degenerate_and_tiny_samples():
    same = bootstrap_ci(lambda w: weighted_nanmean(np.full(6, 0.7), w), 6)
    assert (same.low, same.estimate, same.high) == pytest.approx((0.7, 0.7, 0.7))
    one = bootstrap_ci(lambda w: weighted_nanmean(np.array([0.3]), w), 1)
    assert one.estimate == 0.3 and np.isnan(one.low) and np.isnan(one.high)


def test_wilcoxon_matches_scipy_and_handles_ties():
    d = np.array([0.05, 0.12, -0.02, 0.08, 0.0, 0.11, 0.07, np.nan, 0.03])
    kept = d[~np.isnan(d)]
    assert wilcoxon_p(d) == pytest.approx(scipy.stats.wilcoxon(kept, zero_method="pratt").pvalue)
    assert wilcoxon_p(np.zeros(7)) == 1.0
    assert np.isnan(wilcoxon_p(np.array([np.nan, np.nan])))


def test_holm_step_down():
    # Sorted p: 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06.
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])
    out = holm([np.nan, 0.02])
    assert np.isnan(out[0]) and out[1] == pytest.approx(0.02)


@pytest.mark.parametrize("p", [
    [0.4, 0.6, 0.7, 0.01],  # 0.4 * 3 = 1.2: capped at 1
    [0.3, 0.3, 0.9, 0.05, 0.2, 0.45],  # ties, and several products above 1
    [0.001, 0.002, 0.04, 0.5],  # below 1 throughout
])
def test_holm_matches_statsmodels(p):
    expected = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(holm(p), expected, rtol=1e-12)
    assert holm(p).max() <= 1.0
