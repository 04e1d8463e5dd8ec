"""The report's boundary and calibration section of a dataset: a table, what each stage changes, and a
reliability diagram.

Reads the columns ``per_image_{bf1,hd95,assd,cldice}_<class>``, ``ece`` and ``brier`` of summary.csv and the
``reliability`` bins of each cell.json (``segbench.measure.cell_measures``). Runs written before these
columns existed get no section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segbench.measure.boundary import DEFAULT_TOLERANCE
from segbench.measure.schema import (
    MEAN,
    METRICS,
    cell_column,
    class_names_from_columns,
    headline_label,
    image_column,
    metric,
    metric_names_in,
    summary_metric_keys,
)
from segbench.report.figures import reliability_figure, save_figure
from segbench.report.format import fmt, fmt_ci
from segbench.report.stats import paired_difference
from segbench.report.render import Figure, Heading, Para, Table
from segbench.report.rundata import image_folds, scored_class
from segbench.run.records import slug

__all__ = ["measures_blocks", "measures_table", "reliability_table", "stage_effects_table"]

def _classes(summary: pd.DataFrame, rows: pd.DataFrame, keys: list[str]) -> list[str]:
    """Class names from the first per-image label-map metric's columns that ``rows`` fill."""
    return class_names_from_columns(rows.reindex(columns=summary.columns), name=keys[0], aggregation="per_image") if keys else []


def measures_table(summary: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, str]:
    """One row per method (means over seeds): every per-image label-map metric of ``segbench.measure.schema``
    (boundary scores, clDice when run) and the pooled pixel ones (ECE, Brier).

    The class the headline scores (``rundata.scored_class``: a binary dataset's lesion, ISBI's membrane), else
    the mean over the classes where a score is defined (NaN left out).

    Returns:
        ``(table, label)``: columns ``method, family``, then the metrics' names (``bf1, hd95, assd, [cldice],
        ece, brier``; empty when the run has no such columns), best first by the first metric; ``label`` names
        the class or ``"mean over classes"``.
    """
    ok = summary[(summary["dataset"] == dataset) & (summary["status"] == "ok")] if len(summary) else summary
    specs = summary_metric_keys(summary)
    keys = [k for k, m in specs.items() if m.source == "labels"]
    pixels = [k for k, m in specs.items() if m.source == "pixels"]
    columns = ["method", "family", *keys, *pixels]
    classes = _classes(summary, ok, keys) if len(ok) else []
    if not classes or "ece" not in ok:
        return pd.DataFrame(columns=columns), ""
    scored = scored_class(summary, dataset)
    rows = []
    for method, cells in ok.groupby("method", sort=False):
        row: dict[str, Any] = {"method": method, "family": cells["family"].iloc[0]}
        for key in keys:
            if scored != MEAN:
                row[key] = float(cells[cell_column(key, scored, aggregation="per_image")].mean())
            else:
                per_class = cells[[cell_column(key, c, aggregation="per_image") for c in classes]].to_numpy(float)
                row[key] = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan")
        for key in pixels:
            row[key] = float(cells[key].mean())
        rows.append(row)
    first = specs[keys[0]]
    table = pd.DataFrame(rows, columns=columns).sort_values(keys[0], ascending=not first.higher_is_better, kind="stable")
    return table.reset_index(drop=True), headline_label(scored)


def _per_image(per_image: pd.DataFrame, method: str, key: str, classes: list[str], scored: str) -> pd.DataFrame:
    """``(seeds x images)`` per-image values of a score: the scored class, else (``mean``) the mean over the
    classes where it is defined."""
    rows = per_image[per_image["method"] == method]
    columns = [image_column(key, c) for c in ([scored] if scored != MEAN else classes)]
    values = rows[columns].mean(axis=1, skipna=True)  # NaN only where no class is defined
    return rows.assign(value=values).pivot_table(index="seed", columns="image_id", values="value", dropna=False)


