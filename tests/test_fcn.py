"""From a sliding-window classifier to FCN-8s: the dense-to-convolution conversion is exact, the converted network
gives the sliding loop's heatmap at every window (random and trained weights), the transposed convolutions
start as bilinear upsampling, and the FCNs keep any input size and learn. Tiny images: seconds on a CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import jaccard_score
from torch import nn

from helpers import assert_beats_chance, best_constant_score
from segbench.datasets import DATASETS
from segbench.methods import build_method
from segbench.methods.deep.fcn import FCN, BilinearUp, bilinear_kernel
from segbench.methods.deep.sliding_window import PatchClassifier, dense_to_conv
from segbench.methods.deep.device import seed_everything
from segbench.methods.deep.inference import evaluate_model

TOL = 1e-4


def _method(name: str, seed: int = 0, **options):
    return build_method(name, 2, seed=seed, quick=True, options={name: {"progress": False, "device": "cpu", **options}})


@pytest.fixture(scope="module")
def lesions():
    """The default synthetic dataset's generator at 64x64: 16 training and 8 validation images."""
    ds = DATASETS.get("synthetic")(None, num_images=24, size=(64, 64), seed=1)
    ids = ds.ids()
    return [ds[i] for i in ids[:16]], [ds[i] for i in ids[16:]]


def _image(seed: int = 0, shape: tuple[int, int] = (50, 70)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


# -- dense_to_conv ----------------------------------------------------------------------------------------


def test_dense_to_conv_on_a_hand_built_classifier():
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 4, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    conv = dense_to_conv(classifier, (2, 3, 4))
    assert [type(m) for m in conv] == [nn.Conv2d, nn.ReLU, nn.Conv2d]
    assert conv[0].kernel_size == (3, 4) and conv[2].kernel_size == (1, 1)
    assert torch.equal(conv[0].weight.flatten(1), classifier[1].weight)  # copied exactly, channel-major
    assert torch.equal(conv[2].weight.flatten(1), classifier[3].weight) and torch.equal(conv[2].bias, classifier[3].bias)
    x = torch.randn(2, 2, 5, 7)
    with torch.no_grad():
        out = conv(x)
        assert out.shape == (2, 3, 3, 4)  # one score vector per 3x4 window position
        for i in range(3):
            for j in range(4):
                expected = classifier(x[..., i : i + 3, j : j + 4])
                assert (out[..., i, j] - expected).abs().max() < 1e-6
        # The conversion is a copy: changing it leaves the classifier alone.
        conv[0].weight.zero_()
        assert classifier[1].weight.abs().sum() > 0


def test_dense_to_conv_on_a_trained_classifier_with_a_non_square_map():
    """Trained weights read off a 3x5 map: swapping h and w, or the channel order, in the conversion shows here
    (a 1x1 map, as the quick sliding window has, hides any layout error)."""
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                               nn.Linear(4 * 3 * 5, 6), nn.ReLU(), nn.Linear(6, 2))  # 8x12 patch -> 6x10 -> 3x5 map
    x = torch.randn(96, 3, 8, 12)
    y = (x[:, :, :4, :6].mean((1, 2, 3)) > x[:, :, 4:, 6:].mean((1, 2, 3))).long()  # where it looks matters
    optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        F.cross_entropy(classifier(x), y).backward()
        optimizer.step()
    classifier.eval()
    with torch.no_grad():
        assert (classifier(x).argmax(1) == y).float().mean() > 0.9  # trained, not random
        conv = dense_to_conv(classifier, (4, 3, 5))
        image = torch.randn(2, 3, 8 + 2 * 3, 12 + 2 * 4)  # 4 x 5 window positions, every 2 pixels
        out = conv(image)
        assert out.shape == (2, 2, 4, 5)
        for i in range(4):
            for j in range(5):
                expected = classifier(image[..., 2 * i : 2 * i + 8, 2 * j : 2 * j + 12])
                assert (out[..., i, j] - expected).abs().max() < 1e-5, (i, j)


def test_dense_to_conv_rejects_what_it_cannot_convert():
    with pytest.raises(ValueError, match="feature_shape"):
        dense_to_conv(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="BatchNorm1d"):
        dense_to_conv(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3)), (1, 2, 2))
    with pytest.raises(ValueError, match="does not read"):
        dense_to_conv(nn.Sequential(nn.Flatten(), nn.Linear(5, 3)), (1, 2, 2))
    with pytest.raises(ValueError, match="at least 16"):
        PatchClassifier(2, window=15)


# -- sliding loop vs converted network --------------------------------------------------------------------


