"""The report's automatic sentences on constructed paired tables: each claim set against the right p-value."""

from __future__ import annotations

import pandas as pd

from segbench.report.prose import paired_sentence
from segbench.report.stats import holm
from segbench.report.tables import PAIRED_COLUMNS, TWO_LEVEL, WILCOXON


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
    """The old bug: an uncorrected interval excluding 0 set against a Holm p >= 0.05 although the uncorrected
    signed-rank p was < 0.05. Here Holm over 4 pairs lifts p = 0.02 to 0.08: the sentence must say the pair is
    below 0.05 before the correction only, and must not claim a few images carry the gap."""
    table = _table([("a", "b", 0.05, 0.01, 0.09, WILCOXON, 0.02), ("a", "c", 0.01, -0.02, 0.04, WILCOXON, 0.5),
                    ("b", "c", 0.0, -0.03, 0.03, WILCOXON, 0.9), ("a", "d", 0.0, -0.03, 0.03, WILCOXON, 0.8)])
    assert table.loc[0, "p_holm"] > 0.05
    text = paired_sentence(table, "lesion")
    assert text.startswith("No difference is significant at 0.05 after Holm's correction over 4 pair(s).")
    assert "before the correction but not after it: a vs b (p = 0.020)" in text
    assert "few images" not in text


def test_mean_gap_sentence_only_when_the_uncorrected_test_does_not_reject():
    table = _table([("a", "b", 0.08, 0.02, 0.17, WILCOXON, 0.19), ("a", "c", 0.01, -0.02, 0.04, WILCOXON, 0.5)])
    text = paired_sentence(table, "lesion")
    assert text.count("few images") == 1 and "For a vs b (p = 0.190) the 95% interval" in text
    assert "a vs c" not in text


def test_each_case_said_once_for_all_its_pairs():
    rows = [(f"m{i}", "z", 0.05, 0.01, 0.09, WILCOXON, 0.3) for i in range(5)]
    text = paired_sentence(_table(rows), "lesion")
    assert text.count("few images") == 1 and all(f"m{i} vs z" in text for i in range(5))


def test_consistent_shift_sentence_when_test_rejects_but_interval_covers_zero():
    text = paired_sentence(_table([("a", "b", 0.01, -0.005, 0.03, WILCOXON, 0.01),
                                   ("a", "c", 0.0, -0.03, 0.03, WILCOXON, 0.9),
                                   ("b", "c", 0.0, -0.03, 0.03, WILCOXON, 0.9)]), "lesion")
    assert "For a vs b (p = 0.010) the signed-rank test rejects before correction but the interval" in text


def test_significant_pairs_cite_holm_p_and_the_winner():
    text = paired_sentence(_table([("a", "b", -0.1, -0.15, -0.05, WILCOXON, 0.001)]), "lesion")
    assert text == ("Significant at 0.05 after Holm's correction over 1 pair(s): b > a (Dice lesion +0.100 per image, "
                    "Holm p = 0.001).")


def test_two_level_rows_never_get_the_interval_vs_test_sentences():
    """Interval and p of the seeds x images test are one procedure: no disagreement to explain."""
    table = _table([("a", "b", 0.05, 0.01, 0.09, TWO_LEVEL, 0.3), ("a", "c", 0.01, -0.02, 0.04, TWO_LEVEL, 0.01),
                    ("b", "c", 0.0, -0.03, 0.03, TWO_LEVEL, 0.9)])
    text = paired_sentence(table, "lesion")
    assert "few images" not in text and "signed-rank" not in text


def test_one_method_only():
    assert paired_sentence(_table([]), "lesion") == "One method only: nothing to compare."


def test_long_lists_name_a_few_pairs_and_count_the_rest():
    rows = [(f"m{i}", "z", 0.05, 0.01, 0.09, WILCOXON, 0.3) for i in range(20)]
    text = paired_sentence(_table(rows), "lesion")
    assert "m7 vs z" in text and "m8 vs z" not in text and "and 12 more pair(s) (see the table)" in text
