"""PH2 dermoscopy lesions (Mendonça et al., EMBC 2013), in the layout of the original download."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from segbench.datasets.base import DATASETS, Sample, SegmentationDataset
from segbench.datasets.io import DataError, read_image, read_mask

__all__ = ["PH2"]

_IMAGES_DIR = "PH2 Dataset images"
_ID = re.compile(r"IMD\d+")


def binarize(mask: np.ndarray) -> np.ndarray:
    """0/1 or 0/255 masks -> 0/1 uint8 (anything at or above half the maximum is foreground)."""
    top = int(mask.max()) if mask.size else 0
    return (mask >= max(1, top / 2)).astype(np.uint8) if top > 1 else (mask > 0).astype(np.uint8)


@DATASETS.register("ph2")
class PH2(SegmentationDataset):
    """PH2: 200 dermoscopy images (about 768x576) with lesion masks; classes background, lesion.

    Layout: ``<root>/PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` (or ``.png``) and
    ``IMDxxx_lesion/IMDxxx_lesion.bmp``. ``root`` may be that folder, a parent of it, or the folder of all
    datasets (``SEGBENCH_DATA_DIR``). ``IMDxxx_roi/`` (colour classes) is not used.
    """

    description = "PH2 dermoscopy lesions (background, lesion), original layout"
    class_names = ("background", "lesion")
    #: One size for every method: 256 px on the longer side (about 256x192) is the size the classical methods
    #: were tuned at; the smallest lesion (3% of an image) still covers about 1,500 pixels there and a boundary
    #: pixel stands for 3 original ones, where 128 px (the old deep default) blurs boundaries by 6.
    work_size = 256

    def __init__(self, root: str | Path | None) -> None:
        if root is None:
            raise DataError("ph2: no data folder; pass --data-dir DIR or set SEGBENCH_DATA_DIR to the folder holding PH2")
        self.images_dir = self._find(Path(root))
        self._ids = sorted(d.name for d in self.images_dir.iterdir() if d.is_dir() and _ID.fullmatch(d.name))
        if not self._ids:
            raise DataError(f"{self.images_dir}: no IMDxxx folders inside; is this the PH2 download?")

    @staticmethod
    def _find(root: Path) -> Path:
        candidates = [root, root / _IMAGES_DIR, root / "PH2Dataset" / _IMAGES_DIR, root / "ph2" / "PH2Dataset" / _IMAGES_DIR]
        for c in candidates:
            if c.name == _IMAGES_DIR and c.is_dir():
                return c
        raise DataError(
            f"ph2: no '{_IMAGES_DIR}' folder found at {root} (looked in {', '.join(str(c) for c in candidates[1:])}); "
            "pass --data-dir pointing at the PH2 download or the folder that holds it"
        )

    def config(self) -> dict[str, object]:
        return {"root": str(self.images_dir)}

    def ids(self) -> list[str]:
        return list(self._ids)

    def _image_path(self, sample_id: str) -> Path:
        folder = self.images_dir / sample_id / f"{sample_id}_Dermoscopic_Image"
        for suffix in (".bmp", ".png"):
            if (path := folder / f"{sample_id}{suffix}").is_file():
                return path
        raise DataError(f"{folder}: no {sample_id}.bmp or {sample_id}.png; restore the image or drop {sample_id}")

    def _mask_path(self, sample_id: str) -> Path:
        folder = self.images_dir / sample_id / f"{sample_id}_lesion"
        for suffix in (".bmp", ".png"):
            if (path := folder / f"{sample_id}_lesion{suffix}").is_file():
                return path
        raise DataError(f"{folder}: no {sample_id}_lesion.bmp; restore the mask or drop {sample_id}")

    def load_mask(self, sample_id: str) -> np.ndarray:
        return binarize(read_mask(self._mask_path(sample_id)))

    def load(self, sample_id: str) -> Sample:
        if sample_id not in self._ids:
            raise KeyError(f"ph2 has no image {sample_id!r}")
        image_path = self._image_path(sample_id)
        image = read_image(image_path)
        mask = self.load_mask(sample_id)
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"{self._mask_path(sample_id)}: mask is {mask.shape[1]}x{mask.shape[0]} but image {image_path.name} is "
                f"{image.shape[1]}x{image.shape[0]}; re-export the mask at the image's size"
            )
        return Sample(sample_id, image, mask)
