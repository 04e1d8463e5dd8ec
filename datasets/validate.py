"""Check a whole dataset without running any method: every problem, each naming its file and the fix."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segbench.datasets.base import DATASETS, SegmentationDataset, build_dataset, parse_dataset_spec
from segbench.datasets.io import DataError

__all__ = ["ValidationReport", "validate_dataset"]


@dataclass
class ValidationReport:
    """What ``validate_dataset`` found.

    Attributes:
        dataset: The dataset's registered name.
        checked: Number of images decoded and checked.
        problems: One message per problem, in the order found.
    """

    dataset: str
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, message: str) -> None:
        if message not in self.problems:  # the same bad file can surface through load_mask and load
            self.problems.append(message)


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
    name, _ = parse_dataset_spec(spec)
    report = ValidationReport(name)
    try:
        dataset = _build(spec, data_dir, options)
    except (DataError, ValueError, TypeError) as exc:  # nothing to iterate: the layout itself is wrong
        report.add(str(exc))
        return report
    for problem in dataset.index_problems():
        report.add(str(problem))
    try:
        num_classes, ignore_index = dataset.num_classes, dataset.ignore_index
    except DataError as exc:
        report.add(str(exc))
        return report
    for sample_id in dataset.ids():
        report.checked += 1
        try:
            dataset.load_mask(sample_id)
        except DataError as exc:
            report.add(str(exc))
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
    if not dataset.ids():
        report.add(f"{name}: no images left to check; fix the problems above")
    return report