@pytest.mark.parametrize("window, stride", [(32, 4), (20, 8), (16, 4)])
def test_loop_and_converted_network_agree_on_random_weights(window, stride):
    method = _method("sliding-window", window=window, stride=stride, width=4, hidden=8)
    assert method.prepare_untrained()
    image = _image()
    loop = method.heatmap(image, one_pass=False)
    conv = method.heatmap(image, one_pass=True)
    assert loop.shape == conv.shape == (2, -(-49 // stride) + 1, -(-69 // stride) + 1)
    assert np.abs(loop - conv).max() < TOL
    # The comparison can fail: another image (or another alignment) gives other scores.
    assert np.abs(method.heatmap(_image(1), one_pass=True) - loop).max() > 100 * TOL
    assert np.abs(conv[:, 1:, 1:] - loop[:, :-1, :-1]).max() > 100 * TOL


def test_loop_and_converted_network_agree_after_training(lesions, tmp_path):
    train, val = lesions
    loop = _method("sliding-window").fit(train, val)
    conv = _method("sliding-window-conv").fit(train, val)
    for name, p in loop.model.state_dict().items():  # same seed and options: the same weights
        assert torch.equal(p, conv.model.state_dict()[name]), name
    for s in val[:3]:
        a, b = loop.heatmap(s.image), conv.heatmap(s.image)
        assert np.abs(a - b).max() < TOL
        np.testing.assert_allclose(loop.predict_proba(s.image), conv.predict_proba(s.image), atol=TOL)
    # It learned something (else agreeing would be easy): the lesion scores higher inside than outside.
    heat = loop.heatmap(val[0].image)
    centres = val[0].mask[::4, ::4]  # grid point (i, j) is the window centred on pixel (4i, 4j)
    margin = (heat[1] - heat[0])[: centres.shape[0], : centres.shape[1]]
    assert margin[centres == 1].mean() > margin[centres == 0].mean() + 1.0
    # sliding-window-conv loads sliding-window's checkpoint: literally the same weights.
    path = loop.save(tmp_path / "best.pt")
    other = _method("sliding-window-conv", seed=3, checkpoint=str(path)).fit([], None)
    assert np.abs(other.heatmap(val[0].image) - heat).max() < TOL


def test_one_pass_needs_a_stride_the_network_has():
    with pytest.raises(ValueError, match="multiple of the network's stride 4"):
        _method("sliding-window-conv", stride=6)
    _method("sliding-window", stride=6)  # the loop takes any stride


# -- FCN ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [32, 16, 8])
@pytest.mark.parametrize("shape", [(50, 70), (33, 31), (64, 96)])
def test_fcn_output_has_the_input_size(variant, shape):
    model = FCN(3, variant=variant, width=2)
    x = torch.randn(2, 3, *shape)
    for train in (True, False):
        model.train(train)
        with torch.no_grad():
            y = model(x)
        assert y.shape == (2, 3, *shape) and torch.isfinite(y).all()


def test_bilinear_kernel_by_hand():
    np.testing.assert_allclose(bilinear_kernel(2)[0] / bilinear_kernel(2)[0].max(), [1 / 3, 1, 1, 1 / 3], atol=1e-6)
    np.testing.assert_allclose(bilinear_kernel(2)[1], [0.1875, 0.5625, 0.5625, 0.1875], atol=1e-6)  # 0.75 * (0.25, .75, .75, .25)


@pytest.mark.parametrize("factor", [2, 8, 16, 32])
def test_transposed_convolution_starts_as_bilinear_upsampling(factor):
    up = BilinearUp(2, factor)
    rows, cols = torch.meshgrid(torch.arange(5.0), torch.arange(6.0), indexing="ij")
    x = torch.stack([3 * rows - 2 * cols + 1, torch.full_like(rows, 7.0)])[None]  # a ramp and a constant
    with torch.no_grad():
        y = up(x)
    reference = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert y.shape == reference.shape == (1, 2, 5 * factor, 6 * factor)
    inner = slice(factor // 2, -(factor // 2))  # the border sees zero padding where interpolate repeats the edge
    assert (y[..., inner, inner] - reference[..., inner, inner]).abs().max() < 1e-4
    assert (y[0, 1, inner, inner] - 7.0).abs().max() < 1e-4  # the constant stays constant: no class mixing


def test_skip_scores_start_at_zero():
    model = FCN(2, variant=8, width=2)
    for conv in (model.score_pool4, model.score_pool3):
        assert conv.weight.abs().sum() == 0 and conv.bias.abs().sum() == 0
    assert model.score.weight.abs().sum() > 0


def test_short_training_beats_the_untrained_fcn(lesions):
    train, val = lesions
    method = _method("fcn8s", epochs=40, batch_size=2, lr=5e-3)
    seed_everything(method.seed)
    untrained = method.build_model()
    method.fit(train, val)
    before = evaluate_model(untrained, val, method.norm, num_classes=2, device=torch.device("cpu"))
    after = evaluate_model(method.model, val, method.norm, num_classes=2, device=torch.device("cpu"))
    assert after > before + 0.15, (before, after)
    truth = np.concatenate([s.mask.ravel() for s in val])
    chance = best_constant_score(truth, lambda t, p: jaccard_score(t, p, average="macro", labels=np.union1d(t, p)), [0, 1])
    assert_beats_chance(after, 0.6, chance, "validation mean IoU")


@pytest.mark.parametrize("name", ["sliding-window", "sliding-window-conv"])
def test_batched_prediction_equals_one_by_one(name):
    method = _method(name)
    assert method.prepare_untrained()
    images = np.stack([_image(0, (40, 52)), _image(1, (40, 52))])
    batched = method.predict_proba_batch(images)
    assert batched.shape == (2, 2, 40, 52)
    for image, proba in zip(images, batched):
        np.testing.assert_allclose(proba, method.predict_proba(image), atol=TOL)
