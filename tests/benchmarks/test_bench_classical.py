"""Predict time of every classical method and pipeline on one full-resolution PH2-sized image (768x576).

Target (issue "Classical methods"): under 1 s per image on one core. Measure at one thread:

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 pytest tests/benchmarks/test_bench_classical.py --benchmark-enable

The timed call's result is checked too, so a fast but broken predict fails.
"""

from __future__ import annotations

import pytest
from sklearn.metrics import f1_score

from helpers import CHANCE_MARGIN, assert_beats_chance, best_constant_score
from segbench.datasets import build_dataset
from segbench.methods import build_method

SIZE = (768, 576)
SPECS = [
    "otsu", "otsu+morph",
    "slic", "slic+morph", "slic+crf", "slic+crf+morph",
    "graphcut", "graphcut+morph", "graphcut+crf",
    "grabcut", "grabcut+morph",
]


#: Measured: with its full options, graphcut predicts ~0.6% of this 768x576 image as lesion (truth 8.6%), lesion
#: Dice 0.11 against 0.16 for predicting lesion everywhere (0.0 with tuning on); its timings stay, its score is
#: an expected failure until that is fixed (then the check below says to move it out of this set).
BELOW_CHANCE = {"graphcut", "graphcut+morph", "graphcut+crf"}


@pytest.fixture(scope="module")
def data():
    return build_dataset("synthetic", options={"num_images": 6, "size": SIZE, "seed": 1})


@pytest.mark.parametrize("spec", SPECS)
def test_predict_ph2_size(benchmark, spec, data):
    ids = data.ids()
    # Full (not quick) options: the timing is of the configuration the PH2 table reports. Tuning is off
    # because it changes weights, not the work done per image, and would only lengthen the fit.
    method = build_method(spec, data.num_classes, options={"crf": {"tune": False}, "graphcut": {"tune": False}})
    method.fit(data.subset(ids[:4]))
    image = data[ids[5]].image
    benchmark.group = "predict 768x576 (classical)"
    labels = benchmark.pedantic(method.predict, args=(image,), rounds=5, warmup_rounds=1)
    assert labels.shape == image.shape[:2]
    truth = data[ids[5]].mask.ravel()
    chance, dice = best_constant_score(truth, f1_score, [0, 1]), f1_score(truth, labels.ravel())
    if spec in BELOW_CHANCE:
        assert dice < chance + CHANCE_MARGIN, f"{spec} now beats chance (Dice {dice:.3f}): remove it from BELOW_CHANCE"
        pytest.xfail(f"{spec}: lesion Dice {dice:.3f}, a constant prediction scores {chance:.3f} (see BELOW_CHANCE)")
    assert_beats_chance(dice, 0.4, chance, f"{spec} lesion Dice of the timed prediction")
