"""Any folder of images and masks: ``<root>/images/*`` matched to ``<root>/masks/*`` by file stem."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from segbench.datasets.base import DATASETS, IGNORE_INDEX, Sample, SegmentationDataset
from segbench.datasets.io import IMAGE_SUFFIXES, DataError, read_image, read_mask

__all__ = ["ImageFolder"]


def _index(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: no {what} folder; a folder dataset needs <root>/images/ and <root>/masks/")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        if path.stem in files:
            raise DataError(f"{path} and {files[path.stem]} share the stem {path.stem!r}; rename or remove one")
        files[path.stem] = path
    return files


@DATASETS.register("folder")
class ImageFolder(SegmentationDataset):
    """Images in ``<root>/images/`` and masks in ``<root>/masks/``, paired by file stem.

    Masks are either binary (values 0 and 255, or 0 and 1: foreground = class 1) or label maps with class
    indices ``0..C-1`` where 255 marks pixels to ignore. ``mask_mode="auto"`` decides from the masks: binary if
    every mask holds only 0/1 or only 0/255 values.

    Args:
        root: The folder holding ``images/`` and ``masks/``.
        class_names: Names of the classes in index order; default: ``background, foreground`` for binary masks,
            else ``class_0 .. class_{C-1}`` with C from ``num_classes`` or the largest label found.
        num_classes: Number of classes when names are not given.
        mask_mode: ``"auto"``, ``"binary"`` or ``"labels"``.
    """

    description = "any <root>/images + <root>/masks folder (binary 0/255 or label masks)"

    def __init__(
        self,
        root: str | Path | None,
        *,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        mask_mode: Literal["auto", "binary", "labels"] = "auto",
    ) -> None:
        if root is None:
            raise DataError("folder: no folder given; use --datasets folder:/path/to/root or --data-dir")
        if mask_mode not in ("auto", "binary", "labels"):
            raise ValueError(f"folder: mask_mode {mask_mode!r} is not one of auto, binary, labels")
        self.root = Path(root)
        images = _index(self.root / "images", "images")
        masks = _index(self.root / "masks", "masks")
        if not images:
            raise DataError(f"{self.root / 'images'}: no image files ({', '.join(IMAGE_SUFFIXES)}); add images or fix the path")
        missing = sorted(set(images) - set(masks))
        if missing:
            raise DataError(
                f"{self.root / 'masks'}: no mask for {len(missing)} image(s), e.g. {images[missing[0]].name}; "
                f"add masks/{missing[0]}.png or remove the image"
            )
        self._images, self._masks = images, {k: masks[k] for k in images}
        self._class_names = tuple(class_names) if class_names is not None else None
        self._num_classes = num_classes
        self._mode = mask_mode

    @cached_property
    def _binary(self) -> bool:
        if self._mode != "auto":
            return self._mode == "binary"
        for path in self._masks.values():
            values = set(np.unique(read_mask(path)).tolist())
            if not (values <= {0, 255} or values <= {0, 1}):
                return False
        return True

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        if self._class_names is not None:
            return self._class_names
        if self._num_classes is not None:
            return tuple(f"class_{i}" for i in range(self._num_classes))
        if self._binary:
            return ("background", "foreground")
        top = max(int(v) for p in self._masks.values() for v in np.unique(read_mask(p)) if v != IGNORE_INDEX)
        return tuple(f"class_{i}" for i in range(top + 1))

    def config(self) -> dict[str, object]:
        return {"root": str(self.root), "mask_mode": self._mode, "class_names": list(self.class_names)}

    def ids(self) -> list[str]:
        return list(self._images)

    def load_mask(self, sample_id: str) -> np.ndarray:
        path = self._masks[sample_id]
        mask = read_mask(path)
        if self._binary:
            return (mask > 0).astype(np.uint8)
        bad = np.setdiff1d(np.unique(mask), [*range(self.num_classes), self.ignore_index])
        if bad.size:
            raise DataError(
                f"{path}: mask values {bad.tolist()} are not classes 0..{self.num_classes - 1} nor ignore ({self.ignore_index}); "
                "relabel them or give class_names for every class"
            )
        return mask

    def load(self, sample_id: str) -> Sample:
        image = read_image(self._images[sample_id])
        mask = self.load_mask(sample_id)
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"{self._masks[sample_id]}: mask is {mask.shape[1]}x{mask.shape[0]} but image "
                f"{self._images[sample_id].name} is {image.shape[1]}x{image.shape[0]}; resize the mask (nearest) to the image"
            )
        return Sample(sample_id, image, mask)
