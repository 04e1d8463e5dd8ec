"""The runner end to end on tiny datasets: tables, predictions, failures, resume, reports."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import f1_score, jaccard_score

from helpers import write_folder_dataset
from segbench.cli import main
from segbench.datasets import DataError
from segbench.datasets.base import IGNORE_INDEX
from segbench.methods import METHODS, Method
from segbench.report import write_report
from segbench.run.runner import RunConfig, load_tables, run
from segbench.run.records import prediction_path

TINY = {"synthetic": {"num_images": 10, "size": (48, 40)}, "synthetic-multiclass": {"num_images": 10, "size": (48, 40)}}


@METHODS.register("test-explodes")
class _Explodes(Method):
    """Fails at fit time, to check that one failing cell does not stop the grid."""

    description = "raises on purpose (tests only)"

    def _fit(self, train, val):
        raise RuntimeError("boom on purpose")

    def _predict_proba(self, image):  # pragma: no cover
        raise AssertionError


@METHODS.register("test-counting")
class _Counting(Method):
    """Predicts background everywhere and counts its fits, to check that resume skips finished cells."""

    description = "constant background (tests only)"
    fits = 0

    def _fit(self, train, val):
        type(self).fits += 1

    def _predict_proba(self, image):
        proba = np.zeros((self.num_classes, *image.shape[:2]), np.float32)
        proba[0] = 1
        return proba


@pytest.fixture(autouse=True, scope="module")
def _unregister_test_methods():
    yield
    for name in ("test-explodes", "test-counting"):
        METHODS._items.pop(name, None)


def _config(tmp_path, **kw):
    base = dict(out=tmp_path / "run", datasets=["synthetic"], methods=["otsu"], dataset_options=TINY)
    return RunConfig(**{**base, **kw})


def test_tables_match_saved_predictions(tmp_path):
    folder = write_folder_dataset(tmp_path / "data", n=8)
    config = _config(tmp_path, datasets=[f"folder:{folder}"], methods=["otsu", "pixel-rf"], save_predictions=True, quick=True)
    result = run(config, progress=False)
    assert not result.failures
    summary, per_image = load_tables(config.out)
    assert len(summary) == 2 and set(summary["status"]) == {"ok"}
    for column in ["train_s", "latency_ms_p50", "latency_ms_p95", "dataset_dice_foreground", "per_image_iou_foreground", "device"]:
        assert summary[column].notna().all(), column
    split = pd.read_csv(config.out / "splits" / "data.csv")  # a folder dataset is named after its folder
    test_ids = sorted(split.loc[split["split"] == "test", "image_id"])
    # Recompute every score from the saved label maps with scikit-learn: the tables must agree.
    for method, rows in per_image.groupby("method"):
        assert sorted(rows["image_id"]) == test_ids
        truths, preds = [], []
        for _, row in rows.iterrows():
            pred = np.asarray(Image.open(prediction_path(config.out, "data", method, 0, row["image_id"])))
            truth = (np.asarray(Image.open(folder / "masks" / f"{row['image_id']}.png")) > 0).astype(np.uint8)
            assert pred.shape == truth.shape
            if truth.any() or pred.any():
                assert row["dice_foreground"] == pytest.approx(f1_score(truth.ravel(), pred.ravel()))
            truths.append(truth.ravel())
            preds.append(pred.ravel())
        t, p = np.concatenate(truths), np.concatenate(preds)
        s = summary.set_index("method").loc[method]
        assert s["dataset_dice_foreground"] == pytest.approx(f1_score(t, p))
        assert s["dataset_iou_foreground"] == pytest.approx(jaccard_score(t, p))
        assert s["per_image_dice_foreground"] == pytest.approx(rows["dice_foreground"].mean())
    env = json.loads((config.out / "environment.json").read_text())
    assert env["config"]["methods"] == ["otsu", "pixel-rf"] and "torch" in env["packages"]


def test_failures_are_recorded_and_others_finish(tmp_path):
    config = _config(tmp_path, datasets=["synthetic", "synthetic-multiclass"], methods=["test-explodes", "otsu", "test-counting"])
    result = run(config, progress=False)
    summary = result.summary.set_index(["dataset", "method"])["status"]
    assert summary[("synthetic", "test-explodes")] == "failed"
    assert summary[("synthetic", "otsu")] == "ok"
    assert summary[("synthetic-multiclass", "otsu")] == "skipped"  # binary-only method, multi-class data
    assert summary[("synthetic-multiclass", "test-counting")] == "ok"
    assert [f["method"] for f in result.failures] == ["test-explodes", "test-explodes"]
    assert "boom on purpose" in result.failures[0]["error"]
    report = write_report(config.out)
    assert "Failed cells" in report and "boom on purpose" in report
    assert (config.out / "figures" / "accuracy_vs_latency.png").stat().st_size > 1000


def test_resume_skips_finished_cells_and_new_settings_make_new_cells(tmp_path):
    _Counting.fits = 0
    config = _config(tmp_path, methods=["test-counting"], seeds=[0, 1])
    run(config, progress=False)
    assert _Counting.fits == 2
    first = pd.read_csv(config.out / "summary.csv")
    run(config, progress=False)
    assert _Counting.fits == 2  # nothing recomputed
    pd.testing.assert_frame_equal(first, pd.read_csv(config.out / "summary.csv"))
    run(_config(tmp_path, methods=["test-counting"], seeds=[0, 1], size=32), progress=False)
    assert _Counting.fits == 4  # a changed setting is a new cell
    assert len(pd.read_csv(config.out / "summary.csv")) == 2


def test_cli_run_list_report_and_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["run", "--datasets", "synthetic", "--methods", "otsu", "--dataset-opt", "synthetic.num_images=9",
                 "--dataset-opt", "synthetic.size=(40,32)", "--out", str(out), "--no-progress"])
    assert code == 0 and (out / "report.md").is_file()
    assert "| otsu |" in capsys.readouterr().out
    assert main(["report", str(out), "--no-figures"]) == 0
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "otsu" in listing and "synthetic" in listing and "ph2" in listing
    assert main(["run", "--methods", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown method 'nope'; known methods:" in capsys.readouterr().err
    assert main(["run", "--methods", "otsu", "--opt", "otsu.bad", "--out", str(tmp_path / "x")]) == 2
    assert "NAME.KEY=VALUE" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no summary.csv" in capsys.readouterr().err


def test_missing_data_folder_stops_the_run_before_any_cell(tmp_path):
    with pytest.raises(DataError, match=r"1 problem\(s\) in the data, nothing was run.*\n  ph2: .*PH2 Dataset images"):
        run(_config(tmp_path, datasets=["ph2"], data_dir=str(tmp_path / "nowhere")), progress=False)
    assert not (tmp_path / "run" / "cells").exists()


def test_ignore_pixels_do_not_count(tmp_path):
    """Pixels marked 255 in a label mask are excluded from every score."""
    root = write_folder_dataset(tmp_path / "d", n=8, mask_values="0/1")
    for path in (root / "masks").iterdir():
        mask = np.asarray(Image.open(path)).copy()
        mask[:, :10] = IGNORE_INDEX
        Image.fromarray(mask).save(path)
    config = _config(tmp_path, datasets=[f"folder:{root}"], methods=["test-counting"],
                     dataset_options={"folder": {"mask_mode": "labels", "class_names": ["bg", "blob"]}})
    result = run(config, progress=False)
    row = result.summary.iloc[0]
    # Constant background: background recall is 1 on the counted pixels, whatever the ignored band holds.
    assert row["dataset_recall_bg"] == pytest.approx(1.0)
    assert row["dataset_recall_blob"] == pytest.approx(0.0)
