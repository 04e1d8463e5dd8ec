"""Label efficiency and robustness: tables, sentences and figures from ``summary.csv`` and ``per_image.csv``.

A run with ``--train-fraction`` has a ``train_fraction`` column (1.0: the whole training part) and ``n_train``
the images a cell trained on; a run with ``--corruptions`` has ``corruption`` and ``severity`` columns
(``none`` and 0 for clean test images). The functions here take those tables (and the per-image score
column to use, e.g. the headline ``dice_lesion``) and never read a run folder. Scores are per-image means
(each test image scored, then averaged; the mean over seeds), with 95% bootstrap intervals over test images
as in ``segbench.report.scores_table``: the same resampled images for every seed, fraction, corruption and
method, so ratios and comparisons are paired.

The main comparison (scores, paired tests) is on clean images with the whole training part: ``main_rows``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segbench.measure.schema import CLEAN
from segbench.report.figures import degradation_figure, label_efficiency_figure, save_figure
from segbench.report.format import fmt, fmt_ci
from segbench.report.render import Block, Figure, Heading, Para, Table
from segbench.report.stats import bootstrap_ci, weighted_nanmean
from segbench.run.records import slug

__all__ = [
    "CLEAN",
    "main_rows",
    "label_efficiency_table",
    "crossover",
    "label_efficiency_sentence",
    "label_efficiency_blocks",
    "robustness_table",
    "robustness_ratios",
    "robustness_display",
    "robustness_blocks",
]

_DEEP, _CLASSICAL = "deep", "classical"


def main_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of the main comparison: the whole training part (``train_fraction`` 1) on clean images, and on a
    budget axis (``--budget-s 30,90,270``) each method's largest budget.

    Tables without those columns (runs without ``--train-fraction`` or ``--corruptions``) come back whole.
    """
    keep = pd.Series(True, index=table.index)
    if "budget_s" in table.columns and len(table):
        budget = pd.to_numeric(table["budget_s"], errors="coerce")
        largest = budget.groupby([table["dataset"], table["method"]]).transform("max")
        keep &= budget.isna() | (budget == largest)
    if "train_fraction" in table.columns:
        keep &= np.isclose(table["train_fraction"].astype(float), 1.0)
    if "corruption" in table.columns:
        keep &= table["corruption"].astype(str) == CLEAN
    return table[keep]


def _clean(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["corruption"].astype(str) == CLEAN] if "corruption" in table.columns else table


def _cells(summary: pd.DataFrame, per_image: pd.DataFrame, *, dataset: str, column: str, by: Sequence[str]
           ) -> dict[tuple[Any, ...], tuple[dict[str, Any], pd.DataFrame]]:
    """Per ``(method, *by)``: summary facts and the ``(seeds x image ids)`` values of ``column`` of finished cells."""
    for name, table in (("summary", summary), ("per_image", per_image)):
        if missing := [k for k in by if k not in table.columns]:
            raise ValueError(f"{name} table has no {', '.join(missing)} column(s); the run needs --train-fraction "
                             "(train_fraction) or --corruptions (corruption, severity)")
    keys = ["dataset", "method", "seed", *by]
    ok = summary[(summary["dataset"] == dataset) & (summary["status"] == "ok")]
    rows = per_image[per_image["dataset"] == dataset].merge(ok[keys].drop_duplicates(), on=keys)
    scores = dict(list(rows.groupby(["method", *by], sort=False)))
    out = {}
    for group, cells in ok.groupby(["method", *by], sort=False):
        if group not in scores:
            continue  # a finished cell without per-image rows: nothing to resample
        facts = {"family": cells["family"].iloc[0], "n_train": float(cells["n_train"].mean()), "seeds": len(cells)}
        out[group] = (facts, scores[group].pivot(index="seed", columns="image_id", values=column).sort_index(axis=1))
    return out


def _mean_interval(x: pd.DataFrame) -> dict[str, float]:
    """``score``: per-image mean (over images, then seeds) of a ``(seeds x images)`` table; ``score_low``/``_high``."""
    values = x.to_numpy(float)
    ci = bootstrap_ci(lambda w: np.nanmean(weighted_nanmean(values, w), axis=-1), values.shape[1])
    return {"score": ci.estimate, "score_low": ci.low, "score_high": ci.high}


# --------------------------------------------------------------------------------------------------------
# Label efficiency


