"""Accuracy against training compute: a run with a budget axis (``segbench run --budget-s 30,90,270``).

Per dataset: the score of every deep method at each training budget, with the paired comparisons' interval
(``stats.mean_t_interval``: folds, or seeds and images, as the trained units), against the training seconds
on a log axis, the classical methods as points at their fit time; the same against training FLOPs; and a
"time to target" table: for each deep method the least budget at which its score's interval lies above the
best classical method's (overlapping intervals count as not yet), or "not within the sweep". With
``--train-fraction`` too, every fraction gets its own curves and targets (labels x compute).

Clocks: a deep cell's seconds are its budget (``charged_s``, the budget clock's seconds of optimiser work, where
recorded; else ``budget_s``); a classical cell's are its fit time (``train_s``). Both are one thread's seconds
on the run's machine. Training FLOPs = epochs run x training images x 3 x forward FLOPs per image (``flops``,
the forward pass counted for latency at the work size; the backward pass costs about twice the forward,
the usual estimate, e.g. Kaplan et al. 2020, "Scaling laws for neural language models", section 2.1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segbench.measure.schema import CLEAN
from segbench.report.figures import compute_figure, save_figure
from segbench.report.format import fmt, fmt_ci
from segbench.report.render import Block, Figure, Heading, Para, Table
from segbench.report.rundata import image_folds
from segbench.report.stats import mean_t_interval
from segbench.run.records import slug

__all__ = ["BACKWARD_FACTOR", "compute_table", "time_to_target", "compute_blocks"]

#: Forward + backward FLOPs of one training image as a multiple of the forward pass's (backward ~ 2 x forward).
BACKWARD_FACTOR = 3.0
_DEEP, _CLASSICAL = "deep", "classical"


def _budget_axis(summary: pd.DataFrame, dataset: str) -> bool:
    """Whether the dataset's deep cells ran at several budgets."""
    if "budget_s" not in summary.columns:
        return False
    rows = summary[(summary["dataset"] == dataset) & (summary["status"] == "ok")]
    return pd.to_numeric(rows["budget_s"], errors="coerce").nunique() > 1


def compute_table(summary: pd.DataFrame, per_image: pd.DataFrame, *, dataset: str, column: str) -> pd.DataFrame:
    """Score, training seconds and training FLOPs per (method, train fraction, budget), clean test images.

    Returns:
        Columns ``method, family, train_fraction, n_train, budget_s, seeds, n_images, score, score_low,
        score_high, train_s, train_flops`` (``budget_s`` NaN for methods without a budget: the classical ones;
        ``train_flops`` NaN without a FLOPs count), by method, fraction and budget.
    """
    ok = summary[(summary["dataset"] == dataset) & (summary["status"] == "ok")]
    images = per_image[per_image["dataset"] == dataset]
    if "corruption" in ok.columns:
        ok, images = ok[ok["corruption"].astype(str) == CLEAN], images[images["corruption"].astype(str) == CLEAN]
    ok = ok.assign(budget_s=pd.to_numeric(ok["budget_s"], errors="coerce"),
                   train_fraction=ok["train_fraction"].astype(float) if "train_fraction" in ok else 1.0)
    images = images.assign(budget_s=pd.to_numeric(images["budget_s"], errors="coerce"),
                           train_fraction=images["train_fraction"].astype(float) if "train_fraction" in images else 1.0)
    rows = []
    for (method, fraction, budget), cells in ok.groupby(["method", "train_fraction", "budget_s"], sort=False, dropna=False):
        here = images[(images["method"] == method) & np.isclose(images["train_fraction"], fraction)
                      & (images["budget_s"].isna() if np.isnan(budget) else np.isclose(images["budget_s"], budget))
                      & images["seed"].isin(cells["seed"])]
        if here.empty:
            continue
        values = here.pivot_table(index="seed", columns="image_id", values=column, dropna=False).sort_index(axis=1)
        ci = mean_t_interval(values.to_numpy(float), image_folds(here, method, [str(i) for i in values.columns]))
        family = cells["family"].iloc[0]
        if family == _DEEP and not np.isnan(budget):
            seconds = cells["charged_s"].mean() if "charged_s" in cells and cells["charged_s"].notna().any() else budget
        else:
            seconds = cells["train_s"].mean()
        flops = np.nan
        if {"flops", "epochs_run", "n_train"} <= set(cells.columns):
            flops = float((cells["epochs_run"] * cells["n_train"] * cells["flops"] * BACKWARD_FACTOR).mean())
        rows.append({"method": method, "family": family, "train_fraction": float(fraction),
                     "n_train": float(cells["n_train"].mean()), "budget_s": budget, "seeds": values.shape[0],
                     "n_images": values.shape[1], "score": ci.estimate, "score_low": ci.low, "score_high": ci.high,
                     "train_s": float(seconds), "train_flops": flops})
    columns = ["method", "family", "train_fraction", "n_train", "budget_s", "seeds", "n_images", "score", "score_low",
               "score_high", "train_s", "train_flops"]
    return pd.DataFrame(rows, columns=columns).sort_values(["method", "train_fraction", "budget_s"], kind="stable",
                                                           ignore_index=True)


