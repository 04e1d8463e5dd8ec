"""The results schema: every score column of ``summary.csv`` and ``per_image.csv``, declared once.

The runner writes its score columns through the builders here, and the report and ``segbench table`` read
them back through the parsers here, so a column's name is spelled in one place. Three kinds of metric:

* ``confusion``: scores of a confusion matrix (``segbench.measure.metrics``). Per image: ``<metric>_<class>``
  (and ``mean_<metric>``, ``pixel_accuracy``...); per cell: the same with the aggregation in front,
  ``dataset_<...>`` (pooled pixels) and ``per_image_<...>`` (mean over images).
* ``labels``: per-class scores of one label map against its truth (boundary F1, HD95, ...). Per image
  ``<metric>_<class>``; per cell ``per_image_<metric>_<class>``, the mean over images (NaN left out).
* ``pixels``: pooled over every test pixel of a cell (ECE, Brier): one ``<metric>`` column per cell.

**Adding a per-image metric**: write the function (``compute(truth, labels, num_classes, *, ignore_index,
ignore_mask, tolerance) -> {name: (C,) array}``, e.g. in ``segbench.measure``) and register its spec::

    register_metric(MetricSpec("my_score", "My score", higher_is_better=True, source="labels", compute=my_score))

The runner then scores it on every test image (``CellMeasures``), writes its columns, and the report's
"Boundaries and calibration" table and ``segbench table`` show it. Several specs may share one function
(BF1, HD95 and ASSD come from one boundary pass; the function is called once per image).

**The headline score** of a dataset: the class it declares (``scored_class``, recorded per cell in
summary.csv); by default a binary task's second class (``SCORED_CLASS``: lesion, vessel, person...) and any
other task's mean over classes (``MEAN``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from segbench.measure.boundary import boundary_scores, centreline_scores
from segbench.measure.metrics import flatten_scores

__all__ = [
    "AGGREGATIONS",
    "CLEAN",
    "MEAN",
    "METRICS",
    "SCORED_CLASS",
    "Column",
    "MetricSpec",
    "cell_column",
    "class_names_from_columns",
    "confusion_columns",
    "headline_column",
    "headline_label",
    "headline_values",
    "image_column",
    "image_metrics",
    "metric",
    "parse_column",
    "register_metric",
    "default_scored_class",
    "metric_names_in",
    "summary_metric_keys",
    "temporary_metric",
]

Source = Literal["confusion", "labels", "pixels"]
#: The two ways a cell aggregates a per-image score over its test images, as summary.csv's column prefixes.
AGGREGATIONS: tuple[str, ...] = ("dataset", "per_image")
#: Class index a binary task is scored on by default (its foreground: lesion, vessel...).
SCORED_CLASS = 1
#: The ``scored_class`` value meaning the headline is the mean over classes.
MEAN = "mean"
#: The ``corruption`` value of clean test images (severity 0).
CLEAN = "none"


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its column name, how it is shown and read, and (per-image label-map scores) how it is computed.

    Attributes:
        name: Column key (``dice``, ``bf1``, ``ece``).
        label: How tables show it (``"Dice"``, ``"HD95 px"``).
        higher_is_better: False for distances and errors (HD95, ECE).
        source: ``confusion``, ``labels`` or ``pixels`` (module docstring).
        per_class: One value per class (``dice_lesion``) or one per image/cell (``pixel_accuracy``, ``ece``).
        compute: For ``labels`` metrics, ``(truth, labels, num_classes, *, ignore_index, ignore_mask,
            tolerance) -> {name: (C,) float array}``; the runner calls it once per test image.
        opt_in: Computed only when a run asks for it by name (clDice: ``--cldice``; skeletons cost ~0.5 s/image).
        in_summary: Shown in the report's "Boundaries and calibration" table (``labels`` and ``pixels`` metrics).
        stage_effect: Compared per image before and after each stage in the report ("what each stage changes").
        unit: Shown after the label (``"px"``); a metric with a unit is shown without the class it is of.
        digits: Decimals shown.
    """

    name: str
    label: str
    higher_is_better: bool = True
    source: Source = "labels"
    per_class: bool = True
    compute: Callable[..., Mapping[str, np.ndarray]] | None = None
    opt_in: bool = False
    in_summary: bool = True
    stage_effect: bool = True
    unit: str = ""
    digits: int = 3

    @property
    def heading(self) -> str:
        """The label with its unit: ``"HD95 px"``."""
        return f"{self.label} {self.unit}" if self.unit else self.label

    def heading_of(self, class_label: str) -> str:
        """The label for a score of a class (``"BF1 lesion"``); a metric with a unit keeps its unit instead."""
        return self.heading if self.unit else f"{self.label} {class_label}"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", self.name):
            raise ValueError(f"metric name {self.name!r}: use lower-case letters, digits and single underscores")
        if self.source == "labels" and self.compute is None:
            raise ValueError(f"metric {self.name!r}: a 'labels' metric needs its compute function")


