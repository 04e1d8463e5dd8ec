"""Accuracy against training compute on constructed tables with known answers: scores with the paired
comparisons' intervals, training seconds and FLOPs, time to target, labels x compute, the report section."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from segbench.report.compute import compute_blocks, compute_table, time_to_target
from segbench.report.render import Figure, Heading, Table
from segbench.report.rundata import RunData

IMAGES = [f"im{i:02d}" for i in range(20)]
#: Per-image offsets with mean zero and sd ~0.03: each cell's mean is its nominal score.
OFFSETS = np.linspace(-0.05, 0.05, len(IMAGES))
FORWARD_FLOPS = 2e9  # forward FLOPs per image at the work size


def _cells(fraction: float = 1.0, n_train: int = 40, shift: float = 0.0) -> list[dict]:
    """unet reaches slic (0.85 [..]) at 4 s, fcn8s never; otsu is the weaker classical method."""
    deep = [("unet", 2, 0.70, 3), ("unet", 4, 0.92, 6), ("unet", 8, 0.95, 12),
            ("fcn8s", 2, 0.60, 4), ("fcn8s", 4, 0.80, 8), ("fcn8s", 8, 0.86, 16)]
    cells = [{"method": m, "family": "deep", "budget_s": b, "score": s + shift, "epochs_run": e, "flops": FORWARD_FLOPS,
              "train_s": b * 1.3, "charged_s": b * 0.99} for m, b, s, e in deep]
    cells += [{"method": "slic", "family": "classical", "score": 0.85, "train_s": 8.0},
              {"method": "otsu", "family": "classical", "score": 0.75, "train_s": 0.5}]
    return [dict(c, train_fraction=fraction, n_train=n_train) for c in cells]


def _tables(cells: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    summary, per_image = [], []
    for c in cells:
        key = {"dataset": "d", "method": c["method"], "seed": 0, "budget_s": c.get("budget_s", np.nan),
               "train_fraction": c["train_fraction"]}
        summary.append({**key, "status": "ok", "family": c["family"], "n_train": c["n_train"], "train_s": c["train_s"],
                        "charged_s": c.get("charged_s", np.nan), "epochs_run": c.get("epochs_run", np.nan),
                        "flops": c.get("flops", np.nan), "scored_class": "lesion", "dataset_iou_background": 0.9,
                        "dataset_iou_lesion": 0.8})
        per_image += [{**key, "image_id": i, "dice_lesion": c["score"] + o} for i, o in zip(IMAGES, OFFSETS)]
    return pd.DataFrame(summary), pd.DataFrame(per_image)


def test_compute_table_scores_seconds_and_flops():
    table = compute_table(*_tables(_cells()), dataset="d", column="dice_lesion")
    assert len(table) == 8
    unet4 = table[(table["method"] == "unet") & (table["budget_s"] == 4)].iloc[0]
    ref = scipy.stats.ttest_1samp(0.92 + OFFSETS, 0.0).confidence_interval(0.95)  # one split, one seed: images
    assert unet4["score"] == pytest.approx(0.92)
    assert (unet4["score_low"], unet4["score_high"]) == pytest.approx((ref.low, ref.high))
    assert unet4["train_s"] == pytest.approx(4 * 0.99)  # the budget clock's seconds, not the wall clock
    assert unet4["train_flops"] == pytest.approx(6 * 40 * 3 * FORWARD_FLOPS)  # epochs x images x (fwd + 2 fwd)
    slic = table[table["method"] == "slic"].iloc[0]
    assert np.isnan(slic["budget_s"]) and slic["train_s"] == 8.0 and np.isnan(slic["train_flops"])


def test_time_to_target_least_budget_with_disjoint_intervals():
    targets = time_to_target(compute_table(*_tables(_cells()), dataset="d", column="dice_lesion")).set_index("method")
    assert set(targets.index) == {"unet", "fcn8s"} and (targets["target"] == "slic").all()
    assert targets.loc["unet", "reached_at"] == 4 and targets.loc["unet", "score"] == pytest.approx(0.92)
    # fcn8s's 0.86 at 8 s is above slic's 0.85, but the intervals overlap: not yet, and the sweep ends there.
    assert np.isnan(targets.loc["fcn8s", "reached_at"]) and targets.loc["fcn8s", "budget_s"] == 8


def test_labels_times_compute_targets_per_fraction():
    """With --train-fraction too: one target per fraction; with 10 training images unet needs 8 s."""
    cells = _cells(0.25, 10, shift=-0.05) + _cells()
    for c in cells:  # the classical methods at the small fraction keep their score: the target stays slic 0.85
        if c["family"] == "classical":
            c["score"] = {"slic": 0.85, "otsu": 0.75}[c["method"]]
    targets = time_to_target(compute_table(*_tables(cells), dataset="d", column="dice_lesion"))
    unet = targets[targets["method"] == "unet"].set_index("train_fraction")
    assert unet.loc[1.0, "reached_at"] == 4 and unet.loc[0.25, "reached_at"] == 8 and unet.loc[0.25, "n_train"] == 10


def test_report_section_with_figures(tmp_path):
    summary, per_image = _tables(_cells())
    run = RunData(tmp_path, summary, per_image, {}, {}, all_summary=summary, all_per_image=per_image)
    blocks = compute_blocks(run, "d", tmp_path)
    assert [b.text for b in blocks if isinstance(b, Heading)] == ["Accuracy against training compute"]
    (table,) = [b.df for b in blocks if isinstance(b, Table)]
    reached = dict(zip(table["deep method"], table["reached at"]))
    assert reached == {"fcn8s": "not within the sweep (largest 8 s)", "unet": "4 s"}
    figures = [b.path for b in blocks if isinstance(b, Figure)]
    assert [p.name for p in figures] == ["compute_seconds_d.png", "compute_flops_d.png"]
    assert all(p.is_file() and p.stat().st_size < 500_000 for p in figures)
    one_budget = summary.assign(budget_s=np.nan)
    plain = RunData(tmp_path, one_budget, per_image, {}, {}, all_summary=one_budget, all_per_image=per_image)
    assert compute_blocks(plain, "d", None) == []  # no budget axis: no section
