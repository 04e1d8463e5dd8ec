"""Resizing between a dataset's resolution and the resolution a method works at; random crops for training."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from segbench.datasets.base import IGNORE_INDEX, Sample

__all__ = ["WorkSize", "parse_size", "work_shape", "resize_image", "resize_mask", "resize_proba", "random_crop"]

#: A method's working resolution: None (native), an int (cap on the longer side, aspect kept) or (width, height).
WorkSize = int | tuple[int, int] | None


def parse_size(text: str | None) -> WorkSize:
    """Parse ``"256"`` (longer side) or ``"256x192"`` (width x height); ``None``/``""``/``"native"`` -> None."""
    if text is None or text in ("", "native", "none"):
        return None
    try:
        if "x" in text:
            w, h = (int(v) for v in text.lower().split("x"))
            if w <= 0 or h <= 0:
                raise ValueError
            return (w, h)
        side = int(text)
        if side <= 0:
            raise ValueError
        return side
    except ValueError:
        raise ValueError(f"size {text!r} is not valid; give the longer side (e.g. 256) or WIDTHxHEIGHT (e.g. 256x192)") from None


def work_shape(height: int, width: int, size: WorkSize) -> tuple[int, int]:
    """The ``(H, W)`` a method works at for an image of ``(height, width)``."""
    if size is None:
        return height, width
    if isinstance(size, tuple):
        return size[1], size[0]
    if max(height, width) <= size:  # an int caps the longer side; small images are not blown up
        return height, width
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an ``(H, W, 3) uint8`` image to ``shape=(H', W')`` (bilinear, antialiased when shrinking)."""
    if image.shape[:2] == tuple(shape):
        return image
    return np.asarray(Image.fromarray(image).resize((shape[1], shape[0]), Image.BILINEAR))


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a label or boolean mask with nearest-neighbour interpolation (labels are never blended)."""
    if mask.shape == tuple(shape):
        return mask
    h, w = mask.shape
    rows = np.minimum((np.arange(shape[0]) + 0.5) * h / shape[0], h - 1).astype(np.intp)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * w / shape[1], w - 1).astype(np.intp)
    return mask[rows[:, None], cols[None, :]]


def resize_proba(proba: np.ndarray | torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """Resize ``(C, H, W)`` probabilities bilinearly to ``(C, *shape)`` on their device; columns still sum to 1.

    A tensor is resized where it lives and the result copied to the host as a NumPy array.
    """
    if isinstance(proba, np.ndarray):
        if proba.shape[1:] == tuple(shape):
            return proba.astype(np.float32, copy=False)
        proba = torch.from_numpy(np.ascontiguousarray(proba, dtype=np.float32))
    t = proba.float()
    if tuple(t.shape[1:]) != tuple(shape):
        t = F.interpolate(t[None], size=tuple(shape), mode="bilinear", align_corners=False)[0]
    return t.cpu().numpy()


def random_crop(
    sample: Sample,
    size: int | tuple[int, int],
    rng: np.random.Generator,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> Sample:
    """A random ``size`` window of a sample, for training on images larger than a batch can hold.

    The window's top-left corner is drawn uniformly, so every pixel can be picked. A sample smaller than
    ``size`` along a side is first padded at the bottom/right: the image by reflection (plausible context),
    the mask with ``ignore_index`` and the ignore mask with True, so padded pixels never count as labels.

    Args:
        sample: The sample to crop.
        size: ``(height, width)``, or one int for a square.
        rng: Source of the offsets (seed it for reproducible training).
        ignore_index: Label written into the mask's padding.

    Returns:
        A ``Sample`` with the same id and ``(height, width)`` image, mask and ignore mask (if any).
    """
    ch, cw = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if ch <= 0 or cw <= 0:
        raise ValueError(f"crop size {size!r} is not valid; give a positive int or (height, width)")
    image, mask, ignore = sample.image, sample.mask, sample.ignore
    h, w = mask.shape
    pad_h, pad_w = max(0, ch - h), max(0, cw - w)
    if pad_h or pad_w:
        mode = "reflect" if min(h, w) > 1 else "edge"
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)
        mask = np.pad(mask, ((0, pad_h), (0, pad_w)), constant_values=ignore_index)
        ignore = None if ignore is None else np.pad(ignore, ((0, pad_h), (0, pad_w)), constant_values=True)
        h, w = mask.shape
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    window = (slice(y, y + ch), slice(x, x + cw))
    return Sample(
        id=sample.id,
        image=np.ascontiguousarray(image[window]),
        mask=np.ascontiguousarray(mask[window]),
        ignore=None if ignore is None else np.ascontiguousarray(ignore[window]),
    )
