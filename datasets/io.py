"""Image and mask files -> arrays, with errors that name the file and the fix.

Every method takes one kind of input, an ``(H, W, 3) uint8`` RGB array; ``to_rgb`` is the one documented
conversion into it, used for files (``read_image``) and for arrays given to ``Method.predict_proba``:

- greyscale ``(H, W)`` or ``(H, W, 1)``: the channel is repeated three times (EM, X-ray, CT slices);
- greyscale + alpha ``(H, W, 2)`` and RGBA ``(H, W, 4)``: the alpha channel is dropped, not composited;
- ``uint8``: kept; ``bool``: False/True -> 0/255;
- any other dtype (16-bit, 32-bit integer, float): rescaled linearly from the image's own minimum..maximum
  to 0..255 (a constant image becomes 0). 16-bit scientific images often fill only part of their range
  (a 12-bit sensor), so a fixed ``/257`` would leave them nearly black; the price is that absolute
  intensity is not comparable between images.

Decoded arrays are cached on disk by file content (``segbench.datasets.cache``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from segbench.datasets.cache import cached_decode
from segbench.datasets.errors import DataError

__all__ = [
    "DataError",
    "IMAGE_SUFFIXES",
    "index_images",
    "read_image",
    "read_mask",
    "read_raw_mask",
    "read_pages",
    "to_rgb",
]

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Any image array -> ``(H, W, 3) uint8`` RGB, by the conversion in this module's docstring.

    Args:
        image: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 2)``, ``(H, W, 3)`` or ``(H, W, 4)`` of any real dtype.

    Returns:
        The image itself when it is already ``(H, W, 3) uint8``, else a new array.

    Raises:
        ValueError: another shape, naming it and the shapes accepted.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return image
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4) or min(image.shape[:2]) == 0:
        raise ValueError(
            f"image of shape {image.shape} is not an image; give (H, W) greyscale, (H, W, 3) RGB or (H, W, 4) RGBA"
        )
    image = image[..., :1] if image.shape[2] in (1, 2) else image[..., :3]
    if image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        values = image.astype(np.float64)
        lo, hi = float(values.min()), float(values.max())
        values = np.zeros_like(values) if hi <= lo else (values - lo) * (255.0 / (hi - lo))
        image = np.rint(values).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image


def _decode(path: Path, data: bytes) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # decode now so a truncated file fails here, with its name
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot be decoded as an image ({exc}); re-export or remove the file") from exc
    return img


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return to_rgb(np.asarray(img))
    if img.mode == "LA":
        img = img.convert("L")
    return to_rgb(np.asarray(img.convert("RGB") if img.mode != "L" else img, dtype=np.uint8))


def _size_variant(shape: tuple[int, int] | None) -> str:
    if shape is None:
        return ""
    h, w = (int(v) for v in shape)
    if h <= 0 or w <= 0:
        raise ValueError(f"shape {shape} is not a size; give (height, width) with both > 0")
    return f"{h}x{w}"


def read_image(path: str | Path, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image as ``(H, W, 3) uint8`` RGB (see ``to_rgb``; palette and CMYK files are expanded).

    Args:
        path: Image file.
        shape: Optional ``(height, width)`` to resize to (bilinear, antialiased); the resized array is
            cached under its own key.
    """
    path = Path(path)

    def decode(data: bytes) -> np.ndarray:
        image = _pil_to_rgb(_decode(path, data))
        if shape is not None:
            from segbench.datasets.transforms import resize_image  # torch costs ~0.5 s: only when resizing

            image = np.ascontiguousarray(resize_image(image, (int(shape[0]), int(shape[1]))))
        return image

    return cached_decode(path, "image", decode, variant=_size_variant(shape))


