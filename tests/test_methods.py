"""Contract tests over every registered method (and each stage after a method): a new method is tested by
registering it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from helpers import assert_beats_chance, best_constant_score
from segbench.methods import METHODS, STAGES, IncompatibleError, build_method, core_methods


def _fit(spec, dataset, seed=0):
    method = build_method(spec, dataset.num_classes, seed=seed, quick=True)
    ids = dataset.ids()
    return method.fit(dataset.subset(ids[:6]), dataset.subset(ids[6:8]))


#: The core's methods (the zoo, which needs an extra, has its own tests: tests/test_zoo.py).
CORE = core_methods()
SPECS = CORE + [f"{CORE[0]}+{stage}" for stage in STAGES.names()]


@pytest.mark.parametrize("spec", SPECS)
def test_predict_proba_contract(spec, tiny_binary):
    method = _fit(spec, tiny_binary)
    for h, w in [(40, 48), (33, 51)]:  # the training size and an odd one
        image = tiny_binary[tiny_binary.ids()[8]].image
        image = np.ascontiguousarray(np.resize(image, (h, w, 3)))
        proba = method.predict_proba(image)
        assert proba.shape == (2, h, w) and proba.dtype == np.float32
        assert np.isfinite(proba).all() and proba.min() >= -1e-6
        np.testing.assert_allclose(proba.sum(axis=0), 1.0, atol=1e-4)
        labels = method.predict(image)
        assert labels.shape == (h, w)
        np.testing.assert_array_equal(labels, proba.argmax(axis=0))


@pytest.mark.parametrize("spec", CORE)
def test_multiclass_or_declared_binary(spec, tiny_multiclass):
    cls = METHODS.get(spec)
    if cls.binary_only:
        with pytest.raises(IncompatibleError, match="two-class"):
            build_method(spec, tiny_multiclass.num_classes)
        return
    method = _fit(spec, tiny_multiclass)
    proba = method.predict_proba(tiny_multiclass[tiny_multiclass.ids()[9]].image)
    assert proba.shape[0] == 3


@pytest.mark.parametrize("spec", CORE)
def test_same_seed_same_output(spec, tiny_binary):
    image = tiny_binary[tiny_binary.ids()[9]].image
    a = _fit(spec, tiny_binary, seed=5).predict_proba(image)
    b = _fit(spec, tiny_binary, seed=5).predict_proba(image)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("spec", CORE)
def test_unknown_option_lists_valid_ones(spec):
    with pytest.raises(TypeError, match="unknown option.*not_an_option"):
        build_method(spec, 2, options={spec: {"not_an_option": 1}})


@pytest.mark.parametrize("spec", CORE)
def test_describes_itself(spec):
    cls = METHODS.get(spec)
    assert cls.description and cls.family in ("classical", "deep")
    config = build_method(spec, 2).config()
    assert config["method"] == spec


def test_otsu_picks_polarity_and_beats_chance(tiny_binary):
    ids = tiny_binary.ids()
    method = build_method("otsu", 2).fit(tiny_binary.subset(ids[:6]))
    test = tiny_binary.subset(ids[6:])
    truth = np.stack([s.mask for s in test])
    pred = np.stack([method.predict(s.image) for s in test])
    dice = np.mean([f1_score(t.ravel(), p.ravel()) for t, p in zip(truth, pred)])  # every image has a lesion
    chance = best_constant_score(truth, lambda t, p: np.mean([f1_score(a.ravel(), b.ravel()) for a, b in zip(t, p)]), [0, 1])
    assert_beats_chance(dice, 0.55, chance, "mean lesion Dice")


def test_otsu_on_an_easy_image():
    yy, xx = np.mgrid[0:40, 0:40]
    mask = ((yy - 20) ** 2 + (xx - 20) ** 2 < 100).astype(np.uint8)
    image = np.where(mask[..., None] == 1, 60, 200).astype(np.uint8).repeat(3, axis=2)
    from segbench.datasets import Sample

    method = build_method("otsu", 2, options={"otsu": {"sigma": 0.0}}).fit([Sample("a", image, mask)])
    assert not method.object_is_bright_
    np.testing.assert_array_equal(method.predict(image), mask)
