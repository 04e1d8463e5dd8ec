"""CamVid street scenes (Brostow et al. 2009) in the SegNet tutorial layout: 11 classes plus void."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segbench.datasets.base import DATASETS, Sample, SegmentationDataset
from segbench.datasets.io import DataError, index_images, read_image, read_mask

__all__ = ["CamVid", "CAMVID_CLASSES", "CAMVID_VOID"]

CAMVID_CLASSES = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)
#: Label of unlabelled pixels in the SegNet annotations; loaded as ``ignore_index``.
CAMVID_VOID = 11
_SPLITS = ("train", "val", "test")


@DATASETS.register("camvid")
class CamVid(SegmentationDataset):
    """CamVid as SegNet's tutorial ships it: 11 classes, label 11 = void (ignored by training and metrics).

    Layout (``root`` may be this folder, its parent, or the folder of all datasets)::

        CamVid/train/*.png       CamVid/trainannot/*.png   CamVid/train.txt
        CamVid/val/*.png         CamVid/valannot/*.png     CamVid/val.txt
        CamVid/test/*.png        CamVid/testannot/*.png    CamVid/test.txt

    Annotations hold class indices 0..10 and 11 for void; void becomes ``ignore_index`` (255) at load. A
    ``<split>.txt`` lists ``image annotation`` path pairs per line; the paths are often absolute paths of
    the machine that wrote them (``/SegNet/CamVid/train/x.png``), so only the file names are used. Without a
    list, the split's folder is listed. Each split present is the dataset's own split (``predefined_split``);
    a split that is absent is empty, and the runner then scores on ``val``.

    Args:
        root: The CamVid folder or a folder above it.
        strict: True: raise on the first listed file that is missing. False: record each problem in
            ``index_problems()`` and leave the image out (``segbench validate``).
    """

    description = "CamVid street scenes, SegNet layout (11 classes, void ignored)"
    class_names = CAMVID_CLASSES
    #: 240 px on the longer side: 240x180, the native size of the copy used here (a 480x360 copy is halved).
    work_size = 240

    def __init__(self, root: str | Path | None, *, strict: bool = True) -> None:
        if root is None:
            raise DataError("camvid: no data folder; pass --data-dir DIR or set SEGBENCH_DATA_DIR to the folder holding CamVid")
        self.root = self._find(Path(root))
        self._problems: list[DataError] = []
        self._strict = strict
        self._files: dict[str, tuple[Path, Path]] = {}
        self._split: dict[str, list[str]] = {name: [] for name in _SPLITS}
        for split in _SPLITS:
            if (self.root / split).is_dir():
                for sample_id, pair in self._pairs(split).items():
                    if sample_id in self._files:
                        self._problem(
                            f"{pair[0]}: the id {sample_id!r} is also in {self._files[sample_id][0].parent.name}/; "
                            "an image may belong to one split only: remove one copy"
                        )
                        continue
                    self._files[sample_id] = pair
                    self._split[split].append(sample_id)
        if not self._files:
            raise DataError(f"{self.root}: no images in train/, val/ or test/; is this the SegNet CamVid folder?")

    @staticmethod
    def _find(root: Path) -> Path:
        candidates = [root, root / "CamVid", root / "camvid-240" / "CamVid", root / "camvid" / "CamVid", root / "camvid"]
        for c in candidates:
            if any((c / s).is_dir() and (c / f"{s}annot").is_dir() for s in _SPLITS):
                return c
        raise DataError(
            f"camvid: no train/ + trainannot/ (or val, test) folders found at {root} (looked in "
            f"{', '.join(str(c) for c in candidates)}); pass --data-dir pointing at the SegNet CamVid folder or its parent"
        )

    def _problem(self, message: str) -> None:
        if self._strict:
            raise DataError(message)
        self._problems.append(DataError(message))

    def _pairs(self, split: str) -> dict[str, tuple[Path, Path]]:
        """``id -> (image, annotation)`` for one split, from its list file if there is one."""
        images_dir, annot_dir = self.root / split, self.root / f"{split}annot"
        if not annot_dir.is_dir():
            self._problem(f"{annot_dir}: missing, so {split}/ has no labels; restore {split}annot/ or remove {split}/")
            return {}
        listing = self.root / f"{split}.txt"
        pairs: dict[str, tuple[Path, Path]] = {}
        if listing.is_file():
            for line_no, line in enumerate(listing.read_text().splitlines(), start=1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2:
                    self._problem(f"{listing}:{line_no}: expected 'image annotation' paths, got {line.strip()!r}")
                    continue
                # Only the names: the lists hold paths of the machine that made them.
                image, annot = images_dir / Path(parts[0]).name, annot_dir / Path(parts[1]).name
                missing = [p for p in (image, annot) if not p.is_file()]
                if missing:
                    self._problem(
                        f"{missing[0]}: listed in {listing.name} line {line_no} but not found; restore it or remove the line"
                    )
                    continue
                if image.stem in pairs:
                    self._problem(f"{listing}:{line_no}: {image.name} is listed twice; remove the repeated line")
                    continue
                pairs[image.stem] = (image, annot)
            return pairs
        sink: list[DataError] | None = None if self._strict else self._problems
        images = index_images(images_dir, f"{split} images", problems=sink)
        annots = index_images(annot_dir, f"{split} annotations", problems=sink)
        for stem, image in images.items():
            if stem in annots:
                pairs[stem] = (image, annots[stem])
            else:
                self._problem(f"{image}: no annotation {annot_dir.name}/{image.name}; add it or remove the image")
        return pairs

    def index_problems(self) -> list[DataError]:
        return list(self._problems)

    def config(self) -> dict[str, object]:
        return {"root": str(self.root)}

    def ids(self) -> list[str]:
        return list(self._files)

    def predefined_split(self) -> dict[str, list[str]]:
        return {name: list(ids) for name, ids in self._split.items()}

    def load_mask(self, sample_id: str) -> np.ndarray:
        path = self._files[sample_id][1]
        mask = read_mask(path)
        bad = np.setdiff1d(np.unique(mask), np.arange(CAMVID_VOID + 1))
        if bad.size:
            raise DataError(
                f"{path}: labels {bad.tolist()[:10]} are outside 0..{CAMVID_VOID} (11 classes + void); this loader takes "
                "SegNet's 11-class annotations: convert 32-class or colour labels first"
            )
        labels = mask.astype(np.uint8)
        labels[labels == CAMVID_VOID] = self.ignore_index
        return labels

    def load(self, sample_id: str) -> Sample:
        if sample_id not in self._files:
            raise KeyError(f"camvid has no image {sample_id!r}")
        image_path, annot_path = self._files[sample_id]
        image = read_image(image_path)
        mask = self.load_mask(sample_id)
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"{annot_path}: annotation is {mask.shape[1]}x{mask.shape[0]} but image {image_path.name} is "
                f"{image.shape[1]}x{image.shape[0]}; resize the annotation (nearest) to the image"
            )
        return Sample(sample_id, image, mask)
