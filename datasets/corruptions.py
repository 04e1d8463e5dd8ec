"""Common image corruptions for robustness tests, after ImageNet-C (Hendrycks & Dietterich, ICLR 2019).

``corrupt(image, name, severity, seed=...)`` degrades one test image: ``uint8`` in, ``uint8`` out, same
shape, greyscale ``(H, W)`` or RGB ``(H, W, 3)``. Each corruption's five severities take the values of
ImageNet-C's ``make_imagenet_c.py`` (``SEVERITIES`` below; docs/robustness.md tabulates them). Only the
blur depends on image size: ImageNet-C's sigmas are in pixels of 224 px images, so they are scaled by the
shorter side / 224 and a severity blurs the same share of the image at any resolution. Noise is the only
random corruption; its generator is seeded by ``seed`` alone (callers fold the image id into it), so the
same image, name, severity and seed always give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import skimage.filters
from PIL import Image

__all__ = ["CORRUPTIONS", "SEVERITIES", "REFERENCE_SIDE", "corrupt"]

#: Side, in pixels, of the images ImageNet-C's parameters were set for (resized to 256, centre crop 224).
REFERENCE_SIDE = 224

#: Parameter of each corruption at severities 1-5, as published in ImageNet-C's ``make_imagenet_c.py``:
#: gaussian_noise: std of additive noise on [0, 1] intensities; gaussian_blur: sigma in pixels of a
#: 224 px image (scaled, see the module docstring); jpeg: Pillow JPEG quality; brightness: amount added
#: to HSV value on [0, 1]; contrast: factor applied to the deviation from each channel's mean.
SEVERITIES: dict[str, tuple[float, float, float, float, float]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "jpeg": (25, 18, 15, 10, 7),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
}


def _gaussian_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(scale=c, size=x.shape)


def _gaussian_blur(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    sigma = c * min(x.shape[:2]) / REFERENCE_SIDE
    return skimage.filters.gaussian(x, sigma=sigma, channel_axis=-1 if x.ndim == 3 else None, preserve_range=True)


def _brightness(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """ImageNet-C's ``hsv2rgb(rgb2hsv(x) with V + c)`` in closed form (about 6x faster than the round trip).

    Hue and saturation fixed, every channel is proportional to the value V = max channel, so the pixel is
    scaled by ``min(V + c, 1) / V``; black (V = 0, saturation 0) becomes grey ``c``. A grey image is its own V
    (same arithmetic as the grey image stacked to RGB, so both give the same bytes).
    """
    channels = x if x.ndim == 3 else x[..., None]
    value = channels.max(axis=2, keepdims=True)
    brighter = np.minimum(value + c, 1.0)
    scale = np.divide(brighter, value, out=np.zeros_like(value), where=value > 0)
    out = np.where(value > 0, channels * scale, brighter)
    return out if x.ndim == 3 else out[..., 0]


def _contrast(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    means = x.mean(axis=(0, 1), keepdims=True)
    return (x - means) * c + means


#: Corruptions on ``[0, 1]`` float images: ``(image, parameter, generator) -> image`` (clipped afterwards).
_FLOAT_CORRUPTIONS: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise,
    "gaussian_blur": _gaussian_blur,
    "brightness": _brightness,
    "contrast": _contrast,
}

#: Valid corruption names, in the order of the docs.
CORRUPTIONS: tuple[str, ...] = tuple(SEVERITIES)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:  # greyscale decodes as greyscale, RGB as RGB
        return np.asarray(decoded)


def corrupt(image: np.ndarray, name: str, severity: int, *, seed: int) -> np.ndarray:
    """``image`` with corruption ``name`` at ``severity`` (1 mildest to 5), reproducibly.

    Args:
        image: ``(H, W)`` or ``(H, W, 3)`` ``uint8``.
        name: One of ``CORRUPTIONS``.
        severity: 1 to 5.
        seed: Seed of the random corruptions (gaussian_noise); give each image its own (e.g. run seed and
            image id combined) so noise differs between images but not between runs.

    Returns:
        The corrupted image, ``uint8``, same shape.

    Raises:
        ValueError: Unknown name, severity outside 1-5, or an image that is not uint8 greyscale or RGB.
    """
    if name not in SEVERITIES:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or int(severity) != severity or not 1 <= severity <= 5:
        raise ValueError(f"corruption severity {severity!r} must be an integer from 1 to 5")
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"corrupt() takes a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape}")
    parameter = SEVERITIES[name][int(severity) - 1]
    if name == "jpeg":
        return _jpeg(image, int(parameter))
    x = image.astype(np.float64) / 255.0
    out = _FLOAT_CORRUPTIONS[name](x, parameter, np.random.default_rng(seed))
    # Round (ImageNet-C truncates with np.uint8): rounding leaves an unchanged pixel unchanged.
    return np.rint(np.clip(out, 0, 1) * 255.0).astype(np.uint8)
