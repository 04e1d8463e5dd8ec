"""Segmentation metrics computed from confusion matrices (in the style of torchmetrics' functional API).

Everything is derived from one ``(C, C)`` confusion matrix whose rows are the ground-truth class and whose
columns are the predicted class. Pixels whose truth equals ``ignore_index``, or that are True in an
``ignore_mask``, are left out before counting, so they affect no score.

Per class ``c`` with ``TP``, ``FP``, ``FN`` read off the matrix:

* IoU (Jaccard) = TP / (TP + FP + FN)
* Dice (F1)     = 2 TP / (2 TP + FP + FN)
* precision     = TP / (TP + FP)
* recall        = TP / (TP + FN)

and over all classes ``pixel_accuracy = trace / sum`` and ``mean_pixel_accuracy = mean(recall)``
(for binary masks the latter is balanced accuracy).

The one rule for undefined values:
    A ratio whose denominator is zero is undefined and is reported as NaN, and NaN is left out of every
    mean (a mean over nothing is NaN). Nothing is ever replaced by 0 or 1. So IoU and Dice are NaN only for
    a class absent from both truth and prediction (a class predicted but absent from the truth scores 0);
    precision is NaN for a class that is never predicted; recall is NaN for a class absent from the truth;
    ``pixel_accuracy`` is NaN when every pixel is ignored. ``mean_*`` keys average the defined classes only.

Two aggregations over a dataset (see ``ConfusionMatrix``), which generally differ:

* ``"dataset"``: sum the confusion matrices of all images, then score that one matrix (every pixel weighs
  the same; this is the usual "mIoU" of segmentation benchmarks).
* ``"per_image"``: score each image, then average each score over images, NaN excluded; per-class arrays
  are averaged class by class (every image weighs the same; an image where a class is undefined does not
  count towards that class).

Example:
    >>> import numpy as np
    >>> truth = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    >>> pred = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0]])
    >>> cm, scores = per_image_scores(truth, pred, 2)
    >>> cm.tolist(), float(scores["iou"][1])
    ([[5, 1], [1, 2]], 0.5)
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "ARRAY_KEYS",
    "SCALAR_KEYS",
    "ConfusionMatrix",
    "class_mean",
    "confusion_matrix",
    "dice_from_confusion",
    "flatten_scores",
    "iou_from_confusion",
    "per_image_scores",
    "scores_from_confusion",
]

#: Per-class score keys of ``scores_from_confusion``: float64 arrays of length C.
ARRAY_KEYS: tuple[str, ...] = ("iou", "dice", "precision", "recall")
#: Scalar score keys of ``scores_from_confusion``: Python floats.
SCALAR_KEYS: tuple[str, ...] = (
    "pixel_accuracy",
    "mean_pixel_accuracy",
    "mean_iou",
    "mean_dice",
    "mean_precision",
    "mean_recall",
)

_MAX_LISTED = 10  # offending values named in an error message


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool):
        raise TypeError(f"num_classes must be an int, got bool {num_classes!r}; pass the number of classes")
    try:
        num_classes = operator.index(num_classes)
    except TypeError:
        raise TypeError(
            f"num_classes must be an int, got {type(num_classes).__name__} {num_classes!r}; "
            "pass the number of classes, e.g. len(class_names)"
        ) from None
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}; pass the number of classes")
    return num_classes


def _check_ignore_index(ignore_index: int | None) -> int | None:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool):
        raise TypeError(f"ignore_index must be an int or None, got bool {ignore_index!r}")
    try:
        return operator.index(ignore_index)
    except TypeError:
        raise TypeError(
            f"ignore_index must be an int or None, got {type(ignore_index).__name__} {ignore_index!r}"
        ) from None


def _as_label_array(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iub":
        raise TypeError(
            f"{name} must hold integer class indices, got dtype {x.dtype}; "
            f"convert it, e.g. {name}.astype(np.int64) (argmax scores or threshold probabilities first)"
        )
    return x


def _listed(values: np.ndarray) -> str:
    uniq = np.unique(values)
    shown = ", ".join(str(v) for v in uniq[:_MAX_LISTED].tolist())
    return shown + (f", ... ({uniq.size} distinct)" if uniq.size > _MAX_LISTED else "")


def confusion_matrix(
    truth: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    *,
    ignore_index: int | None = 255,
    ignore_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Count (truth, prediction) class pairs over the pixels that are not ignored.

    Args:
        truth: ``(H, W)`` (any shape) integer ground truth, values in ``0..C-1`` or ``ignore_index``.
        pred: Integer prediction of the same shape, values in ``0..C-1`` at every pixel (ignored pixels
            included, so that a wrong ``num_classes`` is caught anywhere).
        num_classes: ``C``, the number of classes.
        ignore_index: Truth value that marks pixels to leave out; None when no value is reserved.
        ignore_mask: Optional bool array of the same shape; True where a pixel is left out.

    Returns:
        ``(C, C) int64`` matrix; entry ``[i, j]`` counts pixels of true class ``i`` predicted as ``j``.

    Raises:
        ValueError: Shapes differ, or a value is outside ``0..C-1`` (truth: among non-ignored pixels).
        TypeError: Masks are not integer (or bool) arrays, or ``ignore_mask`` is not bool.
    """
    num_classes = _check_num_classes(num_classes)
    ignore_index = _check_ignore_index(ignore_index)
    truth = _as_label_array(truth, "truth")
    pred = _as_label_array(pred, "pred")
    if truth.shape != pred.shape:
        raise ValueError(
            f"truth shape {truth.shape} != prediction shape {pred.shape}; masks must be at the same "
            "resolution (resize the prediction to the truth with nearest-neighbour interpolation)"
        )
    if ignore_mask is not None:
        ignore_mask = np.asarray(ignore_mask)
        if ignore_mask.shape != truth.shape:
            raise ValueError(
                f"ignore_mask shape {ignore_mask.shape} != truth shape {truth.shape}; "
                "masks must be at the same resolution"
            )
        if ignore_mask.dtype != np.bool_:
            raise TypeError(
                f"ignore_mask must be a bool array, got dtype {ignore_mask.dtype}; pass ignore_mask.astype(bool)"
            )

    c = num_classes
    t, p = truth.ravel(), pred.ravel()  # views for contiguous input
    if p.size and (p.min() < 0 or p.max() >= c):
        bad = p[(p < 0) | (p >= c)]
        raise ValueError(
            f"prediction contains value(s) {_listed(bad)} outside 0..{c - 1} ({bad.size} pixel(s)); "
            f"predictions must be class indices for num_classes={c} (check num_classes, or argmax the scores)"
        )

    tmin, tmax = (t.min(), t.max()) if t.size else (0, 0)
    # Build the ignore selection only when something is ignored: the usual image has no void pixels,
    # and skipping the comparison and the boolean gather keeps the hot path to two passes.
    drop: np.ndarray | None = None
    if ignore_index is not None and tmin <= ignore_index <= tmax:
        drop = t == ignore_index
    if ignore_mask is not None:
        m = ignore_mask.ravel()
        drop = m if drop is None else np.logical_or(drop, m, out=drop)
    if drop is not None and drop.any():
        keep = ~drop
        t, p = t[keep], p[keep]
        tmin, tmax = (t.min(), t.max()) if t.size else (0, 0)

    if tmin < 0 or tmax >= c:
        bad = t[(t < 0) | (t >= c)]
        fix = f"or to ignore_index={ignore_index}" if ignore_index is not None else "or pass ignore_index=<void label>"
        raise ValueError(
            f"truth contains value(s) {_listed(bad)} outside 0..{c - 1} ({bad.size} non-ignored pixel(s)); "
            f"map them to classes 0..{c - 1} {fix}"
        )

    # One flat index per pixel, built straight in intp (what bincount needs) so there is no second cast;
    # dtype= keeps the integer loop for uint64 input too (values are range-checked above).
    idx = np.multiply(t, c, dtype=np.intp)
    np.add(idx, p, out=idx, dtype=np.intp)
    return np.bincount(idx, minlength=c * c).astype(np.int64, copy=False).reshape(c, c)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` as float64, NaN where ``den == 0`` (computed without a RuntimeWarning)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    return np.divide(num, den, out=out, where=den != 0)


def _nanmean(x: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """``np.nanmean`` without the all-NaN RuntimeWarning: a mean over no defined value is NaN."""
    x = np.asarray(x, dtype=np.float64)
    defined = ~np.isnan(x)
    total = np.where(defined, x, 0.0).sum(axis=axis)
    mean = _safe_divide(total, defined.sum(axis=axis))
    return float(mean) if mean.ndim == 0 else mean


def _tp_fp_fn(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class counts of ``(..., C, C)`` matrices (rows = truth), as float64 ``(..., C)`` arrays."""
    cm = np.asarray(cm, dtype=np.float64)  # exact for counts below 2**53
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    return tp, cm.sum(axis=-2) - tp, cm.sum(axis=-1) - tp  # FP: predicted as the class; FN: truth is it


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU ``TP / (TP + FP + FN)`` of one ``(C, C)`` matrix or a stack ``(..., C, C)``.

    Returns:
        ``(..., C) float64``, NaN for a class absent from both truth and prediction.
    """
    tp, fp, fn = _tp_fp_fn(cm)
    return _safe_divide(tp, tp + fp + fn)


def dice_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class Dice ``2 TP / (2 TP + FP + FN)`` of one ``(C, C)`` matrix or a stack ``(..., C, C)``.

    Returns:
        ``(..., C) float64``, NaN for a class absent from both truth and prediction.
    """
    tp, fp, fn = _tp_fp_fn(cm)
    return _safe_divide(2 * tp, 2 * tp + fp + fn)


def class_mean(per_class: np.ndarray) -> np.ndarray | float:
    """Mean over the last (class) axis with NaN left out; NaN where no class is defined."""
    return _nanmean(per_class, axis=-1)


def scores_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray | float]:
    """Per-class and mean scores of one confusion matrix, NaN where undefined (see the module docstring).

    Args:
        cm: ``(C, C)`` non-negative counts, rows = truth, columns = prediction.

    Returns:
        ``"iou"``, ``"dice"``, ``"precision"``, ``"recall"``: ``(C,) float64`` arrays;
        ``"pixel_accuracy"``, ``"mean_pixel_accuracy"``, ``"mean_iou"``, ``"mean_dice"``,
        ``"mean_precision"``, ``"mean_recall"``: floats (means over the classes where the score is defined).
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square (C, C) matrix, got shape {cm.shape}; build it with confusion_matrix")
    if cm.dtype.kind not in "iuf":
        raise TypeError(f"cm must hold counts (integer or float), got dtype {cm.dtype}")
    if cm.size and cm.min() < 0:
        raise ValueError(f"cm must hold non-negative counts, got minimum {cm.min()}; build it with confusion_matrix")

    tp, fp, fn = _tp_fp_fn(cm)
    iou, dice = iou_from_confusion(cm), dice_from_confusion(cm)
    precision = _safe_divide(tp, tp + fp)
    recall = _safe_divide(tp, tp + fn)
    return {
        "iou": iou,
        "dice": dice,
        "precision": precision,
        "recall": recall,
        "pixel_accuracy": float(_safe_divide(tp.sum(), cm.sum(dtype=np.float64))),
        "mean_pixel_accuracy": _nanmean(recall),
        "mean_iou": class_mean(iou),
        "mean_dice": class_mean(dice),
        "mean_precision": _nanmean(precision),
        "mean_recall": _nanmean(recall),
    }


def per_image_scores(
    truth: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    *,
    ignore_index: int | None = 255,
    ignore_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray | float]]:
    """Confusion matrix and scores of one image; arguments as in ``confusion_matrix``.

    Returns:
        ``(cm, scores)``: the ``(C, C) int64`` matrix and ``scores_from_confusion(cm)``.
    """
    cm = confusion_matrix(truth, pred, num_classes, ignore_index=ignore_index, ignore_mask=ignore_mask)
    return cm, scores_from_confusion(cm)


def flatten_scores(
    scores: Mapping[str, np.ndarray | float],
    class_names: Sequence[str],
    *,
    prefix: str = "",
) -> dict[str, float]:
    """Flat ``{column: float}`` view of a scores dict, for one row of a results table.

    Args:
        scores: Output of ``scores_from_confusion`` (or one aggregation of ``ConfusionMatrix.compute``).
        class_names: ``C`` names, in class-index order, used as column suffixes.
        prefix: Prepended to every column name, e.g. ``"val_"``.

    Returns:
        ``{prefix}<scalar key>`` for each of ``SCALAR_KEYS``, then ``{prefix}<key>_<name>`` for each key of
        ``ARRAY_KEYS`` and each class name; NaN stays NaN.
    """
    missing = [k for k in (*SCALAR_KEYS, *ARRAY_KEYS) if k not in scores]
    if missing:
        raise KeyError(f"scores lacks key(s) {missing}; pass the output of scores_from_confusion")
    num_classes = len(np.asarray(scores["iou"]))
    if len(class_names) != num_classes:
        raise ValueError(
            f"got {len(class_names)} class name(s) {list(class_names)} for {num_classes} classes; "
            "pass one name per class, in class-index order"
        )
    flat = {f"{prefix}{key}": float(scores[key]) for key in SCALAR_KEYS}
    for key in ARRAY_KEYS:
        values = np.asarray(scores[key], dtype=np.float64)
        flat.update({f"{prefix}{key}_{name}": float(v) for name, v in zip(class_names, values)})
    return flat


class ConfusionMatrix:
    """Accumulates confusion matrices over images and scores them two ways.

    ``compute()`` returns ``{"dataset": ..., "per_image": ...}``, each with the keys of
    ``scores_from_confusion``:

    * ``"dataset"``: scores of the matrix summed over all images (pixels pooled).
    * ``"per_image"``: each image scored alone, then every scalar averaged over images and every per-class
      array averaged class by class, NaN excluded (so an image where a class is undefined, e.g. absent from
      both truth and prediction, does not pull that class's mean IoU; a fully ignored image counts nowhere).

    Example:
        >>> metric = ConfusionMatrix(num_classes=2)
        >>> _ = metric.update(np.array([[0, 1]]), np.array([[0, 1]]))
        >>> metric.compute()["dataset"]["mean_iou"]
        1.0

    Args:
        num_classes: ``C``, the number of classes.
        ignore_index: Truth value that marks pixels to leave out; None when no value is reserved.
    """

    def __init__(self, num_classes: int, *, ignore_index: int | None = 255) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_index = _check_ignore_index(ignore_index)
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._total = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self._per_image: list[np.ndarray] = []  # C*C counts per image: small, and any score can be redone

    def update(self, truth: np.ndarray, pred: np.ndarray, *, ignore_mask: np.ndarray | None = None) -> np.ndarray:
        """Add one image; arguments as in ``confusion_matrix``.

        Returns:
            This image's ``(C, C) int64`` confusion matrix.
        """
        cm = confusion_matrix(truth, pred, self.num_classes, ignore_index=self.ignore_index, ignore_mask=ignore_mask)
        self._total += cm
        self._per_image.append(cm)
        return cm

    @property
    def matrix(self) -> np.ndarray:
        """``(C, C) int64`` sum of the confusion matrices of all images (a copy)."""
        return self._total.copy()

    @property
    def num_images(self) -> int:
        """Number of ``update`` calls since the last reset."""
        return len(self._per_image)

    def compute(self) -> dict[str, dict[str, np.ndarray | float]]:
        """Score the images seen so far: ``{"dataset": scores, "per_image": mean scores}``.

        With no image yet, every score is NaN (a mean over nothing).
        """
        per_image = [scores_from_confusion(cm) for cm in self._per_image]
        means: dict[str, np.ndarray | float] = {}
        for key in ARRAY_KEYS:
            stacked = np.stack([s[key] for s in per_image]) if per_image else np.full((0, self.num_classes), np.nan)
            means[key] = _nanmean(stacked, axis=0)
        for key in SCALAR_KEYS:
            means[key] = _nanmean(np.array([s[key] for s in per_image], dtype=np.float64))
        return {"dataset": scores_from_confusion(self._total), "per_image": means}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"images={self.num_images})"
        )
