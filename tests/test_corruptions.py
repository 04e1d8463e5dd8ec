"""Corruptions: deterministic, uint8 in and out, worse with severity, ImageNet-C's parameters."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
import scipy.ndimage
import skimage.color
import skimage.data
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from segbench.datasets.corruptions import CORRUPTIONS, REFERENCE_SIDE, SEVERITIES, corrupt

RGB = skimage.data.astronaut()[::4, ::4].copy()  # 128 x 128 photograph: edges, texture, flat areas
GREY = skimage.data.camera()[::4, ::4].copy()


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("image", [RGB, GREY], ids=["rgb", "grey"])
def test_dtype_shape_and_determinism(name, image):
    before = image.copy()
    for severity in (1, 5):
        out = corrupt(image, name, severity, seed=3)
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert np.array_equal(out, corrupt(image, name, severity, seed=3))
        assert not np.array_equal(out, image)
    assert np.array_equal(image, before)  # the input is left alone


def test_seed_changes_noise_only():
    a, b = corrupt(RGB, "gaussian_noise", 3, seed=0), corrupt(RGB, "gaussian_noise", 3, seed=1)
    assert not np.array_equal(a, b)
    for name in ("gaussian_blur", "jpeg", "brightness", "contrast"):
        assert np.array_equal(corrupt(RGB, name, 3, seed=0), corrupt(RGB, name, 3, seed=1))


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("image", [RGB, GREY], ids=["rgb", "grey"])
def test_psnr_falls_with_severity(name, image):
    psnr = [peak_signal_noise_ratio(image, corrupt(image, name, s, seed=0)) for s in range(1, 6)]
    assert all(a > b for a, b in zip(psnr, psnr[1:])), psnr


def test_noise_std_matches_table():
    flat = np.full((200, 200), 128, np.uint8)  # mid-grey: up to severity 3 (2.8 std to 0 or 1) clipping is rare
    for severity, std in enumerate(SEVERITIES["gaussian_noise"][:3], start=1):
        noise = corrupt(flat, "gaussian_noise", severity, seed=0).astype(float) - 128
        assert np.std(noise) / 255 == pytest.approx(std, rel=0.03)


def test_contrast_hand_computed():
    image = np.array([[0, 100], [200, 100]], np.uint8)  # mean 100
    out = corrupt(image, "contrast", 1, seed=0)  # factor 0.4 about the mean
    assert out.tolist() == [[60, 100], [140, 100]]


@pytest.mark.parametrize("severity", range(1, 6))
def test_brightness_matches_scikit_image_hsv(severity):
    """ImageNet-C's definition: add c to HSV value with scikit-image's round trip (ties at .5 may round apart)."""
    noise = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)  # every hue, black and white
    noise[:2] = 0
    noise[-2:] = 255
    for image in (RGB, noise):
        hsv = skimage.color.rgb2hsv(image / 255.0)
        hsv[..., 2] = np.clip(hsv[..., 2] + SEVERITIES["brightness"][severity - 1], 0, 1)
        expected = np.clip(skimage.color.hsv2rgb(hsv), 0, 1) * 255
        out = corrupt(image, "brightness", severity, seed=0).astype(float)
        assert np.abs(out - expected).max() <= 0.5 + 1e-6


def test_brightness_grey_equals_rgb_path():
    stacked = np.repeat(GREY[..., None], 3, axis=2)
    for severity in range(1, 6):
        assert np.array_equal(corrupt(stacked, "brightness", severity, seed=0)[..., 0],
                              corrupt(GREY, "brightness", severity, seed=0))


def test_blur_sigma_scales_with_image_size():
    """A 448 px image is blurred with twice the 224 px sigma (scipy as the independent reference)."""
    image = np.zeros((448, 500), np.uint8)
    image[200:260, 230:300] = 255
    expected = scipy.ndimage.gaussian_filter(image / 255.0, sigma=2 * 448 / REFERENCE_SIDE, mode="nearest", truncate=4.0)
    out = corrupt(image, "gaussian_blur", 2, seed=0)
    assert np.abs(out.astype(float) - np.rint(expected * 255)).max() <= 1


def test_jpeg_matches_pillow_quality():
    buffer = BytesIO()
    Image.fromarray(RGB).save(buffer, format="JPEG", quality=SEVERITIES["jpeg"][4])
    assert np.array_equal(corrupt(RGB, "jpeg", 5, seed=0), np.asarray(Image.open(buffer)))


def test_bad_input_errors():
    with pytest.raises(ValueError, match=r"unknown corruption 'fog'; choose from gaussian_noise, gaussian_blur, jpeg"):
        corrupt(RGB, "fog", 1, seed=0)
    with pytest.raises(ValueError, match="severity 6 must be an integer from 1 to 5"):
        corrupt(RGB, "jpeg", 6, seed=0)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(RGB.astype(np.float32), "jpeg", 1, seed=0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        corrupt(np.zeros((4, 4, 4), np.uint8), "jpeg", 1, seed=0)
