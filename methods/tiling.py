"""Tiled inference for images too large or too slow to predict whole: overlapping tiles, blended.

The scheme is U-Net's overlap-tile strategy (Ronneberger et al. 2015) with blending:

1. The image is padded by reflection by ``margin`` pixels on every side (and, when it is smaller than a
   tile, up to the tile size), so pixels at the image border get context the way inner pixels do.
2. Tiles of ``tile x tile`` pixels are cut at a stride of ``tile - overlap``; the last tile of a row or
   column is moved back to end flush with the padded image, so every tile has the same size.
3. Each tile's probabilities are weighted by a window that is 0 within ``margin`` pixels of the tile's
   edges (the predictions there lack context) and rises linearly to 1 over the next
   ``overlap - 2 * margin`` pixels; each pixel gets the weighted mean over the tiles that cover it.
4. The padding is cropped off.

Exactness: for a method whose output at a pixel depends only on the input within ``margin`` pixels of it,
by the same rule everywhere (translation-equivariant: a convolution, a fixed filter bank), every tile
predicts exactly what the whole padded image would, so the blend equals
``fn(reflect_pad(image, margin))`` cropped, and equals ``fn(image)`` itself when ``fn`` treats the image
border by the same reflection (``numpy.pad(mode="reflect")``, i.e. scipy's ``mode="mirror"``). Methods
with image-wide steps (a per-image threshold, global pooling, batch statistics) give tile-dependent results:
blending hides the seams but does not make them equal to whole-image inference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Tiling", "predict_tiled", "tile_starts", "blend_window"]


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``0..length``; the last one ends at ``length``."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _ramp(n: int, margin: int, overlap: int) -> np.ndarray:
    d = np.minimum(np.arange(n), np.arange(n)[::-1]).astype(np.float64)  # distance to the nearer edge
    return np.clip((d - margin + 1) / (overlap - 2 * margin + 1), 0.0, 1.0)


def blend_window(tile: int, *, overlap: int, margin: int) -> np.ndarray:
    """``(tile, tile) float64`` weights: 0 within ``margin`` of an edge, rising linearly to 1 over the next
    ``overlap - 2 * margin`` pixels."""
    ramp = _ramp(tile, margin, overlap)
    return ramp[:, None] * ramp[None, :]


def _pad(image: np.ndarray, before: int, after_h: int, after_w: int) -> np.ndarray:
    widths = [(before, before + after_h), (before, before + after_w)] + [(0, 0)] * (image.ndim - 2)
    # A one-pixel-wide image has nothing to reflect: repeat it instead.
    mode = "reflect" if min(image.shape[:2]) > 1 else "edge"
    return np.pad(image, widths, mode=mode)


def predict_tiled(
    predict_proba: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    *,
    tile: int,
    overlap: int = 64,
    margin: int | None = None,
) -> np.ndarray:
    """Predict ``image`` tile by tile and blend the tiles' probabilities (see the module docstring).

    Args:
        predict_proba: ``(tile, tile, ...) image -> (C, tile, tile)`` probabilities.
        image: ``(H, W)`` or ``(H, W, channels)`` array.
        tile: Side of the square tiles in pixels.
        overlap: Pixels shared by neighbouring tiles; ``0 <= overlap < tile``.
        margin: Pixels at each tile edge whose predictions are discarded; at least the method's
            receptive-field radius for results equal to whole-image inference. Default ``overlap // 4``;
            at most ``overlap // 2``, so that every pixel keeps a tile with positive weight.

    Returns:
        ``(C, H, W) float32`` probabilities.
    """
    margin = overlap // 4 if margin is None else margin
    _check(tile, overlap, margin)
    h, w = image.shape[:2]
    padded = _pad(image, margin, max(0, tile - (h + 2 * margin)), max(0, tile - (w + 2 * margin)))
    ph, pw = padded.shape[:2]
    window = blend_window(tile, overlap=overlap, margin=margin)
    stride = tile - overlap
    acc: np.ndarray | None = None
    weight = np.zeros((ph, pw), dtype=np.float64)
    # float64 accumulation: where the tiles agree, the blend is their value exactly (not one float32 ulp off).
    for y in tile_starts(ph, tile, stride):
        for x in tile_starts(pw, tile, stride):
            proba = np.asarray(predict_proba(padded[y : y + tile, x : x + tile]))
            if proba.ndim != 3 or proba.shape[1:] != (tile, tile):
                raise RuntimeError(
                    f"predict_proba returned shape {proba.shape} for a {tile}x{tile} tile; expected (C, {tile}, {tile})"
                )
            if acc is None:
                acc = np.zeros((proba.shape[0], ph, pw), dtype=np.float64)
            acc[:, y : y + tile, x : x + tile] += proba * window
            weight[y : y + tile, x : x + tile] += window
    assert acc is not None
    inner = (slice(margin, margin + h), slice(margin, margin + w))
    return (acc[:, inner[0], inner[1]] / weight[inner]).astype(np.float32)


def _check(tile: int, overlap: int, margin: int) -> None:
    for name, value in (("tile", tile), ("overlap", overlap), ("margin", margin)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"tiling {name}={value!r} must be an integer number of pixels")
    if tile < 1:
        raise ValueError(f"tiling tile={tile} must be at least 1 pixel")
    if not 0 <= overlap < tile:
        raise ValueError(f"tiling overlap={overlap} must be in 0..tile-1 (tile={tile}); e.g. overlap={tile // 8}")
    if not 0 <= 2 * margin <= overlap:
        raise ValueError(
            f"tiling margin={margin} must be in 0..overlap/2 (overlap={overlap}), or some pixels get no tile; "
            f"raise overlap to at least {2 * margin}"
        )


@dataclass(frozen=True)
class Tiling:
    """How a method predicts large images: set ``Method.tiling`` (or ``--tile`` on the command line).

    Attributes:
        tile: Side of the square tiles, in pixels at the method's working resolution.
        overlap: Pixels shared by neighbouring tiles.
        margin: Pixels discarded at each tile edge (None: ``overlap // 4``).
    """

    tile: int
    overlap: int = 64
    margin: int | None = None

    def __post_init__(self) -> None:
        _check(self.tile, self.overlap, self.overlap // 4 if self.margin is None else self.margin)

    def predict(self, predict_proba: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
        """``predict_tiled`` with these settings."""
        return predict_tiled(predict_proba, image, tile=self.tile, overlap=self.overlap, margin=self.margin)
