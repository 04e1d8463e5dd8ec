"""Each registered method's predict on one 256x256 image (pytest-benchmark). The timed call's result is
checked too, so a fast but broken predict fails. Measure with ``make bench-check`` or
``pytest tests/benchmarks --benchmark-enable``."""

from __future__ import annotations

import numpy as np
import pytest

from segbench.datasets import build_dataset
from segbench.methods import METHODS, build_method

SIZE = (256, 256)


@pytest.fixture(scope="module")
def data():
    return build_dataset("synthetic", options={"num_images": 8, "size": SIZE, "seed": 1})


@pytest.mark.parametrize("spec", METHODS.names())
def test_predict_256(benchmark, spec, data):
    method = build_method(spec, data.num_classes, work_size=SIZE, quick=True)
    if not method.prepare_untrained():  # deep models time with random weights; the rest fit quickly
        method.fit(data.subset(data.ids()[:6]))
    image = data[data.ids()[7]].image
    benchmark.group = "predict 256x256"
    labels = benchmark(method.predict, image)
    assert labels.shape == image.shape[:2]
    assert set(np.unique(labels)) <= {0, 1}
