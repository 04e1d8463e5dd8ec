"""MADS people segmentation (Zhang et al.) in the layout of Kaggle's "Segmentation Full Body MADS Dataset"."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segbench.datasets.base import DATASETS
from segbench.datasets.folder import ImageFolder
from segbench.datasets.io import DataError, read_raw_mask

__all__ = ["MADS"]

#: The folder inside the Kaggle download that holds images/ and masks/.
KAGGLE_FOLDER = "segmentation_full_body_mads_dataset_1192_img"


@DATASETS.register("mads")
class MADS(ImageFolder):
    """Full-body person masks from MADS (martial arts, dancing and sports video frames): background vs person.

    Layout of the Kaggle download (tapakah68, "Segmentation Full Body MADS Dataset")::

        segmentation_full_body_mads_dataset_1192_img/images/<name>.png
        segmentation_full_body_mads_dataset_1192_img/masks/<name>.png

    Image and mask share a file name. ``root`` may be that folder, a folder above it (any child whose name
    starts with ``segmentation_full_body_mads`` is found), or the folder of all datasets holding ``mads/``.
    Masks may be RGB (person white, background black) or greyscale 0/255 or 0/1: a mask's maximum over
    channels is taken, and a pixel is ``person`` where that is at least 128 (or at least 1 for 0/1 masks),
    which also absorbs the soft edges of resampled masks.

    This loader was written from the dataset's published description and tested on a generated copy of
    that layout only; no copy of MADS was available to check it against.

    Args:
        root: Where the data is.
        strict: As for ``folder``: False records missing masks and duplicate stems instead of raising.
    """

    description = "MADS full-body people (background, person), Kaggle layout"

    def __init__(self, root: str | Path | None, *, strict: bool = True) -> None:
        if root is None:
            raise DataError("mads: no data folder; pass --data-dir DIR or set SEGBENCH_DATA_DIR to the folder holding MADS")
        super().__init__(
            self._find(Path(root)),
            class_names=("background", "person"),
            mask_mode="binary",
            colors=None,
            ignore_dir=None,
            fov_dir=None,
            strict=strict,
        )

    @staticmethod
    def _find(root: Path) -> Path:
        bases = [root, root / "mads", root / "MADS"]
        candidates = []
        for base in bases:
            candidates.append(base)
            if base.is_dir():
                candidates += sorted(c for c in base.iterdir() if c.name.lower().startswith("segmentation_full_body_mads"))
        for c in candidates:
            if (c / "images").is_dir() and (c / "masks").is_dir():
                return c
        raise DataError(
            f"mads: no images/ + masks/ folders found at {root} or in {KAGGLE_FOLDER}/ below it; pass --data-dir "
            "pointing at the unpacked Kaggle download"
        )

    def config(self) -> dict[str, object]:
        return {"root": str(self.root)}

    def _binary_labels(self, mask: np.ndarray) -> np.ndarray:
        top = int(mask.max(initial=0))
        return (mask >= (128 if top > 1 else 1)).astype(np.uint8)

    def load_mask(self, sample_id: str) -> np.ndarray:
        raw = read_raw_mask(self._masks[sample_id])
        return self._binary_labels(raw.max(axis=2) if raw.ndim == 3 else raw)