def label_efficiency_table(summary: pd.DataFrame, per_image: pd.DataFrame, *, dataset: str, column: str) -> pd.DataFrame:
    """Score per method and training fraction, on clean test images.

    Args:
        summary: ``summary.csv`` with a ``train_fraction`` column.
        per_image: ``per_image.csv`` with the same column.
        dataset: Dataset to tabulate.
        column: Per-image score column (``dice_lesion``, ``mean_dice``...).

    Returns:
        Columns ``method, family, train_fraction, n_train, seeds, n_images, score, score_low, score_high``,
        by method then fraction.
    """
    cells = _cells(_clean(summary), _clean(per_image), dataset=dataset, column=column, by=["train_fraction"])
    rows = [{"method": method, "family": facts["family"], "train_fraction": float(fraction), "n_train": facts["n_train"],
             "seeds": facts["seeds"], "n_images": x.shape[1], **_mean_interval(x)}
            for (method, fraction), (facts, x) in cells.items()]
    columns = ["method", "family", "train_fraction", "n_train", "seeds", "n_images", "score", "score_low", "score_high"]
    return pd.DataFrame(rows, columns=columns).sort_values(["method", "train_fraction"], kind="stable").reset_index(drop=True)


def _family_best(table: pd.DataFrame, family: str, fraction: float) -> pd.Series | None:
    """The family's best row at ``fraction``; a method run at one fraction only (no training) counts at every one."""
    rows = table[table["family"] == family]
    single = rows.groupby("method")["train_fraction"].transform("nunique") == 1
    rows = rows[np.isclose(rows["train_fraction"], fraction) | single]
    rows = rows.dropna(subset=["score"])
    return None if rows.empty else rows.loc[rows["score"].idxmax()]


def crossover(table: pd.DataFrame) -> dict[str, Any] | None:
    """Where the best deep method overtakes the best classical one, from ``label_efficiency_table``.

    At each fraction the deep methods' best score is compared with the classical methods' best (a method
    run at one fraction only, such as one that does not train, counts at every fraction). The crossover is
    the smallest fraction from which the deep best stays strictly ahead at every larger fraction.

    Returns:
        None without both families; otherwise ``{"outcome": "overtakes" | "always" | "never", "fraction",
        "n_train", "deep", "classical"}``, where ``deep``/``classical`` are the best rows (Series) at the
        crossover fraction (at the largest fraction for ``never``).
    """
    fractions = sorted(table.loc[table["family"] == _DEEP, "train_fraction"].unique())
    best = [(f, _family_best(table, _DEEP, f), _family_best(table, _CLASSICAL, f)) for f in fractions]
    best = [(f, d, c) for f, d, c in best if d is not None and c is not None]
    if not best:
        return None
    ahead = [d["score"] > c["score"] for _, d, c in best]
    if not ahead[-1]:
        f, d, c = best[-1]
        return {"outcome": "never", "fraction": f, "n_train": d["n_train"], "deep": d, "classical": c}
    k = len(ahead) - next((i for i, a in enumerate(reversed(ahead)) if not a), len(ahead))
    f, d, c = best[k]
    return {"outcome": "always" if k == 0 else "overtakes", "fraction": f, "n_train": d["n_train"], "deep": d, "classical": c}


def _ci_column(table: pd.DataFrame, name: str) -> list[str]:
    """``fmt_ci`` of columns ``name``, ``name_low``, ``name_high``, row by row."""
    return [fmt_ci(*r) for r in table[[name, f"{name}_low", f"{name}_high"]].to_numpy(float)]


def label_efficiency_sentence(table: pd.DataFrame, *, label: str) -> str:
    """One sentence naming where the best deep method overtakes the best classical one (or that it does not)."""
    if table["train_fraction"].nunique() < 2:
        return "Only one training fraction was run: no label-efficiency curve."
    found = crossover(table)
    if found is None:
        return "No label-efficiency comparison: this dataset lacks a finished deep or a finished classical method."
    d, c = found["deep"], found["classical"]
    d_text, c_text = (fmt_ci(r["score"], r["score_low"], r["score_high"]) for r in (d, c))
    pair = f"{d['method']} {d_text} against {c['method']} {c_text} (per-image mean Dice {label}"
    if np.isnan([d["score_low"], c["score_low"]]).any():
        pair += ", no intervals)"
    elif d["score_low"] > c["score_high"] or c["score_low"] > d["score_high"]:
        pair += ", 95% intervals disjoint)"
    else:
        pair += ", 95% intervals overlap: not resolved on these test images)"
    where = f"{found['fraction']:.0%} of the training part ({found['n_train']:.0f} images)"
    if found["outcome"] == "never":
        return (f"Within the fractions run, no deep method overtakes the best classical one: at {where}, "
                f"the largest, {pair}.")
    if found["outcome"] == "always":
        return f"The best deep method is ahead of the best classical one at every fraction run, already at {where}: {pair}."
    return (f"The best deep method overtakes the best classical one at {where} and stays ahead at every larger "
            f"fraction: {pair}.")


