"""Report figures (seaborn on matplotlib's Agg backend), each saved as PNG and SVG.

The functions take tidy tables already computed by ``segbench.report`` and never read a run folder, so
every number a figure shows is a number of the report's tables.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image

from segbench.measure.schema import CLEAN

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "GridRow",
    "accuracy_latency_figure",
    "compute_figure",
    "confusion_figure",
    "learning_curves_figure",
    "degradation_figure",
    "label_efficiency_figure",
    "pareto_front",
    "per_image_figure",
    "qualitative_figure",
    "reliability_figure",
    "scores_figure",
    "series_styles",
    "spread_labels",
    "throughput_figure",
]

_DPI = 110
#: Longer side, in pixels, of each thumbnail of the qualitative grid (keeps the PNG well under 500 KB).
_THUMB = 176
_MAX_COLUMNS = 3  # dataset panels per figure row
#: Binary overlays colour each pixel by its outcome: correct foreground, false positive, missed foreground.
#: Okabe-Ito colours (blue, vermillion, yellow), told apart with every common colour-vision deficiency (red
#: against green is not); the truth has the colour of a correct pixel.
_OUTCOME_COLOURS = {"correct": (0.0, 0.45, 0.70), "false positive": (0.84, 0.37, 0.0), "missed": (0.94, 0.89, 0.26)}
_GT_COLOUR = _OUTCOME_COLOURS["correct"]
#: Series (methods) are told apart by colour from seaborn's colour-blind-safe palette; past its first
#: ``_COLOURS`` colours, by marker and line style too, so no two series of a figure look alike.
_COLOURS = 8
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", ":", "-.")
#: The floor method (``segbench.report.verdict.FLOOR``), drawn as a line where it is a series.
_FLOOR = "constant"
_ALPHA = 0.5


def _pyplot() -> tuple[ModuleType, ModuleType]:
    """``(pyplot, seaborn)`` on the Agg backend with the report's theme.

    Imported here, late: pyplot and seaborn take ~1.7 s to import on this project's machine, which every
    command would pay (``segbench list``, a run with no figures); the other matplotlib imports in this module
    follow a call of this function, so they cost nothing more.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    plt.rcParams["svg.fonttype"] = "none"  # text stays text in SVG: smaller and searchable
    plt.rcParams["svg.hashsalt"] = "segbench"  # stable ids, so the same run gives the same SVG
    return plt, sns


def save_figure(fig: Figure, fig_dir: Path, name: str, *, quantize: bool = False) -> Path:
    """Save ``fig`` as ``<name>.png`` and ``<name>.svg`` under ``fig_dir``, close it, return the PNG path.

    Args:
        quantize: Store the PNG with a 256-colour palette; photographs (the qualitative grid) otherwise make
            PNGs of several MB.
    """
    plt, _ = _pyplot()
    fig_dir.mkdir(parents=True, exist_ok=True)
    png = fig_dir / f"{name}.png"
    if quantize:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=_DPI)
        Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)
    else:
        fig.savefig(png, dpi=_DPI, metadata={"Software": None})
    fig.savefig(fig_dir / f"{name}.svg", metadata={"Date": None})
    plt.close(fig)
    return png


@dataclass(frozen=True)
class SeriesStyle:
    """How one series (a method) is drawn: colour, marker, line style."""

    colour: tuple[float, float, float]
    marker: str
    linestyle: str


