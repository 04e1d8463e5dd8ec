"""ISBI 2012 EM membrane segmentation (Cardona et al. 2010; Arganda-Carreras et al. 2015)."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

import numpy as np

from segbench.datasets.base import DATASETS, Sample, SegmentationDataset
from segbench.datasets.io import DataError, index_images, read_image, read_mask, read_pages, to_rgb

__all__ = ["ISBI2012"]

_VOLUME, _LABELS = "train-volume.tif", "train-labels.tif"


def _natural(stem: str) -> tuple:
    """``"2" < "10"``: the slices are numbered without leading zeros."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", stem))


@DATASETS.register("isbi2012")
class ISBI2012(SegmentationDataset):
    """30 greyscale 512x512 serial-section EM slices of the Drosophila ventral nerve cord, with membranes labelled.

    Classes: 0 ``membrane`` (label value 0, black), 1 ``cell`` (label value 255, white: cell interior); label
    values are divided by 255, so class 1 is what the label images show as foreground. Values 0/1 are also
    accepted; anything else is an error. Images are greyscale and reach methods as three equal channels
    (``segbench.datasets.io.to_rgb``). There is no official split of the 30 labelled slices (the challenge's
    test labels were never released), so the runner's seeded split applies.

    Two layouts (``root`` may be the folder holding them or a folder above it):

    - PNG pairs, as in the U-Net tutorials: ``train/image/N.png`` and ``train/label/N.png``;
    - the challenge download: ``train-volume.tif`` and ``train-labels.tif``, multi-page TIFF stacks whose
      page ``N`` is sample ``"N"``.

    Args:
        root: Where the data is.
        strict: True: raise on the first image without a label. False: record each in ``index_problems()``
            and leave it out (``segbench validate``).
    """

    description = "ISBI 2012 EM membranes (greyscale; membrane vs cell)"
    class_names = ("membrane", "cell")
    #: The field scores the membranes: "cell" covers ~78% of the pixels, so a constant prediction of it scores
    #: ~0.88 Dice and would beat trained networks.
    scored_class = "membrane"

    def __init__(self, root: str | Path | None, *, strict: bool = True) -> None:
        if root is None:
            raise DataError("isbi2012: no data folder; pass --data-dir DIR or set SEGBENCH_DATA_DIR to the folder holding it")
        self._problems: list[DataError] = []
        self.root, layout = self._find(Path(root))
        self._pairs: dict[str, tuple[Path, Path]] = {}
        if layout == "volume":
            count = len(read_pages(self.root / _VOLUME))
            if len(self._label_pages) != count:
                raise DataError(
                    f"{self.root / _LABELS}: {len(self._label_pages)} page(s) but {_VOLUME} has {count}; "
                    "the stacks must hold the same slices"
                )
            self._ids = [str(i) for i in range(count)]
        else:
            sink = None if strict else self._problems
            images = index_images(self.root / "image", "image", problems=sink)
            labels = index_images(self.root / "label", "label", problems=sink)
            for stem in sorted(images, key=_natural):
                if stem in labels:
                    self._pairs[stem] = (images[stem], labels[stem])
                    continue
                error = DataError(f"{images[stem]}: no label/{stem}.png; add the label or remove the image")
                if strict:
                    raise error
                self._problems.append(error)
            self._ids = list(self._pairs)
        if not self._ids:
            raise DataError(f"{self.root}: no labelled images; is this the ISBI 2012 training data?")
        self.layout = layout

    @staticmethod
    def _find(root: Path) -> tuple[Path, str]:
        bases = [root, root / "isbi2012-em", root / "isbi2012"]
        candidates = [c for b in bases for c in (b, b / "train")]
        for c in candidates:
            if (c / "image").is_dir() and (c / "label").is_dir():
                return c, "png"
            if (c / _VOLUME).is_file() and (c / _LABELS).is_file():
                return c, "volume"
        raise DataError(
            f"isbi2012: neither train/image + train/label nor {_VOLUME} + {_LABELS} found at {root} (looked in "
            f"{', '.join(str(c) for c in candidates)}); pass --data-dir pointing at the ISBI 2012 data or its parent"
        )

    @cached_property
    def _label_pages(self) -> np.ndarray:
        return read_pages(self.root / _LABELS)

    @cached_property
    def _image_pages(self) -> np.ndarray:
        return read_pages(self.root / _VOLUME)

    def index_problems(self) -> list[DataError]:
        return list(self._problems)

    def config(self) -> dict[str, object]:
        return {"root": str(self.root), "layout": self.layout}

    def ids(self) -> list[str]:
        return list(self._ids)

    def _where(self, sample_id: str) -> tuple[str, str]:
        """Names of the image and label for messages."""
        if self.layout == "volume":
            return f"{self.root / _VOLUME} page {sample_id}", f"{self.root / _LABELS} page {sample_id}"
        image, label = self._pairs[sample_id]
        return str(image), str(label)

    def load_mask(self, sample_id: str) -> np.ndarray:
        if sample_id not in self._ids:
            raise KeyError(f"isbi2012 has no image {sample_id!r}")
        if self.layout == "volume":
            raw = self._label_pages[int(sample_id)]
            raw = raw if raw.ndim == 2 else raw[..., 0]
        else:
            raw = read_mask(self._pairs[sample_id][1])
        values = set(np.unique(raw).tolist())
        if not (values <= {0, 255} or values <= {0, 1}):
            bad = sorted(values - ({0, 1} if max(values) <= 1 else {0, 255}))
            raise DataError(
                f"{self._where(sample_id)[1]}: label values {bad[:10]} are not 0/255 "
                "(membrane/cell); threshold the label at 128 and save it as 0/255"
            )
        return (raw > 0).astype(np.uint8)

    def load(self, sample_id: str) -> Sample:
        mask = self.load_mask(sample_id)
        if self.layout == "volume":
            image = to_rgb(self._image_pages[int(sample_id)])
        else:
            image = read_image(self._pairs[sample_id][0])
        if mask.shape != image.shape[:2]:
            image_name, label_name = self._where(sample_id)
            raise DataError(
                f"{label_name}: label is {mask.shape[1]}x{mask.shape[0]} but image {image_name} is "
                f"{image.shape[1]}x{image.shape[0]}; resize the label (nearest) to the image"
            )
        return Sample(sample_id, image, mask)