def _boundary(truth: np.ndarray, labels: np.ndarray, num_classes: int, *, ignore_index: int | None,
              ignore_mask: np.ndarray | None, tolerance: str | float) -> Mapping[str, np.ndarray]:
    return boundary_scores(truth, labels, num_classes, tolerance=tolerance, ignore_index=ignore_index,
                           ignore_mask=ignore_mask)


def _centreline(truth: np.ndarray, labels: np.ndarray, num_classes: int, *, ignore_index: int | None,
                ignore_mask: np.ndarray | None, tolerance: str | float) -> Mapping[str, np.ndarray]:
    return centreline_scores(truth, labels, num_classes, ignore_index=ignore_index, ignore_mask=ignore_mask)


#: Every metric, in column order (the order ``scores_from_confusion`` and the boundary pass write them).
METRICS: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Declare a metric (see the module docstring); its name must be new."""
    if spec.name in METRICS:
        raise ValueError(f"metric {spec.name!r} is registered twice")
    METRICS[spec.name] = spec
    return spec


@contextmanager
def temporary_metric(spec: MetricSpec) -> Iterator[MetricSpec]:
    """Register ``spec`` inside a ``with`` block only (tests, one-off experiments)."""
    saved = dict(METRICS)
    register_metric(spec)
    try:
        yield spec
    finally:
        METRICS.clear()
        METRICS.update(saved)


for _spec in (
    # Scalars of a confusion matrix, then its per-class scores (``metrics.SCALAR_KEYS``, ``metrics.ARRAY_KEYS``).
    MetricSpec("pixel_accuracy", "pixel acc.", source="confusion", per_class=False, in_summary=False, stage_effect=False),
    MetricSpec("mean_pixel_accuracy", "mean pixel acc.", source="confusion", per_class=False, in_summary=False,
               stage_effect=False),
    MetricSpec("iou", "IoU", source="confusion", in_summary=False, stage_effect=False),
    MetricSpec("dice", "Dice", source="confusion", in_summary=False),
    MetricSpec("precision", "precision", source="confusion", in_summary=False, stage_effect=False),
    MetricSpec("recall", "recall", source="confusion", in_summary=False, stage_effect=False),
    # Per image from the label map (``segbench.measure.boundary``).
    MetricSpec("bf1", "BF1", compute=_boundary),
    MetricSpec("hd95", "HD95", higher_is_better=False, compute=_boundary, unit="px", digits=1),
    MetricSpec("assd", "ASSD", higher_is_better=False, compute=_boundary, unit="px", digits=1, stage_effect=False),
    MetricSpec("cldice", "clDice", compute=_centreline, opt_in=True),
    # Pooled over a cell's test pixels (``segbench.measure.calibration``).
    MetricSpec("ece", "ECE", higher_is_better=False, source="pixels", per_class=False, stage_effect=False),
    MetricSpec("brier", "Brier", higher_is_better=False, source="pixels", per_class=False, stage_effect=False),
):
    register_metric(_spec)


def metric(name: str) -> MetricSpec:
    """The spec of a metric, by name."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


