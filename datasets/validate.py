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

__all__ = ["ValidationReport", "check_masks", "missing_classes", "absent_classes", "validate_dataset"]


@dataclass
class ValidationReport:
    """What ``validate_dataset`` found.

    Attributes:
        dataset: The dataset's name, as a run would name it.
        checked: Number of images decoded and checked.
        problems: One message per problem, in the order found.
        notes: What was decided on the way (how ``mask_mode=auto`` reads the masks).
        warnings: Not errors, but results would mislead.
        built: The dataset as checked (None when it could not be built), with ``present``: the classes each
            good mask holds.
    """

    dataset: str
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    built: SegmentationDataset | None = None
    present: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, message: str) -> None:
        if message not in self.problems:  # the same bad file can surface through load_mask and load
            self.problems.append(message)


#: Datasets with at least this many images show a progress bar while their masks are checked.
PROGRESS_FROM = 200


def check_masks(
    dataset: SegmentationDataset, ids: Iterable[str] | None = None, *, progress: bool = True, name: str | None = None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Load every mask once: the classes each holds, and one message per mask that cannot be used.

    Args:
        dataset: The dataset (its ``mask_rule``, when it has one, is decided by the first load).
        ids: The images to check (default: all).
        progress: Show a progress bar on big datasets.
        name: The dataset's name in the run, for the fixes (default: its kind).

    Returns:
        ``{image id: classes present}`` for the good masks, and the problems (each naming its file). A mask
        whose every pixel is ignored is a problem: nothing of it can be scored, and it usually means the
        masks are misread (0/255 masks read as labels, where 255 is "ignore").
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
        if not present[sample_id].size:
            problems.append(f"{dataset.mask_file(sample_id)}: every pixel is ignored ({dataset.ignore_index}), so nothing "
                            f"of it is scored; {_misread_fix(dataset, name or dataset.name)}, or leave the image out")
    return present, problems


def _misread_fix(dataset: SegmentationDataset, name: str) -> str:
    """The likely fix of masks that hold no pixel of a declared class, or only ignored pixels, as one clause."""
    values = dataset.stored_mask_values()
    binary = next((fg for fg in (255, 1, 65535) if values and set(values) == {0, fg}), None)
    rule = dataset.describe_masks()
    if binary is not None and not rule.startswith("masks read as binary"):
        return (f"the masks hold only 0/{binary}, so they look binary: read them with --dataset-opt "
                f"{name}.mask_mode=binary (two classes: no num_classes, at most two class_names)")
    if binary is not None and "threshold" in rule:
        return f"the masks hold only 0/{binary}: drop binary_threshold, which puts every value on one side"
    return "check how the masks are read (mask_mode, class_names, num_classes, binary_threshold, ignore_value)"


def absent_classes(dataset: SegmentationDataset, present: dict[str, np.ndarray], name: str) -> list[str]:
    """One problem per run of declared classes that no mask of the dataset holds (``allow_absent_classes``
    excepted): a class nobody labelled is most often a misread (``class_names=bg,cell,membrane`` on 0/255
    masks), and its scores would be undefined. Names the classes, the values the masks hold and the fix;
    ``name`` is the dataset's name in the run."""
    problems = [f"{name}: allow_absent_classes={c!r} is not a class of the dataset ({', '.join(dataset.class_names)})"
                for c in dataset.allow_absent_classes if c not in dataset.class_names]
    absent = [n for n in missing_classes(dataset, present, present) if n not in dataset.allow_absent_classes]
    if absent and present and dataset.classes_from_user:
        values = dataset.stored_mask_values()
        held = (f"the mask files hold values {_shown(values)}" if values is not None else
                f"the masks hold classes {', '.join(repr(dataset.class_names[c]) for c in sorted(set().union(*(v.tolist() for v in present.values()))))}")
        rule = f" ({dataset.describe_masks()})" if dataset.describe_masks() else ""
        problems.append(
            f"{name}: no mask holds class{'es' if len(absent) > 1 else ''} {', '.join(repr(n) for n in absent)} of the "
            f"declared {', '.join(dataset.class_names)}; {held}{rule}; {_misread_fix(dataset, name)}; or, if a class is "
            f"absent on purpose, allow it with --dataset-opt {name}.allow_absent_classes={','.join(absent)}")
    return problems


def _shown(values: list[int], limit: int = 8) -> str:
    return str(values[:limit])[:-1] + (", ...]" if len(values) > limit else "]")


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


def validate_dataset(
    spec: str, *, data_dir: str | None = None, options: dict[str, Any] | None = None, progress: bool = True,
    name: str | None = None,
) -> ValidationReport:
    """Decode every image and mask of a dataset and report every problem found.

    Checked: the folder layout, files that cannot be decoded (corrupt, truncated), images without a mask,
    duplicate stems, image and mask (or ignore mask) of different sizes, mask values that are neither a
    class nor ignore, and listed files that are missing. A problem in one file does not stop the others.

    Args:
        spec: ``NAME`` or ``NAME:PATH`` as for ``segbench run --datasets``.
        data_dir: Folder of the datasets when the spec has no path (else ``$SEGBENCH_DATA_DIR``).
        options: Dataset options (as ``--dataset-opt``).
        progress: Progress bars on big datasets.
        name: The dataset's name in a run (default: as a run would name ``spec`` alone).

    Returns:
        The report; ``report.ok`` is True when nothing was found.
    """
    (entry,) = dataset_entries([spec])
    name = name or entry.name  # as a run names it: a folder dataset after its folder
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
    present, problems = check_masks(dataset, progress=progress, name=name)
    for problem in problems:
        report.add(problem)
    report.built, report.present = dataset, present
    try:
        scored = dataset.headline_class()
    except DataError as exc:
        report.add(str(exc))
    else:
        report.notes.append(f"{name}: headline scores {'the mean over classes' if scored == 'mean' else f'class {scored!r}'}"
                            f" (scored_class={scored})")
    for problem in absent_classes(dataset, present, name):
        report.add(problem)
    ids = dataset.ids()
    bar = tqdm(ids, desc=f"checking {name} images", leave=False, disable=not progress or len(ids) < PROGRESS_FROM or None)
    for sample_id in bar:
        report.checked += 1
        try:
            sample = dataset.load(sample_id)
        except DataError as exc:
            report.add(str(exc))
            continue
        except ValueError as exc:  # Sample's own shape checks
            report.add(f"{name} image {sample_id!r}: {exc}")
            continue
        if sample_id in present and present[sample_id].size and not sample.valid(ignore_index).any():
            report.add(f"{name} image {sample_id!r}: its ignore or field-of-view mask covers every pixel, so nothing "
                       "of it is scored; fix that mask or leave the image out")
        # Loaders check their values; this catches one that does not, against the Sample contract.
        values = np.unique(sample.mask)
        bad = values[(values != ignore_index) & ((values < 0) | (values >= num_classes))]
        if bad.size:
            report.add(
                f"{name} image {sample_id!r}: mask values {bad.tolist()[:10]} are not classes 0..{num_classes - 1} "
                f"nor ignore ({ignore_index}); relabel the mask"
            )
    for class_name in missing_classes(dataset, present, dataset.ids()) if present else []:
        if class_name in dataset.allow_absent_classes or not dataset.classes_from_user:
            report.warnings.append(f"{name}: class {class_name!r} has no pixel in any mask; its IoU and Dice are "
                                   "undefined (NaN) unless a method predicts it")
    if not dataset.ids():
        report.add(f"{name}: no images left to check; fix the problems above")
    return report
