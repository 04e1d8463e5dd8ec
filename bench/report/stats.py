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
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.stats

from segbench.measure.metrics import class_mean, dice_from_confusion, iou_from_confusion

__all__ = [
    "Interval",
    "bootstrap_ci",
    "weighted_nanmean",
    "confusion_score",
    "holm",
    "wilcoxon_p",
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
