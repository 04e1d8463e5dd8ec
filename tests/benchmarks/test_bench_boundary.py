"""Benchmark: boundary scores of one 768x576 (W x H) two-class mask pair: budget 10 ms (BF1, HD95, ASSD).

A lesion-like ellipse and a shifted, resized prediction of it. Each timed result is checked against all
pairwise distances between the boundary pixels (scipy ``cdist``, outside the timing). Measure with
``python -m pytest tests/benchmarks/test_bench_boundary.py --benchmark-enable``; a plain test run executes each
benchmark once, as a correctness test, and skips the budget. clDice is timed apart: skeletonising costs more
(about 0.1-0.2 s per class here) and has no budget.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from skimage.morphology import skeletonize

from segbench.measure.boundary import boundary_scores, centreline_scores

HEIGHT, WIDTH = 576, 768
BUDGET_S = 0.010


@pytest.fixture(scope="module")
def masks() -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    truth = (((yy - 288) / 200) ** 2 + ((xx - 384) / 300) ** 2 < 1).astype(np.uint8)
    pred = (((yy - 280) / 190) ** 2 + ((xx - 392) / 310) ** 2 < 1).astype(np.uint8)
    return truth, pred


def _points(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a boolean mask with no ignored pixels: a 4-neighbour inside the image differs."""
    padded = np.pad(mask, 1, mode="edge")  # the edge copy never differs, so the image border is no boundary
    differs = np.zeros_like(mask)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        differs |= padded[dy : dy + HEIGHT, dx : dx + WIDTH] != mask
    return np.argwhere(mask & differs)


def test_boundary_scores_two_classes(benchmark, masks) -> None:
    truth, pred = masks
    benchmark.group = "boundary 768x576, 2 classes"
    scores = benchmark(boundary_scores, truth, pred, 2)
    tol = 0.0075 * math.hypot(HEIGHT, WIDTH)
    for c in (0, 1):
        d = cdist(_points(pred == c), _points(truth == c))
        to_truth, to_pred = d.min(axis=1), d.min(axis=0)
        prec, rec = np.mean(to_truth <= tol), np.mean(to_pred <= tol)
        assert scores["bf1"][c] == pytest.approx(2 * prec * rec / (prec + rec))
        assert scores["hd95"][c] == pytest.approx(max(np.percentile(to_truth, 95), np.percentile(to_pred, 95)))
        assert scores["assd"][c] == pytest.approx(np.concatenate([to_truth, to_pred]).mean())
    if benchmark.stats is not None:  # None under --benchmark-disable (the default test run)
        # The fastest round, as timeit advises: slower rounds measure what else the (shared) machine was doing.
        fastest = benchmark.stats.stats.min
        assert fastest <= BUDGET_S, f"boundary scores took {fastest * 1e3:.1f} ms per image, budget {BUDGET_S * 1e3:.0f} ms"


def test_centreline_scores_two_classes(benchmark, masks) -> None:
    truth, pred = masks
    benchmark.group = "clDice 768x576, 2 classes"
    scores = benchmark.pedantic(centreline_scores, (truth, pred, 2), rounds=3, iterations=1)
    for c in (0, 1):
        t, p = truth == c, pred == c
        st, sp = skeletonize(t), skeletonize(p)
        prec, sens = (sp & t).sum() / sp.sum(), (st & p).sum() / st.sum()
        assert scores["cldice"][c] == pytest.approx(2 * prec * sens / (prec + sens))
