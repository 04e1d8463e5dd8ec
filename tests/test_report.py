"""Reports from a small run: figure files, tables equal to the CSVs, intervals, paired tests, HTML and CLI."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from PIL import Image

from helpers import write_folder_dataset
from segbench.cli import main
from segbench.report.figures import pareto_front, spread_labels
from segbench.methods import METHODS, Method
from segbench.methods.base import labels_to_proba
from segbench.measure.metrics import scores_from_confusion
from segbench.report import (
    RunData,
    paired_table,
    per_class_iou_table,
    scores_table,
    select_grid_images,
    write_report,
)
from segbench.run.runner import RunConfig, run
from segbench.report.stats import holm, paired_difference

DATASETS = {"synthetic": {"num_images": 30, "size": (48, 40)}, "synthetic-multiclass": {"num_images": 20, "size": (48, 40)}}
FIGURES = ["scores", "accuracy_vs_latency", "per_image_dice", "qualitative_synthetic", "qualitative_synthetic-multiclass",
           "confusion_synthetic-multiclass", "reliability_synthetic", "reliability_synthetic-multiclass"]


class _NearestMean(Method):
    """Nearest class-mean colour, jittered by the seed: cheap, any number of classes, seeds differ."""

    description = "nearest class-mean colour (tests only)"
    jitter = 8.0

    def _fit(self, train, val):
        pixels = np.concatenate([s.image.reshape(-1, 3) for s in train]).astype(float)
        labels = np.concatenate([s.mask.ravel() for s in train])
        jitter = np.random.default_rng(self.seed).normal(0, self.jitter, (self.num_classes, 3))
        self.means = np.stack([pixels[labels == c].mean(0) for c in range(self.num_classes)]) + jitter

    def _predict_proba(self, image):
        dist = ((image[..., None, :].astype(float) - self.means) ** 2).sum(-1)
        return labels_to_proba(dist.argmin(-1), self.num_classes)


class _NearestMeanRough(_NearestMean):
    """The same with a larger jitter: a second method for multi-class data, that differs from the first."""

    description = "nearest class-mean colour, rough (tests only)"
    jitter = 25.0


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """A two-dataset, three-method, two-seed run with predictions, and its report (md + html)."""
    with METHODS.temporarily("test-nearest-mean", _NearestMean), METHODS.temporarily("test-nearest-mean-rough", _NearestMeanRough):
        yield _report_run(tmp_path_factory.mktemp("report") / "run")


def _report_run(out: Path) -> Path:
    config = RunConfig(out=out, datasets=["synthetic", "synthetic-multiclass"], methods=["otsu", "test-nearest-mean", "test-nearest-mean-rough"],
                       seeds=[0, 1], split_fractions=(0.4, 0.1, 0.5), save_predictions=True, quick=True,
                       dataset_options=DATASETS)
    result = run(config, progress=False)
    assert not result.failures
    write_report(out)
    return out


def _summary(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "summary.csv")


def test_runner_keeps_per_image_confusion_matrices(report_run):
    cells = [p for p in (report_run / "cells").iterdir() if json.loads((p / "cell.json").read_text())["summary"]["status"] == "ok"]
    assert len(cells) == 10  # otsu skips the multi-class dataset
    for cell in cells:
        record = json.loads((cell / "cell.json").read_text())
        rows = pd.read_csv(cell / "per_image.csv", dtype={"image_id": str})
        with np.load(cell / "confusion_per_image.npz") as data:
            ids, cms = data["image_id"].tolist(), data["confusion"]
        assert ids == rows["image_id"].tolist()
        np.testing.assert_array_equal(cms.sum(axis=0), np.array(record["confusion_matrix"]))
        names = record["class_names"]
        for cm, (_, row) in zip(cms, rows.iterrows()):
            assert scores_from_confusion(cm)["mean_dice"] == pytest.approx(row["mean_dice"], nan_ok=True)
            assert scores_from_confusion(cm)["dice"][1] == pytest.approx(row[f"dice_{names[1]}"], nan_ok=True)


@pytest.mark.parametrize("name", FIGURES)
def test_each_figure_is_a_valid_png_and_svg(report_run, name):
    png = report_run / "figures" / f"{name}.png"
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        assert im.format == "PNG" and min(im.size) > 100
    assert png.stat().st_size < 500_000
    root = ET.parse(report_run / "figures" / f"{name}.svg").getroot()
    assert root.tag.endswith("svg")
    assert f"figures/{name}.png" in (report_run / "report.md").read_text()


def test_scores_table_equals_summary_and_intervals_contain_estimates(report_run):
    summary, data = _summary(report_run), RunData.load(report_run)
    md, page = (report_run / "report.md").read_text(), (report_run / "report.html").read_text()
    for dataset, dice, iou in [("synthetic", "dice_lesion", "iou_lesion"), ("synthetic-multiclass", "mean_dice", "mean_iou")]:
        table = scores_table(data, dataset).set_index("method")
        ok = summary[(summary["dataset"] == dataset) & (summary["status"] == "ok")]
        expected = ok.groupby("method")[[f"dataset_{dice}", f"per_image_{dice}", f"dataset_{iou}", f"per_image_{iou}",
                                         "latency_ms_p50", "train_s"]].mean()
        assert sorted(table.index) == sorted(expected.index)
        assert list(table["dice_dataset"]) == sorted(table["dice_dataset"], reverse=True)
        for method, row in table.iterrows():
            e = expected.loc[method]
            assert row["dice_dataset"] == pytest.approx(e[f"dataset_{dice}"], abs=1e-12)
            assert row["dice_per_image"] == pytest.approx(e[f"per_image_{dice}"], abs=1e-12)
            assert row["iou_dataset"] == pytest.approx(e[f"dataset_{iou}"], abs=1e-12)
            assert row["iou_per_image"] == pytest.approx(e[f"per_image_{iou}"], abs=1e-12)
            assert row["latency_ms_p50"] == pytest.approx(e["latency_ms_p50"])
            assert row["seeds"] == 2
            for key in ("dice_dataset", "dice_per_image", "iou_dataset", "iou_per_image"):
                low, high = row[f"{key}_low"], row[f"{key}_high"]
                assert low <= row[key] <= high and high - low > 0, (dataset, method, key)
            # The rendered tables show the same numbers.
            cell = f"{row['dice_dataset']:.3f} [{row['dice_dataset_low']:.3f}, {row['dice_dataset_high']:.3f}]"
            assert cell in md and cell in page
        assert not any("do not reproduce" in n for n in table.attrs["notes"])


def test_per_class_iou_table_equals_summary(report_run):
    summary = _summary(report_run)
    table = per_class_iou_table(RunData.load(report_run), "synthetic-multiclass").set_index("method")
    assert list(table.columns) == ["background", "lesion", "hair", "mean IoU"]
    ok = summary[(summary["dataset"] == "synthetic-multiclass") & (summary["status"] == "ok")]
    for method, rows in ok.groupby("method"):
        for name in ("background", "lesion", "hair"):
            assert table.loc[method, name] == pytest.approx(rows[f"dataset_iou_{name}"].mean())
    assert "| lesion | hair | mean IoU |" in (report_run / "report.md").read_text()


def _matched(per_image: pd.DataFrame, a: str, b: str, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(seeds x images) headline Dice of two methods on their common images, straight from per_image.csv."""
    rows = per_image[(per_image["dataset"] == "synthetic") & per_image["seed"].isin(seeds)]
    wide = rows.pivot_table(index=["seed", "image_id"], columns="method", values="dice_lesion", dropna=False)
    x, y = wide[a].unstack("image_id"), wide[b].unstack("image_id")
    return x.to_numpy(float), y.to_numpy(float)


