"""The ``morph`` stage: morphological clean-up of the label map, after any method (``slic+morph``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage as ndi
from skimage.filters.rank import majority
from skimage.morphology import disk

from segbench.datasets.base import Sample
from segbench.methods.base import STAGES, Method, Stage, labels_to_proba

__all__ = ["Morphology", "clean_binary"]


def clean_binary(fg: np.ndarray, radius: int, *, fill_holes: bool = True, keep_largest: bool = True) -> np.ndarray:
    """Opening then closing with a disc of ``radius``, hole filling, largest connected component.

    Opening and closing pad by reflection, so an object touching the border is not eroded from outside.
    """
    if radius > 0:
        fp = disk(radius)
        padded = np.pad(fg, radius, mode="reflect")
        padded = ndi.binary_closing(ndi.binary_opening(padded, fp), fp)
        fg = padded[radius:-radius, radius:-radius]
    if fill_holes:
        fg = ndi.binary_fill_holes(fg)
    if keep_largest and fg.any():
        labels, n = ndi.label(fg)
        if n > 1:
            fg = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    return fg


@STAGES.register("morph")
class Morphology(Stage):
    """Clean the label map: remove specks, close gaps, fill holes, keep the one object.

    Two classes: opening and closing of the foreground (class 1) with a disc, hole filling, and (for
    single-object tasks) the largest connected component only. More classes: a majority (mode) filter over
    a disc, the multi-class counterpart of opening and closing. Pixels whose label does not change keep the
    probabilities they had; changed pixels become one-hot.

    Options:
        radius: Disc radius as a fraction of the image's shorter side (0.01: 6 px on a 768x576 PH2 image).
        fill_holes: Fill holes in the foreground (two classes).
        keep_largest: Keep the largest foreground component; ``"auto"`` decides in ``fit``: on when the
            training masks have one foreground component or none (PH2 lesions), off otherwise (ISBI cells).
    """

    description = "morphological clean-up: opening/closing, hole filling, largest component"

    @dataclass(kw_only=True)
    class Options:
        radius: float = 0.01
        fill_holes: bool = True
        keep_largest: bool | Literal["auto"] = "auto"

    def __init__(self, num_classes: int, *, seed: int = 0, **options: object) -> None:
        super().__init__(num_classes, seed=seed, **options)
        if not 0 <= self.opts.radius < 0.5:
            raise ValueError(f"morph: radius is a fraction of the shorter side in [0, 0.5), got {self.opts.radius}")
        self.keep_largest_ = self.opts.keep_largest if self.opts.keep_largest != "auto" else num_classes == 2

    def fit(self, before: Method, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        if self.opts.keep_largest != "auto" or self.num_classes != 2 or not train:
            return
        counts = [ndi.label(s.mask == 1)[1] for s in train]
        self.keep_largest_ = bool(np.median(counts) <= 1)

    def apply(self, image: np.ndarray, proba: np.ndarray) -> np.ndarray:
        labels = proba.argmax(axis=0)
        radius = round(self.opts.radius * min(labels.shape))
        if self.num_classes == 2:
            cleaned = clean_binary(labels == 1, radius, fill_holes=self.opts.fill_holes, keep_largest=self.keep_largest_)
            cleaned = cleaned.astype(labels.dtype)
        elif radius > 0:
            padded = np.pad(labels.astype(np.uint8 if self.num_classes <= 256 else np.uint16), radius, mode="reflect")
            cleaned = majority(padded, disk(radius))[radius:-radius, radius:-radius].astype(labels.dtype)
        else:
            cleaned = labels
        changed = cleaned != labels
        return np.where(changed[None], labels_to_proba(cleaned, self.num_classes), proba).astype(np.float32)

    def config(self) -> dict[str, object]:
        return {**super().config(), "keep_largest_used": self.keep_largest_}
