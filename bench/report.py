"""Reports built from a run folder's tables alone (never by re-running methods)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from segbench.runner import load_tables

__all__ = ["headline_columns", "summary_table", "markdown_table", "latency_markdown", "write_report"]


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
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table (no extra dependency)."""
    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def summary_table(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One row per method (mean over seeds): headline Dice/IoU both ways, pixel scores, train time, latency."""
    label, dice, iou = headline_columns(summary, dataset, prefix="dataset_")
    _, img_dice, img_iou = headline_columns(summary, dataset, prefix="per_image_")
    rows = summary[(summary["dataset"] == dataset)]
    ok = rows[rows["status"] == "ok"]
    columns = {
        dice: f"Dice {label} (dataset)",
        iou: f"IoU {label} (dataset)",
        img_dice: f"Dice {label} (per-image mean)",
        img_iou: f"IoU {label} (per-image mean)",
        "dataset_pixel_accuracy": "pixel acc",
        "dataset_mean_pixel_accuracy": "mPA",
        "train_s": "train s",
        "latency_ms_p50": "latency ms p50",
        "latency_ms_p95": "latency ms p95",
    }
    table = ok.groupby("method", sort=False)[list(columns)].mean().rename(columns=columns)
    table.insert(0, "seeds", ok.groupby("method", sort=False)["seed"].nunique())
    return table.sort_values(columns[dice], ascending=False).reset_index()


def latency_markdown(table: pd.DataFrame) -> str:
    """Median (p95) latency in ms: one row per method, one column per input size; failures listed below."""
    ok = table[table["status"] == "ok"]
    lines = []
    if not ok.empty:
        cell = ok.assign(v=[f"{a:.1f} ({b:.1f})" for a, b in zip(ok["latency_ms_p50"], ok["latency_ms_p95"])])
        methods, sizes = list(dict.fromkeys(ok["method"])), list(dict.fromkeys(ok["image_size"]))
        wide = cell.pivot(index="method", columns="image_size", values="v").reindex(index=methods, columns=sizes)
        mem = ok.pivot(index="method", columns="image_size", values="peak_mem_mb").reindex(index=methods, columns=sizes)
        wide.columns = [f"{c} ms p50 (p95)" for c in wide.columns]
        for c in mem.columns:
            wide[f"{c} peak MB"] = [f"{v:.0f}" for v in mem[c]]
        first = ok.iloc[0]
        lines += [
            f"Device: {first['device_name']} ({first['device']}), {int(first['threads'])} threads, batch {int(first['batch_size'])}, "
            f"{int(first['warmup'])} warm-up + {int(first['repeats'])} timed calls.",
            "",
            markdown_table(wide.reset_index()),
        ]
    for r in table[table["status"] != "ok"].itertuples():
        lines.append(f"\n{r.method} at {r.image_size}: {r.error}")
    return "\n".join(lines)


def _figures(summary: pd.DataFrame, per_image: pd.DataFrame, fig_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    ok = summary[summary["status"] == "ok"]
    if ok.empty:
        return []
    fig_dir.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid", context="paper")
    paths = []
    datasets = list(dict.fromkeys(ok["dataset"]))

    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.6), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        label, dice, _ = headline_columns(summary, ds, prefix="dataset_")
        d = ok[ok["dataset"] == ds]
        sns.scatterplot(data=d, x="latency_ms_p50", y=dice, hue="method", style="family", s=70, ax=ax)
        ax.set_xscale("log")
        ax.set(title=ds, xlabel="median latency per image, ms (log)", ylabel=f"Dice {label} (dataset-level)")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    paths.append(fig_dir / "accuracy_vs_latency.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    if not per_image.empty:
        fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.6), squeeze=False)
        for ax, ds in zip(axes[0], datasets):
            label, dice, _ = headline_columns(summary, ds, prefix="dataset_")
            col = dice.removeprefix("dataset_")
            d = per_image[per_image["dataset"] == ds]
            order = d.groupby("method")[col].median().sort_values(ascending=False).index
            sns.boxplot(data=d, x=col, y="method", order=order, color="0.85", fliersize=0, ax=ax)
            sns.stripplot(data=d, x=col, y="method", order=order, size=2.5, alpha=0.6, ax=ax)
            ax.set(title=ds, xlabel=f"Dice {label} per image", ylabel="")
        fig.tight_layout()
        paths.append(fig_dir / "per_image_dice.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def write_report(run_dir: str | Path, *, figures: bool = True) -> str:
    """Write ``report.md`` (and figures under ``figures/``) into the run folder; returns the markdown."""
    run_dir = Path(run_dir)
    summary, per_image = load_tables(run_dir)
    lines = [f"# segbench report: {run_dir.name}", ""]
    env_path = run_dir / "environment.json"
    if env_path.is_file():
        env = json.loads(env_path.read_text())
        lines += [
            f"Run {env.get('created')} on {env.get('cpu')} ({env.get('torch_threads')} torch threads"
            + (f", GPU {env['gpu']}" if env.get("gpu") else "")
            + f"), segbench commit {env.get('git_commit')}.",
            "",
        ]
    if summary.empty:
        lines.append("No finished cells yet.")
    for ds in dict.fromkeys(summary["dataset"]) if not summary.empty else []:
        d = summary[summary["dataset"] == ds]
        n = d[d["status"] == "ok"]
        lines += [f"## {ds}", ""]
        if not n.empty:
            lines.append(
                f"{int(n['n_train'].iloc[0])} train / {int(n['n_val'].iloc[0])} val / {int(n['n_test'].iloc[0])} "
                f"{n['eval_split'].iloc[0]} images. 'dataset' scores sum the confusion matrices of all images, "
                "then score; 'per-image mean' scores each image, then averages. Latency: one image, batch 1, "
                f"{n['device_name'].iloc[0]}."
            )
            lines.append("")
        lines += [markdown_table(summary_table(summary, ds)), ""]
        not_run = d[d["status"] == "skipped"].drop_duplicates("method")
        lines += [f"Skipped: {r.method} ({r.error})." for r in not_run.itertuples()] + ([""] if len(not_run) else [])
    failed = summary[summary["status"] == "failed"] if not summary.empty else summary
    if len(failed):
        lines += ["## Failed cells", "", markdown_table(failed[["dataset", "method", "seed", "error"]]), ""]
    if figures and not summary.empty:
        for path in _figures(summary, per_image, run_dir / "figures"):
            lines += [f"![{path.stem}](figures/{path.name})", ""]
    text = "\n".join(lines)
    (run_dir / "report.md").write_text(text)
    return text