def test_paired_table_one_seed_equals_per_image_csv_and_scipy(report_run, tmp_path):
    """With one seed on one split: the one-sample t test on per-image differences, as scipy computes it, and
    the table says training noise is not in it."""
    one = tmp_path / "one-seed"
    shutil.copytree(report_run, one, ignore=shutil.ignore_patterns("figures", "report.*", "predictions"))
    summary = _summary(one)
    summary[summary["seed"] == 0].to_csv(one / "summary.csv", index=False)
    per_image = pd.read_csv(one / "per_image.csv", dtype={"image_id": str})
    table = paired_table(RunData.load(one), "synthetic")
    assert len(table) == 3 and (table["seeds"] == 1).all() and not table["training_noise"].any()
    assert table.attrs["family"] == "the 3 pairs of synthetic"
    for r in table.itertuples():
        x, y = _matched(per_image, r.method_a, r.method_b, [0])
        keep = ~np.isnan(x[0] - y[0])
        a, b = x[0][keep], y[0][keep]
        assert r.n_images == keep.sum() and r.test == f"t, {keep.sum()} images" and r.df == keep.sum() - 1
        assert r.dice_a == pytest.approx(a.mean()) and r.dice_b == pytest.approx(b.mean())
        assert r.diff == pytest.approx(a.mean() - b.mean())
        ref = scipy.stats.ttest_1samp(a - b, 0.0)
        assert r.p == pytest.approx(ref.pvalue)
        assert (r.diff_low, r.diff_high) == pytest.approx(tuple(ref.confidence_interval(0.95)))
    np.testing.assert_allclose(table["p_holm"], holm(table["p"]))
    assert (table["significant"] == (table["p_holm"] < 0.05)).all()


