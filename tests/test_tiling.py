"""Tiled inference equals whole-image inference for translation-equivariant methods; random crops."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from segbench.datasets import Sample
from segbench.datasets.transforms import random_crop
from segbench.methods import METHODS, Method, build_method
from segbench.methods.tiling import Tiling, blend_window, predict_tiled, tile_starts
from segbench.run.runner import RunConfig, run


def box_proba(image: np.ndarray, *, size: int = 3, mode: str = "mirror") -> np.ndarray:
    """A fixed, translation-equivariant 'method': 2-class softmax of box-filtered grey and red channels."""
    grey = ndimage.uniform_filter(image.mean(axis=2), size=size, mode=mode)
    red = ndimage.uniform_filter(image[..., 0].astype(np.float64), size=size, mode=mode)
    logits = np.stack([grey, red]) / 40.0
    e = np.exp(logits - logits.max(axis=0))
    return (e / e.sum(axis=0)).astype(np.float32)


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (70, 95, 3), dtype=np.uint8)


def test_tiles_cover_and_stay_inside():
    assert tile_starts(100, 32, 24) == [0, 24, 48, 68]
    assert tile_starts(20, 32, 24) == [0]
    window = blend_window(16, overlap=8, margin=2)
    assert window[:2].max() == 0 and window[:, -2:].max() == 0 and window[8, 8] == 1


@pytest.mark.parametrize("tile,overlap,margin", [(32, 8, 1), (24, 12, 3), (40, 2, 1), (128, 16, 4)])
def test_tiled_equals_whole_image_for_equivariant_method(image, tile, overlap, margin):
    calls = []

    def fn(x):
        calls.append(x.shape)
        return box_proba(x)

    tiled = predict_tiled(fn, image, tile=tile, overlap=overlap, margin=margin)
    whole = box_proba(image)
    assert tiled.shape == whole.shape and tiled.dtype == np.float32
    np.testing.assert_array_equal(tiled, whole)  # identical, not merely close
    assert all(s[:2] == (tile, tile) for s in calls)  # every tile has the full size
    if tile < 70:
        assert len(calls) > 4


def test_wider_receptive_field_needs_a_wider_margin(image):
    fn = lambda x: box_proba(x, size=7)  # noqa: E731 - radius 3
    np.testing.assert_array_equal(predict_tiled(fn, image, tile=32, overlap=8, margin=3), fn(image))
    assert not np.array_equal(predict_tiled(fn, image, tile=32, overlap=8, margin=1), fn(image))


def test_zero_padding_method_matches_reflect_padded_whole_image(image):
    """A method that pads with zeros (like most CNNs) gets the overlap-tile strategy's mirrored border."""
    fn = lambda x: box_proba(x, mode="constant")  # noqa: E731
    tiled = predict_tiled(fn, image, tile=32, overlap=8, margin=2)
    padded = np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(tiled, fn(padded)[:, 2:-2, 2:-2])


def test_blend_keeps_probabilities_normalised(image):
    rng = np.random.default_rng(1)

    def noisy(x):  # not equivariant: every call differs, so the blend really averages
        p = rng.random((3, *x.shape[:2])).astype(np.float32)
        return p / p.sum(axis=0)

    out = predict_tiled(noisy, image, tile=32, overlap=16, margin=2)
    np.testing.assert_allclose(out.sum(axis=0), 1.0, atol=1e-5)


def test_bad_settings_name_the_fix():
    with pytest.raises(ValueError, match="overlap=32 must be in 0..tile-1"):
        Tiling(32, 32)
    with pytest.raises(ValueError, match="raise overlap to at least 10"):
        Tiling(64, 8, margin=5)
    with pytest.raises(TypeError, match="integer"):
        Tiling(64.5)  # type: ignore[arg-type]


class _Box(Method):
    """The box filter as a registered method, to check the Method.tiling hook."""

    description = "box filter (tests only)"
    needs_training = False

    def _fit(self, train, val):
        pass

    def _predict_proba(self, image):
        return box_proba(image)


@pytest.fixture(autouse=True, scope="module")
def _registered():
    with METHODS.temporarily("test-box", _Box):
        yield


def test_method_tiling_option(image):
    whole = build_method("test-box", 2)
    tiled = build_method("test-box", 2, tiling=Tiling(32, overlap=8, margin=1))
    assert tiled.config()["tiling"] == {"tile": 32, "overlap": 8, "margin": 1} and "tiling" not in whole.config()
    np.testing.assert_array_equal(tiled.predict_proba(image), whole.predict_proba(image))


def test_random_crop():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, (30, 40)).astype(np.uint8)
    ignore = rng.random((30, 40)) < 0.1
    sample = Sample("a", image, mask, ignore)
    corners = set()
    for _ in range(30):
        crop = random_crop(sample, (10, 16), rng)
        assert crop.image.shape == (10, 16, 3) and crop.id == "a"
        # Find where it came from: image, mask and ignore are cut at the same place.
        ys, xs = np.nonzero((image[:21, :25, 0] == crop.image[0, 0, 0]))
        hits = [(y, x) for y, x in zip(ys, xs) if np.array_equal(image[y : y + 10, x : x + 16], crop.image)]
        assert len(hits) == 1
        y, x = hits[0]
        np.testing.assert_array_equal(crop.mask, mask[y : y + 10, x : x + 16])
        np.testing.assert_array_equal(crop.ignore, ignore[y : y + 10, x : x + 16])
        corners.add((y, x))
    assert len(corners) > 20  # offsets vary
    a = random_crop(sample, 8, np.random.default_rng(7))
    b = random_crop(sample, 8, np.random.default_rng(7))
    np.testing.assert_array_equal(a.image, b.image)  # seeded: reproducible


def test_random_crop_pads_small_samples_with_ignore():
    sample = Sample("s", np.full((6, 5, 3), 9, np.uint8), np.ones((6, 5), np.uint8))
    crop = random_crop(sample, (8, 7), np.random.default_rng(0))
    assert crop.image.shape == (8, 7, 3) and (crop.image == 9).all()
    assert (crop.mask[:6, :5] == 1).all() and (crop.mask[6:] == 255).all() and (crop.mask[:, 5:] == 255).all()
    with pytest.raises(ValueError, match="crop size"):
        random_crop(sample, 0, np.random.default_rng(0))


def test_runner_tiles_when_asked(tmp_path):
    tiny = {"synthetic": {"num_images": 6, "size": (48, 40)}}
    plain = RunConfig(out=tmp_path / "plain", datasets=["synthetic"], methods=["test-box"], dataset_options=tiny)
    tiled = RunConfig(**{**plain.__dict__, "out": tmp_path / "tiled", "tile": 24, "tile_overlap": 8})
    a, b = run(plain, progress=False).summary.iloc[0], run(tiled, progress=False).summary.iloc[0]
    assert json.loads(b["method_config"])["tiling"] == {"tile": 24, "overlap": 8, "margin": None}
    assert "tiling" not in json.loads(a["method_config"])
    assert a["dataset_mean_iou"] == b["dataset_mean_iou"]  # box filter: same labels tiled or whole
    with pytest.raises(ValueError, match="overlap=64 must be in 0..tile-1"):
        RunConfig(**{**plain.__dict__, "tile": 32}).validate()
