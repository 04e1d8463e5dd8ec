"""The report's boundary and calibration section of a dataset: a table and a reliability diagram.

Reads the columns ``per_image_{bf1,hd95,assd,cldice}_<class>``, ``ece`` and ``brier`` of summary.csv and the
``reliability`` bins of each cell.json (``segbench.measure.cell_measures``). Runs written before these
columns existed get no section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segbench.measure.boundary import BOUNDARY_KEYS, DEFAULT_TOLERANCE
from segbench.report.figures import reliability_figure, save_figure
from segbench.report.format import fmt
from segbench.report.render import Figure, Heading, Para, Table
from segbench.run.records import slug

__all__ = ["measures_blocks", "measures_table", "reliability_table"]

_LABELS = {"bf1": "BF1", "hd95": "HD95 px", "assd": "ASSD px", "cldice": "clDice", "ece": "ECE", "brier": "Brier"}


def _classes(summary: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    prefix = "per_image_bf1_"
    return [c[len(prefix):] for c in summary.columns if c.startswith(prefix) and rows[c].notna().any()]


def measures_table(summary: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, str]:
    """One row per method (means over seeds): boundary scores, clDice, ECE and Brier.

    Binary datasets show the foreground class (the second); multi-class ones the mean over the classes where a
    score is defined (NaN left out).

    Returns:
        ``(table, label)``: columns ``method, family, bf1, hd95, assd, cldice, ece, brier`` (empty when the run
        has no such columns), best BF1 first; ``label`` names the class or ``"mean over classes"``.
    """
    ok = summary[(summary["dataset"] == dataset) & (summary["status"] == "ok")] if len(summary) else summary
    keys = [k for k in BOUNDARY_KEYS if any(c.startswith(f"per_image_{k}_") for c in summary.columns)]  # cldice: opt-in
    columns = ["method", "family", *keys, "ece", "brier"]
    classes = _classes(summary, ok) if len(ok) else []
    if not classes or "ece" not in ok:
        return pd.DataFrame(columns=columns), ""
    label = classes[1] if len(classes) == 2 else "mean over classes"
    rows = []
    for method, cells in ok.groupby("method", sort=False):
        row: dict[str, Any] = {"method": method, "family": cells["family"].iloc[0]}
        for key in keys:
            if len(classes) == 2:
                row[key] = float(cells[f"per_image_{key}_{classes[1]}"].mean())
            else:
                per_class = cells[[f"per_image_{key}_{c}" for c in classes]].to_numpy(float)
                row[key] = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan")
        row["ece"], row["brier"] = float(cells["ece"].mean()), float(cells["brier"].mean())
        rows.append(row)
    table = pd.DataFrame(rows, columns=columns).sort_values("bf1", ascending=False, kind="stable")
    return table.reset_index(drop=True), label


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
        Table(table.rename(columns=_LABELS).map(lambda v: v if isinstance(v, str) else fmt(v))),
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
