"""Tests for ``segbench.measure.boundary``: a brute-force oracle (pixel loops and all pairwise distances,
written here from the definitions in docs/metrics.md) on small random masks with every empty case and
ignored pixels, and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.morphology import skeletonize

from segbench.measure.boundary import BOUNDARY_KEYS, check_tolerance, tolerance_pixels
from segbench.measure.boundary import boundary_scores as _boundary_scores
from segbench.measure.boundary import centreline_scores


def boundary_scores(truth, pred, num_classes, **options):
    """Both functions' scores in one dict, as per_image.csv holds them."""
    ignore = {k: v for k, v in options.items() if k != "tolerance"}
    return {**_boundary_scores(truth, pred, num_classes, **options), **centreline_scores(truth, pred, num_classes, **ignore)}

IGNORE = 255


def _brute_boundary(labels: np.ndarray, valid: np.ndarray, c: int) -> list[tuple[int, int]]:
    """Pixels of class c (valid) with a valid in-image 4-neighbour of another class, by loops."""
    h, w = labels.shape
    out = []
    for i in range(h):
        for j in range(w):
            if not valid[i, j] or labels[i, j] != c:
                continue
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                y, x = i + di, j + dj
                if 0 <= y < h and 0 <= x < w and valid[y, x] and labels[y, x] != c:
                    out.append((i, j))
                    break
    return out


def _brute_scores(truth, pred, num_classes, tol, valid):
    """Every score of every class from pairwise distances; the empty rule written out case by case."""
    diag = math.hypot(*truth.shape)
    out = {key: [] for key in BOUNDARY_KEYS}
    for c in range(num_classes):
        in_t, in_p = bool(((truth == c) & valid).any()), bool(((pred == c) & valid).any())
        bt, bp = _brute_boundary(truth, valid, c), _brute_boundary(pred, valid, c)
        if not in_t and not in_p:
            values = (math.nan,) * 4
        elif in_t != in_p:
            values = (0.0, diag, diag, 0.0)
        else:
            mt, mp = (truth == c) & valid, (pred == c) & valid
            st, sp = skeletonize(mt), skeletonize(mp)
            tprec, tsens = (sp & mt).sum() / sp.sum(), (st & mp).sum() / st.sum()
            cl = 2 * tprec * tsens / (tprec + tsens) if tprec + tsens else 0.0
            if not bt and not bp:
                values = (1.0, 0.0, 0.0, cl)
            elif not bt or not bp:
                values = (0.0, diag, diag, cl)
            else:
                d = np.array([[math.dist(a, b) for b in bt] for a in bp])  # rows: predicted, columns: true
                to_truth, to_pred = d.min(axis=1), d.min(axis=0)
                prec, rec = np.mean(to_truth <= tol), np.mean(to_pred <= tol)
                f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
                hd95 = max(np.percentile(to_truth, 95), np.percentile(to_pred, 95))
                assd = np.concatenate([to_truth, to_pred]).mean()
                values = (f1, hd95, assd, cl)
        for key, v in zip(BOUNDARY_KEYS, values):
            out[key].append(v)
    return {k: np.array(v, dtype=float) for k, v in out.items()}


