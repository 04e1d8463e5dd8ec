"""Statistics for reports: bootstrap confidence intervals over images and paired method comparisons.

Every interval here resamples *images* (with replacement), the unit a benchmark draws from its population.
A statistic is written as a function of per-image *weights* (how often each image occurs in a resample;
all ones for the observed data), so one bootstrap routine serves the per-image mean, the dataset-level
score of summed confusion matrices and the mean of paired differences::

    >>> x = np.array([0.2, 0.4, 0.9, 0.7])
    >>> ci = bootstrap_ci(lambda w: weighted_nanmean(x, w), len(x), n_resamples=500)
    >>> ci.low <= ci.estimate == 0.55 <= ci.high
    True

Intervals are BCa (bias-corrected and accelerated, ``scipy.stats.bootstrap``) with a fixed seed, so a
report is reproducible; where BCa is undefined (every resample gives the same value) the percentile interval
is used. Paired comparisons use the Wilcoxon signed-rank test on per-image differences with Holm's step-down
correction over the pairs of a dataset.

With several training seeds a score varies with the seed as well as with the images. Every seed is scored
on the same images (a crossed design), so a *two-level bootstrap* resamples seeds with replacement and,
independently, images with replacement, and uses the same image draw for every seed of a resample (the
"pigeonhole" bootstrap of crossed designs, Owen 2007). Resampling images separately within each seed would
treat one image's difficulty as independent across seeds and shrink the image part of the variance by the
number of seeds. A statistic is then a function of ``(seed weights, image weights)``; see
``seeds_images_bootstrap``, ``seeds_images_ci`` and ``paired_seeds_test``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.special
import scipy.stats

from segbench.measure.metrics import class_mean, dice_from_confusion, iou_from_confusion

__all__ = [
    "Interval",
    "bootstrap_ci",
    "weighted_nanmean",
    "confusion_score",
    "holm",
    "wilcoxon_p",
    "seed_mean",
    "seeds_images_bootstrap",
    "seeds_images_ci",
    "paired_seeds_test",
]

#: Resamples per interval: enough for stable 95% BCa bounds at two decimals on a few hundred images.
N_RESAMPLES = 2000
#: Seed of every bootstrap, so the same run folder always gives the same report.
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap confidence interval (NaN bounds when it cannot be computed)."""

    estimate: float
    low: float
    high: float

    def contains(self, value: float, *, tol: float = 1e-12) -> bool:
        """True when ``low - tol <= value <= high + tol``."""
        return bool(self.low - tol <= value <= self.high + tol)


def weighted_nanmean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over images with resampling ``weights``, NaN values left out.

    Args:
        values: ``(..., N)`` per-image values; NaN where a score is undefined for that image.
        weights: ``(N,)`` or ``(B, N)`` non-negative weights (resample counts).

    Returns:
        ``weights.shape[:-1] + values.shape[:-1]``: one mean per resample (NaN where no image is defined).
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    defined = ~np.isnan(values)
    filled = np.where(defined, values, 0.0)
    # (B, N) x (..., N) -> (B, ...): sums over images in one matmul, whatever the leading shape.
    total = np.tensordot(weights, filled, axes=([-1], [-1]))
    count = np.tensordot(weights, defined.astype(np.float64), axes=([-1], [-1]))
    out = np.full(np.broadcast_shapes(total.shape, count.shape), np.nan)
    return np.divide(total, count, out=out, where=count > 0)


def confusion_score(
    confusions: np.ndarray,
    weights: np.ndarray,
    *,
    score: Literal["dice", "iou"],
    class_index: int | None,
) -> np.ndarray:
    """Dataset-level score of the weighted sum of per-image confusion matrices.

    Scored by ``segbench.measure.metrics`` (NaN for a class absent from truth and prediction, left out of
    the mean over classes), once per resample.

    Args:
        confusions: ``(N, C, C)`` per-image confusion matrices (rows = truth).
        weights: ``(N,)`` or ``(B, N)`` resampling weights.
        score: ``"dice"`` or ``"iou"``.
        class_index: The class to score, or None for the mean over classes.

    Returns:
        ``weights.shape[:-1]`` scores.
    """
    cm = np.tensordot(np.asarray(weights, np.float64), np.asarray(confusions, np.float64), axes=([-1], [0]))
    per_class = dice_from_confusion(cm) if score == "dice" else iou_from_confusion(cm)
    return np.asarray(per_class[..., class_index] if class_index is not None else class_mean(per_class))


