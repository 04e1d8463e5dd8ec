"""The dataset interface: ``Sample`` and ``SegmentationDataset``, plus the dataset registry."""

from __future__ import annotations

import abc
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from segbench.datasets.errors import DataError
from segbench.measure.schema import default_scored_class
from segbench.registry import Registry

__all__ = [
    "Sample",
    "SegmentationDataset",
    "DATASETS",
    "SampleList",
    "IGNORE_INDEX",
    "DatasetEntry",
    "COMMON_OPTIONS",
    "build_dataset",
    "dataset_entries",
    "parse_dataset_spec",
]

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
    #: The class a binary headline (Dice, IoU) scores; None: the second class (lesion, foreground...), or on a
    #: multi-class dataset the mean over classes. ``--dataset-opt NAME.scored_class=CLASS`` (or ``mean``) sets it.
    scored_class: str | None = None
    #: Declared classes that may be absent from every mask (``--dataset-opt NAME.allow_absent_classes=a,b``);
    #: any other class the user declared that no mask holds stops the run before it starts (``validate.absent_classes``).
    allow_absent_classes: tuple[str, ...] = ()
    #: Whether the class list comes from the user (class_names, num_classes, a colour map): then a class no mask
    #: holds is most likely a misread and is refused. A loader's fixed list (CamVid's 11) only warns: a subset
    #: of the data may lack a class.
    classes_from_user: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def headline_class(self) -> str:
        """The class the headline scores (``scored_class``), or ``"mean"`` for the mean over classes.

        Raises:
            DataError: ``scored_class`` names no class of the dataset.
        """
        if self.scored_class is None:  # the schema's default rule: a binary task's second class, else the mean
            return default_scored_class(self.class_names)
        if self.scored_class != "mean" and self.scored_class not in self.class_names:
            raise DataError(f"{self.name}: scored_class={self.scored_class!r} is not a class of the dataset; choose one "
                            f"of {', '.join(self.class_names)} or mean (--dataset-opt NAME.scored_class=...)")
        return self.scored_class

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

    def describe_masks(self) -> str:
        """One line on how mask values become classes, where the dataset decides it from the files ("" if fixed)."""
        return ""

    def mask_file(self, sample_id: str) -> str:
        """Where a sample's mask is, for messages (a file path where the dataset has one)."""
        return f"{self.name} image {sample_id!r}"

    def stored_mask_values(self) -> list[int] | None:
        """Every value the mask files hold, before any rule maps them to classes (None: the loader maps fixed
        values itself, so the classes are what to show)."""
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


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
#: Dataset kinds that take any folder: named after the folder, since several can share one run.
_GENERIC_KINDS = ("folder",)


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of a run: its registered kind, its distinct name in the run, and its resolved spec.

    Attributes:
        kind: The registered dataset name (``folder``, ``ph2``).
        name: Unique in the run; names the split file, the report section and the rows of every table.
        spec: ``kind`` or ``kind:/absolute/path``: the same folder spelled ``x``, ``./x`` or ``/abs/x/`` gives
            one spec, so one cell key.
    """

    kind: str
    name: str
    spec: str

    def options(self, by_name: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """This dataset's options: those given for its kind, then those given for its own name."""
        return {**by_name.get(self.kind, {}), **(by_name.get(self.name, {}) if self.name != self.kind else {})}


def dataset_entries(specs: Sequence[str]) -> list[DatasetEntry]:
    """``--datasets`` items -> entries with distinct names and resolved paths.

    An item is ``NAME``, ``KIND:PATH`` or ``KIND:NAME=PATH``. Without ``NAME=``, a ``folder`` dataset is named
    after its folder and any other after its kind; repeated names get ``-2``, ``-3``...

    Raises:
        UnknownNameError: an unknown kind (the message lists the known ones).
        DataError: one folder listed twice.
    """
    entries: list[DatasetEntry] = []
    for item in specs:
        kind, path = parse_dataset_spec(item)
        name = None
        if path and "=" in path and _NAME.fullmatch(path.partition("=")[0]):
            name, _, path = path.partition("=")
        resolved = str(Path(os.path.expanduser(path)).resolve()) if path else None
        spec = f"{kind}:{resolved}" if resolved else kind
        if any(e.spec == spec for e in entries):
            raise DataError(f"--datasets lists {item!r} twice (as {spec}); list each dataset once")
        if name is None:
            base = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(resolved).name).strip("_") if resolved and kind in _GENERIC_KINDS else ""
            name = base or kind
        taken = {e.name for e in entries}
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f"{name}-{n}"
        entries.append(DatasetEntry(kind, unique, spec))
    return entries


#: Options every dataset takes, whatever its loader (``--dataset-opt NAME.KEY=VALUE``): set on the built
#: dataset by ``build_dataset``, not passed to its loader.
COMMON_OPTIONS: dict[str, Any] = {"scored_class": str, "allow_absent_classes": tuple[str, ...]}


def build_dataset(spec: str, *, data_dir: str | None = None, options: dict | None = None) -> SegmentationDataset:
    """Build a dataset from ``name`` or ``name:path``.

    The folder is, in order: the path in the spec, ``data_dir``, the environment variable ``SEGBENCH_DATA_DIR``.
    """
    name, path = parse_dataset_spec(spec)
    root = path or data_dir or os.environ.get("SEGBENCH_DATA_DIR") or None
    options = dict(options or {})
    common = {k: options.pop(k) for k in COMMON_OPTIONS if k in options}
    dataset = DATASETS.get(name)(root, **options)
    if "scored_class" in common:
        dataset.scored_class = common["scored_class"]
    if "allow_absent_classes" in common:
        dataset.allow_absent_classes = tuple(common["allow_absent_classes"])
    return dataset