def image_metrics(opt_in: Sequence[str] = ()) -> list[MetricSpec]:
    """The ``labels`` metrics scored per test image: every one not opt-in, and the opt-in ones named."""
    unknown = [n for n in opt_in if n not in METRICS]
    if unknown:
        raise KeyError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
    return [m for m in METRICS.values() if m.source == "labels" and (not m.opt_in or m.name in opt_in)]


# ------------------------------------------------------------------------------------------------ columns


def image_column(name: str, class_name: str | None = None) -> str:
    """A per_image.csv column: ``dice_lesion`` (per class), ``pixel_accuracy``, ``mean_dice`` (class mean)."""
    return name if class_name is None else f"{name}_{class_name}"


def cell_column(name: str, class_name: str | None = None, *, aggregation: str | None = None) -> str:
    """A summary.csv column: ``dataset_dice_lesion``, ``per_image_bf1_lesion``, ``dataset_mean_iou``, ``ece``.

    ``aggregation`` is ``dataset`` or ``per_image`` (``labels`` metrics only have ``per_image``); ``pixels``
    metrics take none.
    """
    if aggregation is None:
        return image_column(name, class_name)
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation {aggregation!r}: use one of {', '.join(AGGREGATIONS)}")
    return f"{aggregation}_{image_column(name, class_name)}"


@dataclass(frozen=True)
class Column:
    """A parsed score column: its metric, class (None for a scalar), aggregation (None in per_image.csv),
    and whether it is the mean over classes (``mean_dice``)."""

    metric: str
    class_name: str | None = None
    aggregation: str | None = None
    class_mean: bool = False


def parse_column(column: str, *, aggregated: bool | None = None) -> Column | None:
    """The metric, class and aggregation of a score column, or None for any other column (``train_s``).

    Args:
        column: A column of summary.csv or per_image.csv.
        aggregated: True: only summary.csv's ``dataset_``/``per_image_`` columns; False: only per_image.csv's
            bare columns; None: either.
    """
    aggregation, rest = None, column
    for agg in AGGREGATIONS:
        if column.startswith(f"{agg}_") and aggregated is not False:
            aggregation, rest = agg, column[len(agg) + 1 :]
            break
    if aggregated and aggregation is None and column not in _pixel_columns():
        return None
    if aggregated is False and aggregation is not None:
        return None
    for name in sorted(METRICS, key=len, reverse=True):  # longest first: mean_pixel_accuracy before pixel_accuracy
        spec = METRICS[name]
        if spec.source == "pixels":
            if rest == name and aggregation is None:
                return Column(name)
            continue
        if not spec.per_class and rest == name:
            return Column(name, aggregation=aggregation)
        if spec.per_class and rest == f"mean_{name}":
            return Column(name, aggregation=aggregation, class_mean=True)
        if spec.per_class and rest.startswith(f"{name}_"):
            return Column(name, rest[len(name) + 1 :], aggregation)
    return None


def _pixel_columns() -> set[str]:
    return {m.name for m in METRICS.values() if m.source == "pixels"}


def class_names_from_columns(table: pd.DataFrame, dataset: str | None = None, *, name: str | None = None,
                             aggregation: str | None = "dataset") -> list[str]:
    """A dataset's class names in class order, read from its ``dataset_iou_<class>`` columns (or another
    metric's: ``name``, ``aggregation``; without ``name``, the first per-class metric the table has columns of).

    For tables alone (a committed reference folder has no cell records; ``RunData.class_names`` prefers
    cell.json). The runner writes per-class columns in class order; a run with several datasets has the union
    of their columns, so only those this dataset fills count.
    """
    rows = table if dataset is None or "dataset" not in table.columns else table[table["dataset"] == dataset]
    parsed = [(c, p) for c in table.columns if (p := parse_column(c)) and p.class_name is not None]
    if name is None:
        found = [(p.metric, p.aggregation) for _, p in parsed]
        order = [("iou", "dataset"), *((m, a) for m in METRICS for a in (*AGGREGATIONS, None))]
        name, aggregation = next((k for k in order if k in found), ("iou", aggregation))
    return [p.class_name for c, p in parsed  # type: ignore[misc]
            if p.metric == name and p.aggregation == aggregation and rows[c].notna().any()]