def stage_effects_table(summary: pd.DataFrame, per_image: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """What each stage changes: every pipeline whose spec without its last stage also ran (``slic`` ->
    ``slic+crf``), compared with it on the same test images.

    Dice and the per-image metrics marked ``stage_effect`` in ``segbench.measure.schema`` (BF1, HD95, clDice
    with ``--cldice``) of the scored class, or their means over classes, are paired per (seed, image) as the
    report's paired comparisons are: the mean difference (after - before) with
    its 95% interval from the paired comparisons' one statistic (``stats.paired_difference``: folds, or seeds
    and images, as the trained units); ECE before and
    after (per cell over all test pixels, mean over seeds and folds). Empty without such pairs or without
    boundary columns.
    """
    compared = [m.name for m in METRICS.values() if m.stage_effect]  # dice, bf1, hd95, cldice
    columns = ["pipeline", "before", *[f"d_{k}" for k in compared], "ece_before", "ece_after", "images"]
    ok = summary[(summary["dataset"] == dataset) & (summary["status"] == "ok")] if len(summary) else summary
    rows_here = per_image[per_image["dataset"] == dataset] if "dataset" in per_image.columns else per_image
    label_keys = [k for k, m in summary_metric_keys(summary).items() if m.source == "labels"]
    classes = _classes(summary, ok, label_keys) if len(ok) else []
    if not classes or rows_here.empty or "ece" not in ok:
        return pd.DataFrame(columns=columns)
    methods = list(dict.fromkeys(ok["method"]))
    ece = ok.groupby("method")["ece"].mean()
    present = metric_names_in(rows_here, source="labels") + metric_names_in(rows_here, source="confusion")
    keys = [k for k in compared if k in present]
    out = []
    for after in methods:
        before = after.rsplit("+", 1)[0]
        if "+" not in after or before not in methods:
            continue
        row: dict[str, Any] = {"pipeline": after, "before": before, **dict.fromkeys(f"d_{k}" for k in compared)}
        for key in keys:  # clDice only with --cldice; a missing score stays None
            scored = scored_class(summary, dataset)
            a, b = _per_image(rows_here, after, key, classes, scored), _per_image(rows_here, before, key, classes, scored)
            seeds, images = a.index.intersection(b.index), a.columns.intersection(b.columns)
            diff = a.loc[seeds, images].to_numpy(float) - b.loc[seeds, images].to_numpy(float)
            folds = image_folds(rows_here, after, [str(i) for i in images])
            row[f"d_{key}"] = paired_difference(diff, folds).interval if diff.size else None
            row["images"] = len(images)
        row["ece_before"], row["ece_after"] = float(ece[before]), float(ece[after])
        out.append(row)
    return pd.DataFrame(out, columns=columns)


def _stage_effects_display(table: pd.DataFrame, label: str) -> pd.DataFrame:
    out = {"pipeline": table["pipeline"], "vs": table["before"], "images": table["images"]}
    for column in [c for c in table.columns if c.startswith("d_")]:
        spec = metric(column.removeprefix("d_"))
        if spec.opt_in and not table[column].notna().any():
            continue  # an opt-in metric the run did not score (clDice without --cldice)
        out[f"Δ {spec.heading_of(label)} [95% CI]"] = [
            "–" if v is None else fmt_ci(v.estimate, v.low, v.high, digits=spec.digits, signed=True) for v in table[column]]
    out["ECE before → after"] = [f"{fmt(b)} → {fmt(a)}" for b, a in zip(table["ece_before"], table["ece_after"])]
    return pd.DataFrame(out)


def reliability_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Reliability bins of one method pooled over its cells (seeds): ``confidence, accuracy, count`` per bin.

    Args:
        records: The cells' ``cell.json`` contents, each with a ``reliability`` entry.
    """
    counts = np.array([r["reliability"]["count"] for r in records], dtype=float)  # (cells, bins)
    total = counts.sum(axis=0)
    pooled = {}
    for key in ("confidence", "accuracy"):  # count-weighted means; an empty bin's NaN weighs 0
        values = np.nan_to_num(np.array([r["reliability"][key] for r in records], dtype=float))
        with np.errstate(invalid="ignore", divide="ignore"):
            pooled[key] = np.where(total > 0, (values * counts).sum(axis=0) / total, np.nan)
    first = records[0]["reliability"]
    return pd.DataFrame({"lower": first["lower"], "upper": first["upper"], **pooled, "count": total})


def measures_blocks(run: Any, dataset: str, fig_dir: Path | None) -> list[Any]:
    """Heading, explanation, table and reliability diagram for one dataset of a ``RunData`` (or nothing)."""
    table, label = measures_table(run.summary, dataset)
    if table.empty:
        return []
    tolerance = (run.environment.get("config") or {}).get("boundary_tolerance", DEFAULT_TOLERANCE)
    blocks: list[Any] = [
        Heading(3, "Boundaries and calibration"),
        Para(f"Per-image means ({label}) of boundary F1 (tolerance {tolerance}"
              f"{' of the image diagonal' if str(tolerance).endswith('%') else ' px'}), HD95 and ASSD in pixels, "
              "and clDice; a class missing from exactly one of truth and prediction scores BF1 = clDice = 0 and "
              "HD95 = ASSD = the image diagonal. ECE (15 bins) and the multi-class Brier score pool every test "
              "pixel. Definitions: docs/metrics.md."),
        Table(table.rename(columns={k: metric(k).heading for k in table.columns[2:]})
              .map(lambda v: v if isinstance(v, str) else fmt(v))),
    ]
    effects = stage_effects_table(run.summary, run.per_image, dataset)
    if not effects.empty:
        blocks += [
            Para("What each stage changes, on the same test images: the mean per-image difference (after - before; "
                 "for HD95 negative is better) with its 95% interval from the paired comparisons' t reference on the "
                 "trained units (folds, or seeds and images), and the expected calibration error before and after the stage."),
            Table(_stage_effects_display(effects, label)),
        ]
    if fig_dir is None:
        return blocks
    curves = {}
    for method, cells in run.ok(dataset).groupby("method", sort=False):
        per_seed = [run.cell_records(dataset, method, s) for s in cells["seed"]]
        records = [r for folds in per_seed if folds for r in folds]  # every fold of every seed
        if records and all(folds for folds in per_seed) and all(r.get("reliability") for r in records):
            curves[method] = reliability_table(records)
    if curves:
        path = save_figure(reliability_figure(curves, dataset=dataset), fig_dir, f"reliability_{slug(dataset)}")
        blocks.append(Figure(path, f"{dataset}: reliability diagram over all test pixels (every seed): accuracy "
                                    "against mean top-class confidence per bin; the diagonal is perfect calibration, "
                                    "below it over-confident. Lower panel: share of pixels per bin."))
    return blocks
