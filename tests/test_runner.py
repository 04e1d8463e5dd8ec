"""The runner end to end on tiny datasets: tables, predictions, failures, resume, reports."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score, jaccard_score, precision_score, recall_score

from helpers import write_folder_dataset
from segbench.cli import main
from segbench.datasets import DataError
from segbench.datasets.base import IGNORE_INDEX
from segbench.methods import METHODS, Method, labels_to_proba
from segbench.report import write_report
from segbench.run.runner import RunConfig, load_tables, run
from segbench.run.records import prediction_path

TINY = {"synthetic": {"num_images": 10, "size": (48, 40)}, "synthetic-multiclass": {"num_images": 10, "size": (48, 40)}}


class _Explodes(Method):
    """Fails at fit time, to check that one failing cell does not stop the grid."""

    description = "raises on purpose (tests only)"

    def _fit(self, train, val):
        raise RuntimeError("boom on purpose")

    def _predict_proba(self, image):  # pragma: no cover
        raise AssertionError


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


class _Bands(Method):
    """Predicts the blob class in a band at the left and one in the middle (not a constant), else background."""

    description = "blob in a left and a middle band (tests only)"
    needs_training = False
    left, middle = 10, 12  # widths in columns

    def _fit(self, train, val):
        pass

    @classmethod
    def bands(cls, shape):
        labels = np.zeros(shape, np.int64)
        centre = shape[1] // 2
        labels[:, : cls.left] = labels[:, centre - cls.middle // 2 : centre + cls.middle // 2] = 1
        return labels

    def _predict_proba(self, image):
        return labels_to_proba(self.bands(image.shape[:2]), self.num_classes)


@pytest.fixture(autouse=True, scope="module")
def _registered():
    with (METHODS.temporarily("test-explodes", _Explodes), METHODS.temporarily("test-counting", _Counting),
          METHODS.temporarily("test-bands", _Bands)):
        yield


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
    with pytest.raises(DataError, match=r"1 problem\(s\), nothing was run.*\n  ph2: .*PH2 Dataset images"):
        run(_config(tmp_path, datasets=["ph2"], data_dir=str(tmp_path / "nowhere")), progress=False)
    assert not (tmp_path / "run" / "cells").exists()


def test_ignore_pixels_do_not_count(tmp_path):
    """Pixels marked 255 in a label mask are excluded from every score."""
    root = write_folder_dataset(tmp_path / "d", n=8, mask_values="0/1")
    for path in (root / "masks").iterdir():
        mask = np.asarray(Image.open(path)).copy()
        mask[:, : _Bands.left] = IGNORE_INDEX  # the left band, where the method predicts blob, is not scored
        Image.fromarray(mask).save(path)
    config = _config(tmp_path, datasets=[f"folder:{root}"], methods=["test-bands"],
                     dataset_options={"d": {"mask_mode": "labels", "class_names": ["bg", "blob"]}})
    result = run(config, progress=False)
    row = result.summary.iloc[0]
    split = pd.read_csv(config.out / "splits" / "d.csv")  # a folder dataset is named after its folder
    truth = [np.asarray(Image.open(root / "masks" / f"{i}.png")) for i in split.loc[split["split"] == "test", "image_id"]]
    pred = np.concatenate([_Bands.bands(t.shape)[t != IGNORE_INDEX] for t in truth])
    t = np.concatenate([m[m != IGNORE_INDEX] for m in truth])
    assert 0 < (pred & t).sum() < t.sum() < t.size  # the middle band finds part of the blobs
    # scikit-learn on the scored pixels only; counting the band (whatever class it took) changes each of these.
    assert row["dataset_precision_blob"] == pytest.approx(precision_score(t, pred))
    assert row["dataset_recall_bg"] == pytest.approx(recall_score(t, pred, pos_label=0))
    assert row["dataset_iou_blob"] == pytest.approx(jaccard_score(t, pred))
    assert row["dataset_pixel_accuracy"] == pytest.approx(accuracy_score(t, pred))