def _counts(indices: np.ndarray, n: int) -> np.ndarray:
    """``(..., k)`` resampled image indices -> ``(..., n)`` counts of each image."""
    flat = indices.reshape(-1, indices.shape[-1])
    counts = np.zeros((flat.shape[0], n))
    np.add.at(counts, (np.arange(flat.shape[0])[:, None], flat), 1.0)
    return counts.reshape(*indices.shape[:-1], n)


def bootstrap_ci(
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """BCa bootstrap interval of a statistic of ``n`` images, resampling images with replacement.

    Args:
        statistic: Maps ``(B, n)`` weights to ``(B,)`` values; all-ones weights give the point estimate.
        n: Number of images.
        confidence: Two-sided confidence level.
        n_resamples: Bootstrap resamples.
        seed: Seed of the resampling (fixed: reports are reproducible).

    Returns:
        The estimate on all images and the interval; bounds are NaN with fewer than 2 images or when the
        estimate itself is undefined.
    """
    estimate = float(statistic(np.ones((1, n)))[0]) if n else float("nan")
    if n < 2 or np.isnan(estimate):
        return Interval(estimate, float("nan"), float("nan"))

    def stat(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(_counts(np.moveaxis(idx, axis, -1).astype(np.intp), n))

    kwargs = dict(vectorized=True, confidence_level=confidence, n_resamples=n_resamples, batch=500)
    with warnings.catch_warnings():
        # BCa warns and returns NaN when every resample agrees (degenerate data); the percentile interval
        # is then exact (a single point), so fall back to it below instead of warning the reader.
        warnings.simplefilter("ignore")
        res = scipy.stats.bootstrap((np.arange(n),), stat, method="BCa", rng=np.random.default_rng(seed), **kwargs)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isnan(low) or np.isnan(high):
            res = scipy.stats.bootstrap((np.arange(n),), stat, method="percentile", rng=np.random.default_rng(seed), **kwargs)
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return Interval(estimate, low, high)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired per-image differences (NaN pairs left out).

    Zero differences (images where both methods score the same) are ranked, then dropped (Pratt's method,
    more conservative than discarding them first). All differences zero gives p = 1 (no evidence of a
    difference); fewer than one non-NaN pair gives NaN.
    """
    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return float("nan")
    if not np.any(d):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample notes from scipy; the p-value is still returned
        return float(scipy.stats.wilcoxon(d, zero_method="pratt").pvalue)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control); NaN entries stay NaN.

    The i-th smallest of m p-values is multiplied by ``m - i`` (i from 0), then a running maximum keeps
    the order, and values are capped at 1.

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out


# --------------------------------------------------------------------------------------------------------
# Seeds x images: training noise and test-image sampling together


def seed_mean(per_seed: np.ndarray, seed_weights: np.ndarray) -> np.ndarray:
    """Mean over seeds with resampling weights, NaN seeds left out: ``(B, S), (B, S) -> (B,)``."""
    per_seed = np.asarray(per_seed, dtype=np.float64)
    w = np.broadcast_to(np.asarray(seed_weights, dtype=np.float64), per_seed.shape)
    defined = ~np.isnan(per_seed)
    total = np.where(defined, per_seed * w, 0.0).sum(axis=-1)
    count = np.where(defined, w, 0.0).sum(axis=-1)
    out = np.full(total.shape, np.nan)
    return np.divide(total, count, out=out, where=count > 0)


def seeds_images_bootstrap(
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_seeds: int,
    n_images: int,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    batch: int = 500,
) -> np.ndarray:
    """Bootstrap distribution of a statistic of ``n_seeds x n_images`` crossed data.

    Each resample draws ``n_seeds`` seeds with replacement and, independently, ``n_images`` images with
    replacement; the same image draw serves every seed (each seed was scored on the same images).

    Args:
        statistic: Maps ``(B, n_seeds)`` seed weights and ``(B, n_images)`` image weights (resample counts)
            to ``(B,)`` values; all-ones weights give the point estimate.
        n_seeds: Number of seeds.
        n_images: Number of images.
        n_resamples: Resamples.
        seed: Seed of the resampling (fixed: reports are reproducible).
        batch: Resamples evaluated at once (bounds memory).

    Returns:
        ``(n_resamples,)`` replicate values (NaN where the statistic is undefined on a resample).
    """
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n_resamples, batch):
        b = min(batch, n_resamples - start)
        seeds = _counts(rng.integers(0, n_seeds, (b, n_seeds)), n_seeds)
        images = _counts(rng.integers(0, n_images, (b, n_images)), n_images)
        out.append(np.asarray(statistic(seeds, images), dtype=np.float64))
    return np.concatenate(out) if out else np.empty(0)


def seeds_images_ci(
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_seeds: int,
    n_images: int,
    *,
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """Percentile interval of the two-level (seeds, images) bootstrap (``seeds_images_bootstrap``).

    Percentile, not BCa: BCa's acceleration comes from a jackknife over one sampling unit, and here there
    are two. Bounds are NaN with fewer than 2 images or an undefined estimate.
    """
    estimate = float(statistic(np.ones((1, n_seeds)), np.ones((1, n_images)))[0]) if n_images and n_seeds else float("nan")
    if n_images < 2 or np.isnan(estimate):
        return Interval(estimate, float("nan"), float("nan"))
    values = seeds_images_bootstrap(statistic, n_seeds, n_images, n_resamples=n_resamples, seed=seed)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return Interval(estimate, float("nan"), float("nan"))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high))


def paired_seeds_test(
    differences: np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> tuple[Interval, float]:
    """Mean paired difference over matched (seed, image) pairs, its interval and a two-sided p-value.

    The estimate is the mean over seeds of each seed's mean over images (NaN pairs left out). Its standard
    error ``se`` is the standard deviation of the two-level bootstrap distribution (``seeds_images_bootstrap``:
    seeds and images resampled, so training noise counts); the interval is ``estimate +- z * se`` and the
    p-value ``2 * (1 - Phi(|estimate| / se))``. Interval and test are one procedure, so the interval excludes 0
    exactly when ``p < 1 - confidence``. A normal reference rather than bootstrap tail counts, because p-values
    are Holm-corrected over many pairs and tail counts cannot go below ``1 / n_resamples``.

    Args:
        differences: ``(S, N)`` differences ``A - B``, row = seed, column = image; NaN where undefined.

    Returns:
        ``(interval, p)``; p = 1 when every difference is 0, 0 when they are all the same non-zero value,
        NaN (and NaN bounds) with fewer than 2 images.
    """
    d = np.asarray(differences, dtype=np.float64)
    n_seeds, n_images = d.shape

    def statistic(seed_w: np.ndarray, image_w: np.ndarray) -> np.ndarray:
        # weighted_nanmean: (B, N) x (S, N) -> (B, S), one mean per seed; then the weighted mean of the seeds.
        return seed_mean(weighted_nanmean(d, image_w), seed_w)

    estimate = float(statistic(np.ones((1, n_seeds)), np.ones((1, n_images)))[0])
    if n_images < 2 or np.isnan(estimate):
        return Interval(estimate, float("nan"), float("nan")), float("nan")
    values = seeds_images_bootstrap(statistic, n_seeds, n_images, n_resamples=n_resamples, seed=seed)
    se = float(np.nanstd(values, ddof=1))
    if se == 0:
        return Interval(estimate, estimate, estimate), 1.0 if estimate == 0 else 0.0
    z = scipy.special.ndtri(0.5 + confidence / 2)
    p = float(2 * scipy.special.ndtr(-abs(estimate) / se))
    return Interval(estimate, estimate - z * se, estimate + z * se), p
