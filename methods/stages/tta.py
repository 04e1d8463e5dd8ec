"""The ``tta`` stage: multi-scale and flip test-time augmentation that averages probabilities.

Written after any method (``unet+tta``, ``deeplab+tta+crf``). For each scale and flip, the method before
the stage predicts on the transformed image; the probabilities are mapped back (flipped back, resized to
the image) and averaged with the plain prediction the stage receives. Scaling goes through the method's
``predict_proba_scaled`` hook: a deep method runs its network at ``scale`` times its working resolution,
any other method gets the image itself rescaled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from segbench.datasets.base import Sample
from segbench.methods.base import STAGES, Method, Stage

__all__ = ["TestTimeAugmentation"]

Flip = Literal["h", "v", "hv"]


def _flip(array: np.ndarray, flip: str | None, axes: tuple[int, int]) -> np.ndarray:
    """Flip ``array`` horizontally (``"h"``), vertically (``"v"``) or both; ``axes`` are its (row, column) axes."""
    if flip is None:
        return array
    if "h" in flip:
        array = np.flip(array, axis=axes[1])
    if "v" in flip:
        array = np.flip(array, axis=axes[0])
    return np.ascontiguousarray(array)


@STAGES.register("tta")
class TestTimeAugmentation(Stage):
    """Average the probabilities of the method before it over scales and flips.

    Options:
        scales: Working-resolution multipliers (1.0 is the plain prediction, which the stage receives).
        flips: Flips tried at every scale, besides no flip: ``"h"``, ``"v"``, ``"hv"`` (both).

    The defaults (3 scales x 2 flips) cost 5 extra predictions per image.
    """

    description = "test-time augmentation: average probabilities over scales and flips"

    @dataclass(kw_only=True)
    class Options:
        scales: tuple[float, ...] = (0.75, 1.0, 1.25)
        flips: tuple[Flip, ...] = ("h",)

    def __init__(self, num_classes: int, *, seed: int = 0, **options: object) -> None:
        super().__init__(num_classes, seed=seed, **options)
        if not self.opts.scales or min(self.opts.scales) <= 0:
            raise ValueError(f"tta: scales must be positive numbers, got {self.opts.scales}")
        bad = [f for f in self.opts.flips if f not in ("h", "v", "hv")]
        if bad:
            raise ValueError(f"tta: unknown flip(s) {bad}; use 'h', 'v' or 'hv'")
        self.before: Method | None = None

    def fit(self, before: Method, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        """Keep the method before the stage: it is called again on each transformed image."""
        self.before = before

    def apply(self, image: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """``image (H, W, 3) uint8`` and the plain ``proba (C, H, W)`` -> the average over all views."""
        if self.before is None:
            raise RuntimeError("tta: not fitted; it runs inside a pipeline such as unet+tta")
        total = proba.astype(np.float64)
        count = 1
        for scale in self.opts.scales:
            for flip in (None, *self.opts.flips):
                if scale == 1.0 and flip is None:
                    continue  # the plain prediction, received as ``proba``
                view = _flip(image, flip, (0, 1))
                total += _flip(self.before.predict_proba_scaled(view, scale), flip, (1, 2))
                count += 1
        return (total / count).astype(np.float32)
