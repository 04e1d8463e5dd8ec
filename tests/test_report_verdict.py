"""The report answers first: the verdict per dataset (leader, margin, how sure, the floor), a short scores
table, ``segbench report`` printing the verdict and paths; figures a colour-blind reader can tell apart."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from matplotlib.text import Text

from segbench.cli import main
from segbench.methods import METHODS, Method
from segbench.methods.base import labels_to_proba
from segbench.report.figures import accuracy_latency_figure, per_image_figure, series_styles
from segbench.report.verdict import gap
from segbench.run.runner import RunConfig, run

METHODS_RUN = ["constant", "otsu", "test-background", "test-nearest-mean"]


class _Background(Method):
    """Background everywhere: the floor again under another name, so it cannot beat it."""

    description = "background everywhere (tests only)"
    needs_training = False

    def _fit(self, train, val):
        pass

    def _predict_proba(self, image):
        return labels_to_proba(np.zeros(image.shape[:2], np.int64), self.num_classes)


class _NearestMean(Method):
    description = "nearest class-mean colour (tests only)"

    def _fit(self, train, val):
        pixels = np.concatenate([s.image.reshape(-1, 3) for s in train]).astype(float)
        labels = np.concatenate([s.mask.ravel() for s in train])
        self.means = np.stack([pixels[labels == c].mean(0) for c in range(self.num_classes)])

    def _predict_proba(self, image):
        dist = ((image[..., None, :].astype(float) - self.means) ** 2).sum(-1)
        return labels_to_proba(dist.argmin(-1), self.num_classes)


@pytest.fixture(scope="module")
def floor_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("verdict") / "run"
    with METHODS.temporarily("test-background", _Background), METHODS.temporarily("test-nearest-mean", _NearestMean):
        config = RunConfig(out=out, datasets=["synthetic"], methods=METHODS_RUN, split_fractions=(0.4, 0.1, 0.5),
                           quick=True, dataset_options={"synthetic": {"num_images": 40, "size": (48, 40)}})
        assert not run(config, progress=False).failures
    return out


def _verdict(out):
    return (out / "verdict.txt").read_text().splitlines()


def test_report_opens_with_the_verdict_of_leader_margin_and_floor(floor_run, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", str(floor_run), "--out", str(out), "--no-figures"]) == 0
    printed = capsys.readouterr().out
    md = (out / "report.md").read_text()
    lines = _verdict(out)
    # segbench report prints the verdict lines and the paths, not the markdown.
    assert printed.startswith("\n".join(lines) + "\n") and f"Written: {out / 'report.html'}" in printed
    assert "| method |" not in printed and "# segbench report" not in printed
    # The report's first section is the verdict, the same lines.
    assert [h for h in md.splitlines() if h.startswith("## ")][0] == "## Verdict"
    assert md.index("\n".join(lines[:1])) < md.index("## synthetic")

    # Leader and margin from summary.csv by hand (dataset-level lesion Dice, the floor left out of the race).
    summary = pd.read_csv(floor_run / "summary.csv").set_index("method")["dataset_dice_lesion"]
    race = summary.drop("constant").sort_values(ascending=False)
    lead, nxt = race.index[0], race.index[1]
    assert lines[0].startswith(f"synthetic (Dice lesion, dataset-level, 20 test images): {lead} leads with {race.iloc[0]:.3f}, "
                               f"{race.iloc[0] - race.iloc[1]:+.3f} ahead of {nxt} ({race.iloc[1]:.3f})")

    # The floor: test-background is the same prediction, so it cannot beat it; a method whose per-image Dice is
    # above the floor's on every image, with scipy's one-sample t p times the pairs (a bound of Holm's p) below 0.05, beats it.
    per_image = pd.read_csv(floor_run / "per_image.csv").pivot(index="image_id", columns="method", values="dice_lesion")
    pairs = len(list(itertools.combinations(METHODS_RUN, 2)))
    clear = [m for m in ("otsu", "test-nearest-mean")
             if (per_image[m] > per_image["constant"]).all()
             and scipy.stats.ttest_1samp(per_image[m] - per_image["constant"], 0).pvalue * pairs < 0.05]
    assert clear, "the fixture should have a method clearly above the floor"
    floor = lines[-1]
    assert floor.startswith(f"synthetic floor: constant (one class everywhere) scores {summary['constant']:.3f}; ")
    assert "do not beat it" in floor and "test-background" in floor.split(": ")[-1]
    assert not any(m in floor.split(": ")[-1] for m in clear)
    # The short table says the same per method.
    table = md.split("### Scores", 1)[1].split("\n###", 1)[0]
    rows = {r.split(" | ")[0].strip("| "): r for r in table.splitlines() if r.startswith("| ")}
    assert rows["test-background"].endswith("| ≤ floor |") and rows["constant"].endswith("| floor |")
    assert rows[lead].endswith("| leader |")


def test_verdict_without_the_floor_says_how_to_get_it(floor_run, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("summary.csv", "per_image.csv", "environment.json"):
        table = pd.read_csv(floor_run / name) if name.endswith(".csv") else None
        if table is None:
            (bare / name).write_text((floor_run / name).read_text())
        else:
            table[table["method"] != "constant"].to_csv(bare / name, index=False)
    assert main(["report", str(bare), "--no-figures", "--format", "md"]) == 0
    assert _verdict(bare)[-1] == ("synthetic floor: no `constant` in this run (add --methods constant to see what a "
                                  "constant prediction scores).")


def test_gap_reads_a_pair_either_way():
    paired = pd.DataFrame([{"method_a": "a", "method_b": "b", "diff": 0.1, "diff_low": 0.05, "diff_high": 0.2,
                            "p_holm": 0.01, "significant": True}])
    ab, ba = gap(paired, "a", "b"), gap(paired, "b", "a")
    assert (ab.diff, ab.low, ab.high) == (0.1, 0.05, 0.2)
    assert (ba.diff, ba.low, ba.high) == (-0.1, -0.2, -0.05) and ba.significant
    assert gap(paired, "a", "c") is None


def test_series_styles_tell_twenty_methods_apart_with_colour_blind_colours():
    import seaborn as sns

    styles = series_styles([f"m{i}" for i in range(20)])
    looks = {(s.colour, s.marker, s.linestyle) for s in styles.values()}
    assert len(looks) == 20
    safe = {tuple(c) for c in sns.color_palette("colorblind")}
    assert all(s.colour in safe for s in styles.values())


def _overlap(a, b):
    return not (a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0)


def test_pareto_labels_do_not_overlap_and_per_image_dots_have_a_legend():
    rng = np.random.default_rng(0)
    n = 20  # a dense cluster, as PH2's twenty methods at 25-300 ms and 0.87-0.93 Dice
    d = pd.DataFrame({"method": [f"method-{i}" for i in range(n)], "family": ["classical", "deep"] * (n // 2),
                      "latency_ms_p50": rng.uniform(25, 40, n), "dice_dataset": rng.uniform(0.87, 0.90, n)})
    d["dice_dataset_low"], d["dice_dataset_high"] = d["dice_dataset"] - 0.01, d["dice_dataset"] + 0.01
    fig = accuracy_latency_figure({"ph2": d}, {"ph2": "lesion"})
    fig.canvas.draw()  # an annotation's text box is placed when drawn
    renderer = fig.canvas.get_renderer()
    labels = [t for t in fig.axes[0].texts if t.get_text().startswith("method-")]
    assert sorted(t.get_text() for t in labels) == sorted(d["method"])
    boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the text alone, not its leader line
    assert not any(_overlap(a, b) for a, b in itertools.combinations(boxes, 2))
    assert fig.axes[0].get_legend() is not None

    long = pd.DataFrame({"method": np.repeat(["a", "b"], 10), "value": rng.uniform(0, 1, 20)})
    fig = per_image_figure({"ph2": long}, {"ph2": "lesion"})
    texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "one test image (per seed)" in texts and any(t.startswith("box") for t in texts)


def test_verdict_of_a_run_of_the_floor_alone():
    scores = pd.DataFrame([{"method": "constant", "n_images": 5, "seeds": 1, "dice_dataset": 0.0}])
    from segbench.report.verdict import verdict_lines

    assert verdict_lines("d", scores, pd.DataFrame(), "lesion") == ["d: only the floor (constant) ran: it scores 0.000."]
