"""The report's automatic sentences on constructed paired tables: each claim set against the right p-value."""

from __future__ import annotations

import pandas as pd

from segbench.report.prose import paired_sentence, work_sizes_sentence
from segbench.report.stats import holm
from segbench.report.tables import PAIRED_COLUMNS
from segbench.run.records import load_tables

T = "t, 28 images"


def _table(rows: list[tuple[str, str, float, float, float, str, float]]) -> pd.DataFrame:
    """Rows ``(a, b, diff, low, high, test, p)``; Holm, significance and verdict as ``paired_table`` makes them."""
    df = pd.DataFrame([{"method_a": a, "method_b": b, "seeds": 1, "n_images": 28, "dice_a": 0.8, "dice_b": 0.8 - d,
                        "diff": d, "diff_low": lo, "diff_high": hi, "test": t, "p": p} for a, b, d, lo, hi, t, p in rows],
                      columns=PAIRED_COLUMNS)
    df["p_holm"] = holm(df["p"])
    df["significant"] = df["p_holm"] < 0.05
    df["verdict"] = ["x better" if s else "no significant difference" for s in df["significant"]]
    return df


def test_no_mean_gap_sentence_when_only_the_corrected_p_is_large():
    """Holm over 4 pairs lifts p = 0.02 to 0.08: the sentence says the pair is below 0.05 before the correction
    only (the interval, uncorrected, goes with the uncorrected p of the same t reference)."""
    table = _table([("a", "b", 0.05, 0.01, 0.09, T, 0.02), ("a", "c", 0.01, -0.02, 0.04, T, 0.5),
                    ("b", "c", 0.0, -0.03, 0.03, T, 0.9), ("a", "d", 0.0, -0.03, 0.03, T, 0.8)])
    assert table.loc[0, "p_holm"] > 0.05
    text = paired_sentence(table, "lesion")
    assert text.startswith("No difference is significant at 0.05 after Holm's correction over 4 pair(s).")
    assert "before the correction but not after it: a vs b (p = 0.020)" in text
    assert "few images" not in text


def test_significant_pairs_cite_holm_p_and_the_winner():
    text = paired_sentence(_table([("a", "b", -0.1, -0.15, -0.05, T, 0.001)]), "lesion")
    assert text == ("Significant at 0.05 after Holm's correction over 1 pair(s): b > a (Dice lesion +0.100 per image, "
                    "Holm p = 0.001).")


def test_one_method_only():
    assert paired_sentence(_table([]), "lesion") == "One method only: nothing to compare."


def test_long_lists_name_a_few_pairs_and_count_the_rest():
    rows = [(f"m{i}", "z", 0.05, 0.01, 0.09, T, 0.03) for i in range(20)]
    text = paired_sentence(_table(rows), "lesion")
    assert "m7 vs z" in text and "m8 vs z" not in text and "and 12 more pair(s) (see the table)" in text



def test_work_size_reads_as_the_run_recorded_it(tmp_path):
    # a longer side is recorded as JSON text "256"; a cell without a work size leaves a gap in the column
    pd.DataFrame({"method": ["otsu", "unet", "constant"], "work_size": ["256", "256", None]}).to_csv(
        tmp_path / "summary.csv", index=False)
    summary, _ = load_tables(tmp_path)
    assert work_sizes_sentence(summary.dropna(subset=["work_size"])) == " Work size, every method and stage: 256."
    mixed = summary.fillna({"work_size": "[256, 192]"})
    assert work_sizes_sentence(mixed) == " Work sizes differ: otsu 256, unet 256, constant [256, 192]."
