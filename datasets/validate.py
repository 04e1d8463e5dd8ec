"""Check a whole dataset without running any method: every problem, each naming its file and the fix."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from segbench.datasets.base import DATASETS, SegmentationDataset, build_dataset, dataset_entries, parse_dataset_spec
from segbench.datasets.errors import DataError

__all__ = ["ValidationReport", "check_masks", "missing_classes", "validate_dataset"]


@dataclass
class ValidationReport:
    """What ``validate_dataset`` found.

    Attributes:
        dataset: The dataset's name, as a run would name it.
        checked: Number of images decoded and checked.
        problems: One message per problem, in the order found.
        notes: What was decided on the way (how ``mask_mode=auto`` reads the masks).
        warnings: Not errors, but results would mislead (a class no mask holds).
    """

    dataset: str
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, message: str) -> None:
        if message not in self.problems:  # the same bad file can surface through load_mask and load
            self.problems.append(message)


#: Datasets with at least this many images show a progress bar while their masks are checked.
PROGRESS_FROM = 200


def check_masks(
    dataset: SegmentationDataset, ids: Iterable[str] | None = None, *, progress: bool = True
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Load every mask once: the classes each holds, and one message per mask that cannot be used.

    Args:
        dataset: The dataset (its ``mask_rule``, when it has one, is decided by the first load).
        ids: The images to check (default: all).
        progress: Show a progress bar on big datasets.

    Returns:
        ``{image id: classes present}`` for the good masks, and the problems (each naming its file).
    """
    ids = list(dataset.ids() if ids is None else ids)
    present, problems = {}, []
    bar = tqdm(ids, desc=f"checking {dataset.name} masks", leave=False, disable=not progress or len(ids) < PROGRESS_FROM or None)
    for sample_id in bar:
        try:
            values = np.unique(dataset.load_mask(sample_id))
        except DataError as exc:
            problems.append(str(exc))
            continue
        present[sample_id] = values[values != dataset.ignore_index]
    return present, problems


def missing_classes(dataset: SegmentationDataset, present: dict[str, np.ndarray], ids: Iterable[str]) -> list[str]:
    """Names of the classes that no mask among ``ids`` holds (their IoU and Dice are undefined there)."""
    seen = set().union(*(present[i].tolist() for i in ids if i in present))
    return [n for c, n in enumerate(dataset.class_names) if c not in seen]


def _build(spec: str, data_dir: str | None, options: dict[str, Any] | None) -> SegmentationDataset:
    name, _ = parse_dataset_spec(spec)
    options = dict(options or {})
    # Lenient loaders record missing masks and duplicate stems instead of stopping at the first one.
    if "strict" in inspect.signature(DATASETS.get(name).__init__).parameters:
        options.setdefault("strict", False)
    return build_dataset(spec, data_dir=data_dir, options=options)


def validate_dataset(spec: str, *, data_dir: str | None = None, options: dict[str, Any] | None = None) -> ValidationReport:
    """Decode every image and mask of a dataset and report every problem found.

    Checked: the folder layout, files that cannot be decoded (corrupt, truncated), images without a mask,
    duplicate stems, image and mask (or ignore mask) of different sizes, mask values that are neither a
    class nor ignore, and listed files that are missing. A problem in one file does not stop the others.

    Args:
        spec: ``NAME`` or ``NAME:PATH`` as for ``segbench run --datasets``.
        data_dir: Folder of the datasets when the spec has no path (else ``$SEGBENCH_DATA_DIR``).
        options: Dataset options (as ``--dataset-opt``).

    Returns:
        The report; ``report.ok`` is True when nothing was found.
    """
    (entry,) = dataset_entries([spec])
    name = entry.name  # as a run names it: a folder dataset after its folder
    report = ValidationReport(name)
    try:
        dataset = _build(entry.spec, data_dir, options)
    except (DataError, ValueError, TypeError) as exc:  # nothing to iterate: the layout itself is wrong
        report.add(str(exc))
        return report
    for problem in dataset.index_problems():
        report.add(str(problem))
    try:
        num_classes, ignore_index = dataset.num_classes, dataset.ignore_index
        if dataset.describe_masks():
            report.notes.append(f"{name}: {dataset.describe_masks()}")
    except DataError as exc:
        report.add(str(exc))
        return report
    present, problems = check_masks(dataset)
    for problem in problems:
        report.add(problem)
    for sample_id in dataset.ids():
        report.checked += 1
        try:
            sample = dataset.load(sample_id)
        except DataError as exc:
            report.add(str(exc))
            continue
        except ValueError as exc:  # Sample's own shape checks
            report.add(f"{name} image {sample_id!r}: {exc}")
            continue
        # Loaders check their values; this catches one that does not, against the Sample contract.
        values = np.unique(sample.mask)
        bad = values[(values != ignore_index) & ((values < 0) | (values >= num_classes))]
        if bad.size:
            report.add(
                f"{name} image {sample_id!r}: mask values {bad.tolist()[:10]} are not classes 0..{num_classes - 1} "
                f"nor ignore ({ignore_index}); relabel the mask"
            )
    for class_name in missing_classes(dataset, present, dataset.ids()) if present else []:
        report.warnings.append(f"{name}: class {class_name!r} has no pixel in any mask; its IoU and Dice would be "
                               "undefined (NaN); check the masks or the class list")
    if not dataset.ids():
        report.add(f"{name}: no images left to check; fix the problems above")
    return report
