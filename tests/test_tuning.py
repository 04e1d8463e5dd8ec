"""Model selection: one score (segbench.methods.tuning) for every tuning grid, Otsu's channel and a deep
method's epoch, checked against scikit-learn and by watching which score each choice calls."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import jaccard_score

from helpers import blob_pair
from segbench.datasets import Sample
from segbench.methods import build_method
from segbench.methods import tuning
from segbench.methods.tuning import SelectionScore, best_index, selection_score


def _samples(n: int, seed: int = 0, size: int = 48) -> list[Sample]:
    rng = np.random.default_rng(seed)
    return [Sample(f"s{i}", *blob_pair(rng, size, size)) for i in range(n)]


def test_selection_score_is_pooled_mean_iou():
    """Dataset-level mean IoU: pixels of every image pooled (sklearn's macro Jaccard over the concatenation),
    ignored pixels left out; not the mean of per-image scores."""
    rng = np.random.default_rng(1)
    truths = [rng.integers(0, 3, (20, 30)) for _ in range(3)]
    truths[1][:5] = 255  # ignored
    truths[2][:] = np.where(truths[2] == 2, 0, truths[2])  # class 2 absent from one image
    preds = [np.where(rng.random(t.shape) < 0.7, np.where(t == 255, 0, t), rng.integers(0, 3, t.shape)) for t in truths]
    samples = [Sample(f"i{k}", np.zeros((*t.shape, 3), np.uint8), t) for k, t in enumerate(truths)]
    t = np.concatenate([x.ravel() for x in truths])
    p = np.concatenate([x.ravel() for x in preds])
    keep = t != 255
    expected = jaccard_score(t[keep], p[keep], labels=[0, 1, 2], average="macro")
    assert selection_score(preds, samples, 3, 255) == pytest.approx(expected, abs=1e-12)
    per_image = np.mean([jaccard_score(x[x != 255], y[x != 255], labels=[0, 1, 2], average="macro")
                         for x, y in zip(truths, preds)])
    assert not np.isclose(expected, per_image)  # the two aggregations differ here, so the test tells them apart


def test_nothing_scored_keeps_the_first_candidate():
    sample = Sample("a", np.zeros((4, 4, 3), np.uint8), np.full((4, 4), 255))
    score = selection_score([np.zeros((4, 4), np.int64)], [sample], 2, 255)
    assert np.isnan(score) and best_index([score, score]) == 0
    assert best_index([0.5, 0.7, 0.7, 0.2]) == 1 and best_index([0.5, 0.5 + 1e-12], tol=1e-9) == 0


@pytest.mark.parametrize("spec, options", [
    ("otsu", {}),
    ("graphcut", {"graphcut": {"unary": "gmm", "tune_images": 2}}),
    ("grabcut", {"grabcut": {"tune_images": 2}}),
    ("otsu+crf", {"crf": {"tune_images": 2}}),
    ("unet", {"unet": {"epochs": 2}}),
])
def test_every_choice_uses_the_selection_score(spec, options, monkeypatch):
    """Otsu's channel, the graph cut's and GrabCut's grids, the CRF's grid and a deep method's epochs: each
    choice calls SelectionScore (and nothing else scores candidates: the scores it saw are the ones compared)."""
    seen: list[float] = []
    value = SelectionScore.value

    def spy(self: SelectionScore) -> float:
        seen.append(value(self))
        return seen[-1]

    monkeypatch.setattr(tuning.SelectionScore, "value", spy)
    samples = _samples(6)
    build_method(spec, 2, quick=True, options=options).fit(samples[:4], samples[4:])
    assert len(seen) >= 2, f"{spec}: its choice did not use the selection score"
