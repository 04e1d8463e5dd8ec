"""Generated dermoscopy-like lesions: the default dataset, deterministic from a seed, with no download.

Each image is made from ``(seed, index)`` alone, so loading is order-independent and any one image can be
regenerated on its own. The generator is built so that simple baselines stay imperfect:

* skin colour, texture and uneven illumination (gradient, vignetting, sometimes a dark dermatoscope
  ring) vary per image, so no single global threshold separates lesion from skin;
* lesions vary in size, position, colour and contrast (some are faint), have irregular borders, a soft
  transition in the image (the mask keeps the hard shape) and internal texture (globules, lighter areas);
* thin dark hairs, as dark as or darker than the lesion, cross most images.

``synthetic`` labels lesion vs background; ``synthetic-multiclass`` also labels hair pixels as class 2.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from segbench.datasets.base import DATASETS, Sample, SegmentationDataset

__all__ = ["SyntheticLesions", "SyntheticMulticlass"]

_ID_PREFIX = "synth-"
_MIN_SIDE = 32
#: Hair pixels whose coverage exceeds this get the hair class in the multi-class mask.
_HAIR_LABEL_ALPHA = 0.5


def _bspline_taps(n_out: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Cubic B-spline taps that upsample coarse knots (``scale`` pixels apart) to ``n_out`` pixels.

    Returns:
        ``(n_out, 4) intp`` knot indices and ``(n_out, 4) float64`` weights (each row sums to 1).
    """
    u = np.arange(n_out) / scale + 1.5
    i = np.floor(u).astype(np.intp)
    f = (u - i)[:, None]
    weights = np.concatenate(
        [(1 - f) ** 3, 3 * f**3 - 6 * f**2 + 4, -3 * f**3 + 3 * f**2 + 3 * f + 1, f**3], axis=1
    ) / 6.0
    return i[:, None] + np.arange(-1, 3), weights


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Smooth random field with features about ``scale`` pixels across, zero mean and unit std.

    A coarse white-noise grid upsampled with separable cubic B-splines: cheap at any image size, unlike a
    large blur. Gathers rather than matrix products, because small BLAS calls are slow on a busy machine.

    Returns:
        ``(H, W) float64``.
    """
    h, w = shape
    scale = max(scale, 1.0)
    grid = rng.standard_normal((int(h / scale) + 6, int(w / scale) + 6))
    idx, wts = _bspline_taps(h, scale)
    grid = np.einsum("hkw,hk->hw", grid[idx], wts)  # (H, gw)
    idx, wts = _bspline_taps(w, scale)
    field = np.einsum("hwk,wk->hw", grid[:, idx], wts)  # (H, W)
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def _blob(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r0: float) -> np.ndarray:
    """Irregular blob ``r(theta) = r0 * (1 + sum_k a_k cos(k theta + phi_k))``.

    Returns:
        ``(H, W) bool``, True inside the shape (pixel centres).
    """
    dy, dx = yy - cy, xx - cx
    rad = np.hypot(dy, dx)
    ks = np.arange(2, 11)
    # Low harmonics give the overall asymmetry, high ones a ragged border.
    amps = np.where(ks <= 5, rng.uniform(0.0, 0.22, ks.size) / (ks - 1) ** 0.5, rng.uniform(0.0, 0.04, ks.size))
    total = amps.sum()
    if total > 0.7:  # keep r(theta) positive and the blob in one piece
        amps *= 0.7 / total
    phases = rng.uniform(0.0, 2 * np.pi, ks.size)
    # cos(k theta + phi) = Re(e^{i phi} z^k) with z = e^{i theta}: powers of z are cheaper than k cosines.
    z = (dx + 1j * dy) / np.maximum(rad, 1e-9)
    zk = z * z
    r_theta = np.ones_like(rad)
    for k, amp, phase in zip(ks, amps, phases):
        if k > 2:
            zk = zk * z
        r_theta += amp * (np.cos(phase) * zk.real - np.sin(phase) * zk.imag)
    return rad <= r0 * r_theta


def _lesion_mask(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, float]:
    """One lesion (sometimes with a second, smaller one), mostly near the centre.

    Returns:
        ``(H, W) bool`` mask and the main blob's base radius in pixels.
    """
    h, w = yy.shape
    area = h * w
    frac = math.exp(rng.uniform(math.log(0.03), math.log(0.45)))  # log-uniform: many small, some large
    r0 = math.sqrt(frac * area / math.pi)
    if rng.random() < 0.75:
        cy = float(np.clip(rng.normal(0.5, 0.08), 0.25, 0.75)) * h
        cx = float(np.clip(rng.normal(0.5, 0.08), 0.25, 0.75)) * w
    else:
        cy, cx = rng.uniform(0.22, 0.78) * h, rng.uniform(0.22, 0.78) * w
    mask = _blob(rng, yy, xx, cy, cx, r0)
    if rng.random() < 0.2:
        r1 = math.sqrt(rng.uniform(0.01, 0.05) * area / math.pi)
        angle = rng.uniform(0.0, 2 * np.pi)
        dist = r0 + r1 * rng.uniform(0.8, 2.0)
        cy1 = float(np.clip(cy + dist * math.sin(angle), 0.1 * h, 0.9 * h))
        cx1 = float(np.clip(cx + dist * math.cos(angle), 0.1 * w, 0.9 * w))
        mask |= _blob(rng, yy, xx, cy1, cx1, r1)
    return mask, r0


def _skin(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Skin colour with multi-octave texture and reddish patches.

    Returns:
        ``(H, W, 3) float64`` RGB in 0..255 (before illumination).
    """
    r = rng.uniform(175.0, 240.0)
    base = np.array([r, r * rng.uniform(0.70, 0.86), r * rng.uniform(0.56, 0.76)])
    texture = np.zeros(shape)
    for size, amp in ((24.0, 0.05), (8.0, 0.03), (2.5, 0.02)):
        texture += amp * rng.uniform(0.5, 1.5) * _smooth_noise(rng, shape, size * scale)
    skin = base * (1.0 + texture)[..., None]
    # Erythema: smooth patches that redden (less green and blue) rather than darken.
    redness = np.clip(_smooth_noise(rng, shape, 30.0 * scale), 0.0, None) * rng.uniform(0.0, 0.08)
    skin *= 1.0 - redness[..., None] * np.array([0.0, 1.0, 0.8])
    return skin


