"""The report of a run folder: its content as blocks (``segbench.report.render``), written as Markdown and HTML.

``write_report(run_dir)`` writes, into the run folder or ``out_dir``:

* ``report.md``: the verdict per dataset first, then tables and links to ``figures/*.png`` (for a README);
* ``report.html``: one self-contained page (figures embedded as data URIs, tables, environment, config);
* ``figures/<name>.png`` and ``.svg``: scores with 95% bootstrap intervals, accuracy against latency with
  the Pareto front, per-image score distributions, a qualitative grid per dataset and, for multi-class
  datasets, row-normalised confusion matrices;
* ``verdict.txt``: the verdict lines alone (what ``segbench report`` prints);
* ``tables/scores_<dataset>.csv`` and ``tables/paired_<dataset>.csv``: every column of the scores table and
  every pair, where the report shows a short table.

Numbers come from ``summary.csv`` and ``per_image.csv`` (``segbench.report.tables``). Dataset-level
intervals, confusion matrices and the qualitative grid need more (cell records, saved predictions, the
dataset's images); where the run folder lacks them, e.g. a committed reference folder without ``cells/``,
that part is left out with a note in the report.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image

from segbench.measure.metrics import confusion_matrix, scores_from_confusion
from segbench.measure.schema import MEAN
from segbench.report.figures import (
    GridRow,
    accuracy_latency_figure,
    confusion_figure,
    per_image_figure,
    qualitative_figure,
    save_figure,
    scores_figure,
)
from segbench.report.format import fmt, fmt_ci, fmt_p
from segbench.report.prose import dataset_intro, paired_intro, paired_sentence, work_sizes_sentence
from segbench.report.compute import compute_blocks
from segbench.report.measures import measures_blocks
from segbench.report.robustness import label_efficiency_blocks, robustness_blocks
from segbench.report.training import training_blocks
from segbench.report.render import Block, Code, Details, Figure, Heading, Para, Table, to_html, to_markdown
from segbench.report.rundata import RunData
from segbench.report.tables import per_class_iou_table, scores_table, select_grid_images
from segbench.report.verdict import FLOOR, comparisons, standing, verdict_lines
from segbench.run.environment import loaded_machine
from segbench.run.records import prediction_dir, slug

__all__ = ["DATASET_SECTIONS", "MAX_GRID_METHODS", "Report", "write_report"]

#: Methods shown in a qualitative grid (the best ones by the headline score); more make unreadable rows.
MAX_GRID_METHODS = 6
Format = Literal["md", "html"]


#: The report's scores table stays readable in a terminal or a README: at most this many columns (the full
#: table, every interval and cost column, is ``tables/scores_<dataset>.csv``).
MAX_SCORE_COLUMNS = 10


def _scores_display(table: pd.DataFrame, standings: dict[str, str]) -> pd.DataFrame:
    """The short scores table: headline Dice both ways with intervals, IoU, cost, and each method's standing."""
    out = pd.DataFrame({"method": table["method"]})
    if (table["seeds"] > 1).any():
        out["seeds"] = table["seeds"]
    out["Dice [95% CI]"] = [fmt_ci(e, lo, hi) for e, lo, hi in table[["dice_dataset", "dice_dataset_low", "dice_dataset_high"]].to_numpy(float)]
    out["Dice/img [95% CI]"] = [fmt_ci(e, lo, hi) for e, lo, hi in table[["dice_per_image", "dice_per_image_low", "dice_per_image_high"]].to_numpy(float)]
    out["IoU"] = table["iou_dataset"].map(fmt)
    out["train s"] = table["train_s"].map(lambda v: fmt(v, 1))
    # "!": p95 more than twice p50, a spread that usually means other work shared the cores (note under the table)
    out["ms p50"] = [fmt(p50, 1) + (" !" if p95 > 2 * p50 else "") for p50, p95 in table[["latency_ms_p50", "latency_ms_p95"]].to_numpy(float)]
    out["standing"] = table["method"].map(standings)
    assert len(out.columns) <= MAX_SCORE_COLUMNS
    return out


