"""Model selection: the one score every choice made on held-out images uses, and the choice itself.

**The selection score** is the dataset-level mean IoU over classes of the held-out images (the validation
split, or the training split where a method has none): the images' confusion matrices are summed, then
scored by ``segbench.measure.metrics`` (the one scoring rule), as the field reports mIoU. It decides

* every tuning grid: the CRF's kernel widths and weight (``methods/stages/crf.py``), the graph cut's pairwise
  weight and GrabCut's margin (``methods/classical/graphcut.py``);
* Otsu's channel and polarity, on the training images (``methods/classical/threshold.py``);
* the epoch whose weights a deep method keeps (``methods/deep/inference.py``, ``sliding_window.py``).

Pooling pixels weighs every held-out pixel the same, so a small image cannot swing the choice, and a class
absent from one image does not make that image's mean IoU undefined. Degenerate cases: a held-out image
with no scored pixel adds nothing; when no held-out pixel is scored the score is NaN for every candidate,
and ``best_index`` then keeps the first one, as an argmax over equal scores would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from segbench.datasets.base import Sample
from segbench.measure.metrics import ConfusionMatrix

__all__ = ["SelectionScore", "best_index", "selection_score"]


class SelectionScore:
    """The selection score accumulated one held-out image at a time (``update``, then ``value``).

    Args:
        num_classes: ``C``.
        ignore_index: Truth value left out of the score.
    """

    def __init__(self, num_classes: int, *, ignore_index: int | None = 255) -> None:
        self._meter = ConfusionMatrix(num_classes, ignore_index=ignore_index)

    def update(self, truth: np.ndarray, pred: np.ndarray, *, ignore_mask: np.ndarray | None = None) -> None:
        """Add one image: ``(H, W)`` truth and integer prediction, and its optional ignore mask."""
        self._meter.update(truth, pred, ignore_mask=ignore_mask)

    def value(self) -> float:
        """Dataset-level mean IoU of the images so far; NaN when no pixel was scored."""
        return float(self._meter.compute()["dataset"]["mean_iou"])


def selection_score(preds: Sequence[np.ndarray], samples: Sequence[Sample], num_classes: int,
                    ignore_index: int | None) -> float:
    """The selection score of label maps on their held-out samples (masks and ignore masks).

    Args:
        preds: ``(H, W)`` integer label maps, one per sample.
        samples: The held-out samples.
        num_classes: ``C``.
        ignore_index: Truth value left out of the score.
    """
    score = SelectionScore(num_classes, ignore_index=ignore_index)
    for pred, sample in zip(preds, samples, strict=True):
        score.update(sample.mask, pred, ignore_mask=sample.ignore)
    return score.value()


def best_index(scores: Sequence[float], *, tol: float = 0.0) -> int:
    """Index of the best score: higher wins only by more than ``tol``, so ties keep the earlier setting.

    NaN (nothing scored) never wins; when every score is NaN the first setting is kept.
    """
    best, best_score = 0, -math.inf
    for i, score in enumerate(scores):
        if score > best_score + tol:  # False for NaN
            best, best_score = i, score
    return best
