"""The results schema (segbench.measure.schema): column names built and parsed in one place, the headline rule,
and a metric added by its function and spec alone reaching per_image.csv, summary.csv and the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import write_folder_dataset
from segbench.measure.metrics import flatten_scores, scores_from_confusion
from segbench.measure.schema import (
    METRICS,
    Column,
    MetricSpec,
    cell_column,
    class_names_from_columns,
    confusion_columns,
    headline_column,
    headline_label,
    headline_values,
    image_metrics,
    parse_column,
    MEAN,
    default_scored_class,
    temporary_metric,
)
from segbench.report import write_report
from segbench.run.records import load_tables, prediction_path
from segbench.run.runner import RunConfig, run


def test_confusion_columns_are_the_flattened_scores_with_their_aggregation():
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    scores = scores_from_confusion(cm)
    names = ["bg", "road", "car"]
    assert confusion_columns(scores, names) == flatten_scores(scores, names)
    assert confusion_columns(scores, names, aggregation="dataset") == flatten_scores(scores, names, prefix="dataset_")
    for column in confusion_columns(scores, names, aggregation="per_image"):
        parsed = parse_column(column)
        assert parsed is not None and parsed.aggregation == "per_image", column


@pytest.mark.parametrize("column, parsed", [
    ("dataset_dice_lesion", Column("dice", "lesion", "dataset")),
    ("per_image_mean_iou", Column("iou", None, "per_image", class_mean=True)),
    ("dataset_mean_pixel_accuracy", Column("mean_pixel_accuracy", None, "dataset")),
    ("dataset_pixel_accuracy", Column("pixel_accuracy", None, "dataset")),
    ("per_image_hd95_road_sign", Column("hd95", "road_sign", "per_image")),  # a class name with an underscore
    ("bf1_lesion", Column("bf1", "lesion")),
    ("ece", Column("ece")),
    ("train_s", None),
    ("dataset", None),
    ("latency_ms_p50", None),
])
def test_parse_column(column, parsed):
    assert parse_column(column) == parsed


def test_parse_restricted_to_a_table():
    assert parse_column("dice_lesion", aggregated=True) is None
    assert parse_column("dataset_dice_lesion", aggregated=False) is None
    assert parse_column("ece", aggregated=True) == Column("ece")  # a cell-level column of summary.csv


def test_builders_and_parsers_agree_for_every_metric():
    for spec in METRICS.values():
        classes = ["background", "lesion"] if spec.per_class else [None]
        aggregations = [None] if spec.source == "pixels" else [None, "dataset", "per_image"]
        for cls in classes:
            for agg in aggregations:
                assert parse_column(cell_column(spec.name, cls, aggregation=agg)) == Column(spec.name, cls, agg)


def test_class_names_from_columns_keep_the_datasets_own():
    summary = pd.DataFrame({"dataset": ["a", "b"], "dataset_iou_bg": [0.9, 0.8], "dataset_iou_lesion": [0.7, np.nan],
                            "dataset_iou_road": [np.nan, 0.5], "dataset_iou_car": [np.nan, 0.4]})
    assert class_names_from_columns(summary, "a") == ["bg", "lesion"]
    assert class_names_from_columns(summary, "b") == ["bg", "road", "car"]


def test_headline_rule():
    assert default_scored_class(["skin", "lesion"]) == "lesion" and headline_label("lesion") == "lesion"
    assert default_scored_class(["bg", "road", "car"]) == MEAN and headline_label(MEAN) == "mean over classes"
    assert headline_column("dice", "lesion", aggregation="dataset") == "dataset_dice_lesion"
    assert headline_column("iou", MEAN, aggregation="per_image") == "per_image_mean_iou"
    assert headline_column("dice", MEAN) == "mean_dice"
    with pytest.raises(ValueError, match="no class-mean column"):
        headline_column("bf1", MEAN)
    classes = ["bg", "road", "car"]
    rows = pd.DataFrame({"bf1_bg": [0.5, np.nan], "bf1_road": [0.7, np.nan], "bf1_car": [np.nan, 0.2],
                         "mean_dice": [0.1, 0.2], "dice_lesion": [0.3, 0.4], "dice_bg": [0.8, 0.9]})
    np.testing.assert_allclose(headline_values(rows, "bf1", MEAN, classes), [0.6, 0.2])  # NaN left out
    np.testing.assert_allclose(headline_values(rows, "dice", MEAN, classes), [0.1, 0.2])
    np.testing.assert_allclose(headline_values(rows, "dice", "lesion", ["bg", "lesion"]), [0.3, 0.4])
    np.testing.assert_allclose(headline_values(rows, "dice", "bg", ["bg", "lesion"]), [0.8, 0.9])  # a declared class


def test_specs_are_checked():
    with pytest.raises(ValueError, match="lower-case"):
        MetricSpec("Bad Name", "x", compute=lambda *a, **k: {})
    with pytest.raises(ValueError, match="compute function"):
        MetricSpec("no_function", "x")
    with pytest.raises(ValueError, match="registered twice"), temporary_metric(MetricSpec("bf1", "BF1 again",
                                                                                          compute=lambda *a, **k: {})):
        pass
    assert "cldice" not in [m.name for m in image_metrics()]
    assert "cldice" in [m.name for m in image_metrics(["cldice"])]
    with pytest.raises(KeyError, match="unknown metric"):
        image_metrics(["nope"])


def _predicted_share(truth, labels, num_classes, *, ignore_index, ignore_mask, tolerance):
    """A toy per-image metric: the share of the scored pixels predicted as each class."""
    valid = np.ones(truth.shape, bool) if ignore_mask is None else ~ignore_mask
    if ignore_index is not None:
        valid &= truth != ignore_index
    counts = np.bincount(labels[valid].ravel(), minlength=num_classes)[:num_classes]
    return {"predicted_share": counts / max(valid.sum(), 1)}


def test_a_metric_added_by_its_spec_reaches_the_tables_and_the_report(tmp_path):
    """Adding a per-image metric = its function + its spec: the runner scores it, summary.csv averages it, the
    report's boundaries-and-calibration table shows it. Checked against the saved label maps, counted here."""
    folder = write_folder_dataset(tmp_path / "data", n=8)
    spec = MetricSpec("predicted_share", "Predicted share", compute=_predicted_share)
    with temporary_metric(spec):
        config = RunConfig(out=tmp_path / "run", datasets=[f"folder:{folder}"], methods=["otsu"], save_predictions=True)
        assert not run(config, progress=False).failures
        summary, per_image = load_tables(config.out)
        for _, row in per_image.iterrows():
            pred = np.asarray(Image.open(prediction_path(config.out, "data", "otsu", 0, row["image_id"])))
            assert row["predicted_share_foreground"] == pytest.approx((pred == 1).mean())
            assert row["predicted_share_background"] == pytest.approx((pred == 0).mean())
        assert summary.loc[0, "per_image_predicted_share_foreground"] == pytest.approx(
            per_image["predicted_share_foreground"].mean())
        text = write_report(config.out, formats=("md",), figures=False)
    header = next(line for line in text.splitlines() if line.startswith("| method | family | BF1"))
    assert "Predicted share" in header.split(" | ")[-3]  # after the boundary scores, before ECE and Brier
    assert "predicted_share" not in METRICS  # the registration ended with the block
