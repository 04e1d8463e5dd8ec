"""Test-image corruptions (stand-in for helper G's module of the same name and signature, replaced at merge).

``corrupt(image, name, severity, *, seed)`` returns a corrupted copy of an ``(H, W, 3) uint8`` image,
deterministic for a given seed.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["CORRUPTIONS", "corrupt"]

#: Severity 1..5 -> parameter (noise sigma in grey levels, blur radius in pixels, JPEG quality,
#: brightness offset, contrast factor).
_PARAMS = {
    "gaussian_noise": (8, 16, 24, 32, 48),
    "gaussian_blur": (0.5, 1.0, 1.5, 2.0, 3.0),
    "jpeg": (80, 60, 40, 25, 10),
    "brightness": (20, 40, 60, 80, 100),
    "contrast": (0.8, 0.6, 0.45, 0.3, 0.2),
}
CORRUPTIONS = tuple(_PARAMS)


def corrupt(image: np.ndarray, name: str, severity: int, *, seed: int) -> np.ndarray:
    """A corrupted copy of ``image``; ``severity`` in 1..5."""
    if name not in _PARAMS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity {severity} must be in 1..5")
    p = _PARAMS[name][severity - 1]
    x = image.astype(np.float32)
    if name == "gaussian_noise":
        x = x + np.random.default_rng(seed).normal(0.0, p, x.shape)
    elif name == "gaussian_blur":
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(p)))
    elif name == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=p)
        return np.asarray(Image.open(buffer).convert("RGB"))
    elif name == "brightness":
        x = x + p
    else:
        x = (x - x.mean()) * p + x.mean()
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
