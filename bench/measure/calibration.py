"""Calibration of per-pixel class probabilities: expected calibration error, Brier score, reliability diagram.

A method's ``predict_proba`` (after its stages, e.g. a CRF) says how sure it is of each pixel. Calibrated
probabilities mean that of the pixels predicted with confidence 0.8, about 80% are right.

Definitions (pixels pooled over all images of a cell; pixels whose truth is ``ignore_index`` or that are True in
``ignore_mask`` are left out):

* confidence of a pixel = its top-class probability ``max_c p_c``; it is correct when ``argmax_c p_c`` (first
  maximum on ties, as ``numpy.argmax``) equals the truth.
* ``ece``: 15 equal-width bins of confidence, ``(k/15, (k+1)/15]`` for ``k = 0..14`` (Guo et al., ICML 2017;
  a confidence of exactly 0 falls in the first bin);
  ``ECE = sum_k n_k / N * |accuracy_k - mean confidence_k|``.
* ``brier``: the multi-class Brier score (Brier 1950): the mean over pixels of ``sum_c (p_c - [c == truth])^2``,
  between 0 and 2. For two classes it is twice ``sklearn.metrics.brier_score_loss`` of the positive class's
  probability (that function halves the binary case by default).
* reliability diagram: per bin, the mean confidence, the accuracy and the pixel count (NaN means in empty bins).

Both scores are NaN when no pixel counts.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BINS", "Calibration"]

#: Equal-width confidence bins of the expected calibration error.
BINS = 15


class Calibration:
    """Accumulates calibration counts over images; ``compute`` scores all pixels seen so far together.

    Example:
        >>> cal = Calibration(num_classes=2)
        >>> cal.update(np.array([[[0.9]], [[0.1]]], dtype=np.float32), np.array([[0]]))
        >>> round(cal.compute()["brier"], 3)
        0.02

    Args:
        num_classes: ``C``, the number of classes.
        bins: Equal-width confidence bins (default 15).
        ignore_index: Truth value that marks pixels to leave out; None when no value is reserved.
    """

    def __init__(self, num_classes: int, *, bins: int = BINS, ignore_index: int | None = 255) -> None:
        if bins < 1:
            raise ValueError(f"bins={bins} must be at least 1")
        self.num_classes = num_classes
        self.bins = bins
        self.ignore_index = ignore_index
        self.edges = np.linspace(0.0, 1.0, bins + 1)
        self.count = np.zeros(bins, dtype=np.int64)
        self.confidence_sum = np.zeros(bins)
        self.correct = np.zeros(bins, dtype=np.int64)
        self.brier_sum = 0.0

    def update(self, proba: np.ndarray, truth: np.ndarray, *, ignore_mask: np.ndarray | None = None) -> None:
        """Add one image.

        Args:
            proba: ``(C, H, W)`` class probabilities (summing to 1 over classes).
            truth: ``(H, W)`` integer ground truth, values in ``0..C-1`` or ``ignore_index``.
            ignore_mask: Optional ``(H, W) bool``, True where a pixel is left out.
        """
        proba, truth = np.asarray(proba), np.asarray(truth)
        if proba.shape != (self.num_classes, *truth.shape):
            raise ValueError(
                f"probabilities of shape {proba.shape} do not fit truth of shape {truth.shape} and "
                f"{self.num_classes} classes; pass (C, H, W) probabilities at the truth's resolution"
            )
        keep = np.ones(truth.shape, dtype=bool) if self.ignore_index is None else truth != self.ignore_index
        if ignore_mask is not None:
            keep &= ~np.asarray(ignore_mask, dtype=bool)
        if keep.all():  # the usual image: a view, no copy
            p, t = proba.reshape(self.num_classes, -1), truth.reshape(-1)
        else:
            p, t = proba[:, keep], truth[keep]  # (C, N): only the pixels that count
        t = t.astype(np.intp, copy=False)
        if t.size and (t.min() < 0 or t.max() >= self.num_classes):
            raise ValueError(f"truth holds values outside 0..{self.num_classes - 1} (and not ignore_index={self.ignore_index})")
        top = p.argmax(axis=0)
        confidence = p.max(axis=0).astype(np.float64)
        # Bin k holds (edges[k], edges[k+1]]: the number of inner edges strictly below the confidence.
        index = np.searchsorted(self.edges[1:-1], confidence, side="left")
        self.count += np.bincount(index, minlength=self.bins)
        self.confidence_sum += np.bincount(index, weights=confidence, minlength=self.bins)
        self.correct += np.bincount(index[top == t], minlength=self.bins)
        # sum_c (p_c - onehot_c)^2 = sum_c p_c^2 - 2 p_truth + 1, summed in float64
        p_truth = np.take_along_axis(p, t[None], axis=0)[0].astype(np.float64)
        squares = sum(float(np.dot(row, row)) for row in p.astype(np.float64, copy=False))
        self.brier_sum += squares - 2.0 * float(p_truth.sum()) + t.size

    def reliability(self) -> dict[str, list[float]]:
        """Per bin: ``lower``/``upper`` edges, ``confidence`` (mean), ``accuracy``, ``count`` (NaN when empty)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            confidence = np.where(self.count > 0, self.confidence_sum / self.count, np.nan)
            accuracy = np.where(self.count > 0, self.correct / self.count, np.nan)
        return {
            "lower": self.edges[:-1].tolist(),
            "upper": self.edges[1:].tolist(),
            "confidence": confidence.tolist(),
            "accuracy": accuracy.tolist(),
            "count": self.count.tolist(),
        }

    def compute(self) -> dict[str, float]:
        """``{"ece": ..., "brier": ...}`` over every pixel seen so far (NaN before any pixel)."""
        total = int(self.count.sum())
        if total == 0:
            return {"ece": float("nan"), "brier": float("nan")}
        filled = self.count > 0
        gap = np.abs(self.correct[filled] - self.confidence_sum[filled])  # n_k * |acc_k - conf_k|
        return {"ece": float(gap.sum() / total), "brier": self.brier_sum / total}
