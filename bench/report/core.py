"""Reports built from a run folder's records alone (never by re-running methods).

``write_report(run_dir)`` writes, into the run folder or ``out_dir``:

* ``report.md``: tables and links to ``figures/*.png`` (for a README);
* ``report.html``: one self-contained page (figures embedded as data URIs, tables, environment, config);
* ``figures/<name>.png`` and ``.svg``: scores with 95% bootstrap intervals, accuracy against latency with
  the Pareto front, per-image score distributions, a qualitative grid per dataset and, for multi-class
  datasets, row-normalised confusion matrices.

Numbers come from ``summary.csv`` and ``per_image.csv``; intervals resample images (``segbench.report.stats``):
dataset-level intervals resample the per-image confusion matrices the runner keeps in
``cells/<key>/confusion_per_image.npz`` (or, for older run folders, recomputes them from saved predictions
and the dataset's masks, checked against the cell's summed matrix). Images for the qualitative grid are
re-loaded with the dataset spec and data folder recorded in ``environment.json``; where they cannot be, the
grid is left out with a note.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image

from segbench.measure.metrics import confusion_matrix, scores_from_confusion
from segbench.run.records import PREDICTIONS_CELL_FILE, load_tables, prediction_dir, slug
from segbench.report.stats import Interval, bootstrap_ci, confusion_score, holm, weighted_nanmean, wilcoxon_p

__all__ = [
    "ALPHA",
    "RunData",
    "brief_table",
    "headline_columns",
    "latency_markdown",
    "markdown_table",
    "paired_table",
    "per_class_iou_table",
    "scores_table",
    "select_grid_images",
    "write_report",
]

#: Significance level of the paired comparisons (after Holm's correction).
ALPHA = 0.05
#: Methods shown in a qualitative grid (the best ones by the headline score); more make unreadable rows.
MAX_GRID_METHODS = 6
Format = Literal["md", "html"]


def headline_columns(summary: pd.DataFrame, dataset: str, *, prefix: str) -> tuple[str, str, str]:
    """The score columns to lead with for a dataset: ``(label, dice column, iou column)``.

    Binary datasets lead with the foreground class (the second class: lesion, person...); multi-class ones
    with the mean over classes.
    """
    rows = summary[summary["dataset"] == dataset]
    classes = [c[len(prefix) + 4 :] for c in summary.columns if c.startswith(f"{prefix}iou_") and rows[c].notna().any()]
    if len(classes) == 2:
        return classes[1], f"{prefix}dice_{classes[1]}", f"{prefix}iou_{classes[1]}"
    return "mean over classes", f"{prefix}mean_dice", f"{prefix}mean_iou"


def _fmt(value: object, digits: int = 3) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _fmt_ci(estimate: float, low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return _fmt(estimate)
    return f"{_fmt(estimate)} [{_fmt(low)}, {_fmt(high)}]"


def _fmt_p(p: float) -> str:
    if math.isnan(p):
        return "–"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table (no extra dependency); floats with 3 decimals, NaN as an en dash."""
    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])


# --------------------------------------------------------------------------------------------------------
# The run folder


def brief_table(summary: pd.DataFrame) -> str:
    """The few columns to read first, one row per cell: headline Dice both ways, train time, latency."""
    rows = []
    for r in summary.to_dict("records"):
        label, dice, _ = headline_columns(summary, r["dataset"], prefix="dataset_")
        per_image = dice.replace("dataset_", "per_image_", 1)
        rows.append({"dataset": r["dataset"], "method": r["method"], "seed": r["seed"], "status": r["status"],
                     f"Dice (dataset)": r.get(dice), "Dice (per image)": r.get(per_image), "scored class": label,
                     "train s": r.get("train_s"), "latency ms p50": r.get("latency_ms_p50")})
    return markdown_table(pd.DataFrame(rows)) if rows else "No cells."


def latency_markdown(table: pd.DataFrame) -> str:
    """Median (p95) latency in ms, its model / overhead split, peak memory, and for deep methods GFLOPs per image
    (and a roofline bound when asked): one row per method (and batch size), columns per input size; failures below."""
    ok = table[table["status"] == "ok"]
    lines = []
    if not ok.empty:
        several = ok["batch_size"].nunique() > 1
        ok = ok.assign(row=[f"{m} (batch {int(b)})" if several else m for m, b in zip(ok["method"], ok["batch_size"])])
        ok = ok.assign(v=[f"{a:.1f} ({b:.1f})" for a, b in zip(ok["latency_ms_p50"], ok["latency_ms_p95"])])
        rows, sizes = list(dict.fromkeys(ok["row"])), list(dict.fromkeys(ok["image_size"]))

        def column(values: str) -> pd.DataFrame:
            return ok.pivot(index="row", columns="image_size", values=values).reindex(index=rows, columns=sizes)

        wide = column("v")
        wide.columns = [f"{c} ms p50 (p95)" for c in wide.columns]
        wide.index.name = "method"
        parts = [("model_ms_p50", "model ms", 1), ("overhead_ms_p50", "overhead ms", 2), ("peak_mem_mb", "peak MB", 0)]
        if (ok["batch_size"] > 1).any():  # throughput is the point of a batch
            parts.append(("images_per_s", "img/s", 1))
        parts += [("flops", "GFLOPs", 2), ("roofline_ms", "roofline ms", 3)]
        for name, label, digits in parts:
            if name not in ok or ok[name].isna().all():
                continue
            values = column(name) / (1e9 if name == "flops" else 1)
            for c in values.columns:
                wide[f"{c} {label}"] = ["" if pd.isna(v) else f"{v:.{digits}f}" for v in values[c]]
        if "params" in ok and ok["params"].notna().any():
            wide["params (M)"] = [f"{v / 1e6:.2f}" if pd.notna(v) else "" for v in ok.groupby("row")["params"].first().reindex(rows)]
        first = ok.iloc[0]
        batches = ", ".join(str(int(b)) for b in dict.fromkeys(ok["batch_size"]))
        lines += [
            f"Device: {first['device_name']} ({first['device']}), {int(first['threads'])} threads, batch {batches}, "
            f"{int(first['warmup'])} warm-up + {int(first['repeats'])} timed calls. model: the method's own work at its "
            "working size; overhead: conversion, resizes and argmax (batch 1 only)."
            + (f" Roofline: lower bound on {first['roofline_device']} (bf16, from FLOPs and bytes moved)."
               if "roofline_device" in ok and pd.notna(first.get("roofline_device")) else ""),
            "",
            markdown_table(wide.reset_index()),
        ]
    for r in table[table["status"] != "ok"].itertuples():
        lines.append(f"\n{r.method} at {r.image_size}: {r.error}")
    return "\n".join(lines)


