"""The boundary and calibration columns of one cell, fed one test image at a time by the runner.

Per image: ``<key>_<class>`` for each per-image label-map metric of ``segbench.measure.schema`` (``bf1``, ``hd95``,
``assd``; opt-in ones such as ``cldice`` when asked). Per cell (summary.csv): ``per_image_<key>_<class>``, the
mean over images with NaN left out (these scores have no pooled form), and ``ece`` and ``brier`` over all test
pixels pooled; the reliability diagram's bins go to cell.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from segbench.measure.boundary import DEFAULT_TOLERANCE
from segbench.measure.calibration import Calibration
from segbench.measure.metrics import _nanmean
from segbench.measure.schema import cell_column, image_column, image_metrics

__all__ = ["CellMeasures"]


class CellMeasures:
    """Boundary scores per image and calibration over the pixels of every image of one cell.

    Args:
        class_names: The dataset's class names, in class-index order (column suffixes).
        ignore_index: Truth value of pixels to leave out; None when no value is reserved.
        tolerance: Boundary F1 tolerance: pixels (``3``) or percent of the image diagonal (``"0.75%"``).
        cldice: Also score centreline Dice. Off by default: skeletonising large regions costs about 0.5 s per
            768x576 two-class image (4 skeletons; measured on PH2), against ~5 ms for the boundary scores, so it
            is asked for where thin structures are the point (``--cldice``, e.g. DRIVE's vessels).
        opt_in: Other opt-in metrics of ``segbench.measure.schema`` to score, by name.
    """

    def __init__(self, class_names: Sequence[str], *, ignore_index: int | None = 255,
                 tolerance: str | float = DEFAULT_TOLERANCE, cldice: bool = False, opt_in: Sequence[str] = ()) -> None:
        self.class_names = tuple(class_names)
        self.metrics = image_metrics((*opt_in, *(("cldice",) if cldice else ())))
        self.keys = tuple(m.name for m in self.metrics)
        self.ignore_index = ignore_index
        self.tolerance = tolerance
        self.calibration = Calibration(len(self.class_names), ignore_index=ignore_index)
        self._rows: list[dict[str, float]] = []

    def update(self, truth: np.ndarray, labels: np.ndarray, proba: np.ndarray, *,
               ignore_mask: np.ndarray | None = None) -> dict[str, float]:
        """Score one test image.

        Args:
            truth: ``(H, W)`` ground truth.
            labels: ``(H, W)`` predicted label map (the one the region scores use).
            proba: ``(C, H, W)`` probabilities the label map came from, at the same resolution.
            ignore_mask: Optional ``(H, W) bool``, True where a pixel is left out.

        Returns:
            This image's ``<key>_<class>`` columns.
        """
        scores: dict[str, Any] = {}
        for compute in dict.fromkeys(m.compute for m in self.metrics):  # one call per function (BF1, HD95, ASSD share one)
            scores |= compute(truth, labels, len(self.class_names), ignore_index=self.ignore_index,
                              ignore_mask=ignore_mask, tolerance=self.tolerance)
        self.calibration.update(proba, truth, ignore_mask=ignore_mask)
        row = {image_column(key, name): float(v) for key in self.keys for name, v in zip(self.class_names, scores[key])}
        self._rows.append(row)
        return row

    def summary(self) -> dict[str, float]:
        """``per_image_<key>_<class>`` means over images (NaN left out), then ``ece`` and ``brier``."""
        columns = [(key, name) for key in self.keys for name in self.class_names]
        values = np.array([[row[image_column(*c)] for c in columns] for row in self._rows],
                          dtype=np.float64).reshape(-1, len(columns))
        means = _nanmean(values, axis=0)
        return {**{cell_column(*c, aggregation="per_image"): float(m) for c, m in zip(columns, means)},
                **self.calibration.compute()}

    def reliability(self) -> dict[str, Any]:
        """The reliability diagram's bins (``Calibration.reliability``), for cell.json."""
        return self.calibration.reliability()
