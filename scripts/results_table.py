"""Print a run's headline table in markdown (the README's results tables come from here, not by hand).

    python scripts/results_table.py results/reference/ph2-cv [--dataset ph2] [--class lesion]

Takes a run folder (or its summary.csv). The rows are the main comparison (whole training part, clean test
images) with K folds pooled as the report pools them: dataset-level scores from the summed confusion matrices
of every fold, per-image scores as means over every test image (``segbench.report.rundata.pool_folds``).
With several seeds per method, scores are means over seeds ± their standard deviation; times are means.
Boundary F1, clDice and the expected calibration error are added when the run has them (BF1 and clDice
for binary tasks), and the epochs a deep method trained (mean over folds) when it trained under ``--budget-s``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from segbench.report.rundata import RunData


def results_table(summary: pd.DataFrame, scored_class: str | None) -> str:
    """One row per method; with several seeds, each score is ``mean ± standard deviation`` over seeds."""
    ok = summary[summary["status"] == "ok"]
    if scored_class:  # a binary task: the foreground class's scores
        cols = {f"dataset_dice_{scored_class}": "Dice (dataset)", f"per_image_dice_{scored_class}": "Dice (per image)",
                f"dataset_iou_{scored_class}": "IoU (dataset)", f"per_image_iou_{scored_class}": "IoU (per image)"}
        extra = {f"per_image_bf1_{scored_class}": "BF1 (per image)",
                 f"per_image_cldice_{scored_class}": "clDice (per image)", "ece": "ECE"}
    else:  # multi-class: means over classes
        cols = {"dataset_mean_iou": "mIoU (dataset)", "per_image_mean_iou": "mIoU (per image)",
                "dataset_pixel_accuracy": "pixel acc.", "dataset_mean_pixel_accuracy": "mean pixel acc."}
        extra = {"ece": "ECE"}
    cols |= {k: v for k, v in extra.items() if k in ok.columns and ok[k].notna().any()}
    scores = list(cols)
    cols |= {"train_s": "train s"}
    epochs = "epochs_run" in ok.columns and ok["epochs_run"].notna().any()
    cols |= {"epochs_run": "epochs"} if epochs else {}
    cols |= {"latency_ms_p50": "latency p50 ms"}
    grouped = ok.groupby(["method", "family"], sort=False)[list(cols)]
    mean, sd, seeds = grouped.mean(), grouped.std(ddof=1), grouped.size()
    several = bool((seeds > 1).any())
    mean = mean.reset_index().sort_values(["family", scores[0]], ascending=[True, False])
    header = ["method", "family", *(["seeds"] if several else []), *cols.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in mean.itertuples(index=False):
        key = (row.method, row.family)
        cells = [f"`{row.method}`", row.family, *([str(seeds[key])] if several else [])]
        for col in scores:
            value, spread = getattr(row, col), sd.loc[key, col]
            cells.append(f"{value:.3f} ± {spread:.3f}" if several and seeds[key] > 1 else f"{value:.3f}")
        cells += [f"{row.train_s:.0f}"]
        cells += [("" if pd.isna(row.epochs_run) else f"{row.epochs_run:.0f}")] if epochs else []
        cells += [f"{row.latency_ms_p50:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run folder (or its summary.csv)")
    parser.add_argument("--dataset", default=None, help="the dataset to tabulate (needed when the run has several)")
    parser.add_argument("--class", dest="scored_class", default=None, help="foreground class of a binary task")
    args = parser.parse_args()
    run_dir = Path(args.run)
    summary = RunData.load(run_dir.parent if run_dir.name == "summary.csv" else run_dir).summary
    if args.dataset:
        summary = summary[summary["dataset"] == args.dataset]
    elif summary["dataset"].nunique() > 1:
        parser.error(f"{args.run} has datasets {sorted(summary['dataset'].unique())}: choose one with --dataset")
    print(results_table(summary, args.scored_class))