def test_paired_table_several_seeds_matches_pairs_and_crossed_test(report_run):
    """With two seeds on one split: pairs matched on (seed, image); interval and p from the seeds x images t."""
    per_image = pd.read_csv(report_run / "per_image.csv", dtype={"image_id": str})
    table = paired_table(RunData.load(report_run), "synthetic")
    assert len(table) == 3  # three methods, three pairs
    assert table["test"].str.startswith("t, 2 seeds x ").all() and (table["seeds"] == 2).all()
    assert table["training_noise"].all()
    for r in table.itertuples():
        x, y = _matched(per_image, r.method_a, r.method_b, [0, 1])
        d = x - y
        assert r.n_images == (~np.isnan(d)).any(axis=0).sum()
        assert r.dice_a == pytest.approx(np.nanmean(np.where(np.isnan(d), np.nan, x)))
        assert r.diff == pytest.approx(np.mean([np.nanmean(row) for row in d]))
        ref = paired_difference(d[:, ~np.isnan(d).all(axis=0)])
        assert (r.diff_low, r.diff_high, r.p) == pytest.approx((ref.interval.low, ref.interval.high, ref.p))
        assert (r.diff_low > 0 or r.diff_high < 0) == (r.p < 0.05)  # one procedure: they agree
    np.testing.assert_allclose(table["p_holm"], holm(table["p"]))
    assert (table["significant"] == (table["p_holm"] < 0.05)).all()
    assert (table["dice_a"] >= table["dice_b"]).all()  # A is the better method of each pair
    md = (report_run / "report.md").read_text()
    for r in table.itertuples():
        assert f"| {r.method_a} | {r.method_b} | {r.n_images} | 2 |" in md


def _two_method_run(tmp_path: Path, a: np.ndarray, b: np.ndarray, folds: np.ndarray | None = None) -> RunData:
    """A ``RunData`` of two methods' per-image Dice on one seed (with a fold per image when given)."""
    images = [f"im{i:03d}" for i in range(len(a))]
    per_image = pd.concat([pd.DataFrame({"dataset": "d", "method": m, "seed": 0, "image_id": images, "dice_lesion": v,
                                         **({"fold": folds} if folds is not None else {})}) for m, v in (("a", a), ("b", b))])
    summary = pd.DataFrame({"dataset": "d", "method": ["a", "b"], "seed": 0, "status": "ok", "family": "classical",
                            "scored_class": "lesion", "dataset_iou_background": 0.9, "dataset_iou_lesion": 0.8})
    return RunData(tmp_path, summary, per_image, {}, {})