def _lesion_colour(
    rng: np.random.Generator, mask: np.ndarray, r0: float, skin: np.ndarray, scale: float
) -> np.ndarray:
    """Brown lesion colour with a darker core, colour variation, lighter areas and dark globules.

    Returns:
        ``(H, W, 3) float64`` RGB, meaningful inside and near ``mask``.
    """
    shape = mask.shape
    d = rng.uniform(0.35, 0.8)  # overall darkness of the brown
    brown = d * np.array([200.0, 125.0 * rng.uniform(0.85, 1.1), 85.0 * rng.uniform(0.8, 1.2)])
    # Darker towards the centre: a wide blur of the mask is high deep inside it.
    depth = ndimage.gaussian_filter(mask.astype(np.float64), sigma=max(r0 / 3.0, 1.0))
    depth /= max(depth.max(), 1e-6)
    shade = 1.0 - rng.uniform(0.0, 0.35) * depth + rng.uniform(0.08, 0.2) * _smooth_noise(rng, shape, 6.0 * scale)
    colour = brown * shade[..., None]
    # Lighter (regression-like) areas: mix towards a pale pinkish-grey where a smooth field is high.
    if rng.random() < 0.6:
        pale = np.array([205.0, 170.0, 165.0]) * rng.uniform(0.8, 1.0)
        weight = np.clip(_smooth_noise(rng, shape, 10.0 * scale) - 0.6, 0.0, 1.0) * rng.uniform(0.4, 0.8)
        colour += weight[..., None] * (pale - colour)
    # Globules: small dark dots scattered inside the lesion.
    inside = np.flatnonzero(mask)
    n_glob = int(rng.integers(0, 40)) if rng.random() < 0.7 else 0
    if n_glob and inside.size:
        spots = np.zeros(mask.size)
        spots[rng.choice(inside, size=min(n_glob, inside.size), replace=False)] = 1.0
        sigma = rng.uniform(0.8, 1.8) * scale
        spots = ndimage.gaussian_filter(spots.reshape(shape), sigma=sigma) * (2 * np.pi * sigma**2)
        colour *= 1.0 - rng.uniform(0.3, 0.6) * np.clip(spots, 0.0, 1.0)[..., None]
    # Contrast: faint lesions sit close to the skin colour, but every lesion stays visible: at least
    # ~18% darker than the skin on average (in luminance).
    lum = np.array([0.299, 0.587, 0.114])
    drop = 1.0 - float(brown @ lum) / max(float(skin.mean(axis=(0, 1)) @ lum), 1e-6)
    contrast = min(1.0, max(rng.uniform(0.3, 1.0), 0.18 / max(drop, 1e-6)))
    return skin + contrast * (colour - skin)


