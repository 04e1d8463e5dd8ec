"""Bootstrap intervals, dataset-level scores of resampled confusion matrices, Holm, seeds x images, and the paired
comparisons' one statistic (t on the trained units) with its calibration checked by simulation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats
import statsmodels.api as sm
from statsmodels.stats.multitest import multipletests

from segbench.measure.metrics import scores_from_confusion
from segbench.report.stats import (
    bootstrap_ci,
    confusion_score,
    holm,
    paired_difference,
    paired_t,
    seed_mean,
    seeds_images_bootstrap,
    seeds_images_ci,
    weighted_nanmean,
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


# ----------------------------------------------------------------------------------- paired comparisons


def test_one_split_one_seed_is_the_one_sample_t_test():
    rng = np.random.default_rng(0)
    d = rng.normal(0.02, 0.06, 28)
    r = paired_difference(d[None])
    ref = scipy.stats.ttest_1samp(d, 0.0)
    ci = ref.confidence_interval(0.95)
    assert (r.diff, r.p, r.df) == pytest.approx((d.mean(), ref.pvalue, 27))
    assert (r.interval.low, r.interval.high) == pytest.approx((ci.low, ci.high))
    assert not r.training_noise and r.units == "28 images"
    diff, interval, p, direction = r  # the coordinated interface: (mean difference, interval, p, direction)
    assert direction == 1 and interval.estimate == diff


def test_balanced_folds_are_the_t_test_on_fold_means():
    """5 folds x 3 seeds: the folds (each with its own models) are the units; t on the fold means, 4 df."""
    rng = np.random.default_rng(1)
    d = rng.normal(0.01, 0.05, (3, 40)) + rng.normal(0, 0.02, (3, 1))
    folds = np.repeat(np.arange(5), 8)
    fold_means = [d[:, folds == f].mean() for f in range(5)]
    ref = scipy.stats.ttest_1samp(fold_means, 0.0)
    r = paired_difference(d, folds)
    assert (r.diff, r.p, r.df) == pytest.approx((d.mean(), ref.pvalue, 4))
    assert r.training_noise and r.units == "5 folds x 3 seeds"


def test_unbalanced_folds_match_statsmodels_cluster_robust_errors():
    """Unequal folds, one seed: the mean over all images with fold-clustered (CR1) errors, as statsmodels'
    intercept-only OLS with cluster-robust covariance computes it, t with G - 1 degrees of freedom."""
    rng = np.random.default_rng(2)
    folds = np.repeat(np.arange(4), [7, 9, 8, 6])
    d = rng.normal(0.03, 0.05, folds.size) + rng.normal(0, 0.03, 4)[folds]
    fit = sm.OLS(d, np.ones((d.size, 1))).fit(cov_type="cluster", cov_kwds={"groups": folds, "df_correction": True,
                                                                           "use_correction": True})
    r = paired_difference(d[None], folds)
    se = float(fit.bse[0])
    assert r.diff == pytest.approx(d.mean())
    assert r.p == pytest.approx(2 * scipy.stats.t.sf(abs(d.mean()) / se, 3), rel=1e-9)
    assert r.interval.high - r.diff == pytest.approx(scipy.stats.t.ppf(0.975, 3) * se)


def test_one_split_several_seeds_uses_anova_mean_squares_by_hand():
    x = np.array([[0.10, 0.30, 0.05, 0.20], [0.15, 0.32, 0.12, 0.22], [0.02, 0.25, 0.01, 0.15]])
    s, n = x.shape
    grand = x.mean()
    ms_seeds = n * sum((row.mean() - grand) ** 2 for row in x) / (s - 1)
    ms_images = s * sum((col.mean() - grand) ** 2 for col in x.T) / (n - 1)
    se = np.sqrt((ms_seeds + ms_images) / (s * n))
    df = (ms_seeds + ms_images) ** 2 / (ms_seeds**2 / (s - 1) + ms_images**2 / (n - 1))
    r = paired_difference(x)
    assert (r.diff, r.df) == pytest.approx((grand, df))
    assert r.p == pytest.approx(2 * scipy.stats.t.sf(grand / se, df))
    assert r.training_noise and r.units == "3 seeds x 4 images"


def test_paired_difference_edge_cases():
    assert paired_difference(np.zeros((3, 5))).p == 1.0
    assert paired_difference(np.zeros((1, 5)), np.repeat([0, 1], [2, 3])).p == 1.0
    assert paired_difference(np.full((1, 5), 0.1)).p < 1e-12  # every image the same gap (0 up to rounding)
    one = paired_difference(np.array([[0.1], [0.2]]))  # one image: no interval, no test
    assert np.isnan(one.p) and np.isnan(one.interval.low) and one.diff == pytest.approx(0.15)
    # NaN pairs are left out of their seed's mean; images undefined everywhere are dropped with their fold.
    d = np.array([[0.1, np.nan, 0.3, np.nan], [0.0, 0.2, np.nan, np.nan]])
    assert paired_difference(d).diff == pytest.approx(np.mean([0.2, 0.1]))
    assert paired_difference(d, np.array([0, 0, 1, 2])).units == "2 folds x 2 seeds"
    with pytest.raises(ValueError, match="folds has 3 entries for 4 images"):
        paired_difference(d, np.array([0, 1, 2]))


def _null_differences(rng, n_sims: int, folds: int, seeds: int, images: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Per-image differences of two equally good methods: each trained model pair (fold, seed) adds its own
    offset (seed noise, sd 0.03 as the README measured on PH2), each image its difficulty gap (sd 0.08,
    shared by the seeds that score it), plus image x seed noise (sd 0.03). ``(n_sims, seeds, folds * images)``."""
    d = (rng.normal(0, 0.03, (n_sims, folds, seeds, 1)) + rng.normal(0, 0.08, (n_sims, folds, 1, images))
         + rng.normal(0, 0.03, (n_sims, folds, seeds, images)))
    return d.transpose(0, 2, 1, 3).reshape(n_sims, seeds, folds * images), np.repeat(np.arange(folds), images)


#: Simulated comparisons: the rejection rate's standard error at 5% is 0.35 points, so [2%, 8%] is a test.
N_SIMS = 4000


@pytest.mark.parametrize("folds,seeds", [(5, 3), (5, 1), (1, 3), (1, 5)])
def test_rejection_rate_under_no_difference_is_nominal(folds, seeds):
    """Calibration: under no difference, with seed noise, the paired test rejects at 5% about 5% of the time
    (the old normal reference on a two-level bootstrap standard error rejected about 17% with 3 seeds)."""
    d, fold_of = _null_differences(np.random.default_rng(folds * 10 + seeds), N_SIMS, folds, seeds)
    r = paired_t(d, fold_of if folds > 1 else None)
    rate = float(np.mean(r["p"] < 0.05))
    assert 0.02 <= rate <= 0.08, f"{folds} folds x {seeds} seeds: rejection rate {rate:.3f} at 5%"
    assert np.mean((r["low"] > 0) | (r["high"] < 0)) == rate  # the interval excludes 0 exactly when p < 0.05
    assert r["training_noise"]


def test_one_split_one_seed_leaves_training_noise_out_and_says_so():
    """With one trained model the seed offset looks like a real difference: the test rejects far too often
    under seed noise, which is why the report marks such rows (training_noise False)."""
    d, _ = _null_differences(np.random.default_rng(7), N_SIMS, 1, 1)
    r = paired_t(d)
    assert np.mean(r["p"] < 0.05) > 0.15 and not r["training_noise"]