def _blobs(rng, shape, num_classes):
    """Blocky random label map: a coarse random grid upsampled, so classes form regions with outlines."""
    coarse = rng.integers(0, num_classes, size=(shape[0] // 3 + 1, shape[1] // 3 + 1))
    return np.kron(coarse, np.ones((3, 3), dtype=int))[: shape[0], : shape[1]].astype(np.uint8)


@pytest.mark.parametrize("seed", range(40))
def test_matches_brute_force_on_random_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_classes = int(rng.integers(2, 5))
    shape = (int(rng.integers(6, 14)), int(rng.integers(6, 14)))
    truth, pred = _blobs(rng, shape, num_classes), _blobs(rng, shape, num_classes)
    if seed % 4 == 1:  # a class absent from the prediction only, another absent from both
        pred[pred == 1] = 0
        truth[truth == num_classes - 1] = 0
        pred[pred == num_classes - 1] = 0
    if seed % 4 == 2:  # a class absent from the truth only; one class filling a whole mask
        truth[truth == 1] = 0
        pred[:] = 0 if seed % 8 == 2 else pred
    ignore_mask = rng.random(shape) < 0.15 if seed % 2 else None
    if seed % 3 == 0:
        truth[rng.random(shape) < 0.1] = IGNORE
    valid = truth != IGNORE
    if ignore_mask is not None:
        valid &= ~ignore_mask
    tolerance = ["1", "0", "2.5", "10%"][seed % 4]
    tol = tolerance_pixels(tolerance, shape)
    ours = boundary_scores(truth, pred, num_classes, tolerance=tolerance, ignore_index=IGNORE, ignore_mask=ignore_mask)
    expected = _brute_scores(truth, pred, num_classes, tol, valid)
    for key in BOUNDARY_KEYS:
        np.testing.assert_allclose(ours[key], expected[key], rtol=1e-12, atol=1e-12, err_msg=key)


def test_brute_force_cases_cover_every_branch() -> None:
    """The random cases above include each empty case (else the test above could miss a branch)."""
    seen = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        num_classes = int(rng.integers(2, 5))
        shape = (int(rng.integers(6, 14)), int(rng.integers(6, 14)))
        truth, pred = _blobs(rng, shape, num_classes), _blobs(rng, shape, num_classes)
        if seed % 4 == 1:
            pred[pred == 1] = 0
            truth[truth == num_classes - 1] = 0
            pred[pred == num_classes - 1] = 0
        if seed % 4 == 2:
            truth[truth == 1] = 0
            pred[:] = 0 if seed % 8 == 2 else pred
        for c in range(num_classes):
            seen.add(((truth == c).any(), (pred == c).any()))
    assert seen == {(True, True), (True, False), (False, True), (False, False)}


def test_hand_computed_single_pixels() -> None:
    """One class-1 pixel at (2, 2) in truth and at (2, 4) in the prediction, 5x5 image."""
    truth = np.zeros((5, 5), np.uint8)
    pred = truth.copy()
    truth[2, 2] = 1
    pred[2, 4] = 1
    s = boundary_scores(truth, pred, 2, tolerance=1)
    # class 1: each boundary is the single pixel, 2 pixels apart
    assert s["hd95"][1] == 2.0 and s["assd"][1] == 2.0 and s["bf1"][1] == 0.0
    assert boundary_scores(truth, pred, 2, tolerance=2)["bf1"][1] == 1.0
    # class 0: truth boundary (1,2) (3,2) (2,1) (2,3) -> sqrt2, sqrt2, 2, 0; prediction (1,4) (3,4) (2,3) -> sqrt2, sqrt2, 0
    r2 = math.sqrt(2)
    assert s["assd"][0] == pytest.approx((4 * r2 + 2) / 7)
    assert s["hd95"][0] == pytest.approx(r2 + 0.85 * (2 - r2))  # rank 0.95 * 3 = 2.85 of [0, r2, r2, 2]
    # tolerance 1: prediction 1/3 within, truth 1/4 within -> F1 = 2/7
    assert s["bf1"][0] == pytest.approx(2 * (1 / 3) * (1 / 4) / (1 / 3 + 1 / 4))


def test_hand_computed_empty_rule() -> None:
    truth = np.zeros((6, 8), np.uint8)
    truth[1:3, 1:3] = 1
    diag = math.hypot(6, 8)  # 10
    missed = boundary_scores(truth, np.zeros_like(truth), 3)
    assert missed["bf1"][1] == 0 and missed["hd95"][1] == diag == 10 and missed["assd"][1] == 10 and missed["cldice"][1] == 0
    assert np.isnan([missed[k][2] for k in BOUNDARY_KEYS]).all()  # class 2 absent from both
    extra = boundary_scores(np.zeros_like(truth), truth, 3)  # predicted, absent from truth
    assert extra["bf1"][1] == 0 and extra["hd95"][1] == 10 and extra["cldice"][1] == 0
    perfect = boundary_scores(truth, truth, 3)
    assert perfect["bf1"][1] == 1 and perfect["hd95"][1] == 0 and perfect["assd"][1] == 0 and perfect["cldice"][1] == 1


def test_ignored_pixels_are_like_outside_the_image() -> None:
    """Left half class 1, right half class 0, the column between them ignored: no boundary anywhere."""
    truth = np.zeros((4, 7), np.uint8)
    truth[:, :3] = 1
    truth[:, 3] = IGNORE
    pred = truth.copy()
    pred[:, 3] = 1  # whatever is predicted on ignored pixels does not count
    s = boundary_scores(truth, pred, 2)
    assert s["bf1"].tolist() == [1.0, 1.0] and s["hd95"].tolist() == [0.0, 0.0]
    # the same through ignore_mask, with the prediction's edge moved onto the ignored column
    truth[:, 3] = 0
    column = np.zeros(truth.shape, bool)
    column[:, 3] = True
    s = boundary_scores(truth, pred, 2, ignore_mask=column)
    assert s["bf1"].tolist() == [1.0, 1.0]


def test_hand_computed_cldice_of_a_broken_line() -> None:
    truth = np.zeros((5, 10), np.uint8)
    truth[2, 1:9] = 1  # an 8-pixel line: its own skeleton
    pred = np.zeros_like(truth)
    pred[2, 1:5] = 1  # its first half
    s = boundary_scores(truth, pred, 2)
    assert s["cldice"][1] == pytest.approx(2 * 1 * 0.5 / 1.5)  # precision 4/4, sensitivity 4/8


def test_tolerance_text() -> None:
    assert tolerance_pixels("3", (100, 100)) == 3
    assert tolerance_pixels("0.75%", (576, 768)) == pytest.approx(0.0075 * 960)
    for bad in ("-1", "abc", "nan%", "1%%"):
        with pytest.raises(ValueError, match="boundary tolerance"):
            check_tolerance(bad)


def test_shape_mismatch_names_the_fix() -> None:
    with pytest.raises(ValueError, match="nearest-neighbour"):
        boundary_scores(np.zeros((3, 4), np.uint8), np.zeros((4, 3), np.uint8), 2)