def _paired_display(table: pd.DataFrame, label: str) -> pd.DataFrame:
    return pd.DataFrame({
        "A": table["method_a"],
        "B": table["method_b"],
        "images": table["n_images"],
        "seeds": table["seeds"],
        f"mean Dice {label} A": table["dice_a"].map(fmt),
        f"mean Dice {label} B": table["dice_b"].map(fmt),
        "A − B [95% CI]": [fmt_ci(e, lo, hi) for e, lo, hi in table[["diff", "diff_low", "diff_high"]].to_numpy(float)],
        "test": [f"{t}, df {df:.3g}" + ("" if noise else " (no training noise)")
                 for t, df, noise in table[["test", "df", "training_noise"]].itertuples(index=False)],
        "p": table["p"].map(fmt_p),
        "Holm p": table["p_holm"].map(fmt_p),
        "verdict": table["verdict"],
    })


class Report:
    """What every section of one report shares: the run, where figures go (None: no figures), each dataset's
    scores table (computed once) and the notes of what was left out (shown at the end of the dataset's part)."""

    def __init__(self, run: RunData, fig_dir: Path | None) -> None:
        self.run, self.fig_dir = run, fig_dir
        self.notes: dict[str, list[str]] = {}
        # The overview figures and each dataset's section share one scores table per dataset.
        self.scores: dict[str, pd.DataFrame] = {}
        #: Each dataset's paired comparisons (``verdict.comparisons``), shared by the verdict and its section.
        self.paired: dict[str, pd.DataFrame] = {}
        for ds in run.datasets():
            if not run.ok(ds).empty:
                self.scores[ds] = scores_table(run, ds)
                self.paired[ds] = comparisons(run, ds)
                self.note(ds, *self.scores[ds].attrs.get("notes", []))
                wide = self.scores[ds]["latency_ms_p95"] > 2 * self.scores[ds]["latency_ms_p50"]
                if wide.any():
                    self.note(ds, f"latency marked ! ({', '.join(self.scores[ds].loc[wide, 'method'])}): its p95 is more than "
                                  "twice the p50: other work probably shared the cores during the timing")

    def verdict(self) -> list[str]:
        """The verdict lines of every dataset (``segbench.report.verdict``), in the run's order."""
        return [line for ds, scores in self.scores.items()
                for line in verdict_lines(ds, scores, self.paired[ds], self.run.headline(ds)[0])]

    def note(self, dataset: str, *texts: str) -> None:
        notes = self.notes.setdefault(dataset, [])
        notes += [t for t in texts if t not in notes]

    def blocks(self) -> list[Block]:
        run, env = self.run, self.run.environment
        blocks: list[Block] = [Heading(1, f"segbench report: {run.run_dir.name}")]
        if env.get("reconstructed"):
            blocks.append(Para(f"environment.json is reconstructed: {env.get('note', '')}"))
        elif env:
            threads = env.get("threads_per_cell") or env.get("torch_threads")  # older runs: the driver's threads
            blocks.append(Para(f"Run {env.get('created')} on {env.get('cpu')} ({threads} torch threads per cell"
                               + (f", GPU {env['gpu']}" if env.get("gpu") else "") + f"), segbench commit {env.get('git_commit')}."
                               + (f" {loaded_machine(env)}" if loaded_machine(env) else "")))
        if run.summary.empty:
            return blocks + [Para("No finished cells yet.")]
        blocks += [Heading(2, "Verdict"), *(Para(line) for line in self.verdict())]
        if self.fig_dir is not None:
            blocks += overview_section(self)
        for ds in run.datasets():
            blocks += self.dataset_blocks(ds)
        failed = run.summary[run.summary["status"] == "failed"]
        if len(failed):
            blocks += [Heading(2, "Failed cells"), Table(failed[["dataset", "method", "seed", "error"]].astype(str))]
        return blocks + environment_section(self)

    def dataset_blocks(self, dataset: str) -> list[Block]:
        """A dataset's part: every one of ``DATASET_SECTIONS`` in order, then skipped methods and notes."""
        run = self.run
        d = run.summary[run.summary["dataset"] == dataset]
        blocks: list[Block] = [Heading(2, dataset)]
        if not run.ok(dataset).empty:
            for section in DATASET_SECTIONS:
                blocks += section(self, dataset)
        skipped = d[d["status"] == "skipped"].drop_duplicates("method")
        blocks += [Para(f"Skipped: {r.method} ({r.error}).") for r in skipped.itertuples()]
        return blocks + [Para(f"Note: {n}") for n in self.notes.get(dataset, [])]


