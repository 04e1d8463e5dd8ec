"""Classical methods and stages (slic, graphcut, grabcut, crf, morph): tiny cases with known answers, the
multi-class path, and contracts through the registry."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from helpers import assert_beats_chance, best_constant_score, blob_pair
from segbench.datasets import Sample
from segbench.methods import IncompatibleError, build_method, labels_to_proba
from segbench.methods.stages.crf import DenseCRF, dense_crf
from segbench.methods.classical.graphcut import alpha_expansion, contrast_weights
from segbench.methods.stages.morph import Morphology, clean_binary


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def two_regions(seed: int = 0, h: int = 40, w: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left half dark, right half bright (the truth); noisy probabilities that are wrong near the border.

    Returns the image, the true labels and ``(2, H, W)`` probabilities whose argmax has ~20% of pixels
    wrong in a band around the border and a few wrong specks elsewhere.
    """
    rng = np.random.default_rng(seed)
    truth = np.zeros((h, w), np.int64)
    truth[:, w // 2 :] = 1
    image = np.where(truth[..., None] == 1, 190.0, 60.0) + rng.normal(0, 8, (h, w, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    fg = np.where(truth == 1, 0.75, 0.25) + rng.normal(0, 0.25, (h, w))
    band = np.abs(np.arange(w) - w // 2) < 6
    fg[:, band] = rng.uniform(0.2, 0.8, (h, band.sum()))  # the noisy border: the unary is a coin toss there
    fg = np.clip(fg, 0.02, 0.98)
    return image, truth, np.stack([1 - fg, fg]).astype(np.float32)


def test_noisy_start_is_actually_noisy():
    _, truth, proba = two_regions()
    assert _iou(proba.argmax(0) == 1, truth == 1) < 0.85  # else the recovery tests below prove nothing


def test_graph_cut_recovers_two_regions():
    image, truth, proba = two_regions()
    unary = -np.log(proba)
    labels = alpha_expansion(unary, contrast_weights(image, 5.0))
    chance = best_constant_score(truth == 1, _iou, [False, True])  # half the image: 0.5
    assert_beats_chance(_iou(labels == 1, truth == 1), 0.95, chance, "IoU")
    assert (alpha_expansion(unary, contrast_weights(image, 0.0)) == proba.argmax(0)).all()  # no pairwise: argmin


def _potts_energy(unary: np.ndarray, pairwise: tuple, labels: np.ndarray) -> float:
    """Unary costs of the flat ``labels`` plus the contrast weight of every edge whose ends differ."""
    p, q, w = pairwise
    flat = unary.reshape(unary.shape[0], -1)
    return float(flat[labels, np.arange(flat.shape[1])].sum() + (w * (labels[p] != labels[q])).sum())


def test_graph_cut_is_the_exact_minimum_on_a_tiny_grid():
    """Brute force over all 2^9 labellings of a 3x3 image: the min cut must reach the lowest energy."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (3, 3, 3)).astype(np.uint8)
    unary = rng.uniform(0, 3, (2, 3, 3))
    pairwise = contrast_weights(image, 2.0)
    best = min(_potts_energy(unary, pairwise, np.array([(i >> k) & 1 for k in range(9)])) for i in range(512))
    assert _potts_energy(unary, pairwise, alpha_expansion(unary, pairwise).ravel()) == pytest.approx(best)


def test_alpha_expansion_within_factor_two_of_the_optimum():
    """Brute force over all 3^8 labellings of a 2x4 image: alpha-expansion's bound for Potts is 2x the optimum,
    and it never does worse than the labelling it starts from (the unary argmin)."""
    rng = np.random.default_rng(7)
    image = rng.integers(0, 255, (2, 4, 3)).astype(np.uint8)
    unary = rng.uniform(0, 3, (3, 2, 4))
    pairwise = contrast_weights(image, 2.0)
    best = min(_potts_energy(unary, pairwise, np.array(np.unravel_index(i, (3,) * 8))) for i in range(3**8))
    found = _potts_energy(unary, pairwise, alpha_expansion(unary, pairwise).ravel())
    assert best - 1e-9 <= found <= 2 * best
    assert found <= _potts_energy(unary, pairwise, unary.reshape(3, -1).argmin(0)) + 1e-9


def test_alpha_expansion_three_classes():
    rng = np.random.default_rng(2)
    truth = np.zeros((30, 36), np.int64)
    truth[:, 12:24] = 1
    truth[:, 24:] = 2
    image = np.array([[40, 40, 40], [120, 120, 120], [220, 220, 220]], float)[truth] + rng.normal(0, 5, (30, 36, 3))
    proba = np.clip(labels_to_proba(truth, 3) * 0.3 + rng.uniform(0, 1.0, (3, 30, 36)), 1e-3, None)
    proba /= proba.sum(0)
    noisy = proba.argmax(0)
    labels = alpha_expansion(-np.log(proba), contrast_weights(np.clip(image, 0, 255).astype(np.uint8), 3.0))
    assert (noisy != truth).mean() > 0.1
    assert_beats_chance(accuracy_score(truth.ravel(), labels.ravel()), 0.97,
                        best_constant_score(truth.ravel(), accuracy_score, range(3)), "pixel accuracy")


def test_crf_recovers_two_regions():
    image, truth, proba = two_regions()
    refined = dense_crf(image, proba, bilateral_sxy=20.0, bilateral_srgb=20.0, bilateral_weight=10.0, iterations=10)
    assert_beats_chance(_iou(refined.argmax(0) == 1, truth == 1), 0.95, best_constant_score(truth == 1, _iou, [False, True]), "IoU")
    np.testing.assert_allclose(refined.sum(0), 1.0, atol=1e-4)


@pytest.mark.parametrize("max_side", [None, 24])  # the CRF at the image's size, and downscaled
def test_crf_without_pairwise_returns_input_labels(max_side):
    image, _, proba = two_regions(seed=3)
    stage = DenseCRF(2, gaussian_weight=0.0, bilateral_weight=0.0, tune=False, max_side=max_side)
    out = stage.apply(image, proba)
    assert out.shape == proba.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out.argmax(0), proba.argmax(0))
    # and with pairwise weight it does change them (the assertion above could fail)
    stage = DenseCRF(2, bilateral_weight=10.0, tune=False, max_side=max_side)
    assert (stage.apply(image, proba).argmax(0) != proba.argmax(0)).any()


def test_morph_removes_a_speck_and_fills_a_hole():
    fg = np.zeros((60, 60), bool)
    fg[10:50, 10:50] = True
    fg[28:32, 28:32] = False  # a hole
    fg[2:4, 55:57] = True  # a speck
    out = clean_binary(fg, 2)
    expected = np.zeros_like(fg)
    expected[10:50, 10:50] = True
    assert not out[:6, 52:].any() and out[28:32, 28:32].all()
    assert (out != expected).sum() <= 12  # opening with a disc rounds the square's 4 corners (3 px each)
    # the stage on probabilities: unchanged pixels keep theirs, changed ones become one-hot
    proba = labels_to_proba(fg.astype(np.int64), 2) * 0.8 + 0.1
    stage = Morphology(2, radius=2 / 60)
    result = stage.apply(np.zeros((60, 60, 3), np.uint8), proba)
    np.testing.assert_array_equal(result.argmax(0), out)
    np.testing.assert_allclose(result[:, 0, 0], [0.9, 0.1])
    np.testing.assert_allclose(result[:, 30, 30], [0.0, 1.0])


def test_morph_keeps_the_largest_component_only_for_single_object_tasks():
    two = np.zeros((40, 40), np.int64)
    two[5:15, 5:15] = 1
    two[20:38, 20:38] = 1
    single = [Sample("a", np.zeros((40, 40, 3), np.uint8), (two * 0 + (np.arange(40) < 20)[None]).astype(np.uint8))]
    many = [Sample("b", np.zeros((40, 40, 3), np.uint8), two.astype(np.uint8))] * 3
    stage = Morphology(2, radius=0.0)
    stage.fit(None, single)  # type: ignore[arg-type]
    assert (stage.apply(np.zeros((40, 40, 3), np.uint8), labels_to_proba(two, 2)).argmax(0)[5:15, 5:15] == 0).all()
    stage.fit(None, many)  # type: ignore[arg-type]
    assert (stage.apply(np.zeros((40, 40, 3), np.uint8), labels_to_proba(two, 2)).argmax(0) == two).all()


def test_morph_multiclass_majority():
    labels = np.zeros((30, 30), np.int64)
    labels[:, 10:20] = 1
    labels[:, 20:] = 2
    noisy = labels.copy()
    noisy[5, 5] = 2
    noisy[15, 25] = 1
    out = Morphology(3, radius=2 / 30).apply(np.zeros((30, 30, 3), np.uint8), labels_to_proba(noisy, 3))
    np.testing.assert_array_equal(out.argmax(0), labels)


def _split(ds, n_train: int = 6):
    ids = ds.ids()
    return ds.subset(ids[:n_train]), ds.subset(ids[n_train : n_train + 2]), ds.subset(ids[n_train + 2 :])


@pytest.mark.parametrize("spec", ["slic+crf+morph", "graphcut+crf", "grabcut+morph"])
def test_pipelines_through_the_registry(spec):
    """Dark discs on noisy skin (64x64: big enough for the forest's 16-px features): every pipeline finds them."""
    rng = np.random.default_rng(6)
    samples = [Sample(f"b{i}", *blob_pair(rng, 64, 64)) for i in range(10)]
    train, val, test = samples[:6], samples[6:8], samples[8:]
    method = build_method(spec, 2, quick=True, options={"crf": {"tune_images": 2}}).fit(train, val)
    for s in test:
        proba = method.predict_proba(s.image)
        assert proba.shape == (2, *s.mask.shape) and proba.dtype == np.float32
        np.testing.assert_allclose(proba.sum(0), 1.0, atol=1e-4)
        dice = f1_score(s.mask.ravel(), method.predict(s.image).ravel())
        assert_beats_chance(dice, 0.85, best_constant_score(s.mask.ravel(), f1_score, [0, 1]), f"{spec} lesion Dice")


@pytest.mark.parametrize("spec", ["slic", "graphcut", "graphcut+morph"])
def test_multiclass(spec, tiny_multiclass):
    train, val, test = _split(tiny_multiclass)
    method = build_method(spec, 3, quick=True, options={"graphcut": {"unary": "gmm"}} if "graphcut" in spec else None)
    method.fit(train, val)
    probas = [method.predict_proba(s.image) for s in test]
    assert all(p.shape == (3, *s.mask.shape) for p, s in zip(probas, test))
    truth = np.concatenate([s.mask.ravel() for s in test])
    pred = np.concatenate([p.argmax(0).ravel() for p in probas])
    chance = best_constant_score(truth, accuracy_score, range(3))  # all background: ~0.67
    assert_beats_chance(accuracy_score(truth, pred), 0.75, chance, f"{spec} pixel accuracy")


def test_graphcut_probabilities_agree_with_the_cut():
    """The probabilities mix the cut's one-hot map with the posterior: their argmax must be the cut itself."""
    rng = np.random.default_rng(8)
    samples = [Sample(f"b{i}", *blob_pair(rng, 48, 48)) for i in range(5)]
    method = build_method("graphcut", 2, options={"graphcut": {"unary": "gmm", "tune": False, "pairwise": 30.0}})
    method.fit(samples[:4])
    image = np.clip(samples[4].image + rng.normal(0, 50, samples[4].image.shape), 0, 255).astype(np.uint8)  # speckled
    log_post = method._log_post(image)
    cut = alpha_expansion(-(log_post - log_post.max(0)), contrast_weights(image, 30.0))
    proba = method.predict_proba(image)
    np.testing.assert_array_equal(proba.argmax(0), cut)
    assert (cut != log_post.argmax(0)).any()  # the pairwise term changed something, so the check has teeth


def test_grabcut_is_binary_only(tiny_multiclass):
    with pytest.raises(IncompatibleError, match="two-class"):
        build_method("grabcut", tiny_multiclass.num_classes)


def test_grabcut_finds_a_central_object_without_training():
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:48, 0:64]
    truth = ((yy - 24) ** 2 / 14**2 + (xx - 32) ** 2 / 18**2) < 1
    image = np.clip(np.where(truth[..., None], [120, 60, 50], [220, 180, 160]) + rng.normal(0, 10, (48, 64, 3)), 0, 255)
    method = build_method("grabcut", 2).fit([])
    assert_beats_chance(_iou(method.predict(image.astype(np.uint8)) == 1, truth), 0.9,
                        best_constant_score(truth, _iou, [False, True]), "object IoU")


def test_slic_uses_majority_labels_and_ignores_void():
    """A training image half ignored: superpixels there are skipped, the rest still learned."""
    rng = np.random.default_rng(5)
    mask = np.zeros((40, 48), np.uint8)
    mask[:, 24:] = 1
    image = np.clip(np.where(mask[..., None] == 1, 200.0, 50.0) + rng.normal(0, 5, (40, 48, 3)), 0, 255).astype(np.uint8)
    partly_void = mask.copy()
    partly_void[:20] = 255
    method = build_method("slic", 2, quick=True, options={"slic": {"n_segments": 40}})
    method.fit([Sample("a", image, partly_void), Sample("b", image, mask)])
    assert_beats_chance(accuracy_score(mask.ravel(), method.predict(image).ravel()), 0.95,
                        best_constant_score(mask.ravel(), accuracy_score, [0, 1]), "pixel accuracy")
