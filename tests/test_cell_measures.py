"""The boundary and calibration columns through the runner: per_image.csv, summary.csv, cell.json, cell keys.

The scores themselves are checked against brute force in test_boundary.py and test_calibration.py; here the
saved label maps are rescored by a brute-force pairwise-distance HD95 and the tables must agree."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.spatial.distance import cdist

from helpers import write_folder_dataset
from segbench.cli import main
from segbench.report import write_report
from segbench.report.measures import measures_table, reliability_table
from segbench.run.records import prediction_path
from segbench.run.runner import RunConfig, load_tables, run


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of a boolean mask with an in-image 4-neighbour outside it (no ignored pixels here)."""
    padded = np.pad(mask, 1, mode="edge")
    h, w = mask.shape
    differs = np.zeros_like(mask)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        differs |= padded[dy : dy + h, dx : dx + w] != mask
    return np.argwhere(mask & differs)


def test_columns_in_tables_and_reliability_in_cell(tmp_path) -> None:
    folder = write_folder_dataset(tmp_path / "data", n=8)
    config = RunConfig(out=tmp_path / "run", datasets=[f"folder:{folder}"], methods=["otsu"], save_predictions=True,
                       cldice=True)
    assert not run(config, progress=False).failures
    summary, per_image = load_tables(config.out)
    for _, row in per_image.iterrows():
        pred = np.asarray(Image.open(prediction_path(config.out, "data", "otsu", 0, row["image_id"]))) == 1
        truth = np.asarray(Image.open(folder / "masks" / f"{row['image_id']}.png")) > 0
        if truth.any() and pred.any():
            d = cdist(_boundary(pred), _boundary(truth))
            hd95 = max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95))
        elif truth.any() or pred.any():
            hd95 = math.hypot(*truth.shape)
        else:
            hd95 = math.nan
        np.testing.assert_allclose(row["hd95_foreground"], hd95)
        for key in ("bf1", "assd", "cldice"):
            assert f"{key}_foreground" in row and f"{key}_background" in row
    s = summary.iloc[0]
    assert s["per_image_hd95_foreground"] == pytest.approx(per_image["hd95_foreground"].mean())  # NaN skipped
    assert s["per_image_bf1_background"] == pytest.approx(per_image["bf1_background"].mean())
    assert 0 <= s["ece"] <= 1 and 0 <= s["brier"] <= 2
    cell = json.loads(next((config.out / "cells").glob("*/cell.json")).read_text())
    n_pixels = sum(np.asarray(Image.open(folder / "masks" / f"{i}.png")).size for i in per_image["image_id"])
    assert sum(cell["reliability"]["count"]) == n_pixels and len(cell["reliability"]["count"]) == 15
    report = write_report(config.out)
    assert "Boundaries and calibration" in report and "| otsu |" in report.split("Boundaries and calibration")[1]
    assert (config.out / "figures" / "reliability_data.png").stat().st_size > 1000


def test_report_table_and_pooled_reliability_by_hand() -> None:
    def cell(method, seed, fg, bg):
        row = {"dataset": "d", "status": "ok", "method": method, "family": "classical", "seed": seed, "ece": 0.1 * seed,
               "brier": 0.2}
        for key in ("bf1", "hd95", "assd", "cldice"):
            row.update({f"per_image_{key}_bg": bg, f"per_image_{key}_fg": fg})
        return row

    summary = pd.DataFrame([cell("a", 1, 0.5, 0.9), cell("a", 3, 0.7, 0.9), cell("b", 1, 0.8, math.nan)])
    table, label = measures_table(summary, "d")
    assert label == "fg" and table["method"].tolist() == ["b", "a"]  # best BF1 first
    assert table.set_index("method").loc["a", "bf1"] == pytest.approx(0.6)
    assert table.set_index("method").loc["a", "ece"] == pytest.approx(0.2)
    for key in ("bf1", "hd95", "assd", "cldice"):  # three classes: mean over defined classes and seeds
        summary[f"per_image_{key}_third"] = [0.0, 0.0, math.nan]
    table, label = measures_table(summary, "d")
    assert label == "mean over classes" and table.set_index("method").loc["b", "bf1"] == pytest.approx(0.8)
    assert table.set_index("method").loc["a", "bf1"] == pytest.approx((0.5 + 0.7 + 0.9 * 2 + 0) / 6)

    def rel(conf, acc, count):
        return {"reliability": {"lower": [0, 0.5], "upper": [0.5, 1], "confidence": conf, "accuracy": acc, "count": count}}

    pooled = reliability_table([rel([math.nan, 0.9], [math.nan, 1.0], [0, 3]), rel([0.4, 0.7], [0.0, 0.5], [2, 1])])
    assert pooled["count"].tolist() == [2, 4]
    assert pooled["confidence"].tolist() == pytest.approx([0.4, (3 * 0.9 + 0.7) / 4])
    assert pooled["accuracy"].tolist() == pytest.approx([0.0, (3 + 0.5) / 4])


