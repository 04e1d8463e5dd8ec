"""Image and mask files -> arrays, with errors that name the file and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["DataError", "read_image", "read_mask", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


class DataError(ValueError):
    """A dataset file or folder that cannot be used as it is; the message says which and how to fix it."""


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path or the dataset's --data-dir")
    try:
        img = Image.open(path)
        img.load()  # decode now so a truncated file fails here, with its name
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot be decoded as an image ({exc}); re-export or remove the file") from exc
    return img


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as ``(H, W, 3) uint8`` RGB.

    Conversions, so that every method sees the same kind of array: greyscale is repeated into three
    channels, an alpha channel is dropped, palette images are expanded, and 16-bit or float images are
    rescaled from their own min..max to 0..255.
    """
    path = Path(path)
    img = _open(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        arr = np.repeat(np.rint(arr).astype(np.uint8)[..., None], 3, axis=2)
        return arr
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_mask(path: str | Path) -> np.ndarray:
    """Read a label mask as ``(H, W)`` array of class values (uint8 or int32).

    A colour mask whose three channels are equal (a 0/255 mask saved as RGB) is read as one channel;
    1-bit masks become 0/255. Palette masks keep their palette indices.
    """
    path = Path(path)
    img = _open(path)
    if img.mode == "1":
        return np.asarray(img, dtype=np.uint8) * 255
    arr = np.asarray(img)
    if arr.ndim == 3:
        rgb = arr[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return rgb[..., 0].copy()
        raise DataError(
            f"{path}: mask has colour values that differ between channels; save it as a single-channel "
            "label image (one class index per pixel) or give the dataset a colour-to-class map"
        )
    if arr.dtype not in (np.uint8, np.int32, np.uint16, np.int64):
        arr = arr.astype(np.int64)
    return arr.copy()
