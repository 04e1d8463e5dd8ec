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
is used.

Paired comparisons (``paired_difference``) are one procedure: the mean difference, its interval and its
p-value all come from one t reference on the units that were trained. In a K-fold run the folds are the
units (each fold has its own models, one per seed; the spread of the fold means carries image sampling and
training noise together, t with K - 1 degrees of freedom); on one split with several seeds, seeds and
images are crossed random effects (ANOVA variance components, Satterthwaite degrees of freedom); with one
split and one seed the images are the units and training noise is not in the test. Holm's step-down
correction then runs over the pairs the table names.

With several training seeds a score varies with the seed as well as with the images. Every seed is scored
on the same images (a crossed design), so a *two-level bootstrap* resamples seeds with replacement and,
independently, images with replacement, and uses the same image draw for every seed of a resample (the
"pigeonhole" bootstrap of crossed designs, Owen 2007). Resampling images separately within each seed would
treat one image's difficulty as independent across seeds and shrink the image part of the variance by the
number of seeds. A statistic is then a function of ``(seed weights, image weights)``; see
``seeds_images_bootstrap`` and ``seeds_images_ci`` (the scores' intervals).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

import scipy.stats

from segbench.measure.metrics import class_mean, dice_from_confusion, iou_from_confusion

__all__ = [
    "Interval",
    "bootstrap_ci",
    "weighted_nanmean",
    "confusion_score",
    "holm",
    "seed_mean",
    "seeds_images_bootstrap",
    "seeds_images_ci",
    "PairedDifference",
    "paired_difference",
    "paired_t",
    "mean_t_interval",
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


# --------------------------------------------------------------------------------------------------------
# Paired comparisons: one t reference on the trained units (folds, seeds) and the images within them


@dataclass(frozen=True)
class PairedDifference:
    """The result of ``paired_difference``: one procedure gives the estimate, the interval and the p-value.

    Attributes:
        diff: Mean difference A - B (mean over seeds of each seed's mean over all images, NaN pairs left out).
        interval: ``diff`` with its two-sided t interval (NaN bounds where it cannot be computed).
        p: Two-sided p-value of "no mean difference" (NaN where undefined).
        direction: +1 where A's mean is higher, -1 where B's is, 0 for no difference (or undefined). A
            verdict names a winner from this sign only when ``p`` (corrected) is small; the p-value tests
            this same mean, so the two never point different ways.
        df: Degrees of freedom of the t reference.
        units: What was treated as independent, in words (``"5 folds"``, ``"3 seeds x 28 images"``, ``"28 images"``).
        training_noise: Whether the test's variance includes training noise (False: one split, one seed).
    """

    diff: float
    interval: Interval
    p: float
    direction: int
    df: float
    units: str
    training_noise: bool

    def __iter__(self):
        """``diff, interval, p, direction = paired_difference(...)``."""
        return iter((self.diff, self.interval, self.p, self.direction))


def _fold_clusters(d: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Mean, standard error and t degrees of freedom with folds as clusters.

    The estimate is the mean over seeds of each seed's mean over all images; as a sum of one term per fold
    it has the cluster-robust (CR1) variance ``F / (F - 1) * sum_f e_f**2``, ``e_f`` the fold's term minus its
    share of the estimate (Cameron & Miller 2015), with F - 1 degrees of freedom. Balanced folds: the sample
    variance of the fold means divided by F, the exact t test on fold means.
    """
    labels, index = np.unique(folds, return_inverse=True)
    onehot = np.eye(len(labels))[index]  # (N, F)
    defined = ~np.isnan(d)
    sums = np.where(defined, d, 0.0) @ onehot  # (..., S, F)
    counts = defined.astype(np.float64) @ onehot
    per_seed = counts.sum(axis=-1, keepdims=True)  # (..., S, 1)
    seeded = per_seed[..., 0] > 0
    n_seeds = seeded.sum(axis=-1)  # (...)
    with np.errstate(invalid="ignore", divide="ignore"):
        term = np.where(per_seed > 0, sums / per_seed, 0.0).sum(axis=-2) / n_seeds[..., None]  # (..., F)
        share = np.where(per_seed > 0, counts / per_seed, 0.0).sum(axis=-2) / n_seeds[..., None]
    estimate = term.sum(axis=-1)
    n_folds = len(labels)
    residual = term - share * estimate[..., None]
    se = np.sqrt(n_folds / max(n_folds - 1, 1) * (residual**2).sum(axis=-1)) if n_folds > 1 else np.full(estimate.shape, np.nan)
    return estimate, se, np.full(estimate.shape, float(n_folds - 1)), n_folds


def _crossed(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard error and Satterthwaite degrees of freedom of a seeds x images crossed design (one split).

    Model ``d[s, i] = mu + seed_s + image_i + e_si`` with random seed and image effects. With S seeds and
    n images (those defined for every seed), the grand mean's variance is
    ``(n var_seed + S var_image + var_e) / (S n)``; the two-way ANOVA's mean squares give
    ``E[MS_seeds + MS_images] = n var_seed + S var_image + 2 var_e``, so ``(MS_seeds + MS_images) / (S n)`` errs
    on the safe side by ``var_e / (S n)``, is never negative, and as a sum of mean squares gets well-behaved
    Satterthwaite (1946) degrees of freedom (subtracting ``MS_residual`` for an unbiased estimate made them
    unstable and the test over-reject in simulation).
    """
    n_seeds = d.shape[-2]
    complete = ~np.isnan(d).any(axis=-2, keepdims=True)  # (..., 1, N)
    n = complete.sum(axis=-1)[..., 0].astype(np.float64)  # (...)
    x = np.where(complete, d, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        grand = x.sum(axis=(-2, -1)) / (n_seeds * n)
        seed_means = x.sum(axis=-1) / n[..., None]  # (..., S)
        image_means = x.mean(axis=-2)  # (..., N); 0 where incomplete
        ss_seeds = n * ((seed_means - grand[..., None]) ** 2).sum(axis=-1)
        ss_images = n_seeds * (np.where(complete[..., 0, :], image_means - grand[..., None], 0.0) ** 2).sum(axis=-1)
        df_s, df_i = n_seeds - 1.0, n - 1.0
        ms_s, ms_i = ss_seeds / df_s, ss_images / df_i
        total = ms_s + ms_i
        df = np.where(total > 0, total**2 / (ms_s**2 / df_s + ms_i**2 / df_i), df_i)  # 0/0 when all agree
        se = np.sqrt(total / (n_seeds * n))
    estimate = seed_mean(weighted_nanmean(d, np.ones(d.shape[-1])), np.ones(n_seeds))  # every image, NaN left out
    return estimate, np.where(n >= 2, se, np.nan), df


def paired_t(d: np.ndarray, folds: np.ndarray | None = None, *, confidence: float = 0.95) -> dict[str, Any]:
    """The t reference of ``paired_difference`` on ``(..., S, N)`` differences, vectorised over leading axes
    (simulations run thousands of comparisons in one call).

    Returns:
        ``estimate, low, high, p, df`` (arrays of the leading shape), ``units`` (in words) and
        ``training_noise`` (whether the test's variance includes it).
    """
    d = np.asarray(d, dtype=np.float64)
    n_seeds, n_images = d.shape[-2:]
    if folds is not None and len(np.unique(folds)) > 1:
        estimate, se, df, k = _fold_clusters(d, np.asarray(folds))
        units, noise = f"{k} folds" + (f" x {n_seeds} seeds" if n_seeds > 1 else " (one model each)"), True
    elif n_seeds > 1:
        (estimate, se, df), units, noise = _crossed(d), f"{n_seeds} seeds x {n_images} images", True
    else:  # images as units: the one-sample t test on per-image differences
        estimate, se, df, _ = _fold_clusters(d, np.arange(n_images))
        units, noise = f"{n_images} images", False
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.abs(estimate) / se
        half = scipy.stats.t.ppf(0.5 + confidence / 2, df) * se
        p = np.where(se == 0, np.where(estimate == 0, 1.0, 0.0), 2 * scipy.stats.t.sf(t, df))  # se 0: all units agree
    undefined = np.isnan(estimate) | np.isnan(se) | ~(df > 0)
    nan = np.full(np.shape(estimate), np.nan)
    return {"estimate": estimate, "low": np.where(undefined, nan, estimate - half),
            "high": np.where(undefined, nan, estimate + half), "p": np.where(undefined, nan, p), "df": df,
            "units": units, "training_noise": noise}


def paired_difference(
    differences: np.ndarray,
    folds: np.ndarray | None = None,
    *,
    confidence: float = 0.95,
) -> PairedDifference:
    """Mean paired difference A - B, its interval and a two-sided p-value from one t reference.

    The units resampled are the ones that were trained, with the images inside them:

    * K folds (``folds`` with more than one value): the folds, each with its own model per seed, as
      clusters; the spread of the fold terms carries test-image sampling and training noise together
      (``_fold_clusters``: t with K - 1 degrees of freedom);
    * one split, several seeds: seeds and images crossed (``_crossed``: ANOVA variance components,
      Satterthwaite degrees of freedom);
    * one split, one seed: the images (the one-sample t test on per-image differences); training noise
      is then not in the test, and ``training_noise`` says so.

    The interval excludes 0 exactly when ``p < 1 - confidence``, and ``direction`` is the sign of the same
    mean, so interval, test and verdict cannot disagree.

    Args:
        differences: ``(S, N)`` per-image differences A - B, row = seed, column = image; NaN where undefined.
            Leading batch dimensions ``(..., S, N)`` are allowed by the private helpers (simulations), not here.
        folds: ``(N,)`` the fold that tested each image, or None for one split.
        confidence: Two-sided confidence level of the interval.

    Returns:
        A ``PairedDifference``; p = 1 when every unit's difference is 0, 0 when they all equal the same
        non-zero value, NaN (and NaN bounds) with fewer than two units.
    """
    d = np.atleast_2d(np.asarray(differences, dtype=np.float64))
    if d.ndim != 2:
        raise ValueError(f"differences must be (seeds, images), got shape {d.shape}")
    if folds is not None and len(folds) != d.shape[1]:
        raise ValueError(f"folds has {len(folds)} entries for {d.shape[1]} images")
    used = ~np.isnan(d).all(axis=0)  # images where some seed has a difference
    r = paired_t(d[:, used], None if folds is None else np.asarray(folds)[used], confidence=confidence)
    estimate = float(r["estimate"])
    direction = 0 if np.isnan(estimate) or estimate == 0 else int(np.sign(estimate))
    return PairedDifference(estimate, Interval(estimate, float(r["low"]), float(r["high"])), float(r["p"]), direction,
                            float(r["df"]), r["units"], r["training_noise"])


def mean_t_interval(values: np.ndarray, folds: np.ndarray | None = None, *, confidence: float = 0.95) -> Interval:
    """The mean of ``(S, N)`` per-image scores with the interval ``paired_difference`` gives a difference (the
    same units and t reference), so a score's interval and the paired test treat training noise alike."""
    return paired_difference(values, folds, confidence=confidence).interval
