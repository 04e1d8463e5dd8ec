"""Otsu's threshold on the best single channel: the unsupervised baseline every method must beat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage as ndi
from skimage.color import rgb2gray, rgb2hsv, rgb2lab
from skimage.filters import threshold_otsu

from segbench.datasets.base import Sample
from segbench.methods.base import METHODS, Method
from segbench.methods.tuning import SelectionScore, best_index

__all__ = ["Otsu", "CHANNELS", "image_channel"]

Channel = Literal["auto", "gray", "R", "G", "B", "L", "a", "b", "S"]
CHANNELS: tuple[str, ...] = ("gray", "R", "G", "B", "L", "a", "b", "S")
_FLAT = 1e-3  # a channel spread below this is float noise (Lab a/b of a grey image): nothing to threshold


def image_channel(image: np.ndarray, channel: str) -> np.ndarray:
    """One channel of an ``(H, W, 3) uint8`` RGB image as ``(H, W) float64``."""
    if channel == "gray":
        return rgb2gray(image)
    if channel in "RGB":
        return image[..., "RGB".index(channel)].astype(np.float64)
    if channel in ("L", "a", "b"):
        values = rgb2lab(image)[..., "Lab".index(channel)]
        if channel != "L":
            # A grey pixel has no chroma; rgb2lab leaves ~0.005 of float noise that Otsu would threshold.
            values[(image[..., 0] == image[..., 1]) & (image[..., 1] == image[..., 2])] = 0.0
        return values
    if channel == "S":
        return rgb2hsv(image)[..., 1]
    raise ValueError(f"unknown channel {channel!r}; choose one of {', '.join(CHANNELS)}")


@METHODS.register("otsu")
class Otsu(Method):
    """Otsu's threshold per image on one smoothed channel; foreground is the side chosen on the training split.

    ``fit`` reads the training split only to choose the channel (with ``channel="auto"``) and the polarity
    (is the object darker or brighter than the background?) that give the best mean Dice; the threshold
    itself is computed per test image without labels. Probabilities are a logistic of the distance to the
    threshold, so the decision equals the threshold and a CRF stage has soft values to refine.
    """

    description = "Otsu threshold on the best channel (polarity and channel chosen on train)"
    needs_training = False
    binary_only = True
    default_work_size = 256

    @dataclass
    class Options:
        channel: Channel = "auto"
        sigma: float = 2.0  # Gaussian smoothing before thresholding, in pixels at the working size
        softness: float = 0.05  # logistic scale, as a fraction of the channel's spread

    def _values(self, image: np.ndarray, channel: str) -> np.ndarray:
        values = image_channel(image, channel)
        return ndi.gaussian_filter(values, self.opts.sigma) if self.opts.sigma > 0 else values

    def _fit(self, train: list[Sample], val: list[Sample] | None) -> None:
        if self.opts.channel not in ("auto", *CHANNELS):
            raise ValueError(f"otsu: channel {self.opts.channel!r} is not one of auto, {', '.join(CHANNELS)}")
        channels = CHANNELS if self.opts.channel == "auto" else (self.opts.channel,)
        # Per (channel, object is bright): the selection score over the training images (segbench.methods.tuning).
        scores = {(ch, bright): SelectionScore(2, ignore_index=self.ignore_index) for ch in channels for bright in (True, False)}
        informative: set[str] = set()
        for s in train:
            for ch in channels:
                values = self._values(s.image, ch)
                flat = np.ptp(values) <= _FLAT
                if not flat:
                    informative.add(ch)
                above = values > (values.max() if flat else threshold_otsu(values))
                scores[ch, True].update(s.mask, above.astype(np.uint8), ignore_mask=s.ignore)
                scores[ch, False].update(s.mask, (~above).astype(np.uint8), ignore_mask=s.ignore)
        if not train:  # no training images: grey, object darker (the usual case for lesions)
            self.channel_, self.object_is_bright_ = "gray", False
            return
        # A channel flat on every training image (a, b and S of greyscale input) thresholds nothing: it would
        # only pick "all foreground" or "all background", so it is chosen only when no channel varies.
        keys = [k for k in scores if k[0] in informative] or list(scores)
        # With nothing scored every score is NaN and the first key is kept (segbench.methods.tuning).
        self.channel_, self.object_is_bright_ = keys[best_index([scores[k].value() for k in keys])]

    def _predict_proba(self, image: np.ndarray) -> np.ndarray:
        values = self._values(image, self.channel_)
        spread = float(np.ptp(values))
        if spread <= _FLAT:
            # As in fit: nothing lies above the threshold of a flat channel, so all of it is on the dark side.
            fg = np.full(values.shape, 0.0 if self.object_is_bright_ else 1.0, dtype=np.float32)
        else:
            z = (values - threshold_otsu(values)) / (self.opts.softness * spread)
            fg = (1.0 / (1.0 + np.exp(-np.clip(z if self.object_is_bright_ else -z, -50, 50)))).astype(np.float32)
        return np.stack([1.0 - fg, fg])
