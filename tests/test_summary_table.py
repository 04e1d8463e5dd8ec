"""``segbench table``: the README's results table of a run folder, checked against hand-computed rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from segbench.cli import main
from segbench.report.rundata import RunData
from segbench.report.summary_table import summary_table


def _row(method, family, seed, dice, **extra):
    return {"dataset": "d", "method": method, "family": family, "seed": seed, "status": "ok", "fold": 0,
            "dataset_iou_background": 0.9, "dataset_iou_lesion": dice / (2 - dice),
            "dataset_dice_lesion": dice, "per_image_dice_lesion": dice - 0.01,
            "per_image_iou_lesion": dice / (2 - dice) - 0.01, "train_s": 10.4, "latency_ms_p50": 5.6, **extra}


def _run(tmp_path, rows) -> RunData:
    pd.DataFrame(rows).to_csv(tmp_path / "summary.csv", index=False)
    return RunData.load(tmp_path)


def test_binary_table_by_hand(tmp_path):
    rows = [_row("otsu", "classical", 0, 0.80), _row("slic", "classical", 0, 0.90),
            _row("unet", "deep", 0, 0.70, epochs_run=12, per_image_bf1_lesion=0.4),
            _row("unet", "deep", 1, 0.74, epochs_run=14, per_image_bf1_lesion=0.5)]
    text = summary_table(_run(tmp_path, rows))
    lines = text.splitlines()
    assert lines[0] == ("| method | family | seeds | Dice (dataset) | Dice (per image) | IoU (dataset) | IoU (per image) "
                        "| BF1 (per image) | train s | epochs | latency p50 ms |")
    assert lines[1] == "|" + " --- |" * 11
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| `slic`", "| `otsu`", "| `unet`"]  # family, then Dice
    iou = [0.7 / 1.3, 0.74 / 1.26]
    sd = lambda a, b: abs(a - b) / np.sqrt(2)  # sample standard deviation of two values
    assert lines[4] == (f"| `unet` | deep | 2 | 0.720 ± {sd(0.70, 0.74):.3f} | 0.710 ± {sd(0.69, 0.73):.3f} | "
                        f"{np.mean(iou):.3f} ± {sd(*iou):.3f} | {np.mean(iou) - 0.01:.3f} ± {sd(*iou):.3f} | "
                        f"0.450 ± {sd(0.4, 0.5):.3f} | 10 | 13 | 6 |")
    assert lines[2] == f"| `slic` | classical | 1 | 0.900 | 0.890 | {0.9 / 1.1:.3f} | {0.9 / 1.1 - 0.01:.3f} | nan | 10 |  | 6 |"


def test_metrics_chosen_and_checked(tmp_path):
    run = _run(tmp_path, [_row("otsu", "classical", 0, 0.80, ece=0.05)])
    assert summary_table(run, metrics=["dice", "ece"]).splitlines()[2] == "| `otsu` | classical | 0.800 | 0.790 | 0.050 | 10 | 6 |"
    with pytest.raises(ValueError, match="no column"):
        summary_table(run, metrics=["cldice"])
    with pytest.raises(KeyError, match="unknown metric"):
        summary_table(run, metrics=["nope"])


def test_multiclass_table_uses_class_means(tmp_path):
    rows = [{"dataset": "c", "method": "slic", "family": "classical", "seed": 0, "status": "ok",
             **{f"dataset_iou_{k}": v for k, v in (("sky", 0.9), ("road", 0.8), ("car", 0.1))},
             "dataset_mean_iou": 0.6, "per_image_mean_iou": 0.55, "dataset_pixel_accuracy": 0.91,
             "dataset_mean_pixel_accuracy": 0.7, "per_image_bf1_sky": 0.2, "per_image_bf1_road": 0.4,
             "per_image_bf1_car": np.nan, "train_s": 2.0, "latency_ms_p50": 30.0}]
    run = _run(tmp_path, rows)
    lines = summary_table(run).splitlines()
    assert lines[0] == "| method | family | mIoU (dataset) | mIoU (per image) | pixel acc. | mean pixel acc. | train s | latency p50 ms |"
    assert lines[2] == "| `slic` | classical | 0.600 | 0.550 | 0.910 | 0.700 | 2 | 30 |"
    assert summary_table(run, metrics=["bf1"]).splitlines()[2] == "| `slic` | classical | 0.300 | 2 | 30 |"  # NaN left out


def test_cli(tmp_path, capsys):
    rows = [_row("otsu", "classical", 0, 0.80), {**_row("otsu", "classical", 0, 0.5), "dataset": "e"}]
    pd.DataFrame(rows).to_csv(tmp_path / "summary.csv", index=False)
    assert main(["table", str(tmp_path)]) == 2
    assert "choose one with --dataset" in capsys.readouterr().err
    assert main(["table", str(tmp_path), "--dataset", "e"]) == 0
    assert "| `otsu` | classical | 0.500 |" in capsys.readouterr().out
    assert main(["table", str(tmp_path / "nothing")]) == 2
    assert "no summary.csv" in capsys.readouterr().err
    assert main(["table", str(tmp_path), "--dataset", "e", "--metrics", "nope"]) == 2
    assert "unknown metric" in capsys.readouterr().err