# --------------------------------------------------------------------------------------------------------
# Sections: each a function of the report (its run data) and a dataset, returning blocks.


def scores_section(report: Report, dataset: str) -> list[Block]:
    """The dataset's introduction and its short scores table (at most ``MAX_SCORE_COLUMNS`` columns)."""
    run, scores = report.run, report.scores[dataset]
    ok = run.ok(dataset)
    label = run.headline(dataset)[0]
    floor = f"; `{FLOOR}` is the floor (one class everywhere), `≤ floor`: does not beat it" if FLOOR in set(scores["method"]) else ""
    legend = (f"Dice and IoU score {label}: Dice and IoU dataset-level, Dice/img the per-image mean; ms p50 the median "
              f"latency per image; standing against the leader by the paired test (tie: not significantly below it){floor}. "
              f"Every other column (IoU per image and intervals, pixel accuracy, p95 latency, its model/overhead split, "
              f"FLOPs, parameters): `tables/scores_{slug(dataset)}.csv` and summary.csv.")
    return [Para(dataset_intro(ok.iloc[0].to_dict(), several_seeds=bool((scores["seeds"] > 1).any()))
                 + (work_sizes_sentence(ok) if "work_size" in ok.columns else "")),
            Heading(3, "Scores"), Para(legend), Table(_scores_display(scores, standing(scores, report.paired[dataset])))]


def paired_section(report: Report, dataset: str) -> list[Block]:
    """Paired comparisons of every two methods on the same test images."""
    run, scores = report.run, report.scores[dataset]
    if len(scores) <= 1:
        return []
    if not run.has_per_image(dataset):
        report.note(dataset, "No paired comparisons: the run folder has no per-image scores (per_image.csv).")
        return []
    label = run.headline(dataset)[0]
    paired = report.paired[dataset]
    return [Heading(3, "Paired comparisons"), Para(paired_intro(label, several_seeds=bool((paired["seeds"] > 1).any()), table=paired)),
            Para(paired_sentence(paired, label)),
            Details(f"Every pair ({len(paired)}; also `tables/paired_{slug(dataset)}.csv`)", [Table(_paired_display(paired, label))])]


def per_class_section(report: Report, dataset: str) -> list[Block]:
    """Multi-class datasets: dataset-level IoU per class, and the confusion matrices (with figures)."""
    run = report.run
    if len(run.class_names(dataset)) <= 2:
        return []
    blocks: list[Block] = [Heading(3, "Per-class IoU (dataset-level)"),
                           Table(per_class_iou_table(run, dataset).map(lambda v: fmt(v) if not isinstance(v, str) else v))]
    if report.fig_dir is None:
        return blocks
    matrices, names = {}, None
    for method, cells in run.ok(dataset).groupby("method", sort=False):
        recorded = [run.recorded_confusion(dataset, method, s) for s in cells["seed"]]
        if all(r is not None for r in recorded):
            matrices[method] = np.sum([r[0] for r in recorded if r is not None], axis=0)
            names = recorded[0][1] if recorded[0] else None
    if not matrices or names is None:
        report.note(dataset, "No confusion matrices: the cell records under cells/ are missing.")
        return blocks
    path = save_figure(confusion_figure(matrices, names, dataset=dataset), report.fig_dir, f"confusion_{slug(dataset)}")
    return blocks + [Figure(path, f"{dataset}: dataset-level confusion matrices, each row normalised to 1 (rows = truth, "
                                  "summed over seeds): where each class's pixels went.")]


def measures_section(report: Report, dataset: str) -> list[Block]:
    """Boundaries and calibration (``segbench.report.measures``)."""
    return measures_blocks(report.run, dataset, report.fig_dir)


