"""The report's tables, as numeric DataFrames (rendering formats them), with their statistics.

Functions here read a ``RunData`` and return new tables; what they had to leave out is listed in the
table's ``attrs["notes"]`` (shown in the report), never written into the run data.

Intervals: with one seed, a BCa bootstrap over test images; with several, the two-level bootstrap over
seeds and images (``segbench.report.stats``), so training noise counts. Paired comparisons: the mean
difference, its interval and its p-value from one t reference on the trained units (folds, seeds) and the
images within them (``stats.paired_difference``); Holm's correction over the pairs of a dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd

from segbench.measure.schema import MEAN, cell_column
from segbench.report.format import markdown_table
from segbench.report.rundata import RunData, headline_columns
from segbench.report.stats import (
    Interval,
    bootstrap_ci,
    confusion_score,
    PairedDifference,
    holm,
    paired_difference,
    seed_mean,
    seeds_images_ci,
    weighted_nanmean,
)

__all__ = [
    "ALPHA",
    "PAIRED_COLUMNS",
    "SCORE_COLUMNS",
    "brief_table",
    "compare_methods",
    "paired_table",
    "per_class_iou_table",
    "scores_table",
    "select_grid_images",
]

#: Significance level of the paired comparisons (after Holm's correction).
ALPHA = 0.05
#: Cost and accuracy columns of ``summary.csv`` carried into the scores table (mean over seeds), as
#: ``(summary column, scores-table column)``; add a column here to carry it.
SCORE_COLUMNS = [("dataset_pixel_accuracy", "pixel_accuracy"), ("dataset_mean_pixel_accuracy", "mean_pixel_accuracy"),
                 ("train_s", "train_s"), ("latency_ms_p50", "latency_ms_p50"), ("latency_ms_p95", "latency_ms_p95"),
                 # the latency split, and deep methods' size and FLOPs (NaN where not recorded)
                 ("model_ms_p50", "model_ms_p50"), ("overhead_ms_p50", "overhead_ms_p50"), ("params", "params"),
                 ("flops", "flops")]
#: Columns of ``paired_table``.
PAIRED_COLUMNS = ["method_a", "method_b", "seeds", "folds", "n_images", "dice_a", "dice_b", "diff", "diff_low",
                  "diff_high", "test", "df", "training_noise", "p", "p_holm", "significant", "verdict"]


def brief_table(summary: pd.DataFrame) -> str:
    """The CLI's short table, one row per cell: headline Dice both ways, train time, latency."""
    rows = []
    for r in summary.to_dict("records"):
        label, dice, _ = headline_columns(summary, r["dataset"], aggregation="dataset")
        per_image = headline_columns(summary, r["dataset"], aggregation="per_image")[1]
        rows.append({"dataset": r["dataset"], "method": r["method"], "seed": r["seed"], "fold": r.get("fold", 0),
                     "status": r["status"],
                     "Dice (dataset)": r.get(dice), "Dice (per image)": r.get(per_image), "scored class": label,
                     "train s": r.get("train_s"), "latency ms p50": r.get("latency_ms_p50")})
    return markdown_table(pd.DataFrame(rows)) if rows else "No cells."


def scores_table(run: RunData, dataset: str) -> pd.DataFrame:
    """One row per method: headline Dice and IoU both ways with 95% bootstrap intervals, pixel scores, cost.

    Point estimates are the means over seeds of ``summary.csv``'s columns. Intervals resample test images
    (per-image means resample the per-image scores; dataset-level scores resample per-image confusion
    matrices and re-score their sum) and, with several seeds, the seeds too.

    Returns:
        Columns ``method, family, seeds, n_images``, ``{dice,iou}_{dataset,per_image}`` each with ``_low`` and
        ``_high``, then those of ``SCORE_COLUMNS``; best dataset-level Dice first. ``attrs["notes"]``: what
        was left out and why.
    """
    ok = run.ok(dataset)
    _, dice_ds, iou_ds = run.headline(dataset, aggregation="dataset")
    _, dice_img, iou_img = run.headline(dataset, aggregation="per_image")
    scored = run.scored_class(dataset)
    class_name = None if scored == MEAN else scored
    rows, notes = [], []
    for method, cells in ok.groupby("method", sort=False):
        seeds = sorted(int(s) for s in cells["seed"])
        row: dict[str, Any] = {"method": method, "family": cells["family"].iloc[0], "seeds": len(seeds),
                               "n_images": int(cells["n_test"].iloc[0])}
        values = {"dice_dataset": dice_ds, "iou_dataset": iou_ds, "dice_per_image": dice_img, "iou_per_image": iou_img}
        for key, column in values.items():
            row[key] = float(cells[column].mean())
        for metric in ("dice", "iou"):
            x = run.per_image_values(dataset, method, column=run.headline(dataset)[1 if metric == "dice" else 2])
            if x.empty:
                notes.append("No intervals: the run folder has no per-image scores (per_image.csv) for this dataset.")
                row.update({f"{metric}_{a}_{b}": np.nan for a in ("dataset", "per_image") for b in ("low", "high")})
                continue
            xs = x.to_numpy(float)
            ci, found = _checked(method, row[f"{metric}_per_image"], xs.shape[0], xs.shape[1],
                                 lambda ws, wi, xs=xs: seed_mean(weighted_nanmean(xs, wi), ws), "per-image")
            row[f"{metric}_per_image_low"], row[f"{metric}_per_image_high"] = ci.low, ci.high
            notes += found
            ci, found = _dataset_interval(run, dataset, method, seeds, list(x.columns), metric, class_name,
                                          row[f"{metric}_dataset"])
            row[f"{metric}_dataset_low"], row[f"{metric}_dataset_high"] = ci.low, ci.high
            notes += found
        for column, name in SCORE_COLUMNS:
            row[name] = float(cells[column].mean()) if column in cells else np.nan
        rows.append(row)
    order = ["method", "family", "seeds", "n_images"]
    order += [f"{m}_{a}{s}" for m in ("dice", "iou") for a in ("dataset", "per_image") for s in ("", "_low", "_high")]
    order += [name for _, name in SCORE_COLUMNS]
    table = pd.DataFrame(rows, columns=order).sort_values("dice_dataset", ascending=False, kind="stable").reset_index(drop=True)
    table.attrs["notes"] = list(dict.fromkeys(notes))
    return table


