"""bf16 against fp32: training-time ratio and per-image Dice difference, from two run folders of the same cells.

    python scripts/precision_table.py results/reference/ph2-precision/bf16 results/reference/ph2-precision/fp32

Each method is matched by (dataset, method, seed, fold) between the two folders. Time: the ratio of the budget
clock's seconds of optimiser work (``charged_s``: CPU seconds on CPU, so the machine's load does not enter it)
for the same number of epochs. Dice: the per-image lesion Dice difference bf16 - fp32 on the same test images,
its mean with a 95% interval and p-value from the report's one paired statistic
(``segbench.report.stats.paired_difference``: one split and one seed, so a t over the images, with training
noise not in the test).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from segbench.report.format import fmt_ci, fmt_p
from segbench.report.stats import paired_difference
from segbench.run.records import load_tables

KEYS = ["dataset", "method", "seed", "fold"]


def precision_table(bf16_dir: str, fp32_dir: str, column: str = "dice_lesion") -> pd.DataFrame:
    (s16, i16), (s32, i32) = load_tables(bf16_dir), load_tables(fp32_dir)
    s16, s32 = (s[(s["status"] == "ok") & (s["corruption"] == "none")] for s in (s16, s32))
    cells = s16.merge(s32, on=KEYS, suffixes=("_bf16", "_fp32"))
    rows = []
    for cell in cells.itertuples():
        key = {k: getattr(cell, k) for k in KEYS}
        pick = lambda t: t[np.logical_and.reduce([t[k] == v for k, v in key.items()]) & (t["corruption"] == "none")]  # noqa: E731
        paired = pick(i16)[["image_id", column]].merge(pick(i32)[["image_id", column]], on="image_id", suffixes=("_bf16", "_fp32"))
        diff = (paired[f"{column}_bf16"] - paired[f"{column}_fp32"]).to_numpy(float)
        test = paired_difference(diff[None, :])
        rows.append({
            "method": cell.method, "fold": cell.fold, "epochs": f"{cell.epochs_run_bf16:g}/{cell.epochs_run_fp32:g}",
            "precision ran": f"{cell.precision_bf16}/{cell.precision_fp32}",
            "fp32 train s": round(cell.charged_s_fp32, 1), "bf16 train s": round(cell.charged_s_bf16, 1),
            "time ratio fp32/bf16": round(cell.charged_s_fp32 / cell.charged_s_bf16, 2),
            "Dice fp32": round(paired[f"{column}_fp32"].mean(), 3), "Dice bf16": round(paired[f"{column}_bf16"].mean(), 3),
            "diff bf16-fp32 [95% CI]": fmt_ci(test.interval.estimate, test.interval.low, test.interval.high, signed=True),
            "p (t, images)": fmt_p(test.p), "images": len(diff),
        })
    return pd.DataFrame(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bf16")
    parser.add_argument("fp32")
    parser.add_argument("--column", default="dice_lesion", help="per-image score column (default: dice_lesion)")
    args = parser.parse_args()
    table = precision_table(args.bf16, args.fp32, args.column).astype(str)
    print("| " + " | ".join(table.columns) + " |\n|" + " --- |" * len(table.columns))
    for row in table.itertuples(index=False):
        print("| " + " | ".join(row) + " |")
