"""Bootstrap intervals, dataset-level scores of resampled confusion matrices, Wilcoxon, Holm, seeds x images."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests

from segbench.measure.metrics import scores_from_confusion
from segbench.report.stats import (
    bootstrap_ci,
    confusion_score,
    holm,
    paired_seeds_test,
    seed_mean,
    seeds_images_bootstrap,
    seeds_images_ci,
    weighted_nanmean,
    wilcoxon_p,
)


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


# ----------------------------------------------------------------------------------- seeds x images


def _exact_two_level(x: np.ndarray) -> np.ndarray:
    """Every equally likely resample of a crossed (seeds x images) table, by explicit loops: draw S seeds
    and N images with replacement (all S**S * N**N ordered draws), the same images for every drawn seed;
    the statistic is the mean over drawn seeds of the mean over drawn images."""
    s, n = x.shape
    values = []
    for seeds in itertools.product(range(s), repeat=s):
        for images in itertools.product(range(n), repeat=n):
            values.append(np.mean([np.mean([x[a, i] for i in images]) for a in seeds]))
    return np.array(values)


# Large seed and image effects: resampling images separately per seed would halve the image part.
_X = np.array([[0.10, 0.55, 0.90], [0.30, 0.70, 0.95]])


def test_seed_mean_matches_explicit_repeats():
    per_seed = np.array([[0.2, np.nan, 0.8], [0.2, np.nan, 0.8]])
    weights = np.array([[1, 1, 1], [0, 3, 0]])
    assert seed_mean(per_seed, weights)[0] == pytest.approx(np.nanmean([0.2, np.nan, 0.8]))
    assert np.isnan(seed_mean(per_seed, weights)[1])  # only an undefined seed drawn


def test_two_level_bootstrap_matches_exact_enumeration():
    exact = _exact_two_level(_X)
    assert exact.size == 2**2 * 3**3
    draws = seeds_images_bootstrap(lambda sw, iw: seed_mean(weighted_nanmean(_X, iw), sw), 2, 3, n_resamples=200_000)
    assert draws.mean() == pytest.approx(exact.mean(), abs=4 * exact.std() / np.sqrt(draws.size))
    assert draws.var() == pytest.approx(exact.var(), rel=0.02)
    # Images resampled independently within each seed would give a clearly smaller variance (a wrong design).
    draws_per_seed = list(itertools.product(range(3), repeat=3))
    nested = np.array([np.mean([np.mean(_X[a, images[k]]) for k, a in enumerate(seeds)])
                       for seeds in itertools.product(range(2), repeat=2)
                       for images in itertools.product(draws_per_seed, repeat=2)])
    assert nested.var() < 0.8 * draws.var()


def test_paired_seeds_test_uses_the_two_level_standard_error():
    exact = _exact_two_level(_X)
    ci, p = paired_seeds_test(_X, n_resamples=200_000)
    se = exact.std()
    assert ci.estimate == pytest.approx(_X.mean())
    assert (ci.high - ci.estimate) / 1.959964 == pytest.approx(se, rel=0.02)
    assert p == pytest.approx(2 * scipy.stats.norm.sf(_X.mean() / se), rel=0.05)
    assert (ci.low > 0) == (p < 0.05)  # one procedure: the interval and the test agree


def test_paired_seeds_test_edge_cases():
    assert paired_seeds_test(np.zeros((3, 5)))[1] == 1.0
    assert paired_seeds_test(np.full((3, 5), 0.1))[1] == 0.0
    ci, p = paired_seeds_test(np.array([[0.1], [0.2]]))  # one image: no interval
    assert np.isnan(p) and np.isnan(ci.low)
    # NaN pairs are left out of their seed's mean.
    d = np.array([[0.1, np.nan, 0.3], [0.0, 0.2, np.nan]])
    assert paired_seeds_test(d)[0].estimate == pytest.approx(np.mean([0.2, 0.1]))


def test_seeds_images_ci_contains_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    x = rng.beta(5, 2, (3, 30))

    def stat(sw, iw):
        return seed_mean(weighted_nanmean(x, iw), sw)

    first, second = seeds_images_ci(stat, 3, 30), seeds_images_ci(stat, 3, 30)
    assert first == second and first.low < first.estimate < first.high
    assert first.estimate == pytest.approx(x.mean())
    # Training noise widens the interval: a seed offset the one-level bootstrap cannot see.
    shifted = x + np.array([[-0.1], [0.0], [0.1]])
    one_level = bootstrap_ci(lambda w: weighted_nanmean(shifted, w).mean(axis=-1), 30)
    two_level = seeds_images_ci(lambda sw, iw: seed_mean(weighted_nanmean(shifted, iw), sw), 3, 30)
    assert two_level.high - two_level.low > 1.5 * (one_level.high - one_level.low)


@pytest.mark.parametrize("p", [
    [0.4, 0.6, 0.7, 0.01],  # 0.4 * 3 = 1.2: capped at 1
    [0.3, 0.3, 0.9, 0.05, 0.2, 0.45],  # ties, and several products above 1
    [0.001, 0.002, 0.04, 0.5],  # below 1 throughout
])
def test_holm_matches_statsmodels(p):
    expected = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(holm(p), expected, rtol=1e-12)
    assert holm(p).max() <= 1.0