# --------------------------------------------------------------------------------------------------------
# Robustness


def _full(table: pd.DataFrame) -> pd.DataFrame:
    if "train_fraction" not in table.columns:
        return table
    return table[np.isclose(table["train_fraction"].astype(float), 1.0)]


def _robustness_cells(summary: pd.DataFrame, per_image: pd.DataFrame, *, dataset: str, column: str):
    return _cells(_full(summary), _full(per_image), dataset=dataset, column=column, by=["corruption", "severity"])


def robustness_table(summary: pd.DataFrame, per_image: pd.DataFrame, *, dataset: str, column: str) -> pd.DataFrame:
    """Score per method, corruption and severity (models trained on the whole clean training part).

    Returns:
        Columns ``method, family, corruption, severity, seeds, n_images, score, score_low, score_high``; the
        clean rows (``none``, 0) first for each method.
    """
    cells = _robustness_cells(summary, per_image, dataset=dataset, column=column)
    rows = [{"method": m, "family": facts["family"], "corruption": str(c), "severity": int(s), "seeds": facts["seeds"],
             "n_images": x.shape[1], **_mean_interval(x)}
            for (m, c, s), (facts, x) in cells.items()]
    columns = ["method", "family", "corruption", "severity", "seeds", "n_images", "score", "score_low", "score_high"]
    table = pd.DataFrame(rows, columns=columns)
    table["_clean"] = table["corruption"] != CLEAN
    table = table.sort_values(["method", "_clean", "corruption", "severity"], kind="stable")
    return table.drop(columns="_clean").reset_index(drop=True)


