"""Boundary and centreline scores of one label map against its truth, per class.

Region scores (``segbench.measure.metrics``) count pixels; a smoothed outline or an erased one-pixel vessel
barely moves them. These scores look at outlines and centrelines instead (definitions in docs/metrics.md):

* ``bf1``: boundary F1 (Csurka et al., BMVC 2013). Precision = share of predicted boundary pixels within the
  tolerance (``<=``) of a true boundary pixel, recall the converse, F1 their harmonic mean (0 when both are 0).
* ``hd95``: the larger of the two directed 95th percentiles of boundary distances (numpy's default linear
  interpolation between ranks), in pixels.
* ``assd``: the mean of all boundary distances in both directions (average symmetric surface distance), in
  pixels.
* ``cldice``: centreline Dice (Shit et al., CVPR 2021): the share of the predicted skeleton inside the true
  mask and of the true skeleton inside the predicted mask, their harmonic mean; skeletons by
  ``skimage.morphology.skeletonize``.

Boundary pixel:
    A pixel of the class with at least one 4-neighbour that is inside the image, not ignored, and not of the
    class. Ignored pixels (truth ``== ignore_index`` or True in ``ignore_mask``) are treated like pixels
    outside the image: they are never boundary pixels, and an edge against them is no boundary. Distances
    are Euclidean between pixel centres on the full grid. For clDice both masks are restricted to the
    pixels that are not ignored before skeletonising.

Empty rule (a class is present in a mask when at least one non-ignored pixel has it):
    * absent from truth and prediction: NaN for every score (undefined; left out of means);
    * absent from exactly one: ``bf1 = cldice = 0`` and ``hd95 = assd =`` the image diagonal
      (``hypot(H, W)``, more than any distance inside the image), never NaN, so a missed object costs
      as much as the worst outline instead of dropping out of the mean;
    * present in both but no boundary in either (the class covers every pixel that counts in both): 1, 0, 0;
      a boundary in exactly one of them: 0 and the diagonal, as above.

Distances come from nearest-neighbour queries of a k-d tree over the boundary pixels
(``scipy.spatial.cKDTree``): exact, like a distance transform, but about 15 times cheaper here, since a
boundary has a few thousand pixels and a 768x576 image half a million (``tests/benchmarks/test_bench_boundary.py``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize

__all__ = [
    "BOUNDARY_KEYS",
    "DEFAULT_TOLERANCE",
    "boundary_pixels",
    "boundary_scores",
    "centreline_dice",
    "centreline_scores",
    "check_tolerance",
    "tolerance_pixels",
]

#: Per-class keys of ``boundary_scores`` then ``centreline_scores``; per-image columns are ``<key>_<class>``.
BOUNDARY_KEYS: tuple[str, ...] = ("bf1", "hd95", "assd", "cldice")
#: BF1 matching tolerance: 0.75% of the image diagonal (Csurka et al. 2013).
DEFAULT_TOLERANCE = "0.75%"


def check_tolerance(tolerance: str | float) -> str:
    """Validate a tolerance: pixels (``"3"``, ``3``) or percent of the image diagonal (``"0.75%"``).

    Returns:
        The tolerance as text, as stored in a run's configuration.

    Raises:
        ValueError: Not a non-negative number, with or without a trailing ``%``.
    """
    text = str(tolerance).strip()
    try:
        value = float(text.removesuffix("%"))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"boundary tolerance {tolerance!r} is not a non-negative number of pixels or percent of the image "
            "diagonal; write e.g. 3 or 0.75%"
        )
    return text


def tolerance_pixels(tolerance: str | float, shape: tuple[int, ...]) -> float:
    """The tolerance in pixels for an image of ``shape`` (H, W): percent values scale with its diagonal."""
    text = check_tolerance(tolerance)
    if text.endswith("%"):
        return float(text[:-1]) / 100 * math.hypot(shape[0], shape[1])
    return float(text)


def boundary_pixels(labels: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """``(H, W) bool``: valid pixels with a valid 4-neighbour of another label (each is a boundary pixel of
    its own label's class); ``valid`` None means every pixel counts."""
    out = np.zeros(labels.shape, dtype=bool)
    for a, b in ((np.s_[1:, :], np.s_[:-1, :]), (np.s_[:, 1:], np.s_[:, :-1])):
        edge = labels[a] != labels[b]
        if valid is not None:
            edge &= valid[a]
            edge &= valid[b]
        out[a] |= edge
        out[b] |= edge
    return out


def centreline_dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """clDice of two boolean masks, both non-empty: harmonic mean of topology precision and sensitivity."""
    skel_pred, skel_truth = _skeleton(pred), _skeleton(truth)
    if not skel_pred.any() or not skel_truth.any():  # not reached for non-empty masks; kept as a guard
        return 0.0
    precision = np.count_nonzero(skel_pred & truth) / np.count_nonzero(skel_pred)
    sensitivity = np.count_nonzero(skel_truth & pred) / np.count_nonzero(skel_truth)
    return _harmonic(precision, sensitivity)


def boundary_scores(
    truth: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    *,
    tolerance: str | float = DEFAULT_TOLERANCE,
    ignore_index: int | None = 255,
    ignore_mask: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Boundary F1, HD95 and ASSD of each class of one image (see the module docstring).

    Args:
        truth: ``(H, W)`` integer ground truth, values in ``0..C-1`` or ``ignore_index``.
        pred: ``(H, W)`` integer prediction.
        num_classes: ``C``.
        tolerance: BF1 matching distance: pixels (``3``) or percent of the image diagonal (``"0.75%"``).
        ignore_index: Truth value of pixels to leave out; None when no value is reserved.
        ignore_mask: Optional ``(H, W) bool``, True where a pixel is left out.

    Returns:
        ``{"bf1", "hd95", "assd": (C,) float64}``; NaN for a class absent from both masks.
    """
    truth, pred, valid = _check(truth, pred, ignore_index, ignore_mask)
    diagonal = math.hypot(*truth.shape)
    tol = tolerance_pixels(tolerance, truth.shape)
    points_truth, labels_truth = _boundary_points(truth, valid)
    points_pred, labels_pred = _boundary_points(pred, valid)

    scores = {key: np.full(num_classes, np.nan) for key in ("bf1", "hd95", "assd")}
    for c in range(num_classes):
        bt, bp = points_truth[labels_truth == c], points_pred[labels_pred == c]
        # A class with boundary pixels is present; only one without needs a look at the whole mask.
        in_truth = len(bt) > 0 or _has(truth, c, valid)
        in_pred = len(bp) > 0 or _has(pred, c, valid)
        if not in_truth and not in_pred:
            continue  # undefined: NaN
        if in_truth != in_pred or (len(bt) == 0) != (len(bp) == 0):
            worst = (0.0, diagonal, diagonal)
        elif len(bt) == 0:  # the class covers every pixel that counts in both masks: no outline to compare
            worst = (1.0, 0.0, 0.0)
        else:
            worst = None
        if worst is not None:
            scores["bf1"][c], scores["hd95"][c], scores["assd"][c] = worst
        else:
            to_truth = _nearest(bp, bt)  # each predicted boundary pixel -> nearest true one
            to_pred = _nearest(bt, bp)
            precision = np.count_nonzero(to_truth <= tol) / len(to_truth)
            recall = np.count_nonzero(to_pred <= tol) / len(to_pred)
            scores["bf1"][c] = _harmonic(precision, recall)
            scores["hd95"][c] = max(np.percentile(to_truth, 95), np.percentile(to_pred, 95))
            scores["assd"][c] = (to_truth.sum() + to_pred.sum()) / (len(to_truth) + len(to_pred))
    return scores


def centreline_scores(
    truth: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    *,
    ignore_index: int | None = 255,
    ignore_mask: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """clDice of each class of one image; arguments as in ``boundary_scores`` (skeletons cost more than
    boundaries: about 0.1-0.2 s per class at 768x576 for a large blob).

    Returns:
        ``{"cldice": (C,) float64}``: NaN for a class absent from both masks, 0 for one absent from exactly one.
    """
    truth, pred, valid = _check(truth, pred, ignore_index, ignore_mask)
    cldice = np.full(num_classes, np.nan)
    for c in range(num_classes):
        mask_truth, mask_pred = truth == c, pred == c
        if valid is not None:
            mask_truth &= valid
            mask_pred &= valid
        if mask_truth.any() and mask_pred.any():
            cldice[c] = centreline_dice(mask_truth, mask_pred)
        elif mask_truth.any() or mask_pred.any():
            cldice[c] = 0.0
    return {"cldice": cldice}


def _check(
    truth: np.ndarray, pred: np.ndarray, ignore_index: int | None, ignore_mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Both masks as arrays and the ``(H, W) bool`` pixels that count (None when all do)."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    if truth.ndim != 2 or truth.shape != pred.shape:
        raise ValueError(
            f"truth shape {truth.shape} and prediction shape {pred.shape} must be the same (H, W); resize the "
            "prediction to the truth with nearest-neighbour interpolation"
        )
    valid = np.ones(truth.shape, dtype=bool) if ignore_index is None else truth != ignore_index
    if ignore_mask is not None:
        valid &= ~np.asarray(ignore_mask, dtype=bool)
    return truth, pred, None if valid.all() else valid


def _has(labels: np.ndarray, c: int, valid: np.ndarray | None) -> bool:
    """Whether class ``c`` occurs among the pixels that count."""
    return bool(np.any(labels == c if valid is None else (labels == c) & valid))


def _boundary_points(labels: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2)`` row/column coordinates of the boundary pixels and ``(N,)`` their labels."""
    flat = np.flatnonzero(boundary_pixels(labels, valid))  # far cheaper than a 2-D np.nonzero
    rows, cols = np.divmod(flat, labels.shape[1])
    return np.stack([rows, cols], axis=1), labels.ravel()[flat]


def _nearest(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Euclidean distance from each point to its nearest target (both non-empty)."""
    tree = cKDTree(targets, balanced_tree=False, compact_nodes=False)  # faster to build; queries are few
    return tree.query(points, k=1)[0]


def _skeleton(mask: np.ndarray) -> np.ndarray:
    """Skeleton of a boolean mask, computed on its bounding box (the same result, at a fraction of the cost)."""
    out = np.zeros_like(mask)
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size:
        box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        out[box] = skeletonize(mask[box])
    return out


def _harmonic(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else float(2 * a * b / (a + b))
