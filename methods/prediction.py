"""What one inference returns (``Prediction``), and the post-processing from working-size probabilities to labels.

Post-processing (the bilinear resize back to the image and the argmax) runs in torch on the device the
probabilities are on, and only the label map is copied to the host. It never materialises the
full-resolution ``(C, H, W)`` array for labels: each class is resized and compared in turn, so the labels
are exactly ``resize_proba(proba).argmax(0)`` (same interpolation kernel, same first-maximum tie-breaking)
at a fraction of its cost. Full-resolution probabilities are computed only when asked for
(``Prediction.proba()``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Prediction", "labels_from_proba", "label_dtype"]


def label_dtype(num_classes: int) -> np.dtype:
    """The label map's dtype: uint8 up to 256 classes, else int32."""
    return np.dtype(np.uint8 if num_classes <= 256 else np.int32)


def _resize_channel(proba: torch.Tensor, c: int, shape: tuple[int, int]) -> torch.Tensor:
    """Channel ``c`` of ``(C, h, w)`` resized to ``shape``, by the same kernel ``resize_proba`` uses on all channels
    (channels are interpolated independently, so the values are identical)."""
    channel = proba[c : c + 1][None]
    if tuple(proba.shape[1:]) == tuple(shape):
        return channel[0, 0]
    return F.interpolate(channel, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0]


@torch.inference_mode()
def labels_from_proba(proba: torch.Tensor | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(C, h, w)`` probabilities -> ``(H, W)`` labels of their bilinear resize to ``shape``, on the host.

    Equal to ``resize_proba(proba, shape).argmax(axis=0)``: a pixel takes the first class with the largest
    value (``numpy.argmax``'s tie-breaking), since a later class replaces the running best only when
    strictly greater.
    """
    p = torch.from_numpy(np.ascontiguousarray(proba, dtype=np.float32)) if isinstance(proba, np.ndarray) else proba.float()
    num_classes = p.shape[0]
    best = _resize_channel(p, 0, shape)
    if num_classes == 1:
        return np.zeros(shape, label_dtype(1))
    current = _resize_channel(p, 1, shape)
    labels = torch.gt(current, best)
    if num_classes == 2:
        return labels.to(torch.uint8).cpu().numpy()
    dtype = torch.uint8 if num_classes <= 256 else torch.int32
    labels = labels.to(dtype)
    best = torch.maximum(best, current)
    wins, candidate = torch.empty_like(labels, dtype=torch.bool), torch.empty_like(labels)
    for c in range(2, num_classes):
        current = _resize_channel(p, c, shape)
        torch.gt(current, best, out=wins)
        # Where class c wins it exceeds every earlier label, so max(labels, wins * c) sets exactly those
        # pixels (several times faster than masked_fill_).
        torch.mul(wins.to(dtype), c, out=candidate)
        torch.maximum(labels, candidate, out=labels)
        torch.maximum(best, current, out=best)
    return labels.cpu().numpy()


@dataclass
class Prediction:
    """One image's inference: the label map (always), its cost split, and probabilities on request.

    Attributes:
        labels: ``(H, W)`` label map at the image's size, on the host.
        model_ms: The method's own work at its working size (stages included).
        overhead_ms: The harness's part: input conversion, resizes, argmax, copies to the host.
    """

    labels: np.ndarray
    model_ms: float
    overhead_ms: float
    _proba: Callable[[], np.ndarray] = field(repr=False)
    _cached: np.ndarray | None = field(default=None, repr=False)

    def proba(self) -> np.ndarray:
        """``(C, H, W) float32`` probabilities at the image's size; computed on the first call (not timed)."""
        if self._cached is None:
            self._cached = self._proba()
        return self._cached