def test_tolerance_enters_the_cell_key_only_when_not_default(tmp_path) -> None:
    def keys(*extra: str) -> list[str]:
        out = tmp_path / f"run{len(extra)}"
        assert main(["run", "--methods", "otsu", "--dataset-opt", "synthetic.num_images=6", "--dataset-opt",
                     "synthetic.size=(40,32)", "--out", str(out), "--no-progress", *extra]) == 0
        return sorted(p.name for p in (out / "cells").iterdir())

    default = keys()
    assert default == keys("--boundary-tolerance", "0.75%")
    assert default != keys("--boundary-tolerance", "2", "--warmup", "1")
    summary = pd.read_csv(tmp_path / "run4" / "summary.csv")
    assert any(c.startswith("per_image_bf1_") for c in summary) and "ece" in summary
    assert not any("cldice" in c for c in summary)  # centreline Dice only with --cldice (it is slow on large regions)
    with_cldice = keys("--cldice")
    assert with_cldice != default
    assert any(c.startswith("per_image_cldice_") for c in pd.read_csv(tmp_path / "run1" / "summary.csv"))


def test_bad_tolerance_is_a_clear_error(tmp_path, capsys) -> None:
    assert main(["run", "--methods", "otsu", "--boundary-tolerance", "wide", "--out", str(tmp_path / "x")]) == 2
    assert "boundary tolerance 'wide'" in capsys.readouterr().err


def test_stage_effects_pair_each_pipeline_with_the_spec_before_its_last_stage():
    """Differences are paired per (seed, image) and averaged per seed, then over seeds (checked by hand);
    images scored for only one side are left out; a method without its 'before' spec gets no row."""
    from segbench.report.measures import stage_effects_table

    rng = np.random.default_rng(0)
    images = [f"i{k}" for k in range(5)]
    rows = []
    for method in ("a", "a+crf", "b+crf"):
        for seed in (0, 1):
            for image in images if method != "a+crf" else images[:4]:  # a+crf misses i4
                rows.append({"dataset": "d", "method": method, "seed": seed, "image_id": image,
                             "dice_background": rng.random(), "dice_lesion": rng.random(),
                             "bf1_background": rng.random(), "bf1_lesion": rng.random(),
                             "hd95_background": 10 * rng.random(), "hd95_lesion": 10 * rng.random()})
    per_image = pd.DataFrame(rows)
    summary = pd.DataFrame([{"dataset": "d", "method": m, "seed": s, "status": "ok", "family": "classical",
                             "ece": e + s / 100, "per_image_bf1_background": 0.5, "per_image_bf1_lesion": 0.5}
                            for m, e in (("a", 0.01), ("a+crf", 0.05), ("b+crf", 0.2)) for s in (0, 1)])
    table = stage_effects_table(summary, per_image, "d")
    assert table["pipeline"].tolist() == ["a+crf"] and table["before"].tolist() == ["a"]
    row = table.iloc[0]
    assert row["images"] == 4
    assert row["ece_before"] == pytest.approx(0.015) and row["ece_after"] == pytest.approx(0.055)
    for key in ("dice", "bf1", "hd95"):
        after = per_image[per_image["method"] == "a+crf"].set_index(["seed", "image_id"])[f"{key}_lesion"]
        before = per_image[per_image["method"] == "a"].set_index(["seed", "image_id"])[f"{key}_lesion"]
        by_hand = np.mean([np.mean([after[(s, i)] - before[(s, i)] for i in images[:4]]) for s in (0, 1)])
        interval = row[f"d_{key}"]
        assert interval.estimate == pytest.approx(by_hand, abs=1e-12), key
        assert interval.low <= interval.estimate <= interval.high