def series_styles(names: Sequence[Any]) -> dict[Any, SeriesStyle]:
    """A colour-blind-safe, distinct style per name: the ``colorblind`` palette's first ``_COLOURS`` colours,
    then the same colours again with the next marker and line style (series i and j differ in colour, or in
    both marker and line style)."""
    _, sns = _pyplot()
    colours = sns.color_palette("colorblind", _COLOURS)
    return {name: SeriesStyle(tuple(colours[i % _COLOURS]), _MARKERS[(i // _COLOURS) % len(_MARKERS)],
                              _LINESTYLES[(i // _COLOURS) % len(_LINESTYLES)])
            for i, name in enumerate(names)}


def _panels(n: int, width: float, height: float) -> tuple[Figure, list[Axes]]:
    """A figure of ``n`` panels of ``width x height`` inches, at most ``_MAX_COLUMNS`` per row."""
    plt, _ = _pyplot()
    cols = min(n, _MAX_COLUMNS)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def scores_figure(scores: Mapping[str, pd.DataFrame], labels: Mapping[str, str]) -> Figure:
    """Headline Dice and IoU per method with 95% bootstrap intervals, both aggregations, per dataset.

    Args:
        scores: Per dataset, the numeric table of ``segbench.report.scores_table`` (columns
            ``dice_dataset``, ``dice_dataset_low``, ... ``iou_per_image_high``), best method first.
        labels: Per dataset, the headline label (``"lesion"`` or ``"mean over classes"``).
    """
    plt, sns = _pyplot()
    datasets = list(scores)
    n_methods = max(len(t) for t in scores.values())
    fig, axes = plt.subplots(len(datasets), 2, figsize=(9.0, 1.2 + 0.42 * n_methods * len(datasets) + 0.5 * len(datasets)), squeeze=False)
    palette = sns.color_palette("colorblind", 2)
    for row, ds in zip(axes, datasets):
        table = scores[ds]
        y = np.arange(len(table))
        for ax, metric in zip(row, ("dice", "iou")):
            for k, (agg, name) in enumerate((("dataset", "dataset-level"), ("per_image", "per-image mean"))):
                est = table[f"{metric}_{agg}"].to_numpy(float)
                low, high = table[f"{metric}_{agg}_low"].to_numpy(float), table[f"{metric}_{agg}_high"].to_numpy(float)
                err = np.vstack([est - low, high - est])
                err = np.where(np.isnan(err), 0.0, err)  # no interval: draw the point alone
                ax.errorbar(est, y + (k - 0.5) * 0.3, xerr=err, fmt="os"[k], ms=5, capsize=3, color=palette[k], label=name)
            _floor_line(ax, table, f"{metric}_dataset", vertical=True)
            ax.set_yticks(y, table["method"])
            ax.invert_yaxis()
            ax.set(xlabel=f"{'Dice' if metric == 'dice' else 'IoU'} {labels[ds]}", title=f"{ds}: {'Dice' if metric == 'dice' else 'IoU'}")
    handles, names = axes[0][0].get_legend_handles_labels()
    # Below the panels: inside, the legend would cover intervals.
    fig.legend(handles, [n if n.startswith("floor") else f"{n} (95% CI)" for n in names], loc="lower center",
               ncol=len(names), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.3 / fig.get_figheight(), 1, 1))
    return fig


def _floor_line(ax: Axes, table: pd.DataFrame, column: str, *, vertical: bool) -> None:
    """The floor method's score as a dotted line across the panel (where the table has it)."""
    floor = table.loc[table["method"] == _FLOOR, column]
    if len(floor) and not np.isnan(floor.iloc[0]):
        line = ax.axvline if vertical else ax.axhline
        line(float(floor.iloc[0]), color="0.35", ls=":", lw=1, zorder=1, label=f"floor ({_FLOOR})")


def pareto_front(latency: Sequence[float], score: Sequence[float]) -> np.ndarray:
    """Indices of the points no other point beats on both axes (lower latency and higher score), by latency.

    Example:
        >>> pareto_front([10, 20, 30, 5], [0.8, 0.9, 0.85, 0.5]).tolist()
        [3, 0, 1]
    """
    lat, sc = np.asarray(latency, float), np.asarray(score, float)
    ok = np.flatnonzero(~(np.isnan(lat) | np.isnan(sc)))
    order = ok[np.lexsort((-sc[ok], lat[ok]))]  # by latency, ties: best score first
    front, best = [], -np.inf
    for i in order:
        if sc[i] > best:
            front.append(i)
            best = sc[i]
    return np.array(front, dtype=int)


def accuracy_latency_figure(points: Mapping[str, pd.DataFrame], labels: Mapping[str, str]) -> Figure:
    """Dataset-level headline Dice against median latency (log axis), one point per method, Pareto front.

    Args:
        points: Per dataset, rows with ``method``, ``family``, ``latency_ms_p50``, ``dice_dataset`` and its
            ``dice_dataset_low``/``_high`` interval.
        labels: Per dataset, the headline label.
    """
    _, sns = _pyplot()
    from matplotlib.ticker import FuncFormatter

    most = max((len(d) for d in points.values()), default=0)
    fig, axes = _panels(len(points), 4.8 + 0.05 * most, 3.8 + 0.08 * most)  # room for many labels
    panel_names = []
    for ax, (ds, d) in zip(axes, points.items()):
        d = d.reset_index(drop=True)
        # Colour by family and name each point: a legend of many method colours is hard to match by eye.
        sns.scatterplot(data=d, x="latency_ms_p50", y="dice_dataset", hue="family", style="family", s=60, ax=ax, zorder=3,
                        palette=dict(zip(sorted(d["family"].unique()), sns.color_palette("colorblind"))))
        _floor_line(ax, d, "dice_dataset", vertical=False)
        err = np.vstack([d["dice_dataset"] - d["dice_dataset_low"], d["dice_dataset_high"] - d["dice_dataset"]])
        ax.errorbar(d["latency_ms_p50"], d["dice_dataset"], yerr=np.nan_to_num(err), fmt="none", ecolor="0.65", lw=1, zorder=2)
        front = pareto_front(d["latency_ms_p50"], d["dice_dataset"])
        if len(front):
            f = d.loc[front]
            ax.step(f["latency_ms_p50"], f["dice_dataset"], where="post", color="0.25", ls="--", lw=1, zorder=1)
            ax.scatter(f["latency_ms_p50"], f["dice_dataset"], s=160, facecolors="none", edgecolors="0.25", lw=1,
                       label="Pareto front", zorder=4)
        names = [ax.annotate(r.method, (r.latency_ms_p50, r.dice_dataset), xytext=(8, -3), textcoords="offset points",
                             fontsize=7, zorder=5) for r in d.itertuples()]
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        # Label the 2x, 3x and 5x minor ticks too: latencies often span less than a decade.
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "235" else ""))
        ax.tick_params(axis="x", which="both", labelsize=7)
        ax.margins(x=0.15, y=0.1)
        ax.set(title=ds, xlabel="median latency per image, ms (log scale)", ylabel=f"Dice {labels[ds]} (dataset-level, 95% CI)")
        ax.legend(fontsize=6, loc="best")
        panel_names.append(names)
    fig.tight_layout()
    for names in panel_names:  # after the layout: label sizes and point positions are final in pixels
        _unstack_labels(fig, names)
    return fig


def throughput_figure(table: pd.DataFrame) -> Figure | None:
    """Images per second against batch size (log 2 axis), one line per deep method and input size.

    Args:
        table: ``segbench latency`` rows with ``method``, ``image_size``, ``batch_size``, ``images_per_s``,
            ``family`` and ``status``. Only deep methods (whose network runs once per batch) are drawn.

    Returns:
        The figure, or None when no deep method was timed.
    """
    ok = table[(table["status"] == "ok") & (table["family"] == "deep")]
    if ok.empty:
        return None
    plt, sns = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=_DPI)
    d = ok.assign(input=ok["image_size"].astype(str))
    sns.lineplot(data=d, x="batch_size", y="images_per_s", hue="method", style="input", markers=True, ax=ax,
                 palette=sns.color_palette("colorblind", d["method"].nunique()))
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(d["batch_size"].unique()), labels=[str(int(b)) for b in sorted(d["batch_size"].unique())])
    ax.set(xlabel="batch size (images per forward pass)", ylabel="images per second (p50)",
           title=f"Throughput on {d['device_name'].iloc[0]}")
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def spread_labels(x: Sequence[float], y: Sequence[float], width: Sequence[float], height: Sequence[float],
                  *, obstacles: Sequence[tuple[float, float, float, float]] = (), pad: float = 1.0,
                  step: float = 1.0, max_shift: float = 400.0) -> np.ndarray:
    """New bottoms for label boxes (left ``x``, bottom ``y``), moved vertically so that none overlap.

    Greedy, top label first: each label takes the position nearest its own (tried ``step`` apart, up and
    down in turn) where its box, grown by ``pad``, touches no label placed before it and no ``obstacles``
    box ``(x0, y0, x1, y1)`` (the plotted markers). A label with no free place within ``max_shift`` keeps
    its own. Units are the caller's (pixels).

    Example:
        >>> spread_labels([0, 0], [0, 2], [10, 10], [4, 4], pad=0).tolist()
        [-2.0, 2.0]
    """
    x, w, h = (np.asarray(v, float) for v in (x, width, height))
    y = np.asarray(y, float)
    taken = [tuple(map(float, b)) for b in obstacles]
    out = y.copy()

    def free(x0: float, y0: float, x1: float, y1: float) -> bool:
        return all(x0 >= bx1 or bx0 >= x1 or y0 >= by1 + pad or by0 >= y1 + pad for bx0, by0, bx1, by1 in taken)

    for i in sorted(range(len(y)), key=lambda i: (-y[i], i)):
        shifts = (k * step * sign for k in range(int(max_shift / step) + 1) for sign in ((1,) if k == 0 else (1, -1)))
        out[i] = next((y[i] + d for d in shifts if free(x[i], y[i] + d, x[i] + w[i], y[i] + d + h[i])), y[i])
        taken.append((x[i], out[i], x[i] + w[i], out[i] + h[i]))
    return out


