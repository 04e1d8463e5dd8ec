"""The report's training section: how each network's training went (``curves.csv`` and the summary's training
columns: epochs run, the epoch kept, what stopped it). The score at each budget of a budget axis is the compute
section's (``segbench.report.compute``: with intervals, against seconds and FLOPs, and time to target)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from segbench.report.figures import learning_curves_figure, save_figure
from segbench.report.format import fmt
from segbench.report.render import Block, Figure, Heading, Para, Table
from segbench.run.folder import CURVES_FILE

__all__ = ["training_blocks", "training_table"]


def training_table(summary: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per trained method: cells, mean epochs run and epoch kept, how many cells kept their last validated epoch
    (still climbing when training stopped), how many never beat their first validation (stuck at the start),
    the stop reasons, and mean seconds of optimiser work (budget clock) and of validation."""
    rows = []
    trained = summary[summary["epochs_run"].notna()] if "epochs_run" in summary.columns else summary.iloc[:0]
    for method, cells in trained.groupby("method", sort=False):
        mine = curves[curves["method"] == method] if len(curves) else curves
        last_kept = stuck = 0
        for _, curve in mine.groupby([c for c in ("seed", "fold", "budget_s") if c in mine.columns], dropna=False):
            validated = curve[curve["val_score"].notna()].sort_values("epoch")
            if validated.empty:
                continue
            best = validated["val_score"].idxmax()
            last_kept += int(best == validated.index[-1])
            stuck += int(validated["val_score"].max() <= validated["val_score"].iloc[0] + 0.01)
        reasons = cells["stop_reason"].value_counts()
        rows.append({"method": method, "cells": len(cells), "epochs run": fmt(cells["epochs_run"].mean(), 1),
                     "epoch kept": fmt(cells["best_epoch"].mean(), 1) if "best_epoch" in cells else "",
                     "kept the last epoch": str(last_kept), "no gain over epoch 1": str(stuck),
                     "stopped by": ", ".join(f"{k} {v}" for k, v in reasons.items()),
                     "train s (budget clock)": fmt(cells["charged_s"].mean(), 1) if "charged_s" in cells else "",
                     "validation s": fmt(cells["val_s"].mean(), 1) if "val_s" in cells else ""})
    return pd.DataFrame(rows)


def training_blocks(run: Any, dataset: str, fig_dir: Path | None) -> list[Block]:
    """The training section of a dataset of a ``RunData`` (its whole tables: every budget); none when no cell of
    the dataset trained a network. Figures go to ``fig_dir`` (None leaves them out)."""
    all_summary = run.all_summary
    summary = all_summary[(all_summary["dataset"] == dataset) & (all_summary["status"] == "ok")]
    if "corruption" in summary.columns:
        summary = summary[summary["corruption"].astype(str) == "none"]
    path = Path(run.run_dir) / CURVES_FILE
    curves = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["dataset", "method", "val_score"])
    curves = curves[curves["dataset"] == dataset]
    if "best_epoch" not in summary.columns:  # run folders from before the loop recorded its epochs (issue 22)
        return []
    table = training_table(summary, curves)
    if table.empty:
        return []
    blocks: list[Block] = [
        Heading(3, "Training"),
        Para("How each network's training went: epochs run and the epoch whose weights were kept (best "
                 "validation mean IoU), cells that kept their last epoch (still improving when training stopped) "
                 "and cells whose validation score never rose above their first epoch's, what stopped training, and "
                 "the seconds of optimiser work (the budget clock: CPU seconds on CPU) beside the validation "
                 "seconds, which no budget is charged (means over cells)."),
        Table(table),
    ]
    if fig_dir is not None and len(curves):
        png = save_figure(learning_curves_figure(curves, dataset=dataset), fig_dir, f"learning_curves_{dataset}")
        blocks.append(Figure(png, f"{dataset}: validation mean IoU against training seconds (curves.csv)"))
    return blocks
