"""The dataset interface: ``Sample`` and ``SegmentationDataset``, plus the dataset registry."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from segbench.registry import Registry

__all__ = ["Sample", "SegmentationDataset", "DATASETS", "SampleList", "IGNORE_INDEX", "build_dataset", "parse_dataset_spec"]

#: Label value that marks pixels excluded from training and metrics (void, outside the field of view).
IGNORE_INDEX = 255


@dataclass(frozen=True)
class Sample:
    """One image with its ground truth.

    Attributes:
        id: Stable identifier, unique within the dataset (used in splits, records and file names).
        image: ``(H, W, 3) uint8`` RGB image.
        mask: ``(H, W)`` integer class indices in ``0..C-1``; ``ignore_index`` marks pixels to ignore.
        ignore: Optional ``(H, W) bool``; True where a pixel is excluded from training and metrics.
    """

    id: str
    image: np.ndarray
    mask: np.ndarray
    ignore: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(f"sample {self.id!r}: image must be (H, W, 3), got shape {self.image.shape}")
        if self.mask.shape != self.image.shape[:2]:
            raise ValueError(
                f"sample {self.id!r}: mask shape {self.mask.shape} does not match image shape "
                f"{self.image.shape[:2]}; resize the mask with nearest-neighbour interpolation to the image"
            )
        if self.ignore is not None and self.ignore.shape != self.mask.shape:
            raise ValueError(f"sample {self.id!r}: ignore shape {self.ignore.shape} != mask shape {self.mask.shape}")

    def valid(self, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
        """``(H, W) bool``: pixels that count (neither ``ignore_index`` nor in the ignore mask)."""
        valid = self.mask != ignore_index
        if self.ignore is not None:
            valid &= ~self.ignore
        return valid


class SegmentationDataset(abc.ABC):
    """A registered dataset: a fixed list of ids and a way to load each one as a ``Sample``.

    Subclasses set ``class_names`` (and optionally ``ignore_index``) and implement ``ids`` and ``load``.
    ``ids`` must not decode images, so that splits and resume checks stay cheap.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    ignore_index: int = IGNORE_INDEX
    class_names: tuple[str, ...]
    #: The working resolution the dataset's protocol gives every method and stage (a ``WorkSize``: longer
    #: side or (width, height)), so methods are compared at one size; ``--size`` overrides it. None: the
    #: dataset declares none and each method works at its own ``default_work_size``.
    work_size: int | tuple[int, int] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @abc.abstractmethod
    def ids(self) -> list[str]:
        """All sample ids in a fixed order, without decoding any image."""

    @abc.abstractmethod
    def load(self, sample_id: str) -> Sample:
        """Decode one sample."""

    def load_mask(self, sample_id: str) -> np.ndarray:
        """The mask alone (used to stratify splits); override where it is cheaper than ``load``."""
        return self.load(sample_id).mask

    def predefined_split(self) -> dict[str, list[str]] | None:
        """The dataset's own train/val/test split, if it ships one (CamVid does); else None."""
        return None

    def config(self) -> dict[str, object]:
        """Settings that identify this dataset instance in records (root folder, size, seed...)."""
        return {}

    def index_problems(self) -> list[Exception]:
        """Problems found while listing files (a missing mask, a duplicate stem), each naming the file and the fix.

        Loaders built with ``strict=False`` (as ``segbench validate`` builds them) record these and leave the
        affected images out instead of raising on the first; strict loaders raise, so this stays empty.
        """
        return []

    def __len__(self) -> int:
        return len(self.ids())

    def __getitem__(self, index: int | str) -> Sample:
        sample_id = self.ids()[index] if isinstance(index, int) else index
        return self.load(sample_id)

    def subset(self, ids: Sequence[str]) -> "SampleList":
        return SampleList(self, list(ids))


class SampleList(Sequence[Sample]):
    """The samples of a split, decoded lazily: what ``Method.fit`` receives as ``train`` and ``val``."""

    def __init__(self, dataset: SegmentationDataset, ids: list[str]) -> None:
        self.dataset = dataset
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return SampleList(self.dataset, self.ids[index])
        return self.dataset.load(self.ids[index])

    def __iter__(self) -> Iterator[Sample]:
        for sample_id in self.ids:
            yield self.dataset.load(sample_id)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def ignore_index(self) -> int:
        return self.dataset.ignore_index


DATASETS: Registry[type[SegmentationDataset]] = Registry("dataset")


def parse_dataset_spec(spec: str) -> tuple[str, str | None]:
    """``"ph2"`` -> ``("ph2", None)``; ``"folder:/data/mine"`` -> ``("folder", "/data/mine")``."""
    name, _, path = spec.partition(":")
    DATASETS.get(name.strip())
    return name.strip(), (path or None)


def build_dataset(spec: str, *, data_dir: str | None = None, options: dict | None = None) -> SegmentationDataset:
    """Build a dataset from ``name`` or ``name:path``.

    The folder is, in order: the path in the spec, ``data_dir``, the environment variable ``SEGBENCH_DATA_DIR``.
    """
    import os

    name, path = parse_dataset_spec(spec)
    root = path or data_dir or os.environ.get("SEGBENCH_DATA_DIR") or None
    return DATASETS.get(name)(root, **(options or {}))
