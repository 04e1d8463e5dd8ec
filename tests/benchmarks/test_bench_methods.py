"""Each registered method's predict on one 256x256 image (pytest-benchmark). The timed call's result is
checked too, so a fast but broken predict fails: a fitted method's lesion Dice must beat every constant
prediction. Deep models are timed with random weights (their cost does not depend on the weights, and
training eight of them at 256x256 would add minutes to every test run), so their output is checked for
shape and labels only. Measure with ``make bench-check`` or ``pytest tests/benchmarks --benchmark-enable``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from helpers import CHANCE_MARGIN, assert_beats_chance, best_constant_score
from segbench.datasets import build_dataset
from segbench.methods import METHODS, build_method, core_methods

SIZE = (256, 256)
#: Measured: otsu's lesion Dice on the timed image is 0.116, below the 0.150 of predicting lesion everywhere
#: (one hard image: its synthetic-grid baseline is 0.64). An expected failure until it is fixed; the check
#: below then says to move it out of this set.
BELOW_CHANCE = {"otsu"}


@pytest.fixture(scope="module")
def data():
    return build_dataset("synthetic", options={"num_images": 8, "size": SIZE, "seed": 1})


@pytest.mark.parametrize("spec", core_methods())
def test_predict_256(benchmark, spec, data):
    method = build_method(spec, data.num_classes, work_size=SIZE, quick=True)
    untrained = method.prepare_untrained()  # deep models time with random weights; the rest fit quickly
    if not untrained:
        method.fit(data.subset(data.ids()[:6]))
    sample = data[data.ids()[7]]
    benchmark.group = "predict 256x256"
    labels = benchmark(method.predict, sample.image)
    assert labels.shape == sample.image.shape[:2]
    assert set(np.unique(labels)) <= {0, 1}
    if not untrained:
        truth = sample.mask.ravel()
        chance, dice = best_constant_score(truth, f1_score, [0, 1]), f1_score(truth, labels.ravel())
        if spec in BELOW_CHANCE:
            assert dice < chance + CHANCE_MARGIN, f"{spec} now beats chance (Dice {dice:.3f}): remove it from BELOW_CHANCE"
            pytest.xfail(f"{spec}: lesion Dice {dice:.3f}, a constant prediction scores {chance:.3f} (see BELOW_CHANCE)")
        assert_beats_chance(dice, 0.5, chance, f"{spec} lesion Dice of the timed prediction")