def grid_section(report: Report, dataset: str) -> list[Block]:
    """The qualitative grid: best, median and worst image of the best method and where methods disagree."""
    run, fig_dir, scores = report.run, report.fig_dir, report.scores[dataset]
    if fig_dir is None:
        return []
    seed = int(run.ok(dataset)["seed"].min())
    methods = [m for m in scores["method"] if prediction_dir(run.run_dir, dataset, m, seed).is_dir()]
    stale = [m for m in methods if not run.predictions_match(dataset, m, seed)]
    if stale:
        report.note(dataset, f"Not in the qualitative grid: {', '.join(stale)}: their saved predictions are from another "
                             "cell (a later run with other settings overwrote them); rerun with --save-predictions.")
        methods = [m for m in methods if m not in stale]
    if not methods:
        report.note(dataset, "No qualitative grid: no saved predictions (run with --save-predictions).")
        return []
    try:
        data = run.dataset(dataset)
    except LookupError as exc:
        report.note(dataset, f"No qualitative grid: the dataset's images cannot be loaded ({exc}).")
        return []
    column = run.headline(dataset)[1]
    by_method = {m: run.per_image_values(dataset, m, column) for m in methods}
    shown = [m for m in methods if seed in by_method[m].index][:MAX_GRID_METHODS]
    if not shown:
        report.note(dataset, f"No qualitative grid: no method has per-image scores for seed {seed}.")
        return []
    values = pd.DataFrame({m: by_method[m].loc[seed] for m in shown})
    scored = run.scored_class(dataset)
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
            dice[m] = float(s["mean_dice"] if scored == MEAN else s["dice"][list(data.class_names).index(scored)])
            expected = float(values.loc[image_id, m]) if m in values else float("nan")
            if not np.isclose(dice[m], expected, rtol=1e-6, equal_nan=True):
                report.note(dataset, f"The saved prediction of {m} for {image_id} scores {dice[m]:.3f}, not the table's "
                                     f"{expected:.3f}: the predictions folder may hold an earlier setting's output.")
        # Pixels outside a field of view (the sample's ignore mask) are drawn as ignored, like ignore_index.
        truth = sample.mask if sample.ignore is None else np.where(sample.ignore, data.ignore_index, sample.mask)
        rows.append(GridRow(label, image_id, sample.image, truth, preds, dice))
    if not rows:
        report.note(dataset, "No qualitative grid: no per-image scores to choose images by.")
        return []
    fig = qualitative_figure(rows, list(data.class_names), ignore_index=data.ignore_index, dataset=dataset)
    path = save_figure(fig, fig_dir, f"qualitative_{slug(dataset)}", quantize=True)
    legend = (f"overlays: blue = true {data.class_names[1]}; per method blue = correct, vermillion = false positive, "
              "yellow = missed" if data.num_classes == 2 else "overlays: predicted classes")
    more = f" Only the {MAX_GRID_METHODS} best methods are shown." if len(methods) > MAX_GRID_METHODS else ""
    return [Figure(path, f"{dataset}: best, median and worst test image for {shown[0]} (best dataset-level Dice) and "
                         f"the image where methods disagree most (seed {seed}); {legend}.{more}")]


def label_efficiency_section(report: Report, dataset: str) -> list[Block]:
    """Scores against the number of training images (``segbench.report.robustness``)."""
    return label_efficiency_blocks(report.run, dataset, report.fig_dir)


def compute_section(report: Report, dataset: str) -> list[Block]:
    """Scores against training seconds and FLOPs on a budget axis, and time to target (``segbench.report.compute``)."""
    return compute_blocks(report.run, dataset, report.fig_dir)


def robustness_section(report: Report, dataset: str) -> list[Block]:
    """Scores on corrupted test images (``segbench.report.robustness``)."""
    return robustness_blocks(report.run, dataset, report.fig_dir)


def training_section(report: Report, dataset: str) -> list[Block]:
    """How each network trained: epochs, the epoch kept, learning curves, score against budget
    (``segbench.report.training``)."""
    return training_blocks(report.run, dataset, report.fig_dir)


