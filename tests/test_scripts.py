"""Every script under scripts/ the README cites starts: its imports still resolve against the package (a script
no test runs broke once when a helper it imported was removed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_imports_and_prints_its_help(script):
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_compare_runs_is_a_t_over_the_fold_means(monkeypatch):
    # Two committed grids of the same 5 folds (seed 0 in both): 90 s against early stopping. The script's
    # difference and interval must be scipy's one-sample t over the 5 per-fold mean differences.
    import pandas as pd
    import scipy.stats

    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root / "scripts"))
    from compare_runs import compare_runs

    a, b = root / "results/reference/current/ph2-cv-converged", root / "results/reference/current/ph2-cv-deep"
    table = compare_runs(str(a), str(b), labels=("conv", "90s")).set_index("method")
    images = [pd.read_csv(next(d.glob("per_image.csv*")), dtype={"image_id": str}) for d in (a, b)]
    for method in ("`unet`", "`fcn16s`"):
        pick = [t[(t["method"] == method.strip("`")) & (t["seed"] == 0) & (t["corruption"] == "none")]
                .set_index(["fold", "image_id"])["dice_lesion"] for t in images]
        assert len(pick[0]) == len(pick[1]) == 140
        fold_means = (pick[0] - pick[1].reindex(pick[0].index)).groupby(level="fold").mean()
        ci = scipy.stats.ttest_1samp(fold_means, 0).confidence_interval()
        row = table.loc[method]
        assert row["conv"] == f"{pick[0].mean():.3f}" and row["90s"] == f"{pick[1].mean():.3f}"
        assert row["conv - 90s [95% CI]"] == f"{fold_means.mean():+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]"
        assert row["cells"] == "5"