def _unstack_labels(fig: Figure, names: Sequence) -> None:
    """Move point labels off each other and off the markers; tie a moved label to its point with a thin line."""
    if len(names) < 2:
        return
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in names]
    radius = 6 * fig.dpi / 72  # the Pareto ring's radius (s=160 pt^2), the largest marker
    points = names[0].axes.transData.transform([t.xy for t in names])
    markers = [(px - radius, py - radius, px + radius, py + radius) for px, py in points]
    new_y = spread_labels([b.x0 for b in boxes], [b.y0 for b in boxes], [b.width for b in boxes],
                          [b.height for b in boxes], obstacles=markers)
    to_points = 72 / fig.dpi
    for t, b, y in zip(names, boxes, new_y):
        shift = y - b.y0
        if abs(shift) < 0.5:
            continue
        dx, dy = t.xyann
        line = {"arrowstyle": "-", "color": "0.6", "lw": 0.5, "shrinkA": 0, "shrinkB": 3} if abs(shift) > b.height / 2 else None
        t.axes.annotate(t.get_text(), t.xy, xytext=(dx, dy + shift * to_points), textcoords="offset points",
                        fontsize=t.get_fontsize(), zorder=t.get_zorder(), arrowprops=line)
        t.remove()


def per_image_figure(per_image: Mapping[str, pd.DataFrame], labels: Mapping[str, str]) -> Figure:
    """Per-image headline Dice per method: a box over the images with every image as a point.

    Args:
        per_image: Per dataset, long rows ``method, value`` (one per image and seed), any method order;
            methods are shown best median first.
        labels: Per dataset, the headline label.
    """
    _, sns = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    dot = sns.color_palette("colorblind")[0]
    n_methods = max(d["method"].nunique() for d in per_image.values())
    fig, axes = _panels(len(per_image), 4.8, 1.2 + 0.45 * n_methods)
    for ax, (ds, d) in zip(axes, per_image.items()):
        order = d.groupby("method")["value"].median().sort_values(ascending=False).index
        sns.boxplot(data=d, x="value", y="method", order=order, color="0.88", fliersize=0, width=0.6, ax=ax)
        # seaborn jitters with numpy's global generator: seed it here (and restore it) so a report is reproducible.
        state = np.random.get_state()
        np.random.seed(0)
        try:  # one colour: the row names the method; the legend says what a dot and a box are. The dots are
            # rasterized in the SVG: thousands of vector circles (15 methods x 140 images x 3 seeds) make it megabytes.
            sns.stripplot(data=d, x="value", y="method", order=order, color=dot, size=2.8, alpha=0.6, jitter=0.2, ax=ax,
                          rasterized=True)
        finally:
            np.random.set_state(state)
        ax.set(title=ds, xlabel=f"Dice {labels[ds]} per image", ylabel="")
    handles = [Line2D([], [], ls="", marker="o", ms=4, color=dot, alpha=0.6, label="one test image (per seed)"),
               Patch(facecolor="0.88", edgecolor="0.3", label="box: quartiles and median; whiskers: 1.5 IQR")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.3 / fig.get_figheight(), 1, 1))
    return fig


