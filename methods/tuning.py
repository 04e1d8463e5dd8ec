"""Choosing a setting on held-out images: the score every tuning grid uses, and the choice itself.

The score is ``segbench.measure.metrics``' per-image mean IoU (the one scoring rule: a class absent from
an image's truth and prediction is left out, never scored 1). Two degenerate cases need a defined outcome
here, because a grid search must return *some* setting:

* A held-out image with no scored pixel (all ignored) has no IoU; it is left out of the mean over images,
  as in metrics' ``"per_image"`` aggregation. It would count the same for every setting anyway.
* When no held-out image has a scored pixel, every setting's score is NaN: ``best_index`` then keeps the
  first setting of the grid, as an argmax over equal scores would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from segbench.datasets.base import Sample
from segbench.measure.metrics import ConfusionMatrix

__all__ = ["best_index", "mean_image_iou"]


def mean_image_iou(preds: Sequence[np.ndarray], samples: Sequence[Sample], num_classes: int, ignore_index: int) -> float:
    """Mean over images of each image's mean IoU over classes (the tuning score); NaN when nothing is scored.

    Args:
        preds: ``(H, W)`` integer label maps, one per sample.
        samples: The held-out samples (their masks and ignore masks).
        num_classes: ``C``.
        ignore_index: Truth value left out of the score.
    """
    metric = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    for pred, sample in zip(preds, samples, strict=True):
        metric.update(sample.mask, pred, ignore_mask=sample.ignore)
    return float(metric.compute()["per_image"]["mean_iou"])


def best_index(scores: Sequence[float], *, tol: float = 0.0) -> int:
    """Index of the best score: higher wins only by more than ``tol``, so ties keep the earlier setting.

    NaN (nothing scored) never wins; when every score is NaN the first setting is kept.
    """
    best, best_score = 0, -math.inf
    for i, score in enumerate(scores):
        if score > best_score + tol:  # False for NaN
            best, best_score = i, score
    return best
