"""Two run folders of the same cells trained two ways (a schedule, a machine): per method, the per-image score of
each and the paired difference A - B with its interval, pooled over the folds and seeds both folders hold.

    python scripts/compare_runs.py results/reference/current/ph2-cv-cooldown \
        results/reference/current/ph2-cv-converged --labels cooldown,plain

Images are matched by (dataset, method, seed, fold, image_id); only seeds and folds present in both folders are
used. The difference and its interval come from the report's one paired statistic
(``segbench.report.stats.paired_difference``): with several folds a t over the fold means, so training noise is
in the test. ``epochs`` and ``epoch kept`` are the means over the matched cells of A / B.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from segbench.report.format import fmt_ci, fmt_p, markdown_table
from segbench.report.stats import paired_difference
from segbench.run.records import load_tables

CELL = ["dataset", "method", "seed", "fold"]


def _ok(summary: pd.DataFrame, per_image: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    summary = summary[(summary["status"] == "ok") & (summary["corruption"] == "none")]
    per_image = per_image[per_image["corruption"] == "none"].merge(summary[CELL], on=CELL)
    return summary, per_image


def compare_runs(a_dir: str, b_dir: str, *, labels: tuple[str, str] = ("A", "B"), column: str = "dice_lesion",
                 methods: list[str] | None = None) -> pd.DataFrame:
    """One row per method in both folders (or in ``methods``, in their order): mean per-image ``column`` of A and
    B, A - B [95% CI], p, cells."""
    (sa, ia), (sb, ib) = (_ok(*load_tables(d)) for d in (a_dir, b_dir))
    cells = sa.merge(sb, on=CELL, suffixes=("_a", "_b"))
    images = ia[[*CELL, "image_id", column]].merge(ib[[*CELL, "image_id", column]], on=[*CELL, "image_id"],
                                                    suffixes=("_a", "_b"))
    la, lb = labels
    rows = []
    groups = dict(tuple(images.groupby("method", sort=False)))
    for method in [m for m in (methods or groups) if m in groups]:
        mine = groups[method].assign(diff=lambda t: t[f"{column}_a"] - t[f"{column}_b"])
        wide = mine.pivot_table(index=["fold", "image_id"], columns="seed", values="diff", dropna=False)
        test = paired_difference(wide.to_numpy().T, wide.index.get_level_values("fold").to_numpy())
        matched = cells[cells["method"] == method]
        rows.append({
            "method": f"`{method}`", la: f"{mine[f'{column}_a'].mean():.3f}", lb: f"{mine[f'{column}_b'].mean():.3f}",
            f"{la} - {lb} [95% CI]": fmt_ci(test.interval.estimate, test.interval.low, test.interval.high, signed=True),
            "p": fmt_p(test.p),
            "epochs": _pair(matched, "epochs_run", ".0f"), "epoch kept": _pair(matched, "best_epoch", ".0f"),
            "cells": str(len(matched)),
        })
    return pd.DataFrame(rows)


def _pair(cells: pd.DataFrame, column: str, spec: str) -> str:
    a, b = (cells[f"{column}_{s}"].mean() for s in "ab")
    return "" if np.isnan(a) and np.isnan(b) else f"{a:{spec}} / {b:{spec}}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="run folder A")
    parser.add_argument("b", help="run folder B")
    parser.add_argument("--labels", default="A,B", help="names of A and B in the table (default: A,B)")
    parser.add_argument("--column", default="dice_lesion", help="per-image score column (default: dice_lesion)")
    parser.add_argument("--methods", help="comma-separated methods, in the table's order (default: every shared one)")
    args = parser.parse_args()
    label_a, label_b = args.labels.split(",")
    methods = args.methods.split(",") if args.methods else None
    print(markdown_table(compare_runs(args.a, args.b, labels=(label_a, label_b), column=args.column, methods=methods)))