def test_mean_and_ranks_disagree_one_consistent_verdict(tmp_path):
    """A wins 128 of 140 images by 0.01 and loses 12 by 0.30: the signed ranks favour A, the mean favours B.
    The old table printed "a better" with the signed-rank p; now the verdict, the interval and the p-value
    all come from the mean difference and name B."""
    rng = np.random.default_rng(0)
    b = rng.uniform(0.6, 0.9, 140)
    gap = np.where(np.arange(140) < 128, 0.01, -0.30)
    a = b + gap
    assert scipy.stats.wilcoxon(a - b).pvalue < 1e-10 and np.median(a - b) > 0  # the ranks say A
    table = paired_table(_two_method_run(tmp_path, a, b), "d")
    (r,) = table.itertuples()
    assert (r.method_a, r.method_b) == ("b", "a")  # A is the method of higher mean
    assert r.diff == pytest.approx(-(gap.mean())) and r.diff > 0 and r.diff_low > 0
    assert r.p < 0.05 and r.verdict == "b better"
    # With the images in 5 folds the same gap is tested on 5 fold means, and still points one way.
    folded = paired_table(_two_method_run(tmp_path, a, b, folds=np.arange(140) % 5), "d")
    (f,) = folded.itertuples()
    assert f.test == "t, 5 folds (one model each)" and f.df == 4 and f.diff == pytest.approx(r.diff)
    assert (f.diff_low > 0) == (f.p < 0.05) and f.verdict in ("b better", "no significant difference")