# ------------------------------------------------------------------------------------------------ headline


def default_scored_class(class_names: Sequence[str]) -> str:
    """The headline rule where nothing else is declared: a binary task's class ``SCORED_CLASS``, else ``MEAN``.

    A dataset may declare another (``SegmentationDataset.scored_class``, ``--dataset-opt NAME.scored_class=``);
    the runner records the one used in summary.csv's ``scored_class`` column.
    """
    return class_names[SCORED_CLASS] if len(class_names) == 2 else MEAN


def headline_label(scored: str) -> str:
    """What the headline score is of: the scored class's name, or ``"mean over classes"``."""
    return "mean over classes" if scored == MEAN else scored


def headline_column(name: str, scored: str, *, aggregation: str | None = None) -> str:
    """The column holding a metric's headline score (``scored``: a class or ``MEAN``), for metrics with a
    class-mean column (confusion ones): ``dataset_dice_lesion``, ``dataset_mean_dice``; without ``aggregation``
    the per_image.csv column (``dice_lesion``, ``mean_dice``)."""
    if scored == MEAN and metric(name).source != "confusion":
        raise ValueError(f"{name} has no class-mean column; use headline_values")
    return cell_column(f"mean_{name}" if scored == MEAN else name, None if scored == MEAN else scored,
                       aggregation=aggregation)


def headline_values(table: pd.DataFrame, name: str, scored: str, class_names: Sequence[str], *,
                    aggregation: str | None = None) -> pd.Series:
    """A metric's headline score per row of a table: the scored class's column; for ``MEAN`` the class-mean
    column where the runner wrote one (``mean_dice``: each image's mean, then averaged), else the mean over the
    class columns that are defined (NaN left out; NaN only where no class is)."""
    if scored != MEAN or metric(name).source == "confusion":
        return table[headline_column(name, scored, aggregation=aggregation)].astype(float)
    columns = [cell_column(name, c, aggregation=aggregation) for c in class_names]
    return table[[c for c in columns if c in table.columns]].astype(float).mean(axis=1, skipna=True)


def metric_names_in(table: pd.DataFrame, *, source: Source, aggregation: str | None = None) -> list[str]:
    """The metrics of a source that have a column in ``table``, in registry order (a run without ``--cldice``
    has no clDice columns; an older run no boundary columns)."""
    found = {p.metric for c in table.columns if (p := parse_column(c)) and p.aggregation == aggregation}
    return [m.name for m in METRICS.values() if m.source == source and m.name in found]


def summary_metric_keys(table: pd.DataFrame) -> dict[str, Any]:
    """``{name: spec}`` of the ``labels`` and ``pixels`` metrics a summary table has columns of, in order."""
    labels = metric_names_in(table, source="labels", aggregation="per_image")
    pixels = metric_names_in(table, source="pixels")
    return {n: METRICS[n] for n in (*labels, *pixels) if METRICS[n].in_summary}


def confusion_columns(scores: Mapping[str, Any], class_names: Sequence[str], *,
                      aggregation: str | None = None) -> dict[str, float]:
    """The columns of one confusion matrix's scores (``metrics.scores_from_confusion``): a per_image.csv row's
    (no aggregation) or a summary.csv row's ``dataset_``/``per_image_`` ones."""
    flat = flatten_scores(scores, class_names)  # ``<key>_<class>`` and scalars: ``image_column``'s names
    return {cell_column(key, aggregation=aggregation): value for key, value in flat.items()}
