"""Label-efficiency and robustness report pieces on constructed tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segbench.report.figures import degradation_figure, label_efficiency_figure, save_figure
from segbench.report.render import Figure, Heading, Table
from segbench.report.rundata import RunData
from segbench.report.robustness import (
    crossover,
    label_efficiency_blocks,
    label_efficiency_sentence,
    label_efficiency_table,
    main_rows,
    robustness_blocks,
    robustness_display,
    robustness_ratios,
    robustness_table,
)

N_IMAGES = 12
IMAGES = [f"im{i:02d}" for i in range(N_IMAGES)]
#: Per-image offsets with mean zero: each cell's per-image mean is exactly its nominal score.
OFFSETS = np.linspace(-0.05, 0.05, N_IMAGES)


def tables(cells: list[dict], *, seeds=(0, 1)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """summary/per_image frames: each cell dict has method, family, score and any grid columns."""
    summary, per_image = [], []
    for cell in cells:
        grid = {k: v for k, v in cell.items() if k not in ("method", "family", "score", "status", "n_train")}
        for seed in seeds:
            key = {"dataset": "d", "method": cell["method"], "seed": seed, **grid}
            summary.append({**key, "status": cell.get("status", "ok"), "family": cell["family"],
                            "n_train": cell.get("n_train", 84)})
            # Seeds differ by +-0.01: the mean over seeds is the nominal score again.
            per_image += [{**key, "image_id": i, "dice_lesion": cell["score"] + o + (0.01 if seed else -0.01)}
                          for i, o in zip(IMAGES, OFFSETS)]
    return pd.DataFrame(summary), pd.DataFrame(per_image)


FRACTIONS = {0.1: 8, 0.25: 21, 0.5: 42, 1.0: 84}


def curve(method: str, family: str, scores: list[float]) -> list[dict]:
    return [{"method": method, "family": family, "train_fraction": f, "n_train": n, "score": s}
            for (f, n), s in zip(FRACTIONS.items(), scores)]


def efficiency(deep: list[float]) -> pd.DataFrame:
    cells = curve("unet", "deep", deep) + curve("slic", "classical", [0.7, 0.72, 0.74, 0.75])
    cells.append({"method": "otsu", "family": "classical", "train_fraction": 1.0, "score": 0.8})  # does not train
    return label_efficiency_table(*tables(cells), dataset="d", column="dice_lesion")


def test_label_efficiency_table_means_and_intervals():
    table = efficiency([0.5, 0.7, 0.85, 0.9])
    unet = table[table["method"] == "unet"]
    assert unet["train_fraction"].tolist() == [0.1, 0.25, 0.5, 1.0]
    assert unet["n_train"].tolist() == [8, 21, 42, 84]
    assert np.allclose(unet["score"], [0.5, 0.7, 0.85, 0.9])
    assert (table["seeds"] == 2).all() and (table["n_images"] == N_IMAGES).all()
    assert ((table["score_low"] < table["score"]) & (table["score"] < table["score_high"])).all()
    # Every cell has the same spread over images: the interval's half-width is about 1.96 standard errors.
    se = np.std(OFFSETS, ddof=1) / np.sqrt(N_IMAGES)
    assert np.allclose(table["score_high"] - table["score_low"], 2 * 1.96 * se, rtol=0.3)


def test_crossover_known_fraction():
    table = efficiency([0.5, 0.7, 0.85, 0.9])  # otsu's 0.8 is the classical best from 0.1 on: crossed at 0.5
    found = crossover(table)
    assert found["outcome"] == "overtakes" and found["fraction"] == 0.5 and found["n_train"] == 42
    assert (found["deep"]["method"], found["classical"]["method"]) == ("unet", "otsu")
    sentence = label_efficiency_sentence(table, label="lesion")
    assert sentence.startswith("The best deep method overtakes the best classical one at 50% of the training part (42 images)")
    assert "unet 0.850 [" in sentence and "otsu 0.800 [" in sentence and "disjoint" in sentence


def test_crossover_must_hold_at_every_larger_fraction():
    found = crossover(efficiency([0.85, 0.7, 0.82, 0.9]))  # ahead at 0.1, behind at 0.25: the crossover is 0.5
    assert found["outcome"] == "overtakes" and found["fraction"] == 0.5


def test_crossover_never_always_and_missing():
    never = efficiency([0.5, 0.6, 0.7, 0.78])
    assert crossover(never)["outcome"] == "never"
    assert label_efficiency_sentence(never, label="lesion").startswith(
        "Within the fractions run, no deep method overtakes the best classical one: at 100% of the training part (84 images)")
    always = efficiency([0.81, 0.85, 0.88, 0.9])
    assert crossover(always)["outcome"] == "always" and crossover(always)["fraction"] == 0.1
    assert "already at 10% of the training part (8 images)" in label_efficiency_sentence(always, label="lesion")
    classical_only = label_efficiency_table(*tables(curve("slic", "classical", [0.7] * 4)), dataset="d", column="dice_lesion")
    assert crossover(classical_only) is None
    assert "lacks a finished deep or a finished classical method" in label_efficiency_sentence(classical_only, label="lesion")


def test_overlapping_intervals_are_said():
    sentence = label_efficiency_sentence(efficiency([0.5, 0.7, 0.805, 0.81]), label="lesion")
    assert "intervals overlap: not resolved" in sentence


def robustness_cells() -> list[dict]:
    """A (deep): noise 0.6, 0.4, jpeg 0.8, 0.8 from clean 0.8; B (classical): noise 0.5, 0.5, jpeg 0.25, 0.25 from 0.5."""
    cells = []
    for method, family, clean, noise, jpeg in (("A", "deep", 0.8, (0.6, 0.4), (0.8, 0.8)),
                                                ("B", "classical", 0.5, (0.5, 0.5), (0.25, 0.25)),
                                                ("C", "deep", 0.6, (0.3, 0.3), (0.3, 0.3))):
        cells.append({"method": method, "family": family, "train_fraction": 1.0, "corruption": "none", "severity": 0, "score": clean})
        for severity, n, j in zip((1, 3), noise, jpeg):
            cells.append({"method": method, "family": family, "train_fraction": 1.0, "corruption": "gaussian_noise",
                          "severity": severity, "score": n})
            cells.append({"method": method, "family": family, "train_fraction": 1.0, "corruption": "jpeg",
                          "severity": severity, "score": j})
    # Rows that must not count: a subset-trained cell and a failed one.
    cells.append({"method": "A", "family": "deep", "train_fraction": 0.5, "corruption": "jpeg", "severity": 1, "score": 0.0})
    cells.append({"method": "B", "family": "classical", "train_fraction": 1.0, "corruption": "contrast", "severity": 5,
                  "score": 0.0, "status": "error"})
    return cells


def test_robustness_table_and_known_ratios():
    summary, per_image = tables(robustness_cells())
    table = robustness_table(summary, per_image, dataset="d", column="dice_lesion")
    a = table[table["method"] == "A"]
    assert list(zip(a["corruption"], a["severity"])) == [("none", 0), ("gaussian_noise", 1), ("gaussian_noise", 3),
                                                         ("jpeg", 1), ("jpeg", 3)]
    assert np.allclose(a["score"], [0.8, 0.6, 0.4, 0.8, 0.8])
    assert "contrast" not in set(table["corruption"])
    ratios = robustness_ratios(summary, per_image, dataset="d", column="dice_lesion").set_index(["level", "name", "corruption"])
    expected = {("method", "A", "gaussian_noise"): 0.625, ("method", "A", "jpeg"): 1.0, ("method", "A", "all"): 0.8125,
                ("method", "B", "gaussian_noise"): 1.0, ("method", "B", "jpeg"): 0.5, ("method", "B", "all"): 0.75,
                ("method", "C", "all"): 0.5, ("family", "deep", "all"): (0.8125 + 0.5) / 2,
                ("family", "deep", "jpeg"): (1.0 + 0.5) / 2, ("family", "classical", "all"): 0.75}
    for key, value in expected.items():
        row = ratios.loc[key]
        assert row["ratio"] == pytest.approx(value), key
        assert row["ratio_low"] <= value <= row["ratio_high"], key
    assert ratios.loc[("method", "A", "all"), "clean"] == pytest.approx(0.8)
    assert ratios.loc[("method", "A", "all"), "corrupted"] == pytest.approx(0.65)
    # Jpeg leaves A's scores unchanged image by image: every resample gives ratio 1 exactly.
    assert ratios.loc[("method", "A", "jpeg"), "ratio_low"] == pytest.approx(1.0)
    display = robustness_display(table, ratios.reset_index())
    row = display[(display["method"] == "A") & (display["corruption"] == "gaussian_noise")].iloc[0]
    assert (row["clean"], row["severity 1"], row["severity 3"], row["corrupted/clean"]) == ("0.800", "0.600", "0.400", "0.625")


def test_main_rows_keeps_clean_full_training(tmp_path):
    summary, _ = tables(robustness_cells())
    summary.to_csv(tmp_path / "summary.csv", index=False)
    summary = pd.read_csv(tmp_path / "summary.csv")  # "none" must survive the CSV round trip (pandas reads "None" as NaN)
    main = main_rows(summary)
    assert set(main["corruption"]) == {"none"} and set(main["train_fraction"]) == {1.0}
    assert len(main) == 3 * 2  # three methods, two seeds
    plain = summary.drop(columns=["corruption", "severity", "train_fraction"])
    assert main_rows(plain).equals(plain)


def test_figures_are_written(tmp_path):
    efficiency_table = efficiency([0.5, 0.7, 0.85, 0.9])
    png = save_figure(label_efficiency_figure({"d": efficiency_table}, {"d": "lesion"}), tmp_path, "label_efficiency")
    assert png.stat().st_size > 10_000 and (tmp_path / "label_efficiency.svg").is_file()
    summary, per_image = tables(robustness_cells())
    table = robustness_table(summary, per_image, dataset="d", column="dice_lesion")
    png = save_figure(degradation_figure(table, label="lesion", dataset="d"), tmp_path, "degradation_d")
    svg = (tmp_path / "degradation_d.svg").read_text()
    assert png.stat().st_size > 10_000 and "d: gaussian_noise" in svg and "d: jpeg" in svg


def test_missing_grid_columns_error():
    summary, per_image = tables(curve("unet", "deep", [0.5, 0.6, 0.7, 0.8]))
    with pytest.raises(ValueError, match=r"no corruption, severity column\(s\); the run needs --train-fraction"):
        robustness_table(summary, per_image, dataset="d", column="dice_lesion")


def _run(summary: pd.DataFrame, per_image: pd.DataFrame, tmp_path) -> RunData:
    """A ``RunData`` of the tables (binary: background and lesion, as the summary's IoU columns name them)."""
    summary = summary.assign(dataset_iou_background=0.9, dataset_iou_lesion=0.8)
    return RunData(tmp_path, main_rows(summary), main_rows(per_image), {}, {}, all_summary=summary,
                   all_per_image=per_image)


def test_report_sections(tmp_path):
    summary, per_image = tables(robustness_cells() + [dict(c, corruption="none", severity=0)
                                                       for c in curve("A", "deep", [0.5, 0.6, 0.7, 0.8])[:3]])
    run = _run(summary, per_image, tmp_path)
    blocks = label_efficiency_blocks(run, "d", tmp_path) + robustness_blocks(run, "d", tmp_path)
    assert [b.text for b in blocks if isinstance(b, Heading)] == ["Label efficiency", "Robustness"]
    assert [b.path.name for b in blocks if isinstance(b, Figure)] == ["label_efficiency_d.png", "degradation_d.png"]
    assert all(b.path.is_file() for b in blocks if isinstance(b, Figure))
    ratio_table = [b.df for b in blocks if isinstance(b, Table)][-1]
    assert ratio_table.loc[ratio_table["name"] == "A", "corrupted/clean [95% CI]"].iloc[0].startswith("0.812 [")
    plain = _run(summary[summary["corruption"] == "none"].drop(columns=["corruption", "severity"]), per_image, tmp_path)
    assert not robustness_blocks(plain, "d", None)
    assert [b.text for b in label_efficiency_blocks(plain, "d", None) if isinstance(b, Heading)] == ["Label efficiency"]