def test_html_is_self_contained_with_every_figure_embedded(report_run):
    page = (report_run / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == len(FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page and "http://" not in page and "https://" not in page
    assert "Environment and config" in page and "\"save_predictions\": true" in page


def test_intervals_rebuilt_from_predictions_for_older_run_folders(report_run, tmp_path):
    """A run folder without confusion_per_image.npz gets the same intervals from its saved predictions."""
    old = tmp_path / "old"
    shutil.copytree(report_run, old)
    for npz in old.glob("cells/*/confusion_per_image.npz"):
        npz.unlink()
    before, after = scores_table(RunData.load(report_run), "synthetic"), scores_table(RunData.load(old), "synthetic")
    pd.testing.assert_frame_equal(before, after)
    assert any("rebuilt from the saved predictions" in n for n in after.attrs["notes"])
    shutil.rmtree(old / "predictions")  # neither source: the table keeps its numbers, without intervals
    table = scores_table(RunData.load(old), "synthetic")
    assert table["dice_dataset"].tolist() == before["dice_dataset"].tolist()
    assert table["dice_dataset_low"].isna().all() and table["dice_per_image_low"].notna().all()
    assert any("No dataset-level intervals" in n for n in table.attrs["notes"])


def test_grid_skipped_with_a_note_when_images_cannot_be_loaded(report_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(report_run, copy, ignore=shutil.ignore_patterns("figures", "report.*"))
    env = json.loads((copy / "environment.json").read_text())
    env["config"]["datasets"] = []  # as if the dataset spec were unknown
    (copy / "environment.json").write_text(json.dumps(env))
    md = write_report(copy, formats=("md",))
    assert "No qualitative grid: the dataset's images cannot be loaded" in md
    assert not (copy / "figures" / "qualitative_synthetic.png").exists()
    assert (copy / "figures" / "scores.png").is_file() and not (copy / "report.html").exists()


def test_grid_leaves_out_predictions_another_cell_overwrote(report_run, tmp_path):
    """Predictions live per (dataset, method, seed): a later run with other settings overwrites them, and the
    report must not draw them under the cell of the tables."""
    base = dict(datasets=["synthetic"], split_fractions=(0.4, 0.1, 0.5), save_predictions=True, quick=True,
                dataset_options=DATASETS)
    out = tmp_path / "run"
    first = RunConfig(out=out, methods=["otsu", "test-nearest-mean"], **base)
    run(first, progress=False)
    run(RunConfig(out=out, methods=["otsu"], size=32, **base), progress=False)  # new otsu cell, same folder
    run(first, progress=False)  # the first cells again: resumed, so the tables are theirs
    data = RunData.load(out)
    assert not data.predictions_match("synthetic", "otsu", 0)
    assert data.predictions_match("synthetic", "test-nearest-mean", 0)
    md = write_report(out, formats=("md",))
    assert "Not in the qualitative grid: otsu: their saved predictions are from another cell" in md
    assert (out / "figures" / "qualitative_synthetic.png").is_file()  # drawn with the method that still matches


def test_cli_report_formats_and_out_dir(report_run, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", str(report_run), "--format", "html", "--out", str(out), "--no-figures"]) == 0
    assert (out / "report.html").is_file() and not (out / "report.md").exists()
    assert main(["report", str(report_run), "--format", "pdf", "--out", str(out)]) == 2
    assert "unknown report format(s) ['pdf']" in capsys.readouterr().err


def test_grid_images_chosen_by_rule():
    values = pd.DataFrame({"a": [0.9, 0.5, 0.1, 0.6, 0.7], "b": [0.8, 0.2, 0.2, 0.0, 0.7]}, index=list("pqrst"))
    # Spreads: p 0.1, q 0.3, r 0.1, s 0.6, t 0. "s" spreads most but is a's median already: the next is taken.
    assert select_grid_images(values, "a") == [
        ("best for a", "p"), ("median for a", "s"), ("worst for a", "r"), ("methods disagree most (spread 0.30)", "q"),
    ]
    same = pd.DataFrame({"a": [0.9, 0.5, 0.1], "b": [0.9, 0.5, 0.1]}, index=list("pqr"))
    assert [c[1] for c in select_grid_images(same, "a")] == ["p", "q", "r"]  # no disagreement to show
    assert select_grid_images(values[["a"]], "a")[-1] == ("worst for a", "r")  # one method: no spread row


def test_pareto_front():
    assert pareto_front([10, 20, 30, 5], [0.8, 0.9, 0.85, 0.5]).tolist() == [3, 0, 1]
    assert pareto_front([1, 1, 2], [0.5, 0.7, np.nan]).tolist() == [1]


def _overlap(a, b, pad=0.0):
    return not (a[0] >= b[2] or b[0] >= a[2] or a[1] >= b[3] + pad or b[1] >= a[3] + pad)


def test_spread_labels_separates_a_dense_cluster_and_leaves_lone_labels():
    """Twelve labels on top of each other end up apart and off the markers; a far label does not move."""
    rng = np.random.default_rng(0)
    x = np.r_[rng.uniform(0, 20, 12), 500.0]
    y = np.r_[rng.uniform(0, 10, 12), 500.0]
    w, h = np.full(13, 40.0), np.full(13, 8.0)
    markers = [(px - 6, py - 6, px + 6, py + 6) for px, py in zip(x[:12] - 10, y[:12] + 4)]
    out = spread_labels(x, y, w, h, obstacles=markers, pad=1.0)
    boxes = [(x[i], out[i], x[i] + w[i], out[i] + h[i]) for i in range(13)]
    assert not any(_overlap(boxes[i], boxes[j], 1.0) for i in range(13) for j in range(i + 1, 13))
    assert not any(_overlap(b, m, 1.0) for b in boxes for m in markers)
    assert out[12] == 500.0
    # Side by side labels (no horizontal overlap) never move.
    assert spread_labels([0, 100], [0, 0], [50, 50], [8, 8]).tolist() == [0.0, 0.0]


def test_report_is_reproducible(report_run, tmp_path):
    """Fixed bootstrap seed: the same run folder gives the same tables and intervals, to the last digit."""
    first = write_report(report_run, out_dir=tmp_path / "a", formats=("md",), figures=False)
    second = write_report(report_run, out_dir=tmp_path / "b", formats=("md",), figures=False)
    assert first == second and " [0." in first
    assert (tmp_path / "a" / "report.md").read_text() == first


def test_report_from_the_tables_alone(report_run, tmp_path):
    """A committed reference folder holds summary.csv, per_image.csv and environment.json, not cells/: the
    report is written from them, leaving out (with a note) what needs the cell records."""
    tables = tmp_path / "tables-only"
    tables.mkdir()
    for name in ("summary.csv", "per_image.csv", "environment.json"):
        shutil.copy(report_run / name, tables / name)
    out = tmp_path / "out"
    assert main(["report", str(tables), "--out", str(out), "--format", "md"]) == 0
    md = (out / "report.md").read_text()
    assert "Note: No dataset-level intervals for cells whose folder under cells/ is missing." in md
    assert "Note: No confusion matrices: the cell records under cells/ are missing." in md
    assert (out / "figures" / "scores.png").is_file() and not list(tables.glob("report.*"))  # nothing written there
    full, bare = scores_table(RunData.load(report_run), "synthetic"), scores_table(RunData.load(tables), "synthetic")
    assert bare["dice_dataset"].tolist() == full["dice_dataset"].tolist()
    assert bare["dice_per_image_low"].tolist() == full["dice_per_image_low"].tolist()  # from per_image.csv alone
    assert bare["dice_dataset_low"].isna().all()
    compressed = tmp_path / "compressed"  # a large per-image table may be committed gzipped
    shutil.copytree(tables, compressed)
    pd.read_csv(tables / "per_image.csv").to_csv(compressed / "per_image.csv.gz", index=False)
    (compressed / "per_image.csv").unlink()
    pd.testing.assert_frame_equal(RunData.load(compressed).per_image, RunData.load(tables).per_image)
    (tables / "per_image.csv").unlink()  # the oldest reference folders hold summary.csv alone
    md = write_report(tables, out_dir=out, formats=("md",))
    assert "Note: No paired comparisons: the run folder has no per-image scores (per_image.csv)." in md
    assert scores_table(RunData.load(tables), "synthetic")["dice_dataset"].tolist() == full["dice_dataset"].tolist()


def test_folds_of_a_cell_pool_to_the_cell(report_run, tmp_path):
    """A cell cut into two 'folds' (each with its own records, as a K-fold run writes them) pools back to the
    runner's numbers for the whole cell: dataset-level from the summed matrices, per-image over all images."""
    folded = tmp_path / "folded"
    shutil.copytree(report_run, folded, ignore=shutil.ignore_patterns("figures", "report.*", "predictions"))
    summary = _summary(folded)
    per_image = pd.read_csv(folded / "per_image.csv", dtype={"image_id": str})
    pick = (summary["dataset"] == "synthetic") & (summary["method"] == "otsu") & (summary["seed"] == 0)
    original = summary[pick].iloc[0]
    cell = folded / "cells" / original["cell"]
    record = json.loads((cell / "cell.json").read_text())
    with np.load(cell / "confusion_per_image.npz") as data:
        ids, cms = data["image_id"].astype(str), data["confusion"]
    mine = (per_image["dataset"] == "synthetic") & (per_image["method"] == "otsu") & (per_image["seed"] == 0)
    per_image["fold"] = np.nan
    rows = []
    for fold, part in enumerate(np.array_split(np.arange(len(ids)), 2)):
        key = f"{original['cell']}-fold{fold}"
        (folded / "cells" / key).mkdir()
        (folded / "cells" / key / "cell.json").write_text(json.dumps({**record, "confusion_matrix": cms[part].sum(0).tolist()}))
        np.savez(folded / "cells" / key / "confusion_per_image.npz", image_id=ids[part], confusion=cms[part])
        s = scores_from_confusion(cms[part].sum(0))
        images = mine & per_image["image_id"].isin(ids[part])
        per_image.loc[images, "fold"] = fold
        rows.append({**original.to_dict(), "cell": key, "fold": fold, "n_test": len(part),
                     "confusion": json.dumps(cms[part].sum(0).tolist()),
                     "dataset_dice_lesion": s["dice"][1], "dataset_iou_lesion": s["iou"][1],
                     "per_image_dice_lesion": per_image.loc[images, "dice_lesion"].mean()})
    pd.concat([summary[~pick], pd.DataFrame(rows)]).to_csv(folded / "summary.csv", index=False)
    per_image.to_csv(folded / "per_image.csv", index=False)
    run_data = RunData.load(folded)
    pooled = run_data.ok("synthetic").set_index(["method", "seed"]).loc[("otsu", 0)]
    assert pooled["n_test"] == original["n_test"] and pooled["n_folds"] == 2
    for column in ("dataset_dice_lesion", "dataset_iou_lesion", "dataset_pixel_accuracy", "per_image_dice_lesion",
                   "per_image_iou_lesion"):
        assert pooled[column] == pytest.approx(original[column], rel=1e-12), column
    full = scores_table(RunData.load(report_run), "synthetic").set_index("method").loc["otsu"]
    table = scores_table(run_data, "synthetic")
    assert not table.attrs["notes"]
    table = table.set_index("method").loc["otsu"]
    for key in ("dice_dataset", "dice_dataset_low", "dice_dataset_high", "dice_per_image_low", "iou_dataset_high"):
        assert table[key] == pytest.approx(full[key], rel=1e-9), key
    # A committed reference folder has no cells/: the folds still pool, from summary.csv's confusion column.
    shutil.rmtree(folded / "cells")
    bare = RunData.load(folded).ok("synthetic").set_index(["method", "seed"]).loc[("otsu", 0)]
    for column in ("dataset_dice_lesion", "dataset_iou_lesion", "dataset_pixel_accuracy"):
        assert bare[column] == pytest.approx(original[column], rel=1e-12), column
    bad = pd.read_csv(folded / "summary.csv")
    bad.loc[bad["cell"].str.endswith("-fold1"), "confusion"] = np.nan  # one fold without its matrix: no pooled score
    bad.to_csv(folded / "summary.csv", index=False)
    assert np.isnan(RunData.load(folded).ok("synthetic").set_index(["method", "seed"]).loc[("otsu", 0), "dataset_dice_lesion"])


def test_qualitative_grid_of_a_named_folder_dataset_with_folds(tmp_path):
    """``folder:NAME=PATH`` runs under NAME; the report re-loads its images by that name (it looked the name up
    among the kinds, found none and left the grid out), and finds a K-fold run's label maps under the fold that
    tested each image (it looked only above the fold folders)."""
    root = write_folder_dataset(tmp_path / "data", n=8)
    out = tmp_path / "run"
    assert main(["run", "--datasets", f"folder:vessels={root}", "--methods", "otsu", "--save-predictions",
                 "--folds", "2", "--no-progress", "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "No qualitative grid" not in md and "Not in the qualitative grid" not in md
    assert (out / "figures" / "qualitative_vessels.png").is_file()
    run_data = RunData.load(out)
    for image_id, fold in run_data.per_image[["image_id", "fold"]].itertuples(index=False):
        path = run_data.prediction_path("vessels", "otsu", 0, image_id)
        assert path.is_file() and path.parent.name == f"fold{fold}"


def test_dense_figures_stay_small_as_svg(tmp_path):
    # A converged grid's size: 15 methods x 140 images x 3 seeds of dots, 8 networks x 15 cells x 60 epochs of curves.
    # As vector paths these were 0.7 MB SVGs; the dense layers are rasterized, so both stay well under 500 KB.
    from segbench.report.figures import learning_curves_figure, per_image_figure, save_figure

    rng = np.random.default_rng(0)
    dots = pd.DataFrame({"method": np.repeat([f"method-{i}" for i in range(15)], 420), "value": rng.uniform(0.5, 1, 6300)})
    cells = [(f"net-{m}", seed, fold) for m in range(8) for seed in range(3) for fold in range(5)]
    curves = pd.DataFrame([{"method": m, "seed": s, "fold": f, "epoch": e, "train_s": 3.0 * e,
                            "val_score": 0.9 * (1 - np.exp(-e / (5 + f + s))) + rng.normal(0, 0.01)}
                           for m, s, f in cells for e in range(1, 61)])
    for name, fig in (("per_image_dice", per_image_figure({"ph2": dots}, {"ph2": "lesion"})),
                      ("learning_curves", learning_curves_figure(curves, dataset="ph2"))):
        save_figure(fig, tmp_path, name)
        svg = tmp_path / f"{name}.svg"
        assert svg.stat().st_size < 500_000, (name, svg.stat().st_size)
        assert ET.parse(svg).getroot().find(".//{http://www.w3.org/2000/svg}image") is not None  # the rasterized layer