def confusion_figure(matrices: Mapping[str, np.ndarray], class_names: Sequence[str], *, dataset: str) -> Figure:
    """Row-normalised confusion matrices (rows = truth: each row shows where that class's pixels went).

    Args:
        matrices: Per method, the ``(C, C)`` dataset-level confusion matrix (counts).
        class_names: The ``C`` class names.
        dataset: Name shown in the title.
    """
    _, sns = _pyplot()
    c = len(class_names)
    side = 1.6 + 0.35 * c
    fig, axes = _panels(len(matrices), side + 0.8, side)
    for ax, (method, cm) in zip(axes, matrices.items()):
        cm = np.asarray(cm, float)
        totals = cm.sum(axis=1, keepdims=True)
        norm = np.divide(cm, totals, out=np.full_like(cm, np.nan), where=totals > 0)
        sns.heatmap(norm, vmin=0, vmax=1, cmap="Blues", annot=c <= 12, fmt=".2f", annot_kws={"fontsize": 7},
                    xticklabels=class_names, yticklabels=class_names, square=True, cbar=c > 12, ax=ax)
        ax.set(title=f"{dataset}: {method}", xlabel="predicted", ylabel="truth")
        ax.tick_params(axis="y", labelrotation=0)
    fig.tight_layout()
    return fig