def time_to_target(table: pd.DataFrame) -> pd.DataFrame:
    """For each deep method (and train fraction): the least budget at which it reaches the best classical method.

    The target is the classical method of highest score at the same fraction (one run once, such as a method
    that does not train, counts at every fraction). A budget reaches it when the deep score's 95% interval
    lies wholly above the target's: overlapping intervals count as not yet. ``reached_at`` is NaN when no
    budget of the sweep reaches it (the row then shows the largest budget).

    Returns:
        Columns ``method, train_fraction, n_train, target, target_score, target_low, target_high, reached_at,
        budget_s, score, score_low, score_high, train_s, train_flops`` (the budget shown: the one reached, else
        the largest).
    """
    out = []
    deep = table[(table["family"] == _DEEP) & table["budget_s"].notna()]
    classical = table[table["family"] == _CLASSICAL]
    once = classical.groupby("method")["train_fraction"].transform("nunique") == 1
    for (method, fraction), rows in deep.groupby(["method", "train_fraction"], sort=False):
        here = classical[np.isclose(classical["train_fraction"], fraction) | once].dropna(subset=["score"])
        if here.empty:
            continue
        target = here.loc[here["score"].idxmax()]
        rows = rows.sort_values("budget_s")
        above = rows[rows["score_low"] > target["score_high"]]
        shown = above.iloc[0] if len(above) else rows.iloc[-1]
        out.append({"method": method, "train_fraction": fraction, "n_train": shown["n_train"], "target": target["method"],
                    "target_score": target["score"], "target_low": target["score_low"],
                    "target_high": target["score_high"], "reached_at": shown["budget_s"] if len(above) else np.nan,
                    **{k: shown[k] for k in ("budget_s", "score", "score_low", "score_high", "train_s", "train_flops")}})
    columns = ["method", "train_fraction", "n_train", "target", "target_score", "target_low", "target_high", "reached_at",
               "budget_s", "score", "score_low", "score_high", "train_s", "train_flops"]
    return pd.DataFrame(out, columns=columns)


def _ci(row: Any, name: str) -> str:
    return fmt_ci(row[name], row[f"{name}_low"], row[f"{name}_high"])


def _target_display(targets: pd.DataFrame, fractions: bool) -> pd.DataFrame:
    out = pd.DataFrame({"deep method": targets["method"]})
    if fractions:
        out["training images"] = targets["n_train"].map(lambda n: f"{n:.0f}")
    out["target (best classical) [95% CI]"] = [
        f"{r['target']} {fmt_ci(r['target_score'], r['target_low'], r['target_high'])}" for _, r in targets.iterrows()]
    out["reached at"] = [f"{r['reached_at']:g} s" if not np.isnan(r["reached_at"])
                         else f"not within the sweep (largest {r['budget_s']:g} s)" for _, r in targets.iterrows()]
    out["score there [95% CI]"] = [_ci(r, "score") for _, r in targets.iterrows()]
    out["training PFLOPs"] = (targets["train_flops"] / 1e15).map(lambda v: fmt(v, 3))
    return out


def compute_blocks(run: Any, dataset: str, fig_dir: Path | None) -> list[Block]:
    """The "accuracy against training compute" section of a dataset of a ``RunData``: only on a budget axis."""
    summary, per_image = run.all_summary, run.all_per_image
    if not _budget_axis(summary, dataset):
        return []
    label, column, _ = run.headline(dataset)
    if "budget_s" not in per_image.columns:
        return [Heading(3, "Accuracy against training compute"),
                Para("No compute curves: per_image.csv has no budget_s column (a run folder from before budget axes).")]
    table = compute_table(summary, per_image, dataset=dataset, column=column)
    targets = time_to_target(table)
    fractions = table["train_fraction"].nunique() > 1
    blocks: list[Block] = [
        Heading(3, "Accuracy against training compute"),
        Para(f"Per-image mean Dice {label} of every deep method at each training budget (--budget-s), with the 95% "
             "interval of the paired comparisons' t reference (folds, or seeds and images, as the trained units), "
             "against the seconds of optimiser work (the budget clock) and against training FLOPs (epochs x training "
             "images x 3 x the forward FLOPs per image counted for latency: the backward pass costs about twice the "
             "forward); classical methods at their fit time (one thread, wall clock), without a FLOPs count."
             + (" One curve per training fraction: labels x compute." if fractions else "")),
    ]
    if len(targets):
        blocks += [Para("Time to target: the least budget at which each deep method's interval lies wholly above the "
                        "best classical method's (overlapping intervals count as not yet)."),
                   Table(_target_display(targets, fractions))]
    else:
        blocks.append(Para("No time to target: the dataset lacks a finished classical method to aim at."))
    if fig_dir is not None:
        for x, name, what in (("train_s", "seconds", "training seconds"), ("train_flops", "flops", "training FLOPs")):
            fig = compute_figure(table, x=x, xlabel=f"{what} (log scale)", ylabel=f"Dice {label} (per-image mean, 95% CI)",
                                 dataset=dataset)
            if fig is not None:
                path = save_figure(fig, fig_dir, f"compute_{name}_{slug(dataset)}")
                blocks.append(Figure(path, f"{dataset}: per-image mean Dice {label} against {what} (log scale), 95% "
                                           "intervals; deep methods a line per budget sweep, classical methods "
                                           + ("points at their fit time." if x == "train_s" else
                                              "dotted lines (no FLOPs count).")))
    return blocks