def _bezier_points(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Points every ~0.25 px along one random quadratic Bezier hair that crosses (part of) the image.

    Returns:
        ``(N, 2) float64`` (row, col) points.
    """
    diag = math.hypot(h, w)
    start = np.array([rng.uniform(-0.1, 1.1) * h, rng.uniform(-0.1, 1.1) * w])
    angle = rng.uniform(0.0, 2 * np.pi)
    length = rng.uniform(0.3, 1.0) * diag
    end = start + length * np.array([math.sin(angle), math.cos(angle)])
    normal = np.array([math.cos(angle), -math.sin(angle)])
    control = (start + end) / 2 + rng.uniform(-0.35, 0.35) * length * normal
    t = np.linspace(0.0, 1.0, int(length * 4) + 2)[:, None]
    return (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end


def _hair_alpha(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Antialiased coverage of a few thin curved hairs (none in some images).

    Coverage is ``clip(width/2 + 0.5 - distance, 0, 1)`` to the nearest curve point, so a 1-2 px line gets
    soft edges; only pixels near a curve are queried.

    Returns:
        ``(H, W) float64`` coverage in 0..1.
    """
    h, w = shape
    alpha = np.zeros(shape)
    if rng.random() < 0.15:
        return alpha
    n_hairs = int(rng.integers(2, 11))
    points, widths = [], []
    for _ in range(n_hairs):
        pts = _bezier_points(rng, h, w)
        points.append(pts)
        widths.append(np.full(len(pts), rng.uniform(0.9, 2.0) * max(1.0, scale)))
    pts = np.concatenate(points)
    half = np.concatenate(widths) / 2 + 0.5
    near = np.zeros(shape, dtype=bool)
    rows, cols = np.rint(pts[:, 0]).astype(int), np.rint(pts[:, 1]).astype(int)
    keep = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    near[rows[keep], cols[keep]] = True
    reach = int(math.ceil(half.max())) + 1
    near = ndimage.binary_dilation(near, iterations=reach)
    qr, qc = np.nonzero(near)
    if qr.size == 0:
        return alpha
    dist, idx = cKDTree(pts).query(np.column_stack([qr, qc]).astype(np.float64))
    alpha[qr, qc] = np.clip(half[idx] - dist, 0.0, 1.0)
    return alpha


def _illumination(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, scale: float) -> np.ndarray:
    """Multiplicative uneven lighting: a linear gradient, off-centre vignetting, a slow wobble, and in some
    images the dark corners of a dermatoscope's round field of view.

    Returns:
        ``(H, W) float64`` gain, roughly 0.1..1.1.
    """
    h, w = yy.shape
    y = 2.0 * yy / max(h - 1, 1) - 1.0
    x = 2.0 * xx / max(w - 1, 1) - 1.0
    angle = rng.uniform(0.0, 2 * np.pi)
    gain = 1.0 + rng.uniform(0.04, 0.2) * (math.cos(angle) * x + math.sin(angle) * y)
    oy, ox = rng.uniform(-0.4, 0.4, 2)
    gain -= rng.uniform(0.05, 0.3) * ((y - oy) ** 2 + (x - ox) ** 2) / 2.0
    gain += 0.05 * _smooth_noise(rng, (h, w), 40.0 * scale)
    if rng.random() < 0.2:
        radius = rng.uniform(0.85, 1.05) * math.sqrt(2.0)
        edge = rng.uniform(0.03, 0.1)
        ring = 1.0 / (1.0 + np.exp((np.hypot(y, x) - radius) / edge))
        gain *= 0.12 + 0.88 * ring
    return gain / max(gain.max(), 1e-6) * rng.uniform(0.95, 1.1)


def _generate(seed: int, index: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate one image from ``(seed, index)`` alone.

    Returns:
        ``(H, W, 3) uint8`` RGB image, ``(H, W) bool`` lesion mask (hard shape) and ``(H, W) float64`` hair
        coverage in 0..1.
    """
    rng = np.random.default_rng([seed, index])
    shape = (height, width)
    scale = min(height, width) / 128.0  # feature sizes are tuned at 128 px
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)

    mask, r0 = _lesion_mask(rng, yy, xx)
    skin = _skin(rng, shape, scale)
    lesion = _lesion_colour(rng, mask, r0, skin, scale)
    # Soft border in the image only; the mask keeps the hard shape.
    soft = ndimage.gaussian_filter(mask.astype(np.float64), sigma=rng.uniform(0.8, 3.5) * scale)
    image = skin + soft[..., None] * (lesion - skin)

    hair = _hair_alpha(rng, shape, scale)
    hair_rgb = rng.uniform(15.0, 60.0) * np.array([1.0, rng.uniform(0.75, 0.95), rng.uniform(0.6, 0.9)])
    image += (hair * rng.uniform(0.8, 1.0))[..., None] * (hair_rgb - image)

    image *= _illumination(rng, yy, xx, scale)[..., None]
    image += rng.standard_normal(image.shape) * rng.uniform(1.0, 4.0)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask, hair


def _check_options(num_images: object, size: object, seed: object) -> tuple[int, tuple[int, int], int]:
    """Validate the constructor options (before any work) and return them as ``int``, ``(int, int)``, ``int``.

    Raises:
        ValueError: naming the bad value and what to give instead.
    """

    def is_int(v: object) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not is_int(num_images) or num_images < 3:  # type: ignore[operator]
        raise ValueError(f"num_images={num_images!r} is not valid; give an integer >= 3 (e.g. num_images=60)")
    try:
        width, height = size  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"size={size!r} is not valid; give (width, height), e.g. size=(128, 128)") from None
    if not (is_int(width) and is_int(height)) or min(width, height) < _MIN_SIDE:
        raise ValueError(
            f"size={size!r} is not valid; give (width, height) as integers >= {_MIN_SIDE}, e.g. size=(128, 128)"
        )
    if not is_int(seed) or seed < 0:  # type: ignore[operator]
        raise ValueError(f"seed={seed!r} is not valid; give a non-negative integer (e.g. seed=0)")
    return int(num_images), (int(width), int(height)), int(seed)  # type: ignore[arg-type]


@DATASETS.register("synthetic")
class SyntheticLesions(SegmentationDataset):
    """Generated dermoscopy-like images with one or two lesions: background (0) vs lesion (1).

    Args:
        root: Accepted for the common ``cls(root, **options)`` call and ignored: nothing is read from disk.
        num_images: Number of images (>= 3).
        size: ``(width, height)`` of every image, each >= 32.
        seed: Non-negative seed; image ``i`` depends only on ``(seed, i)``.
    """

    description: ClassVar[str] = "generated dermoscopy-like lesions (2 classes); no download"
    class_names: tuple[str, ...] = ("background", "lesion")
    #: Whether hair pixels get their own class (2) in the mask.
    _label_hair: ClassVar[bool] = False

    def __init__(
        self, root: object = None, *, num_images: int = 60, size: tuple[int, int] = (128, 128), seed: int = 0
    ) -> None:
        self.num_images, self.size, self.seed = _check_options(num_images, size, seed)
        self._digits = max(3, len(str(self.num_images - 1)))

    @property
    def work_size(self) -> tuple[int, int]:  # type: ignore[override]
        """Native size: the images are generated at the size the methods should see."""
        return self.size

    def config(self) -> dict[str, object]:
        return {"num_images": self.num_images, "size": self.size, "seed": self.seed}

    def ids(self) -> list[str]:
        return [f"{_ID_PREFIX}{i:0{self._digits}d}" for i in range(self.num_images)]

    def _index(self, sample_id: str) -> int:
        if isinstance(sample_id, str) and sample_id.startswith(_ID_PREFIX):
            digits = sample_id[len(_ID_PREFIX) :]
            # Round-trip through the format so "synth-7" or "synth-0007" are not aliases of "synth-007".
            if digits.isascii() and digits.isdigit():
                index = int(digits)
                if index < self.num_images and sample_id == f"{_ID_PREFIX}{index:0{self._digits}d}":
                    return index
        last = f"{_ID_PREFIX}{self.num_images - 1:0{self._digits}d}"
        raise ValueError(
            f"unknown sample id {sample_id!r} for dataset {self.name!r} with num_images={self.num_images}; "
            f"ids run from {_ID_PREFIX}{0:0{self._digits}d} to {last}"
        )

    def load(self, sample_id: str) -> Sample:
        """Generate one sample.

        Returns:
            ``Sample`` with a ``(H, W, 3) uint8`` image and a ``(H, W) uint8`` mask in ``0..num_classes-1``.
        """
        index = self._index(sample_id)
        width, height = self.size
        image, lesion, hair = _generate(self.seed, index, height, width)
        mask = lesion.astype(np.uint8)
        if self._label_hair:
            mask[hair > _HAIR_LABEL_ALPHA] = 2  # hair is drawn over the lesion, so it wins there too
        return Sample(id=sample_id, image=image, mask=mask)


@DATASETS.register("synthetic-multiclass")
class SyntheticMulticlass(SyntheticLesions):
    """The same images as ``synthetic`` (same seed, same pixels) with hair labelled: background (0), lesion
    (1), hair (2, where a hair covers more than half of the pixel)."""

    description: ClassVar[str] = "generated dermoscopy-like lesions with hair labelled (3 classes); no download"
    class_names: tuple[str, ...] = ("background", "lesion", "hair")
    _label_hair: ClassVar[bool] = True
