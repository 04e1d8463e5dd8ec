"""Tests for the generated ``synthetic`` and ``synthetic-multiclass`` datasets."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.metrics import f1_score

from helpers import assert_beats_chance, best_constant_score
from segbench.datasets import DATASETS, Sample
from segbench.datasets import synthetic
from segbench.datasets.synthetic import SyntheticLesions, SyntheticMulticlass


@pytest.fixture(scope="module")
def binary_samples() -> list[Sample]:
    ds = SyntheticLesions(num_images=60)
    return [ds.load(i) for i in ds.ids()]


@pytest.fixture(scope="module")
def multiclass_samples() -> list[Sample]:
    ds = SyntheticMulticlass(num_images=60)
    return [ds.load(i) for i in ds.ids()]


def test_registered() -> None:
    assert DATASETS.get("synthetic") is SyntheticLesions
    assert DATASETS.get("synthetic-multiclass") is SyntheticMulticlass
    assert SyntheticLesions(None).num_classes == 2
    assert SyntheticMulticlass(None).num_classes == 3


def test_config_round_trip() -> None:
    ds = SyntheticLesions("ignored/root", num_images=5, size=(64, 48), seed=3)
    assert ds.config() == {"num_images": 5, "size": (64, 48), "seed": 3}
    again = SyntheticLesions(None, **ds.config())  # how records rebuild a dataset
    np.testing.assert_array_equal(again.load("synth-004").image, ds.load("synth-004").image)


def test_ids() -> None:
    assert SyntheticLesions(num_images=3).ids() == ["synth-000", "synth-001", "synth-002"]
    assert SyntheticLesions(num_images=1001).ids()[-1] == "synth-1000"
    assert len(SyntheticLesions(num_images=7)) == 7


def test_ids_do_not_generate(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("ids() must not generate images")

    monkeypatch.setattr(synthetic, "_generate", fail)
    ds = SyntheticLesions(num_images=10)
    assert len(ds.ids()) == 10
    with pytest.raises(AssertionError):  # the patch is effective: load does call the generator
        ds.load("synth-000")


def test_same_seed_is_deterministic() -> None:
    a, b = SyntheticLesions(num_images=5, seed=7), SyntheticLesions(num_images=5, seed=7)
    for sample_id in a.ids():
        first, second, other = a.load(sample_id), a.load(sample_id), b.load(sample_id)
        np.testing.assert_array_equal(first.image, second.image)
        np.testing.assert_array_equal(first.mask, second.mask)
        np.testing.assert_array_equal(first.image, other.image)
        np.testing.assert_array_equal(first.mask, other.mask)


def test_load_order_does_not_matter() -> None:
    forward = SyntheticLesions(num_images=6, seed=1)
    backward = SyntheticLesions(num_images=6, seed=1)
    ids = forward.ids()
    first = {i: forward.load(i) for i in ids}
    second = {i: backward.load(i) for i in reversed(ids)}
    for i in ids:
        np.testing.assert_array_equal(first[i].image, second[i].image)
        np.testing.assert_array_equal(first[i].mask, second[i].mask)


def test_different_seeds_and_indices_differ() -> None:
    a = SyntheticLesions(num_images=3, seed=0).load("synth-000")
    b = SyntheticLesions(num_images=3, seed=1).load("synth-000")
    c = SyntheticLesions(num_images=3, seed=0).load("synth-001")
    assert not np.array_equal(a.image, b.image)
    assert not np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("size", [(128, 128), (96, 64), (40, 72)])
def test_shapes_and_dtypes(size: tuple[int, int]) -> None:
    width, height = size
    for cls in (SyntheticLesions, SyntheticMulticlass):
        ds = cls(num_images=4, size=size)
        for sample_id in ds.ids():
            s = ds.load(sample_id)
            assert s.id == sample_id
            assert s.image.shape == (height, width, 3) and s.image.dtype == np.uint8
            assert s.mask.shape == (height, width) and s.mask.dtype == np.uint8
            assert set(np.unique(s.mask)) <= set(range(ds.num_classes))
            assert s.ignore is None


def test_every_binary_image_has_lesion_and_background(binary_samples: list[Sample]) -> None:
    for s in binary_samples:
        assert set(np.unique(s.mask)) == {0, 1}, s.id
        frac = s.mask.mean()
        assert 0.01 < frac < 0.6, (s.id, frac)


def test_multiclass_has_hair(binary_samples: list[Sample], multiclass_samples: list[Sample]) -> None:
    present = set()
    with_hair = 0
    hair_on_background = 0
    for binary, multi in zip(binary_samples, multiclass_samples):
        present |= set(np.unique(multi.mask).tolist())
        hair = multi.mask == 2
        with_hair += bool(hair.any())
        # Same pixels as the binary dataset; only hair pixels are relabelled.
        np.testing.assert_array_equal(binary.image, multi.image)
        np.testing.assert_array_equal(binary.mask[~hair], multi.mask[~hair])
        hair_on_background += int((binary.mask[hair] == 0).sum())
    assert present == {0, 1, 2}
    assert with_hair > len(multiclass_samples) // 2
    assert hair_on_background > 0  # hair is not lesion in the binary mask


def _grey(image: np.ndarray) -> np.ndarray:
    return np.rint(image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(np.intp)


def test_global_threshold_does_not_solve_it(binary_samples: list[Sample]) -> None:
    lesion_hist = np.zeros(256)
    background_hist = np.zeros(256)
    for s in binary_samples:
        grey, lesion = _grey(s.image), s.mask == 1
        lesion_hist += np.bincount(grey[lesion], minlength=256)
        background_hist += np.bincount(grey[~lesion], minlength=256)
    best = 0.0
    # Both polarities: lesion = grey <= t, and lesion = grey >= t.
    for order in (slice(None), slice(None, None, -1)):
        tp = np.cumsum(lesion_hist[order])
        fp = np.cumsum(background_hist[order])
        dice = 2 * tp / (tp + fp + lesion_hist.sum())
        best = max(best, float(dice.max()))
    assert best < 0.9, best
    # But the lesion is darker than skin: the signal is there (the scan includes both constant predictions).
    truth = np.concatenate([s.mask.ravel() for s in binary_samples])
    assert_beats_chance(best, 0.45, best_constant_score(truth, f1_score, [0, 1]), "best global-threshold Dice")


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"num_images": 2}, "num_images=2"),
        ({"num_images": 0}, "num_images=0"),
        ({"num_images": "60"}, "num_images='60'"),
        ({"num_images": True}, "num_images=True"),
        ({"size": (10, 128)}, "size=(10, 128)"),
        ({"size": (128,)}, "size=(128,)"),
        ({"size": 128}, "size=128"),
        ({"size": (128.0, 128)}, "size=(128.0, 128)"),
        ({"seed": -1}, "seed=-1"),
        ({"seed": 0.5}, "seed=0.5"),
    ],
)
def test_bad_arguments(options: dict[str, object], names: str) -> None:
    with pytest.raises(ValueError, match=re.escape(names)):
        SyntheticLesions(None, **options)  # type: ignore[arg-type]


def test_size_accepts_a_list() -> None:  # JSON records turn tuples into lists
    assert SyntheticLesions(size=[64, 32]).load("synth-000").image.shape == (32, 64, 3)


@pytest.mark.parametrize("bad_id", ["synth-003", "synth-3", "synth-0001", "foo", "", "synth--01"])
def test_unknown_id(bad_id: str) -> None:
    ds = SyntheticLesions(num_images=3)
    with pytest.raises(ValueError, match="unknown sample id") as info:
        ds.load(bad_id)
    assert repr(bad_id) in str(info.value)