def robustness_ratios(summary: pd.DataFrame, per_image: pd.DataFrame, *, dataset: str, column: str) -> pd.DataFrame:
    """Corrupted/clean score ratio per method and per family, per corruption and over all corruptions.

    A method's ratio is the mean over the corrupted settings (corruption x severity) of its score divided
    by its clean score; a family's is the mean of its methods' ratios. Intervals resample test images once
    for the clean and every corrupted setting (paired), so they reflect the images, not the settings.

    Returns:
        Columns ``level`` (``method`` or ``family``), ``name``, ``family``, ``corruption`` (``all`` for every
        corruption), ``clean``, ``corrupted`` (mean corrupted score), ``ratio``, ``ratio_low``, ``ratio_high``.
    """
    cells = _robustness_cells(summary, per_image, dataset=dataset, column=column)
    methods: dict[str, dict[str, Any]] = {}
    for (m, c, s), (facts, x) in cells.items():
        entry = methods.setdefault(m, {"family": facts["family"], "clean": None, "corrupted": {}})
        if str(c) == CLEAN:
            entry["clean"] = x
        else:
            entry["corrupted"].setdefault(str(c), []).append(x)
    methods = {m: e for m, e in methods.items() if e["clean"] is not None and e["corrupted"]}
    if not methods:
        return pd.DataFrame(columns=["level", "name", "family", "corruption", "clean", "corrupted", "ratio", "ratio_low",
                                     "ratio_high"])
    images = sorted(set().union(*(e["clean"].columns for e in methods.values())))
    corruptions = sorted({c for e in methods.values() for c in e["corrupted"]})

    def aligned(x: pd.DataFrame) -> np.ndarray:
        return x.reindex(columns=images).to_numpy(float)

    def means(group: list[str], corruption: str | None, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per method of ``group``: clean and mean corrupted per-image mean under weights ``w`` -> ``(M, B)`` each."""
        clean, corrupted = [], []
        for m in group:
            xs = [x for c, v in methods[m]["corrupted"].items() if corruption in (None, c) for x in v]
            clean.append(np.nanmean(weighted_nanmean(aligned(methods[m]["clean"]), w), axis=-1))
            corrupted.append(np.mean([np.nanmean(weighted_nanmean(aligned(x), w), axis=-1) for x in xs], axis=0))
        return np.array(clean), np.array(corrupted)

    groups = [("method", m, methods[m]["family"], [m]) for m in methods]
    families = sorted({e["family"] for e in methods.values()})
    groups += [("family", f, f, [m for m in methods if methods[m]["family"] == f]) for f in families]
    rows = []
    for level, name, family, members in groups:
        for corruption in [None, *corruptions]:
            present = [m for m in members if corruption is None or corruption in methods[m]["corrupted"]]
            if not present:
                continue
            ci = bootstrap_ci(lambda w, p=present, c=corruption: np.mean(np.divide(*means(p, c, w)[::-1]), axis=0), len(images))
            clean, corrupted = means(present, corruption, np.ones((1, len(images))))
            rows.append({"level": level, "name": name, "family": family, "corruption": corruption or "all",
                         "clean": float(clean.mean()), "corrupted": float(corrupted.mean()),
                         "ratio": ci.estimate, "ratio_low": ci.low, "ratio_high": ci.high})
    return pd.DataFrame(rows)


def robustness_display(table: pd.DataFrame, ratios: pd.DataFrame) -> pd.DataFrame:
    """Markdown-ready table: a row per method and corruption, the clean score, one column per severity, the ratio."""
    clean = table[table["corruption"] == CLEAN].set_index("method")["score"]
    corrupted = table[table["corruption"] != CLEAN]
    wide = corrupted.pivot_table(index=["method", "corruption"], columns="severity", values="score", aggfunc="first")
    wide.columns = [f"severity {s}" for s in wide.columns]
    ratio = ratios[ratios["level"] == "method"].set_index(["name", "corruption"])["ratio"]
    out = wide.reset_index()
    out.insert(2, "clean", out["method"].map(clean))
    out["corrupted/clean"] = [ratio.get((m, c), np.nan) for m, c in zip(out["method"], out["corruption"])]
    return out.map(lambda v: fmt(v) if isinstance(v, float) else v)


# --------------------------------------------------------------------------------------------------------
# Report sections


def label_efficiency_blocks(run: Any, dataset: str, fig_dir: Path | None) -> list[Block]:
    """The label-efficiency section of a dataset of a ``RunData``: only when it ran several training fractions.

    Uses the run's whole tables (``all_summary``, ``all_per_image``: every fraction and corruption) and the
    per-image headline score; the figure goes to ``fig_dir`` (None leaves it out).
    """
    summary, per_image = run.all_summary, run.all_per_image
    if "train_fraction" not in summary.columns or summary.loc[summary["dataset"] == dataset, "train_fraction"].nunique() <= 1:
        return []
    label, column, _ = run.headline(dataset)
    table = label_efficiency_table(summary, per_image, dataset=dataset, column=column)
    display = pd.DataFrame({"method": table["method"], "family": table["family"],
                            "fraction": table["train_fraction"].map(lambda f: f"{f:.0%}"),
                            "training images": table["n_train"].map(lambda n: f"{n:.0f}"),
                            f"Dice {label} [95% CI]": _ci_column(table, "score")})
    blocks: list[Block] = [
        Heading(3, "Label efficiency"),
        Para("Each method trained on nested seeded subsets of the training part (val and test unchanged), "
             f"scored on the clean test images: per-image mean Dice {label} with 95% bootstrap intervals."),
        Para(label_efficiency_sentence(table, label=label)),
        Table(display)]
    if fig_dir is not None:
        path = save_figure(label_efficiency_figure({dataset: table}, {dataset: label}), fig_dir,
                           f"label_efficiency_{slug(dataset)}")
        blocks.append(Figure(path, f"{dataset}: per-image mean Dice {label} against the number of training images "
                                   "(log scale), 95% intervals; dotted with a band: a method run once (it trains on no subset)."))
    return blocks


def robustness_blocks(run: Any, dataset: str, fig_dir: Path | None) -> list[Block]:
    """The robustness section of a dataset of a ``RunData``: only when it scored corrupted test images."""
    summary, per_image = run.all_summary, run.all_per_image
    if "corruption" not in summary.columns or not (summary.loc[summary["dataset"] == dataset, "corruption"].astype(str)
                                                   != CLEAN).any():
        return []
    label, column, _ = run.headline(dataset)
    table = robustness_table(summary, per_image, dataset=dataset, column=column)
    ratios = robustness_ratios(summary, per_image, dataset=dataset, column=column)
    overall = ratios[ratios["corruption"] == "all"]
    ratio_display = pd.DataFrame({"": overall["level"], "name": overall["name"],
                                  "clean": overall["clean"].map(fmt),
                                  "corrupted (mean)": overall["corrupted"].map(fmt),
                                  "corrupted/clean [95% CI]": _ci_column(overall, "ratio")})
    blocks: list[Block] = [
        Heading(3, "Robustness"),
        Para("Methods trained once on clean data, scored on the clean test images (severity 0) and on "
             f"corrupted copies (docs/robustness.md): per-image mean Dice {label}. The corrupted/clean ratio "
             "is the mean over corrupted settings of score / clean score; a family's is the mean of its methods'."),
        Table(robustness_display(table, ratios)),
        Table(ratio_display)]
    if fig_dir is not None:
        path = save_figure(degradation_figure(table, label=label, dataset=dataset), fig_dir, f"degradation_{slug(dataset)}")
        blocks.append(Figure(path, f"{dataset}: per-image mean Dice {label} against corruption severity (0 = clean), "
                                   "one panel per corruption, 95% intervals."))
    return blocks
