"""The README's results tables: one row per method of a run folder's dataset (``segbench table RUN``).

The rows are the main comparison (whole training part, clean test images) with K folds pooled as the report
pools them (``segbench.report.rundata.pool_folds``): dataset-level scores from the summed confusion matrices of
every fold, per-image scores as means over every test image. With several seeds per method each score is the
mean over seeds ± its standard deviation; times are means. Which scores: ``DEFAULT_METRICS`` of
``segbench.measure.schema`` (those the run scored), or the ones named; the headline rule of the schema decides
the class (binary: the scored class; otherwise class means).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from segbench.measure.schema import MEAN, cell_column, metric
from segbench.report.rundata import RunData

__all__ = ["DEFAULT_METRICS", "summary_table"]

#: The scores of a table by default, binary then multi-class tasks (``labels`` and ``pixels`` metrics only
#: where the run has their columns).
DEFAULT_METRICS = {"binary": ("dice", "iou", "bf1", "cldice", "ece"),
                   "multi": ("iou", "pixel_accuracy", "mean_pixel_accuracy", "ece")}


def _score_columns(summary: pd.DataFrame, names: Sequence[str], cls: str | None, explicit: bool) -> dict[str, str]:
    """``{summary column: table header}`` of the metrics ``names`` (a default metric without columns is left out)."""
    columns: dict[str, str] = {}
    for name in names:
        spec = metric(name)
        if spec.source == "confusion" and spec.per_class:
            key = name if cls else f"mean_{name}"
            label = spec.label if cls else f"m{spec.label}"
            columns[cell_column(key, cls, aggregation="dataset")] = f"{label} (dataset)"
            columns[cell_column(key, cls, aggregation="per_image")] = f"{label} (per image)"
        elif spec.source == "confusion":
            columns[cell_column(name, aggregation="dataset")] = spec.label
        elif spec.source == "labels":
            if cls is None and not explicit:
                continue  # class means of boundary scores: only when asked for
            columns[cell_column(name, cls, aggregation="per_image") if cls else f"per_image_mean_{name}"] = \
                f"{spec.heading} (per image)"
        else:
            columns[name] = spec.heading
    missing = [c for c in columns if c not in summary.columns or not summary[c].notna().any()]
    if explicit and (bad := missing):
        raise ValueError(f"the run has no column(s) {bad} for the metrics asked for; it may not have scored them")
    return {c: h for c, h in columns.items() if c not in missing}


def summary_table(run: RunData, dataset: str | None = None, *, metrics: Sequence[str] | None = None) -> str:
    """The markdown table of one dataset of a run.

    Args:
        run: The run folder (``RunData.load``).
        dataset: The dataset; may be left out when the run has one.
        metrics: Score metrics by name (``dice,bf1,ece``), in order; default ``DEFAULT_METRICS``.

    Raises:
        ValueError: Several datasets and none chosen, an unknown dataset, or a metric the run lacks.
    """
    datasets = run.datasets()
    if dataset is None:
        if len(datasets) != 1:
            raise ValueError(f"{run.run_dir} has datasets {sorted(datasets)}: choose one with --dataset")
        dataset = datasets[0]
    if dataset not in datasets:
        raise ValueError(f"{run.run_dir} has no dataset {dataset!r}; it has {', '.join(datasets)}")
    ok = run.ok(dataset).copy()
    scored = run.scored_class(dataset)
    cls = None if scored == MEAN else scored
    names = list(metrics) if metrics is not None else DEFAULT_METRICS["binary" if cls else "multi"]
    for name in names if cls is None else ():  # a multi-class task's per-image label-map scores: class means
        if metric(name).source == "labels":
            per_class = [cell_column(name, c, aggregation="per_image") for c in run.class_names(dataset)]
            ok[f"per_image_mean_{name}"] = ok[[c for c in per_class if c in ok.columns]].mean(axis=1)
    cols = _score_columns(ok, names, cls, explicit=metrics is not None)
    if not cols:
        raise ValueError(f"{dataset}: none of the metrics {list(names)} has a column in the run")
    scores = list(cols)
    cols |= {"train_s": "train s"}
    # Runs since the budget clock (issue 22): a deep cell's CPU seconds of optimiser work and its kept epoch.
    charged = "charged_s" in ok.columns and ok["charged_s"].notna().any()
    cols |= {"charged_s": "optimiser s"} if charged else {}
    epochs = "epochs_run" in ok.columns and ok["epochs_run"].notna().any()
    cols |= {"epochs_run": "epochs"} if epochs else {}
    kept = epochs and "best_epoch" in ok.columns and ok["best_epoch"].notna().any()
    cols |= {"best_epoch": "epoch kept"} if kept else {}
    cols |= {"latency_ms_p50": "latency p50 ms"}
    grouped = ok.groupby(["method", "family"], sort=False)[list(cols)]
    mean, sd, seeds = grouped.mean(), grouped.std(ddof=1), grouped.size()
    several = bool((seeds > 1).any())
    mean = mean.reset_index().sort_values(["family", scores[0]], ascending=[True, False])
    header = ["method", "family", *(["seeds"] if several else []), *cols.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in mean.to_dict("records"):
        key = (row["method"], row["family"])
        cells = [f"`{row['method']}`", row["family"], *([str(seeds[key])] if several else [])]
        for col in scores:
            value, spread = row[col], sd.loc[key, col]
            cells.append(f"{value:.3f} ± {spread:.3f}" if several and seeds[key] > 1 else f"{value:.3f}")
        cells += [f"{row['train_s']:.0f}"]
        cells += [("" if pd.isna(row["charged_s"]) else f"{row['charged_s']:.0f}")] if charged else []
        cells += [("" if pd.isna(row["epochs_run"]) else f"{row['epochs_run']:.0f}")] if epochs else []
        cells += [("" if pd.isna(row["best_epoch"]) else f"{row['best_epoch']:.1f}")] if kept else []
        cells += [f"{row['latency_ms_p50']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