def _checked(method: str, expected: float, n_seeds: int, n_images: int,
             statistic: Callable[[np.ndarray, np.ndarray], np.ndarray], what: str) -> tuple[Interval, list[str]]:
    """Bootstrap interval (over images, and seeds when there are several), kept only if its point estimate
    reproduces the table's value; with a note when it does not."""
    if n_seeds == 1:
        ci = bootstrap_ci(lambda w: statistic(np.ones((*w.shape[:-1], 1)), w), n_images)  # any leading shape (BCa's jackknife)
    else:
        ci = seeds_images_ci(statistic, n_seeds, n_images)
    if not np.isclose(ci.estimate, expected, rtol=1e-9, atol=1e-12, equal_nan=True):
        return Interval(expected, float("nan"), float("nan")), [
            f"No {what} interval for {method}: the records do not reproduce summary.csv ({ci.estimate:.6f} vs {expected:.6f})."]
    return ci, []


def _dataset_interval(run: RunData, dataset: str, method: str, seeds: list[int], image_ids: list[str],
                      metric: Literal["dice", "iou"], class_name: str | None, expected: float) -> tuple[Interval, list[str]]:
    found = [run.confusions(dataset, method, s, image_ids) for s in seeds]
    stacks, notes = [cms for cms, _ in found], [note for _, note in found if note]
    if any(s is None for s in stacks):
        return Interval(expected, float("nan"), float("nan")), notes
    names = (run.recorded_confusion(dataset, method, seeds[0]) or (None, []))[1]
    class_index = names.index(class_name) if class_name in names else None
    cms = np.stack(stacks)  # (S, N, C, C)

    def statistic(seed_w: np.ndarray, image_w: np.ndarray) -> np.ndarray:
        per_seed = np.stack([confusion_score(c, image_w, score=metric, class_index=class_index) for c in cms], axis=-1)
        return seed_mean(per_seed, seed_w)

    ci, more = _checked(method, expected, len(seeds), len(image_ids), statistic, "dataset-level")
    return ci, notes + more


def compare_methods(run: RunData, dataset: str, a: str, b: str, column: str | None = None) -> tuple[PairedDifference, dict[str, Any]]:
    """Method ``a`` against ``b`` on their common test images and seeds: the one paired statistic of the report.

    Per-image scores (``column``, default the headline Dice) are matched on (seed, image) over the seeds
    both ran (a seed number means the same fitted base for a pipeline and its base in one run; for
    unrelated methods the match is arbitrary and harmless, since each seed is a whole unit); pairs where
    either score is undefined are left out. ``stats.paired_difference`` then gives the mean difference
    a - b, its interval, its p-value and the direction, resampling the folds (K-fold runs) or the seeds and
    images (one split). Every verdict of the report comes from here.

    Returns:
        ``(result, facts)``: facts ``seeds, folds, n_images, dice_a, dice_b`` (means over the matched pairs).
    """
    column = column or run.headline(dataset)[1]
    x_, y_ = run.per_image_values(dataset, a, column), run.per_image_values(dataset, b, column)
    seeds = x_.index.intersection(y_.index)
    images = x_.columns.intersection(y_.columns)
    x, y = x_.loc[seeds, images].to_numpy(float), y_.loc[seeds, images].to_numpy(float)
    defined = ~np.isnan(x - y)
    used = defined.any(axis=0)
    folds = run.image_folds(dataset, a, list(images))
    result = paired_difference(np.where(defined, x - y, np.nan), folds)
    facts = {"seeds": len(seeds), "folds": 1 if folds is None else len(np.unique(folds[used])),
             "n_images": int(used.sum()),
             "dice_a": float(x[defined].mean()) if defined.any() else np.nan,
             "dice_b": float(y[defined].mean()) if defined.any() else np.nan}
    return result, facts


