"""Benchmark: ``segbench.measure.metrics.confusion_matrix`` against ``sklearn.metrics.confusion_matrix``.

One 768x576 (W x H) uint8 mask pair per class count; each group holds ours and sklearn's on the same data,
and every timed call's result is checked against sklearn's matrix. Measure with
``python -m pytest tests/benchmarks/test_bench_metrics.py --benchmark-enable`` (addopts disables timing, so a
plain test run executes each benchmark once, as a correctness test).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from segbench.measure.metrics import confusion_matrix

HEIGHT, WIDTH = 576, 768
CLASS_COUNTS = [2, 12]


@pytest.fixture(scope="module", params=CLASS_COUNTS, ids=lambda c: f"{c}-classes")
def masks(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Truth, a prediction agreeing on ~80% of pixels, C, and sklearn's matrix as the reference."""
    num_classes = request.param
    rng = np.random.default_rng(num_classes)
    truth = rng.integers(0, num_classes, size=(HEIGHT, WIDTH), dtype=np.uint8)
    noise = rng.integers(0, num_classes, size=(HEIGHT, WIDTH), dtype=np.uint8)
    pred = np.where(rng.random((HEIGHT, WIDTH)) < 0.8, truth, noise)
    expected = skm.confusion_matrix(truth.ravel(), pred.ravel(), labels=np.arange(num_classes))
    return truth, pred, num_classes, expected


def test_confusion_matrix_segbench(benchmark, masks) -> None:
    truth, pred, num_classes, expected = masks
    benchmark.group = f"confusion-matrix {num_classes} classes"
    result = benchmark(confusion_matrix, truth, pred, num_classes)
    np.testing.assert_array_equal(result, expected)


def test_confusion_matrix_sklearn(benchmark, masks) -> None:
    truth, pred, num_classes, expected = masks
    benchmark.group = f"confusion-matrix {num_classes} classes"
    result = benchmark(skm.confusion_matrix, truth.ravel(), pred.ravel(), labels=np.arange(num_classes))
    np.testing.assert_array_equal(result, expected)