@dataclass
class RunData:
    """A run folder's tables, environment and cell records, with the per-image data the report needs.

    Build it with ``RunData.load(run_dir)``. ``notes`` collects, per dataset, what the report could not do
    and why (shown in the report).
    """

    run_dir: Path
    summary: pd.DataFrame
    per_image: pd.DataFrame
    environment: dict[str, Any]
    cells: dict[tuple[str, str, int], Path]
    notes: dict[str, list[str]] = field(default_factory=dict)
    _datasets: dict[str, Any] = field(default_factory=dict, repr=False)
    _masks: dict[tuple[str, str], tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict, repr=False)
    _scores: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunData":
        """Read ``summary.csv``, ``per_image.csv``, ``environment.json`` and the cells they came from."""
        run_dir = Path(run_dir)
        summary, per_image = load_tables(run_dir)
        env_path = run_dir / "environment.json"
        env = json.loads(env_path.read_text()) if env_path.is_file() else {}
        return cls(run_dir, summary, per_image, env, _match_cells(run_dir, summary))

    def note(self, dataset: str, text: str) -> None:
        """Record something the report left out for ``dataset`` (each text once)."""
        notes = self.notes.setdefault(dataset, [])
        if text not in notes:
            notes.append(text)

    def ok(self, dataset: str) -> pd.DataFrame:
        """Finished (``ok``) summary rows of a dataset."""
        if self.summary.empty:
            return self.summary
        return self.summary[(self.summary["dataset"] == dataset) & (self.summary["status"] == "ok")]

    def datasets(self) -> list[str]:
        """Datasets in run order."""
        return list(dict.fromkeys(self.summary["dataset"])) if not self.summary.empty else []

    def headline(self, dataset: str) -> tuple[str, str, str]:
        """``(label, per-image Dice column, per-image IoU column)`` of ``per_image.csv`` for a dataset."""
        label, dice, iou = headline_columns(self.summary, dataset, prefix="dataset_")
        return label, dice.removeprefix("dataset_"), iou.removeprefix("dataset_")

    def per_image_values(self, dataset: str, method: str, column: str) -> pd.DataFrame:
        """``(seeds x image ids)`` values of a ``per_image.csv`` column for the method's finished seeds."""
        seeds = self.ok(dataset).loc[lambda d: d["method"] == method, "seed"].tolist()
        rows = self.per_image[(self.per_image["dataset"] == dataset) & (self.per_image["method"] == method)
                              & self.per_image["seed"].isin(seeds)]
        return rows.pivot(index="seed", columns="image_id", values=column).sort_index(axis=1)

    def cell_record(self, dataset: str, method: str, seed: int) -> dict[str, Any] | None:
        """The ``cell.json`` behind a summary row, or None when the folder lacks it."""
        path = self.cells.get((dataset, method, int(seed)))
        return json.loads((path / "cell.json").read_text()) if path else None

    @cached_property
    def _config(self) -> dict[str, Any]:
        return self.environment.get("config") or {}

    def dataset(self, name: str) -> Any:
        """The run's dataset re-built from ``environment.json`` (reading data, not running methods).

        Raises:
            LookupError: With the reason it cannot be loaded (no config, no data folder...).
        """
        if name not in self._datasets:
            from segbench.datasets import build_dataset
            from segbench.datasets.base import parse_dataset_spec

            specs = [s for s in self._config.get("datasets", []) if parse_dataset_spec(s)[0] == name]
            try:
                if not specs:
                    raise LookupError("environment.json records no dataset spec for it")
                dataset = build_dataset(specs[0], data_dir=self._config.get("data_dir"),
                                        options=(self._config.get("dataset_options") or {}).get(name))
                dataset.ids()  # fail here, not halfway through a figure, when the data folder is missing
                self._datasets[name] = dataset
            except Exception as exc:  # any loader error means the same thing here: no images to show
                self._datasets[name] = LookupError(f"{type(exc).__name__}: {exc}")
        found = self._datasets[name]
        if isinstance(found, LookupError):
            raise found
        return found

    def truth(self, dataset: str, image_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        """``(mask, ignore mask)`` of one image (cached: several methods share it)."""
        key = (dataset, image_id)
        if key not in self._masks:
            sample = self.dataset(dataset).load(image_id)
            self._masks[key] = (sample.mask, sample.ignore)
        return self._masks[key]

    def prediction_path(self, dataset: str, method: str, seed: int, image_id: str) -> Path:
        """Where ``--save-predictions`` wrote a label map."""
        return prediction_dir(self.run_dir, dataset, method, seed) / f"{slug(image_id)}.png"

    def predictions_cell(self, dataset: str, method: str, seed: int) -> str | None:
        """Key of the cell whose saved label maps are in the (dataset, method, seed) folder; None if unrecorded.

        Two cells differing only in settings share that folder, and the later one overwrites it.
        """
        marker = prediction_dir(self.run_dir, dataset, method, seed) / PREDICTIONS_CELL_FILE
        return marker.read_text().strip() if marker.is_file() else None

    def predictions_match(self, dataset: str, method: str, seed: int) -> bool:
        """Whether the saved label maps belong to the cell in the tables (assumed when unrecorded: older folders)."""
        cell, path = self.predictions_cell(dataset, method, seed), self.cells.get((dataset, method, int(seed)))
        return cell is None or (path is not None and path.name == cell)

    def confusions(self, dataset: str, method: str, seed: int, image_ids: Sequence[str]) -> np.ndarray | None:
        """``(N, C, C)`` per-image confusion matrices of one cell, in the order of ``image_ids``.

        From ``confusion_per_image.npz`` when the runner wrote it; otherwise recomputed from the saved
        predictions and the dataset's masks, and kept only if they sum to the cell's recorded matrix.
        None (with a note) when neither is possible.
        """
        path = self.cells.get((dataset, method, int(seed)))
        record = self.cell_record(dataset, method, seed)
        if path is None or record is None:
            self.note(dataset, "No dataset-level intervals for cells whose folder under cells/ is missing.")
            return None
        npz = path / "confusion_per_image.npz"
        if npz.is_file():
            with np.load(npz) as data:
                index = {str(i): k for k, i in enumerate(data["image_id"])}
                if all(i in index for i in image_ids):
                    return data["confusion"][[index[i] for i in image_ids]]
        # Older run folders: rebuild the matrices from what was saved, and trust them only if they add up.
        if not self.predictions_match(dataset, method, seed):
            self.note(dataset, f"No dataset-level intervals for {method}: the cell has no confusion_per_image.npz and "
                               "its saved predictions are from another cell.")
            return None
        try:
            dataset_obj = self.dataset(dataset)
            cms = []
            for image_id in image_ids:
                pred_path = self.prediction_path(dataset, method, seed, image_id)
                if not pred_path.is_file():
                    raise LookupError(f"no saved prediction {pred_path.relative_to(self.run_dir)}")
                mask, ignore = self.truth(dataset, image_id)
                pred = np.asarray(Image.open(pred_path)).astype(np.int64)
                cms.append(confusion_matrix(mask, pred, dataset_obj.num_classes, ignore_index=dataset_obj.ignore_index,
                                            ignore_mask=ignore))
        except (LookupError, OSError, ValueError) as exc:
            self.note(dataset, f"No dataset-level intervals for {method}: the cell has no confusion_per_image.npz "
                               f"(older run folder) and they cannot be rebuilt ({exc}).")
            return None
        stacked = np.stack(cms)
        if not np.array_equal(stacked.sum(axis=0), np.asarray(record.get("confusion_matrix"))):
            self.note(dataset, f"No dataset-level intervals for {method}: the saved predictions do not add up to the "
                               "cell's confusion matrix (predictions from another setting?).")
            return None
        self.note(dataset, "Dataset-level intervals use per-image confusion matrices rebuilt from the saved predictions "
                           "(this run folder predates confusion_per_image.npz); they add up to each cell's matrix.")
        return stacked


def _match_cells(run_dir: Path, summary: pd.DataFrame) -> dict[tuple[str, str, int], Path]:
    """The cell folder behind each finished summary row: the ``cell`` column, or for older run folders by matching.

    A resumed run with a changed setting leaves the old cell's folder beside the new one (same dataset,
    method and seed): the one whose recorded timings equal the table's row is the one in the tables.
    """
    if "cell" in summary.columns:  # run folders since the cell column: a direct lookup
        ok = summary[summary["status"] == "ok"]
        return {(r.dataset, r.method, int(r.seed)): run_dir / "cells" / r.cell for r in ok.itertuples()}
    by_key: dict[tuple[str, str, int], list[tuple[Path, dict[str, Any]]]] = {}
    for path in sorted((run_dir / "cells").glob("*/cell.json")):
        s = json.loads(path.read_text())["summary"]
        if s.get("status") == "ok":
            by_key.setdefault((s["dataset"], s["method"], int(s["seed"])), []).append((path.parent, s))
    matched = {}
    ok = summary[summary["status"] == "ok"] if not summary.empty else summary
    for row in ok.itertuples():
        key = (row.dataset, row.method, int(row.seed))
        for folder, s in by_key.get(key, []):
            if all(np.isclose(float(s[c]), float(getattr(row, c)), rtol=1e-9, equal_nan=True)
                   for c in ("train_s", "latency_ms_mean", "n_test")):
                matched[key] = folder
                break
    return matched


# --------------------------------------------------------------------------------------------------------
# Tables (numeric DataFrames; rendering formats them)


#: Cost columns of summary.csv carried into the scores table: latency split, and deep methods' size and FLOPs.
_COST_COLUMNS = ("model_ms_p50", "overhead_ms_p50", "params", "flops")


def scores_table(run: RunData, dataset: str) -> pd.DataFrame:
    """One row per method: headline Dice and IoU both ways with 95% bootstrap intervals, pixel scores, cost.

    Point estimates are the means over seeds of ``summary.csv``'s columns. Intervals resample test images
    (the same resampled images for every seed, then the mean over seeds): per-image means resample the
    per-image scores; dataset-level scores resample per-image confusion matrices and re-score their sum.

    Returns:
        Columns ``method, family, seeds, n_images``, ``{dice,iou}_{dataset,per_image}`` each with ``_low`` and
        ``_high``, ``pixel_accuracy, mean_pixel_accuracy, train_s, latency_ms_p50, latency_ms_p95``,
        ``model_ms_p50, overhead_ms_p50, params, flops`` (NaN where not recorded); best
        dataset-level Dice first.
    """
    if dataset in run._scores:  # the overview figures and the dataset's section share it
        return run._scores[dataset].copy()
    ok = run.ok(dataset)
    _, dice_ds, iou_ds = headline_columns(run.summary, dataset, prefix="dataset_")
    _, dice_img, iou_img = headline_columns(run.summary, dataset, prefix="per_image_")
    class_name = dice_ds.removeprefix("dataset_dice_")
    rows = []
    for method, cells in ok.groupby("method", sort=False):
        seeds = sorted(int(s) for s in cells["seed"])
        row: dict[str, Any] = {"method": method, "family": cells["family"].iloc[0], "seeds": len(seeds),
                               "n_images": int(cells["n_test"].iloc[0])}
        values = {"dice_dataset": dice_ds, "iou_dataset": iou_ds, "dice_per_image": dice_img, "iou_per_image": iou_img}
        for key, column in values.items():
            row[key] = float(cells[column].mean())
        for metric in ("dice", "iou"):
            x = run.per_image_values(dataset, method, column=run.headline(dataset)[1 if metric == "dice" else 2])
            ci = _checked(run, dataset, method, row[f"{metric}_per_image"], x.shape[1],
                          lambda w, x=x.to_numpy(float): np.nanmean(weighted_nanmean(x, w), axis=-1), "per-image")
            row[f"{metric}_per_image_low"], row[f"{metric}_per_image_high"] = ci.low, ci.high
            ci = _dataset_interval(run, dataset, method, seeds, list(x.columns), metric, class_name, row[f"{metric}_dataset"])
            row[f"{metric}_dataset_low"], row[f"{metric}_dataset_high"] = ci.low, ci.high
        for column in ("dataset_pixel_accuracy", "dataset_mean_pixel_accuracy", "train_s", "latency_ms_p50", "latency_ms_p95"):
            row[column.removeprefix("dataset_")] = float(cells[column].mean())
        for column in _COST_COLUMNS:  # absent from runs made before the latency split and cost counts
            row[column] = float(cells[column].mean()) if column in cells else float("nan")
        rows.append(row)
    order = ["method", "family", "seeds", "n_images"]
    order += [f"{m}_{a}{s}" for m in ("dice", "iou") for a in ("dataset", "per_image") for s in ("", "_low", "_high")]
    order += ["pixel_accuracy", "mean_pixel_accuracy", "train_s", "latency_ms_p50", "latency_ms_p95", *_COST_COLUMNS]
    table = pd.DataFrame(rows, columns=order).sort_values("dice_dataset", ascending=False, kind="stable")
    run._scores[dataset] = table.reset_index(drop=True)
    return run._scores[dataset].copy()


def _checked(run: RunData, dataset: str, method: str, expected: float, n: int,
             statistic: Callable[[np.ndarray], np.ndarray], what: str) -> Interval:
    """Bootstrap interval, kept only if its point estimate reproduces the table's value."""
    ci = bootstrap_ci(statistic, n)
    if not np.isclose(ci.estimate, expected, rtol=1e-9, atol=1e-12, equal_nan=True):
        run.note(dataset, f"No {what} interval for {method}: the records do not reproduce summary.csv "
                          f"({ci.estimate:.6f} vs {expected:.6f}).")
        return Interval(expected, float("nan"), float("nan"))
    return ci


def _dataset_interval(run: RunData, dataset: str, method: str, seeds: list[int], image_ids: list[str],
                      metric: Literal["dice", "iou"], class_name: str, expected: float) -> Interval:
    stacks = [run.confusions(dataset, method, s, image_ids) for s in seeds]
    if any(s is None for s in stacks):
        return Interval(expected, float("nan"), float("nan"))
    record = run.cell_record(dataset, method, seeds[0]) or {}
    names = record.get("class_names", [])
    class_index = names.index(class_name) if class_name in names else None
    cms = np.stack(stacks)  # (S, N, C, C)

    def statistic(w: np.ndarray) -> np.ndarray:
        return np.mean([confusion_score(c, w, score=metric, class_index=class_index) for c in cms], axis=0)

    return _checked(run, dataset, method, expected, len(image_ids), statistic, "dataset-level")


def paired_table(run: RunData, dataset: str, *, alpha: float = ALPHA) -> pd.DataFrame:
    """Every pair of methods on the same test images: mean per-image headline Dice difference and tests.

    Per image, a method's Dice is averaged over its seeds; images where either method's Dice is undefined
    are left out. The difference is ``A - B`` with A the method of higher per-image mean Dice; its interval
    is a BCa bootstrap over images; the p-value is the two-sided Wilcoxon signed-rank test, Holm-corrected
    over all pairs of the dataset.

    Returns:
        Columns ``method_a, method_b, n_images, dice_a, dice_b, diff, diff_low, diff_high, p_wilcoxon,
        p_holm, significant, verdict``; empty with fewer than two methods.
    """
    column = run.headline(dataset)[1]
    methods = list(dict.fromkeys(run.ok(dataset)["method"]))
    per_method = {m: run.per_image_values(dataset, m, column).mean(axis=0) for m in methods}
    methods.sort(key=lambda m: -np.nan_to_num(per_method[m].mean(), nan=-np.inf))
    rows = []
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            both = pd.concat([per_method[a], per_method[b]], axis=1, join="inner").dropna()
            x, y = both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy()
            d = x - y
            ci = bootstrap_ci(lambda w, d=d: weighted_nanmean(d, w), len(d))
            rows.append({"method_a": a, "method_b": b, "n_images": len(d), "dice_a": float(x.mean()) if len(d) else np.nan,
                         "dice_b": float(y.mean()) if len(d) else np.nan, "diff": ci.estimate, "diff_low": ci.low,
                         "diff_high": ci.high, "p_wilcoxon": wilcoxon_p(d)})
    columns = ["method_a", "method_b", "n_images", "dice_a", "dice_b", "diff", "diff_low", "diff_high", "p_wilcoxon",
               "p_holm", "significant", "verdict"]
    table = pd.DataFrame(rows, columns=columns)
    if table.empty:
        return table
    table["p_holm"] = holm(table["p_wilcoxon"].to_numpy(float))
    table["significant"] = table["p_holm"] < alpha
    table["verdict"] = [
        (f"{r.method_a} better" if r.diff > 0 else f"{r.method_b} better") if r.significant else "no significant difference"
        for r in table.itertuples()
    ]
    return table


def per_class_iou_table(run: RunData, dataset: str) -> pd.DataFrame:
    """Dataset-level IoU per class and method (mean over seeds), best mean IoU first; for multi-class data."""
    ok = run.ok(dataset)
    columns = [c for c in run.summary.columns if c.startswith("dataset_iou_") and ok[c].notna().any()]
    table = ok.groupby("method", sort=False)[[*columns, "dataset_mean_iou"]].mean()
    table.columns = [c.removeprefix("dataset_iou_") if c != "dataset_mean_iou" else "mean IoU" for c in table.columns]
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


# --------------------------------------------------------------------------------------------------------
# Report content: a list of blocks rendered to markdown and to HTML, so both show the same things


@dataclass
class _Heading:
    level: int
    text: str


@dataclass
class _Para:
    text: str  # plain text; `code` spans are kept in both formats


@dataclass
class _Table:
    df: pd.DataFrame  # cells already formatted as strings


@dataclass
class _Figure:
    path: Path
    caption: str


@dataclass
class _Code:
    text: str
    lang: str = ""


@dataclass
class _Details:
    summary: str
    blocks: list[Any]


def _scores_display(table: pd.DataFrame, label: str) -> pd.DataFrame:
    out = pd.DataFrame({"method": table["method"], "seeds": table["seeds"], "images": table["n_images"]})
    for metric, name in (("dice", "Dice"), ("iou", "IoU")):
        for agg, agg_name in (("dataset", "dataset-level"), ("per_image", "per-image mean")):
            out[f"{name} {label}, {agg_name} [95% CI]"] = [
                _fmt_ci(e, lo, hi) for e, lo, hi in table[[f"{metric}_{agg}", f"{metric}_{agg}_low", f"{metric}_{agg}_high"]].to_numpy(float)
            ]
    out["pixel acc (dataset)"] = table["pixel_accuracy"].map(_fmt)
    out["mPA (dataset)"] = table["mean_pixel_accuracy"].map(_fmt)
    out["train s"] = table["train_s"].map(lambda v: _fmt(v, 1))
    out["latency ms p50"] = table["latency_ms_p50"].map(lambda v: _fmt(v, 1))
    out["latency ms p95"] = table["latency_ms_p95"].map(lambda v: _fmt(v, 1))
    out["model ms p50"] = table["model_ms_p50"].map(lambda v: _fmt(v, 1))
    out["overhead ms p50"] = table["overhead_ms_p50"].map(lambda v: _fmt(v, 2))
    if table["flops"].notna().any():  # deep methods only
        out["GFLOPs"] = (table["flops"] / 1e9).map(lambda v: _fmt(v, 2))
        out["params M"] = (table["params"] / 1e6).map(lambda v: _fmt(v, 2))
    return out


def _paired_display(table: pd.DataFrame, label: str) -> pd.DataFrame:
    return pd.DataFrame({
        "A": table["method_a"],
        "B": table["method_b"],
        "images": table["n_images"],
        f"mean Dice {label} A": table["dice_a"].map(_fmt),
        f"mean Dice {label} B": table["dice_b"].map(_fmt),
        "A − B [95% CI]": [_fmt_ci(e, lo, hi) for e, lo, hi in table[["diff", "diff_low", "diff_high"]].to_numpy(float)],
        "Wilcoxon p": table["p_wilcoxon"].map(_fmt_p),
        "Holm p": table["p_holm"].map(_fmt_p),
        "verdict": table["verdict"],
    })


def _paired_sentence(table: pd.DataFrame, label: str) -> str:
    if table.empty:
        return "One method only: nothing to compare."
    sig = table[table["significant"]]
    head = (f"Significant at {ALPHA:g} after Holm's correction over {len(table)} pair(s): " if len(sig)
            else f"No difference is significant at {ALPHA:g} after Holm's correction over {len(table)} pair(s).")
    parts = []
    for r in sig.itertuples():
        winner, loser, diff = (r.method_a, r.method_b, r.diff) if r.diff > 0 else (r.method_b, r.method_a, -r.diff)
        parts.append(f"{winner} > {loser} (Dice {label} +{diff:.3f} per image, Holm p = {_fmt_p(r.p_holm)})")
    text = head + "; ".join(parts) + ("." if parts else "")
    # The two tools answer different questions; say so where they disagree instead of letting one hide the other.
    for r in table[~table["significant"] & ((table["diff_low"] > 0) | (table["diff_high"] < 0))].itertuples():
        text += (f" For {r.method_a} vs {r.method_b} the interval of the mean difference excludes 0 but the signed-rank "
                 "test does not reject: the mean gap comes from a few images with large differences, not from a "
                 "consistent shift over images (see the per-image figure).")
    return text


def _dataset_blocks(run: RunData, dataset: str, fig_dir: Path | None) -> list[Any]:
    d = run.summary[run.summary["dataset"] == dataset]
    ok = run.ok(dataset)
    blocks: list[Any] = [_Heading(2, dataset)]
    if not ok.empty:
        first = ok.iloc[0]
        label = headline_columns(run.summary, dataset, prefix="dataset_")[0]
        if first["eval_split"] == "test":
            split = f"{int(first['n_train'])} train / {int(first['n_val'])} val / {int(first['n_test'])} test images. "
        else:  # no test split (CamVid here): trained on train without early stopping, scored on val
            split = f"{int(first['n_train'])} train images; scored on the {int(first['n_test'])} val images (no test split). "
        blocks.append(_Para(
            split +
            "Dataset-level scores sum the confusion matrices of all images, then score (every pixel weighs the same); "
            "per-image means score each image, then average (every image weighs the same). Intervals: 95% BCa "
            "bootstrap over test images (2000 resamples, seed 0). Latency: one image, batch 1, "
            f"{first['device_name']}."
        ))
        scores = scores_table(run, dataset)
        blocks += [_Heading(3, "Scores"), _Table(_scores_display(scores, label))]
        if len(scores) > 1:
            paired = paired_table(run, dataset)
            blocks += [
                _Heading(3, "Paired comparisons"),
                _Para(f"Each pair on the same images: mean per-image difference of Dice {label} (A − B) with its "
                      "95% bootstrap interval, two-sided Wilcoxon signed-rank p-value, and that p-value Holm-corrected "
                      "over the pairs of this dataset."),
                _Table(_paired_display(paired, label)),
                _Para(_paired_sentence(paired, label)),
            ]
        multi = sum(1 for c in run.summary.columns if c.startswith("dataset_iou_") and ok[c].notna().any()) > 2
        if multi:
            blocks += [_Heading(3, "Per-class IoU (dataset-level)"),
                       _Table(per_class_iou_table(run, dataset).map(lambda v: _fmt(v) if not isinstance(v, str) else v))]
            if fig_dir is not None:
                blocks += _confusion_blocks(run, dataset, fig_dir)
        if fig_dir is not None:
            blocks += _grid_blocks(run, dataset, scores, fig_dir)
    skipped = d[d["status"] == "skipped"].drop_duplicates("method")
    blocks += [_Para(f"Skipped: {r.method} ({r.error}).") for r in skipped.itertuples()]
    blocks += [_Para(f"Note: {n}") for n in run.notes.get(dataset, [])]
    return blocks


def _confusion_blocks(run: RunData, dataset: str, fig_dir: Path) -> list[Any]:
    from segbench.report.figures import confusion_figure, save_figure

    matrices, names = {}, None
    for method, cells in run.ok(dataset).groupby("method", sort=False):
        records = [run.cell_record(dataset, method, s) for s in cells["seed"]]
        if all(r and r.get("confusion_matrix") for r in records):
            matrices[method] = np.sum([np.asarray(r["confusion_matrix"]) for r in records], axis=0)
            names = records[0]["class_names"]
    if not matrices or names is None:
        run.note(dataset, "No confusion matrices: the cell records under cells/ are missing.")
        return []
    path = save_figure(confusion_figure(matrices, names, dataset=dataset), fig_dir, f"confusion_{slug(dataset)}")
    return [_Figure(path, f"{dataset}: dataset-level confusion matrices, each row normalised to 1 (rows = truth, "
                          "summed over seeds): where each class's pixels went.")]


def _grid_blocks(run: RunData, dataset: str, scores: pd.DataFrame, fig_dir: Path) -> list[Any]:
    from segbench.report.figures import GridRow, qualitative_figure, save_figure

    seed = int(run.ok(dataset)["seed"].min())
    methods = [m for m in scores["method"] if prediction_dir(run.run_dir, dataset, m, seed).is_dir()]
    stale = [m for m in methods if not run.predictions_match(dataset, m, seed)]
    if stale:
        run.note(dataset, f"Not in the qualitative grid: {', '.join(stale)}: their saved predictions are from another "
                          "cell (a later run with other settings overwrote them); rerun with --save-predictions.")
        methods = [m for m in methods if m not in stale]
    if not methods:
        run.note(dataset, "No qualitative grid: no saved predictions (run with --save-predictions).")
        return []
    try:
        data = run.dataset(dataset)
    except LookupError as exc:
        run.note(dataset, f"No qualitative grid: the dataset's images cannot be loaded ({exc}).")
        return []
    column = run.headline(dataset)[1]
    by_method = {m: run.per_image_values(dataset, m, column) for m in methods}
    shown = [m for m in methods if seed in by_method[m].index][:MAX_GRID_METHODS]
    if not shown:
        run.note(dataset, f"No qualitative grid: no method has per-image scores for seed {seed}.")
        return []
    values = pd.DataFrame({m: by_method[m].loc[seed] for m in shown})
    rows = []
    for label, image_id in select_grid_images(values.sort_index(), shown[0]):
        sample = data.load(image_id)
        preds: dict[str, np.ndarray | None] = {}
        dice: dict[str, float] = {}
        for m in shown:
            path = run.prediction_path(dataset, m, seed, image_id)
            preds[m] = np.asarray(Image.open(path)).astype(np.int64) if path.is_file() else None
            if preds[m] is None:
                continue
            s = scores_from_confusion(confusion_matrix(sample.mask, preds[m], data.num_classes,
                                                       ignore_index=data.ignore_index, ignore_mask=sample.ignore))
            binary = data.num_classes == 2
            dice[m] = float(s["dice"][1]) if binary else float(s["mean_dice"])
            expected = float(values.loc[image_id, m]) if m in values else float("nan")
            if not np.isclose(dice[m], expected, rtol=1e-6, equal_nan=True):
                run.note(dataset, f"The saved prediction of {m} for {image_id} scores {dice[m]:.3f}, not the table's "
                                  f"{expected:.3f}: the predictions folder may hold an earlier setting's output.")
        rows.append(GridRow(label, image_id, sample.image, sample.mask, preds, dice))
    if not rows:
        run.note(dataset, "No qualitative grid: no per-image scores to choose images by.")
        return []
    fig = qualitative_figure(rows, list(data.class_names), ignore_index=data.ignore_index, dataset=dataset)
    path = save_figure(fig, fig_dir, f"qualitative_{slug(dataset)}", quantize=True)
    legend = ("overlays: yellow = true lesion; per method green = correct, red = false positive, blue = missed"
              .replace("lesion", str(data.class_names[1])) if data.num_classes == 2 else "overlays: predicted classes")
    more = f" Only the {MAX_GRID_METHODS} best methods are shown." if len(methods) > MAX_GRID_METHODS else ""
    return [_Figure(path, f"{dataset}: best, median and worst test image for {shown[0]} (best dataset-level Dice) and "
                          f"the image where methods disagree most (seed {seed}); {legend}.{more}")]


def _overview_blocks(run: RunData, fig_dir: Path) -> list[Any]:
    from segbench.report.figures import accuracy_latency_figure, per_image_figure, save_figure, scores_figure

    scores, labels, long = {}, {}, {}
    for ds in run.datasets():
        if run.ok(ds).empty:
            continue
        scores[ds] = scores_table(run, ds)
        labels[ds] = headline_columns(run.summary, ds, prefix="dataset_")[0]
        column = run.headline(ds)[1]
        rows = run.per_image[(run.per_image["dataset"] == ds) & run.per_image["method"].isin(scores[ds]["method"])]
        long[ds] = rows.rename(columns={column: "value"})[["method", "value"]].dropna()
    if not scores:
        return []
    blocks: list[Any] = [_Heading(2, "Overview")]
    path = save_figure(scores_figure(scores, labels), fig_dir, "scores")
    blocks.append(_Figure(path, "Headline Dice and IoU per method with 95% bootstrap intervals over test images: "
                                "dataset-level (pooled pixels) and per-image mean."))
    path = save_figure(accuracy_latency_figure(scores, labels), fig_dir, "accuracy_vs_latency")
    blocks.append(_Figure(path, "Dataset-level Dice against median latency per image (log scale), one point per method "
                                "(mean over seeds); the dashed line is the Pareto front (no method is both faster and better)."))
    if any(len(v) for v in long.values()):
        path = save_figure(per_image_figure({k: v for k, v in long.items() if len(v)}, labels), fig_dir, "per_image_dice")
        blocks.append(_Figure(path, "Per-image Dice: box over test images (every seed), each image a point."))
    return blocks


def _environment_blocks(run: RunData) -> list[Any]:
    env = run.environment
    if not env:
        return [_Heading(2, "Environment and config"), _Para("No environment.json in the run folder.")]
    keys = ["created", "command", "python", "platform", "cpu", "cpu_count", "torch_threads", "gpu", "cuda_version", "git_commit"]
    facts = pd.DataFrame({"": keys, "value": [" ".join(env[k]) if isinstance(env.get(k), list) else str(env.get(k)) for k in keys]})
    packages = pd.DataFrame({"package": list(env.get("packages", {})), "version": [str(v) for v in env.get("packages", {}).values()]})
    return [_Heading(2, "Environment and config"),
            _Details("Machine, packages and the run's full config (environment.json)",
                     [_Table(facts), _Table(packages), _Code(json.dumps(env.get("config", {}), indent=1), "json")])]


def _build(run: RunData, fig_dir: Path | None) -> list[Any]:
    env = run.environment
    blocks: list[Any] = [_Heading(1, f"segbench report: {run.run_dir.name}")]
    if env:
        blocks.append(_Para(f"Run {env.get('created')} on {env.get('cpu')} ({env.get('torch_threads')} torch threads"
                            + (f", GPU {env['gpu']}" if env.get("gpu") else "") + f"), segbench commit {env.get('git_commit')}."))
    if run.summary.empty:
        return blocks + [_Para("No finished cells yet.")]
    if fig_dir is not None:
        blocks += _overview_blocks(run, fig_dir)
    for ds in run.datasets():
        blocks += _dataset_blocks(run, ds, fig_dir)
    failed = run.summary[run.summary["status"] == "failed"]
    if len(failed):
        blocks += [_Heading(2, "Failed cells"), _Table(failed[["dataset", "method", "seed", "error"]].astype(str))]
    return blocks + _environment_blocks(run)


# --------------------------------------------------------------------------------------------------------
# Rendering


def _markdown(blocks: Iterable[Any], out_dir: Path) -> str:
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, _Heading):
            lines += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, _Para):
            lines += [b.text, ""]
        elif isinstance(b, _Table):
            lines += [markdown_table(b.df), ""]
        elif isinstance(b, _Figure):
            rel = b.path.relative_to(out_dir).as_posix()
            lines += [f"![{b.path.stem}]({rel})", "", f"*{b.caption}*", ""]
        elif isinstance(b, _Code):
            lines += [f"```{b.lang}", b.text, "```", ""]
        elif isinstance(b, _Details):
            lines += ["<details>", f"<summary>{html.escape(b.summary, quote=False)}</summary>", "", _markdown(b.blocks, out_dir), "</details>", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


_NUMERIC = re.compile(r"^[-+–]?[\d.]+(e[-+]?\d+)?( \[.*\])?$|^–$")

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:13px}th,td{border:1px solid #ddd;padding:3px 8px}
th{background:#f4f4f4;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fafafa}figure{margin:1em 0}figure img{max-width:100%;height:auto}
figcaption{color:#555;font-size:13px}pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:12px}
#image-check{display:none}
"""

# Records, in the page itself, whether every figure decoded: a headless browser (tests/test_report_html.py)
# reads it back from the DOM; a reader never sees it.
_CHECK_JS = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.getElementById("image-check").textContent = JSON.stringify({images: imgs.length, loaded: ok});
});
"""


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            text = _fmt(v)
            cls = ' class="n"' if _NUMERIC.match(text) else ""
            cells.append(f"<td{cls}>{html.escape(text, quote=False)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_blocks(blocks: Iterable[Any]) -> list[str]:
    parts = []
    for b in blocks:
        if isinstance(b, _Heading):
            parts.append(f"<h{b.level}>{html.escape(b.text, quote=False)}</h{b.level}>")
        elif isinstance(b, _Para):
            parts.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, _Table):
            parts.append(_html_table(b.df))
        elif isinstance(b, _Figure):
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.path.stem)}" '
                'onload="this.dataset.loaded=this.naturalWidth" onerror="this.dataset.failed=1">'
                f"<figcaption>{_inline(b.caption)}</figcaption></figure>"
            )
        elif isinstance(b, _Code):
            parts.append(f"<pre><code>{html.escape(b.text, quote=False)}</code></pre>")
        elif isinstance(b, _Details):
            parts.append(f"<details><summary>{html.escape(b.summary, quote=False)}</summary>{''.join(_html_blocks(b.blocks))}</details>")
    return parts