def paired_table(run: RunData, dataset: str, *, alpha: float = ALPHA) -> pd.DataFrame:
    """Every pair of methods on the same test images: mean per-image headline Dice difference and its test.

    A is the method of higher mean per-image Dice. Each row is ``compare_methods``: the difference, its 95%
    interval and p from one t reference on the trained units; ``test`` names the units and ``training_noise``
    says whether training noise is in the test (not with one split and one seed). P-values are
    Holm-corrected over all pairs of the dataset (``attrs["family"]`` says so); a verdict names the method the
    mean difference favours when the Holm p is below ``alpha``.

    Returns:
        Columns ``PAIRED_COLUMNS``; empty with fewer than two methods or without per-image scores.
    """
    if not run.has_per_image(dataset):
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    column = run.headline(dataset)[1]
    methods = list(dict.fromkeys(run.ok(dataset)["method"]))
    means = {m: np.nanmean(run.per_image_values(dataset, m, column).to_numpy(float)) for m in methods}
    methods.sort(key=lambda m: -np.nan_to_num(means[m], nan=-np.inf))
    rows = []
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            r, facts = compare_methods(run, dataset, a, b, column)
            rows.append({"method_a": a, "method_b": b, **facts, "diff": r.diff, "diff_low": r.interval.low,
                         "diff_high": r.interval.high, "test": f"t, {r.units}", "df": r.df,
                         "training_noise": r.training_noise, "p": r.p, "direction": r.direction})
    table = pd.DataFrame(rows, columns=[*PAIRED_COLUMNS, "direction"])
    if table.empty:
        return table.drop(columns="direction")
    table["p_holm"] = holm(table["p"].to_numpy(float))
    table["significant"] = table["p_holm"] < alpha
    table["verdict"] = [
        (f"{r.method_a} better" if r.direction > 0 else f"{r.method_b} better") if r.significant and r.direction
        else "no significant difference" for r in table.itertuples()
    ]
    table = table.drop(columns="direction")
    table.attrs["family"] = f"the {len(table)} pairs of {dataset}"
    return table


def per_class_iou_table(run: RunData, dataset: str) -> pd.DataFrame:
    """Dataset-level IoU per class and method (mean over seeds), best mean IoU first; for multi-class data."""
    ok = run.ok(dataset)
    names = [c for c in run.class_names(dataset) if ok[cell_column("iou", c, aggregation="dataset")].notna().any()]
    columns = [cell_column("iou", c, aggregation="dataset") for c in names]
    table = ok.groupby("method", sort=False)[[*columns, cell_column("mean_iou", aggregation="dataset")]].mean()
    table.columns = [*names, "mean IoU"]
    return table.sort_values("mean IoU", ascending=False).reset_index()


def select_grid_images(values: pd.DataFrame, best_method: str) -> list[tuple[str, str]]:
    """The images of the qualitative grid, by rule: ``[(label, image_id), ...]``.

    Best, median and worst image of ``best_method`` by its per-image score, then the image where the
    methods' scores spread most (max - min; needs two methods). An image already chosen is not repeated
    (the next one by the same rule is taken for the spread; the best/median/worst keep their own).

    Args:
        values: Per-image headline score, index = image ids (sorted), one column per method.
        best_method: The column to rank by.
    """
    chosen: list[tuple[str, str]] = []
    s = values[best_method].dropna()
    if not s.empty:
        median = s.iloc[(s - s.median()).abs().to_numpy().argmin()]
        picks = [("best", s.idxmax()), ("median", s.index[s.to_numpy() == median][0]), ("worst", s.idxmin())]
        for label, image_id in picks:
            if image_id not in [c[1] for c in chosen]:
                chosen.append((f"{label} for {best_method}", image_id))
    if values.shape[1] >= 2:
        spread = (values.max(axis=1) - values.min(axis=1))[values.notna().sum(axis=1) >= 2]
        for image_id, value in spread.sort_values(ascending=False, kind="stable").items():
            if value <= 0:
                break  # the methods agree everywhere: nothing to show
            if image_id not in [c[1] for c in chosen]:
                chosen.append((f"methods disagree most (spread {value:.2f})", image_id))
                break
    return chosen