Section = Callable[[Report, str], list[Block]]
#: A dataset's part of the report, in order; add a section here (a function of the report and a dataset).
DATASET_SECTIONS: list[Section] = [scores_section, paired_section, per_class_section, measures_section, grid_section,
                                   label_efficiency_section, compute_section, robustness_section, training_section]


def overview_section(report: Report) -> list[Block]:
    """Figures over every dataset: scores with intervals, accuracy against latency, per-image distributions."""
    run, fig_dir = report.run, report.fig_dir
    assert fig_dir is not None
    if not report.scores:
        return []
    labels, long = {}, {}
    for ds in report.scores:
        labels[ds] = run.headline(ds)[0]
        if run.has_per_image(ds):
            column = run.headline(ds)[1]
            rows = run.per_image[(run.per_image["dataset"] == ds) & run.per_image["method"].isin(report.scores[ds]["method"])]
            long[ds] = rows.rename(columns={column: "value"})[["method", "value"]].dropna()
    several = any((s["seeds"] > 1).any() for s in report.scores.values())
    blocks: list[Block] = [Heading(2, "Overview")]
    path = save_figure(scores_figure(report.scores, labels), fig_dir, "scores")
    blocks.append(Figure(path, "Headline Dice and IoU per method with 95% bootstrap intervals over test images"
                               + (" (and seeds, where a method has several)" if several else "")
                               + ": dataset-level (pooled pixels) and per-image mean."))
    path = save_figure(accuracy_latency_figure(report.scores, labels), fig_dir, "accuracy_vs_latency")
    blocks.append(Figure(path, "Dataset-level Dice against median latency per image (log scale), one point per method "
                               "(mean over seeds); the dashed line is the Pareto front (no method is both faster and better)"
                               + (f", the dotted line the floor ({FLOOR})" if any(FLOOR in set(s["method"]) for s in report.scores.values()) else "")
                               + "."))
    if any(len(v) for v in long.values()):
        path = save_figure(per_image_figure({k: v for k, v in long.items() if len(v)}, labels), fig_dir, "per_image_dice")
        blocks.append(Figure(path, "Per-image Dice: box over test images (every seed; quartiles, whiskers 1.5 IQR), each image a dot."))
    return blocks


def environment_section(report: Report) -> list[Block]:
    """The machine, packages and the run's config (environment.json), folded."""
    env = report.run.environment
    if not env:
        return [Heading(2, "Environment and config"), Para("No environment.json in the run folder.")]
    keys = ["created", "command", "python", "platform", "cpu", "cpu_count", "torch_threads", "gpu", "cuda_version", "git_commit"]
    facts = pd.DataFrame({"": keys, "value": [" ".join(env[k]) if isinstance(env.get(k), list) else str(env.get(k)) for k in keys]})
    packages = pd.DataFrame({"package": list(env.get("packages", {})), "version": [str(v) for v in env.get("packages", {}).values()]})
    return [Heading(2, "Environment and config"),
            Details("Machine, packages and the run's full config (environment.json)",
                    [Table(facts), Table(packages), Code(json.dumps(env.get("config", {}), indent=1), "json")])]


def write_report(
    run_dir: str | Path,
    *,
    out_dir: str | Path | None = None,
    formats: Sequence[Format] = ("md", "html"),
    figures: bool = True,
) -> str:
    """Write the report of a run folder; returns the markdown.

    Args:
        run_dir: A folder written by ``segbench run`` (``cells/`` optional: without it the dataset-level
            intervals and confusion matrices are left out, with a note).
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
    report = Report(run, out / "figures" if figures else None)
    blocks = report.blocks()
    text = to_markdown(blocks, out)
    (out / "verdict.txt").write_text("".join(line + "\n" for line in report.verdict()))
    tables = out / "tables"
    for ds, scores in report.scores.items():
        tables.mkdir(exist_ok=True)
        scores.to_csv(tables / f"scores_{slug(ds)}.csv", index=False)
        report.paired[ds].to_csv(tables / f"paired_{slug(ds)}.csv", index=False)
    if "md" in formats:
        (out / "report.md").write_text(text)
    if "html" in formats:
        (out / "report.html").write_text(to_html(blocks))
    return text