def _html(blocks: list[Any]) -> str:
    title = next((b.text for b in blocks if isinstance(b, _Heading)), "segbench report")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>\n<body>\n'
        + "\n".join(_html_blocks(blocks))
        + f'\n<pre id="image-check"></pre>\n<script>{_CHECK_JS}</script>\n</body></html>\n'
    )


def write_report(
    run_dir: str | Path,
    *,
    out_dir: str | Path | None = None,
    formats: Sequence[Format] = ("md", "html"),
    figures: bool = True,
) -> str:
    """Write the report of a run folder; returns the markdown.

    Args:
        run_dir: A folder written by ``segbench run``.
        out_dir: Where ``report.md``, ``report.html`` and ``figures/`` go (default: the run folder).
        formats: Which of ``"md"`` and ``"html"`` to write (figures are always PNG and SVG).
        figures: False skips every figure (tables only; fast).

    Raises:
        FileNotFoundError: ``run_dir`` holds no ``summary.csv``.
        ValueError: An unknown format.
    """
    bad = [f for f in formats if f not in ("md", "html")]
    if bad:
        raise ValueError(f"unknown report format(s) {bad}; choose from md, html (e.g. --format html,md)")
    run = RunData.load(run_dir)
    out = Path(out_dir) if out_dir is not None else run.run_dir
    out.mkdir(parents=True, exist_ok=True)
    blocks = _build(run, out / "figures" if figures else None)
    text = _markdown(blocks, out)
    if "md" in formats:
        (out / "report.md").write_text(text)
    if "html" in formats:
        (out / "report.html").write_text(_html(blocks))
    return text