def _raw_mask(path: Path, data: bytes) -> np.ndarray:
    img = _decode(path, data)
    if img.mode == "1":
        return np.asarray(img, dtype=np.uint8) * 255
    arr = np.asarray(img)
    if img.mode in ("LA", "PA"):  # alpha is not a label: keep the grey value or palette index
        arr = arr[..., 0]
    elif img.mode in ("RGBA", "RGBX", "RGBa"):
        arr = arr[..., :3]
    elif img.mode not in ("L", "P", "RGB", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img.convert("RGB"))  # CMYK, YCbCr...: compare colours in RGB
    if arr.dtype not in (np.uint8, np.uint16, np.int32, np.int64):
        arr = arr.astype(np.int64)
    return arr.copy()


def read_raw_mask(path: str | Path) -> np.ndarray:
    """Read a mask file's values as stored: ``(H, W)`` (greyscale, palette indices, 1-bit as 0/255) or
    ``(H, W, 3)`` for colour masks (alpha dropped). Use it with a colour-to-class map."""
    path = Path(path)
    return cached_decode(path, "raw-mask", lambda data: _raw_mask(path, data))


def read_mask(path: str | Path, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a label mask as ``(H, W)`` array of class values (uint8, uint16 or int32).

    A colour mask whose three channels are equal (a 0/255 mask saved as RGB) is read as one channel;
    1-bit masks become 0/255; palette (mode ``P``) masks keep their palette indices, which are the classes.

    Args:
        path: Mask file.
        shape: Optional ``(height, width)`` to resize to, nearest-neighbour (labels are never blended).

    Raises:
        DataError: a colour mask with differing channels (it needs a colour-to-class map).
    """
    path = Path(path)

    def decode(data: bytes) -> np.ndarray:
        arr = _raw_mask(path, data)
        if arr.ndim == 3:
            if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
                raise DataError(
                    f"{path}: mask has colour values that differ between channels; save it as a single-channel "
                    "label image (one class index per pixel) or give the dataset a colour-to-class map (colors.csv)"
                )
            arr = arr[..., 0].copy()
        if shape is not None:
            from segbench.datasets.transforms import resize_mask  # torch (0.5 s) only when resizing, as above

            arr = np.ascontiguousarray(resize_mask(arr, (int(shape[0]), int(shape[1]))))
        return arr

    return cached_decode(path, "mask", decode, variant=_size_variant(shape))


def read_pages(path: str | Path) -> np.ndarray:
    """Every page of a multi-page image (a TIFF stack such as ISBI's ``train-volume.tif``) as ``(N, H, W)``
    (greyscale pages) or ``(N, H, W, C)``; the values are as stored (no conversion)."""
    path = Path(path)

    def decode(data: bytes) -> np.ndarray:
        img = _decode(path, data)
        try:
            pages = [np.asarray(page) for page in ImageSequence.Iterator(img)]
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: a page cannot be decoded ({exc}); re-export the stack") from exc
        shapes = {p.shape for p in pages}
        if len(shapes) != 1:
            raise DataError(f"{path}: pages have different shapes {sorted(shapes)}; every slice must be the same size")
        return np.stack(pages)

    return cached_decode(path, "pages", decode)


def index_images(folder: Path, what: str, *, problems: list[DataError] | None = None) -> dict[str, Path]:
    """Image files in ``folder`` by stem, sorted by name (hidden files and other suffixes skipped).

    Args:
        folder: The folder to list.
        what: What the folder holds, for messages (``"images"``, ``"masks"``).
        problems: None: raise on the first duplicate stem. A list: append each duplicate's error and leave
            that stem out (how ``segbench validate`` reports every problem).

    Raises:
        DataError: ``folder`` is not a folder, or (with ``problems=None``) two files share a stem.
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: no {what} folder here; check the dataset's path or --data-dir")
    files: dict[str, Path] = {}
    duplicates: set[str] = set()
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith(".") or not path.is_file():
            continue
        if path.stem in files:
            error = DataError(f"{path} and {files[path.stem]} share the stem {path.stem!r}; rename or remove one")
            if problems is None:
                raise error
            problems.append(error)
            duplicates.add(path.stem)
            continue
        files[path.stem] = path
    return {stem: p for stem, p in files.items() if stem not in duplicates}