@dataclass
class GridRow:
    """One image of the qualitative grid.

    Attributes:
        label: Why it was chosen, shown left of the row (``"best for pixel-rf"``).
        image_id: The image's id.
        image: ``(H, W, 3) uint8``.
        truth: ``(H, W)`` class indices (``ignore_index`` where ignored).
        predictions: Per method, the ``(H, W)`` label map, or None where none was saved.
        scores: Per method, the headline Dice of that prediction (shown under the method's name).
    """

    label: str
    image_id: str
    image: np.ndarray
    truth: np.ndarray
    predictions: dict[str, np.ndarray | None]
    scores: dict[str, float]


def _thumb(array: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """``array`` resized to ``size`` (W, H) with PIL."""
    return np.asarray(Image.fromarray(array).resize(size, resample))


def _blend(image: np.ndarray, colours: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float image in [0, 1]: ``colours`` laid over ``image`` with ``_ALPHA`` where ``where``."""
    out = image.astype(np.float64) / 255.0
    out[where] = (1 - _ALPHA) * out[where] + _ALPHA * colours[where]
    return out


def _class_colours(class_names: Sequence[str]) -> np.ndarray:
    """One RGB colour per class; a class named background stays transparent (NaN)."""
    _, sns = _pyplot()

    colours = np.array(sns.color_palette("colorblind" if len(class_names) <= 10 else "tab20", len(class_names)))
    for i, name in enumerate(class_names):
        if name.lower() == "background":
            colours[i] = np.nan
    return colours


def qualitative_figure(rows: Sequence[GridRow], class_names: Sequence[str], *, ignore_index: int, dataset: str) -> Figure:
    """Image, ground truth and each method's prediction as coloured overlays, one row per chosen image.

    Binary datasets colour each method's pixels by outcome (correct foreground, false positive, missed
    foreground); multi-class datasets colour the predicted classes (a ``background`` class is left clear).
    """
    plt, _ = _pyplot()
    from matplotlib.patches import Patch

    methods = list(rows[0].predictions)
    binary = len(class_names) == 2
    h, w = rows[0].image.shape[:2]
    scale = _THUMB / max(h, w)
    cell_w = 1.45
    cell_h = cell_w * h / w + 0.32
    legend_h = 0.35  # inches kept under the grid for the colour legend
    fig_h = cell_h * len(rows) + 0.3 + legend_h
    fig, axes = plt.subplots(len(rows), 2 + len(methods), figsize=(cell_w * (2 + len(methods)) + 0.4, fig_h), squeeze=False)
    palette = _class_colours(class_names)
    for r, (ax_row, row) in enumerate(zip(axes, rows)):
        size = (max(1, round(row.image.shape[1] * scale)), max(1, round(row.image.shape[0] * scale)))
        image = _thumb(row.image, size, Image.Resampling.BILINEAR)
        truth = _thumb(row.truth.astype(np.uint8), size, Image.Resampling.NEAREST)
        ignored = truth == ignore_index
        if binary:
            gt = _blend(image, np.broadcast_to(np.array(_GT_COLOUR), (*truth.shape, 3)), truth == 1)
        else:
            colours = palette[np.where(ignored, 0, truth)]
            gt = _blend(image, colours, ~ignored & ~np.isnan(colours[..., 0]))
        gt[ignored] = 0.5
        panels = [(image, "image" if r == 0 else ""), (gt, "ground truth" if r == 0 else "")]
        for method in methods:
            pred = row.predictions[method]
            if pred is None:
                panels.append((None, f"{method}\n(no saved prediction)"))
                continue
            pred = _thumb(pred.astype(np.uint8), size, Image.Resampling.NEAREST)
            if binary:
                outcome = np.zeros((*pred.shape, 3))
                masks = {"correct": (pred == 1) & (truth == 1), "false positive": (pred == 1) & (truth == 0),
                         "missed": (pred == 0) & (truth == 1)}
                for name, m in masks.items():
                    outcome[m] = _OUTCOME_COLOURS[name]
                shown = _blend(image, outcome, (masks["correct"] | masks["false positive"] | masks["missed"]) & ~ignored)
            else:
                colours = palette[np.clip(pred, 0, len(class_names) - 1)]
                shown = _blend(image, colours, ~np.isnan(colours[..., 0]) & ~ignored)
            score = row.scores.get(method, float("nan"))
            panels.append((shown, f"{method}\nDice {score:.3f}" if not math.isnan(score) else f"{method}\nDice –"))
        for ax, (data, title) in zip(ax_row, panels):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if data is not None:
                ax.imshow(data, interpolation="nearest")
            ax.set_title(title, fontsize=6.5, pad=2)
        ax_row[0].set_ylabel(f"{row.label}\n{row.image_id}", fontsize=6.5)
    if binary:
        handles = [Patch(color=_GT_COLOUR, label=f"{class_names[1]} (truth)")]
        handles += [Patch(color=c, label=n) for n, c in _OUTCOME_COLOURS.items()]
    else:
        handles = [Patch(color=palette[i], label=n) for i, n in enumerate(class_names) if not np.isnan(palette[i][0])]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle(dataset, fontsize=9)
    fig.tight_layout(rect=(0, legend_h / fig_h, 1, 1), h_pad=0.4, w_pad=0.2)
    return fig


def reliability_figure(curves: Mapping[str, pd.DataFrame], *, dataset: str) -> Figure:
    """Reliability diagram of one dataset: one curve per method (e.g. with and without the CRF).

    Args:
        curves: Per method, bins with columns ``confidence, accuracy, count`` (empty bins NaN / 0).
        dataset: Title.
    """
    plt, sns = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.8, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=0.8, label="perfect calibration")
    styles = series_styles(list(curves))
    for method, bins in curves.items():
        filled, st = bins[bins["count"] > 0], styles[method]
        line = {"marker": st.marker, "ls": st.linestyle, "markersize": 3, "color": st.colour}
        top.plot(filled["confidence"], filled["accuracy"], label=method, **line)
        bottom.plot(filled["confidence"], filled["count"] / filled["count"].sum(), **line)
    top.set(title=dataset, ylabel="accuracy", xlim=(0, 1.02), ylim=(0, 1.02))
    if len(curves) > 8:  # beside the axes: inside, a long legend hides the curves
        top.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        top.legend(fontsize="small", loc="upper left")
    bottom.set(xlabel="mean top-class confidence per bin", ylabel="share of pixels", yscale="log")
    fig.tight_layout()
    return fig


def learning_curves_figure(curves: pd.DataFrame, *, dataset: str) -> Figure:
    """Validation score against training seconds, a panel per method and a line per cell (fold, seed, budget),
    the kept (best) epoch marked: whether a network converged, was still climbing, or never started.

    Args:
        curves: Rows of ``curves.csv`` of one dataset: ``method, seed, fold, epoch, train_s, val_score`` and,
            optionally, ``budget_s``.
        dataset: Title.
    """
    plt, sns = _pyplot()
    methods = list(dict.fromkeys(curves["method"]))
    fig, axes = _panels(len(methods), 3.2, 2.4)
    by = [c for c in ("seed", "fold", "budget_s") if c in curves.columns and curves[c].nunique(dropna=False) > 1]
    for ax, method in zip(axes, methods):
        rows = curves[curves["method"] == method]
        groups = list(rows.groupby(by, dropna=False, sort=True)) if by else [((), rows)]
        styles = series_styles(range(len(groups)))
        for k, (_, cell) in enumerate(groups):
            cell, st = cell[cell["val_score"].notna()].sort_values("epoch"), styles[k]
            if cell.empty:
                continue
            # rasterized in the SVG, like the per-image dots: a grid's hundreds of curves are megabytes as vectors
            ax.plot(cell["train_s"], cell["val_score"], color=st.colour, ls=st.linestyle, linewidth=1, marker="o", markersize=1.5,
                    rasterized=True)
            best = cell.loc[cell["val_score"].idxmax()]
            # rasterized too: a vector artist between two rasterized ones splits the layer into one image per curve
            ax.plot(best["train_s"], best["val_score"], marker="*", markersize=8, color=st.colour, rasterized=True)
        ax.set(title=method, xlabel="training seconds (budget clock)", ylabel="validation mean IoU", ylim=(0, 1))
    fig.suptitle(f"{dataset}: learning curves (star: the epoch kept; one line per {', '.join(by) or 'cell'})", fontsize=9)
    fig.tight_layout()
    return fig


def label_efficiency_figure(tables: Mapping[str, pd.DataFrame], labels: Mapping[str, str]) -> Figure:
    """Score against the number of training images (log axis) per method, 95% intervals, one panel per dataset.

    Each method has its own ``series_styles`` colour (and marker and line style past eight methods), its
    family in the legend; a method run at one fraction only (it does not
    train on the subsets) is a dotted horizontal line with its interval as a band.

    Args:
        tables: Per dataset, ``label_efficiency_table``.
        labels: Per dataset, the headline label (``"lesion"``).
    """
    _, sns = _pyplot()
    from matplotlib.ticker import FuncFormatter, NullFormatter  # with pyplot: matplotlib is imported late

    styles = series_styles(sorted({m for t in tables.values() for m in t["method"]}))
    fig, axes = _panels(len(tables), 4.8, 3.6)
    for ax, (ds, table) in zip(axes, tables.items()):
        x_range = (table["n_train"].min(), table["n_train"].max())
        for method, rows in table.groupby("method", sort=True):
            st, family = styles[method], rows["family"].iloc[0]
            if len(rows) == 1:
                r = rows.iloc[0]
                ax.plot(x_range, [r["score"]] * 2, ls=":", color=st.colour, label=f"{method} ({family}, no subsets)")
                if not np.isnan(r["score_low"]):
                    ax.fill_between(x_range, r["score_low"], r["score_high"], color=st.colour, alpha=0.12, lw=0)
                continue
            err = np.nan_to_num(np.vstack([rows["score"] - rows["score_low"], rows["score_high"] - rows["score"]]))
            ax.errorbar(rows["n_train"], rows["score"], yerr=err, marker=st.marker, ls=st.linestyle, ms=4,
                        capsize=3, color=st.colour, label=f"{method} ({family})")
        ax.set_xscale("log")
        ticks = sorted(table["n_train"].unique())
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(title=ds, xlabel="training images (log scale)", ylabel=f"Dice {labels[ds]} (per-image mean, 95% CI)")
        ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def compute_figure(table: pd.DataFrame, *, x: str, xlabel: str, ylabel: str, dataset: str) -> Figure | None:
    """Score against training compute (log axis), 95% intervals: a line per deep method's budget sweep (a
    linestyle per training fraction when there are several), classical methods as squares at their ``x``, or,
    where they have no value of ``x`` (no FLOPs count), as dotted horizontal lines with their interval as a band.

    Args:
        table: ``compute.compute_table``.
        x: The column on the x axis (``train_s`` or ``train_flops``).
        xlabel, ylabel, dataset: Axis labels and the title.

    Returns:
        None when no deep method has a value of ``x``.
    """
    _, sns = _pyplot()
    deep = table[(table["family"] == "deep") & table["budget_s"].notna() & table[x].notna()]
    if deep.empty:
        return None
    methods = sorted(table["method"].unique())
    palette = dict(zip(methods, sns.color_palette("colorblind" if len(methods) <= 10 else "tab20", len(methods))))
    styles = dict(zip(sorted(table["train_fraction"].unique(), reverse=True), ["-", "--", "-.", ":"] * 4))
    several = len(styles) > 1
    fig, (ax,) = _panels(1, 6.4, 4.2)
    x_range = (deep[x].min(), deep[x].max())
    for (method, fraction), rows in table.groupby(["method", "train_fraction"], sort=True):
        colour, family = palette[method], rows["family"].iloc[0]
        name = method + (f", {rows['n_train'].iloc[0]:.0f} images" if several else "")
        err = np.nan_to_num(np.vstack([rows["score"] - rows["score_low"], rows["score_high"] - rows["score"]]))
        if family == "deep":
            rows = rows[rows[x].notna()]
            err = np.nan_to_num(np.vstack([rows["score"] - rows["score_low"], rows["score_high"] - rows["score"]]))
            ax.errorbar(rows[x], rows["score"], yerr=err, fmt="o", ls=styles[fraction], ms=4, capsize=3, color=colour,
                        label=f"{name} (deep)")
        elif rows[x].notna().all():
            ax.errorbar(rows[x], rows["score"], yerr=err, fmt="s", ms=6, capsize=3, color=colour, mfc="none",
                        label=f"{name} (classical)")
        else:
            r = rows.iloc[0]
            ax.plot(x_range, [r["score"]] * 2, ls=":", color=colour, label=f"{name} (classical, no {x.split('_')[-1]})")
            if not np.isnan(r["score_low"]):
                ax.fill_between(x_range, r["score_low"], r["score_high"], color=colour, alpha=0.12, lw=0)
    ax.set_xscale("log")
    if x == "train_s":  # seconds read better as 2, 30, 270 than as powers of ten
        from matplotlib.ticker import FuncFormatter  # with pyplot: matplotlib is imported late

        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(f"{v:g}")[0] in "25" else ""))
    ax.set(title=dataset, xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def degradation_figure(table: pd.DataFrame, *, label: str, dataset: str) -> Figure:
    """Score against severity per method (0 = clean), one panel per corruption, 95% intervals.

    Args:
        table: ``robustness_table`` of one dataset.
        label: The headline label (``"lesion"``).
        dataset: Name shown in the titles.
    """
    _, sns = _pyplot()
    methods = sorted(table["method"].unique())
    styles = series_styles(methods)
    corruptions = [c for c in dict.fromkeys(table["corruption"]) if c != CLEAN]
    fig, axes = _panels(len(corruptions), 3.6, 3.0)
    clean = table[table["corruption"] == CLEAN]
    for ax, corruption in zip(axes, corruptions):
        for method in methods:
            rows = pd.concat([clean[clean["method"] == method],
                              table[(table["method"] == method) & (table["corruption"] == corruption)]]).sort_values("severity")
            if rows.empty:
                continue
            family = rows["family"].iloc[0]
            err = np.nan_to_num(np.vstack([rows["score"] - rows["score_low"], rows["score_high"] - rows["score"]]))
            st = styles[method]
            ax.errorbar(rows["severity"], rows["score"], yerr=err, marker=st.marker, ls=st.linestyle, ms=4,
                        capsize=2, color=st.colour, label=f"{method} ({family})")
        ax.set_xticks(sorted(table["severity"].unique()))
        ax.set(title=f"{dataset}: {corruption}", xlabel="severity (0 = clean)", ylabel=f"Dice {label} (per-image mean)")
    if axes:
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=7, frameon=False)
        rows_of_legend = -(-len(names) // 4)
        fig.tight_layout(rect=(0, (0.1 + 0.18 * rows_of_legend) / fig.get_figheight(), 1, 1))
    return fig
