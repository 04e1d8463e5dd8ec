"""From classification to segmentation: a patch classifier slid over the image, and the same classifier run as
a fully convolutional network in one pass.

* ``sliding-window``: a small CNN with a dense head classifies a ``window x window`` patch by its centre pixel.
  Sliding it over the reflect-padded image every ``stride`` pixels gives a heatmap of class scores, which is
  softmaxed and upsampled bilinearly to the image.
* ``sliding-window-conv``: the same weights after ``dense_to_conv`` (the first ``Linear``, which reads a
  ``C x h x w`` feature map, becomes an ``h x w`` convolution; later ``Linear`` layers become ``1 x 1``
  convolutions), run on the whole padded image at once. It computes the same heatmap (Long, Shelhamer &
  Darrell, CVPR 2015, Sec. 3.1) without recomputing the features that neighbouring windows share.

The equivalence is exact because the feature extractor uses unpadded ("valid") convolutions and 2x2 pools:
a window placed at a multiple of the network's stride (4) sees exactly the features the whole-image network
computes there. Padded convolutions would see zeros at a window's border but image pixels in the whole image.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segbench.datasets.base import Sample
from segbench.datasets.io import to_rgb
from segbench.datasets.transforms import resize_image, work_shape
from segbench.methods.base import METHODS
from segbench.methods.deep.device import Precision
from segbench.methods.deep.method import DeepMethod, DeepOptions
from segbench.methods.deep.layers import init_weights
from segbench.methods.deep.inference import Normalization
from segbench.methods.deep.training import TrainData, TrainResult, train_loop
from segbench.methods.tuning import SelectionScore

__all__ = ["PatchClassifier", "PatchData", "dense_to_conv", "SlidingWindowMethod", "SlidingWindowConvMethod"]


class PatchClassifier(nn.Sequential):
    """``classify``: ``(N, 3, window, window)`` patches -> ``(N, C)`` class scores of their centre pixel;
    ``forward``: whole images -> per-pixel logits through the same weights (see ``forward``).

    Two stages of two unpadded 3x3 ``Conv-BN-ReLU`` and a 2x2 max-pool (stride 4 in all), then
    ``Flatten -> Linear -> ReLU -> Dropout -> Linear``. ``feature_shape`` is the ``(C, h, w)`` map the first
    ``Linear`` reads (``dense_to_conv`` needs it).
    """

    #: Product of the pooling strides: the converted network's output stride.
    stride: ClassVar[int] = 4
    classify = nn.Sequential.forward  # the patch classifier: (N, 3, window, window) -> (N, C)

    def __init__(
        self, num_classes: int, *, window: int = 32, width: int = 16, hidden: int = 64, dropout: float = 0.2, in_channels: int = 3
    ) -> None:
        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        features = [*block(in_channels, width), *block(width, width), nn.MaxPool2d(2)]
        features += [*block(width, 2 * width), *block(2 * width, 2 * width), nn.MaxPool2d(2)]
        side = ((window - 4) // 2 - 4) // 2  # two 3x3 valid convs (-4), pool (/2), twice
        if side < 1:
            raise ValueError(f"PatchClassifier: window must be at least 16 pixels (4 unpadded convs and 2 pools), got {window}")
        self.feature_shape = (2 * width, side, side)
        super().__init__(
            *features,
            nn.Flatten(),
            nn.Linear(2 * width * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        init_weights(self)
        self.window = window

    def forward(self, x: Tensor) -> Tensor:
        """Whole images ``(N, 3, H, W)`` -> ``(N, C, H, W)`` logits (the contract of every deep method's network):
        the classifier's convolutional form on the reflect-padded images, one window every 4 pixels, upsampled
        bilinearly. Shares the classifier's parameters, so it trains them too; ``classify`` scores patches."""
        padded, _ = _pad_for_windows(x, self.window, self.stride)
        layers = list(self)
        cut = next(i for i, m in enumerate(layers) if isinstance(m, nn.Flatten))
        y = nn.Sequential(*layers[:cut])(padded)
        first = True
        for m in layers[cut + 1 :]:
            if isinstance(m, nn.Linear):
                y = F.conv2d(y, _linear_as_conv_weight(m, self.feature_shape if first else (m.in_features, 1, 1)), m.bias)
                first = False
            else:
                y = m(y)
        return _upsample_grid(y, self.stride, x.shape[-2:])


def _linear_as_conv_weight(linear: nn.Linear, in_shape: tuple[int, int, int]) -> Tensor:
    """``Linear(C*h*w, K)``'s weight as a ``(K, C, h, w)`` convolution kernel (``Flatten`` is channel-major)."""
    c, h, w = in_shape
    if linear.in_features != c * h * w:
        raise ValueError(f"dense_to_conv: Linear with {linear.in_features} inputs does not read a {c}x{h}x{w} map")
    return linear.weight.reshape(linear.out_features, c, h, w)


def dense_to_conv(classifier: nn.Sequential, feature_shape: tuple[int, int, int] | None = None) -> nn.Sequential:
    """The fully convolutional equivalent of a classifier ``[features..., Flatten, Linear, ..., Linear]``.

    The first ``Linear(C*h*w, K)`` after ``Flatten`` becomes ``Conv2d(C, K, (h, w))`` with the weight
    reshaped to ``(K, C, h, w)`` (``Flatten`` orders a ``(C, h, w)`` map channel-major, as the reshape
    does); every later ``Linear(K, M)`` becomes a ``1x1`` ``Conv2d(K, M)``. Other layers (ReLU, Dropout,
    everything before ``Flatten``) are copied. Weights are copied exactly, and the input is left untouched.

    On an input larger than the classifier's, output position ``(i, j)`` holds the classifier's scores of the
    window at ``(i * s, j * s)``, ``s`` being the product of the strides before ``Flatten``.

    Args:
        classifier: The classifier (evaluated in eval mode: BatchNorm and Dropout are then position-wise).
        feature_shape: ``(C, h, w)`` of the map the first ``Linear`` reads; default ``classifier.feature_shape``.

    Returns:
        An ``nn.Sequential`` mapping ``(N, in, H, W)`` to ``(N, K_last, H', W')`` scores, in eval mode.
    """
    feature_shape = feature_shape or getattr(classifier, "feature_shape", None)
    if feature_shape is None:
        raise ValueError("dense_to_conv: give feature_shape=(C, h, w), the map the first Linear reads")
    layers = list(classifier)
    flat = [i for i, m in enumerate(layers) if isinstance(m, nn.Flatten)]
    if len(flat) != 1:
        raise ValueError(f"dense_to_conv: the classifier needs exactly one nn.Flatten, found {len(flat)}")
    out: list[nn.Module] = [copy.deepcopy(m) for m in layers[: flat[0]]]
    c, h, w = feature_shape
    first = True
    for m in layers[flat[0] + 1 :]:
        if isinstance(m, nn.Linear):
            weight = _linear_as_conv_weight(m, (c, h, w) if first else (m.in_features, 1, 1))
            conv = nn.Conv2d(weight.shape[1], m.out_features, tuple(weight.shape[2:]), bias=m.bias is not None)
            with torch.no_grad():
                conv.weight.copy_(weight)
                if m.bias is not None:
                    conv.bias.copy_(m.bias)
            out.append(conv)
            first = False
        elif isinstance(m, (nn.ReLU, nn.Dropout, nn.Identity, nn.LeakyReLU, nn.GELU, nn.Sigmoid, nn.Tanh)):
            out.append(copy.deepcopy(m))  # element-wise: the same on a vector and on a map
        else:
            raise ValueError(f"dense_to_conv: cannot convert {type(m).__name__} after Flatten (only Linear and element-wise layers)")
    return nn.Sequential(*out).to(next(classifier.parameters()).device).eval()


def _reflect_pad(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Reflect padding of ``(N, C, H, W)`` that also works where a pad is wider than the image (reflecting again,
    as numpy does; torch's reflect mode refuses) and on 1-pixel sides (replicated)."""
    pads = [left, right, top, bottom]
    while any(pads):
        h, w = x.shape[-2:]
        if min(h, w) < 2:
            return F.pad(x, pads, mode="replicate")
        step = [min(p, (w if i < 2 else h) - 1) for i, p in enumerate(pads)]
        x = F.pad(x, step, mode="reflect")
        pads = [p - q for p, q in zip(pads, step)]
    return x


def _pad_for_windows(x: Tensor, window: int, stride: int) -> tuple[Tensor, tuple[int, int]]:
    """Reflect-pad ``(N, C, H, W)`` so that the window at ``(i * stride, j * stride)`` is centred on image pixel
    ``(i * stride, j * stride)``, for a grid covering the image; returns the padded images and the grid shape."""
    h, w = x.shape[-2:]
    grid = (math.ceil((h - 1) / stride) + 1, math.ceil((w - 1) / stride) + 1)
    before = window // 2
    after_h = (grid[0] - 1) * stride + window - before - h
    after_w = (grid[1] - 1) * stride + window - before - w
    return _reflect_pad(x, before, after_h, before, after_w), grid


def _upsample_grid(scores: Tensor, stride: int, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling of a window grid to the image: grid point ``i`` sits on pixel ``i * stride``, so
    ``align_corners=True`` onto ``(g - 1) * stride + 1`` pixels, then a crop to ``size``."""
    full = ((scores.shape[-2] - 1) * stride + 1, (scores.shape[-1] - 1) * stride + 1)
    return F.interpolate(scores, size=full, mode="bilinear", align_corners=True)[..., : size[0], : size[1]]


@METHODS.register("sliding-window")
class SlidingWindowMethod(DeepMethod):
    """A CNN patch classifier slid over the image window by window (see the module docstring).

    Trained on ``window x window`` patches labelled by their centre pixel, ``patches_per_class`` per class and
    training image each epoch (balanced sampling: small classes are not drowned out), with random flips and
    90-degree rotations (``PatchData``), by the shared training loop with a cross-entropy loss on the patch
    classifier's scores. The image-level options (``loss``, ``crop``, ``scale_range``, ``color_jitter``) do
    not apply; ``precision`` applies to training (default float32, see ``Options``; inference runs in float32).
    """

    description = "CNN patch classifier (dense head) slid over the image; heatmap upsampled to a mask"
    loads_checkpoints_of = ("sliding-window-conv",)
    quick_options = {"window": 16, "width": 8, "hidden": 32, "epochs": 4, "patches_per_class": 64, "patience": None, "warmup_epochs": 0.5}
    #: Run the dense head as convolutions on the whole image (``sliding-window-conv``).
    one_pass: ClassVar[bool] = False

    @dataclass(kw_only=True)
    class Options(DeepOptions):
        epochs: int = 20
        batch_size: int = 64  # patches, not images
        # float32: in bfloat16 the quick patch classifier's lesion Dice on the regression grid fell from 0.693 to
        # 0.463 (tests/test_accuracy_regression.py); its 32x32 patches gain little from bfloat16 kernels anyway.
        precision: Precision = "fp32"
        lr: float = 1e-3
        warmup_epochs: float = 1.0
        patience: int | None = 8
        window: int = 32
        stride: int = 4
        width: int = 16
        hidden: int = 64
        dropout: float = 0.2
        patches_per_class: int = 128

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)
        if self.opts.stride < 1:
            raise ValueError(f"{self.name}: stride must be >= 1, got {self.opts.stride}")
        if self.one_pass and self.opts.stride % PatchClassifier.stride:
            raise ValueError(
                f"{self.name}: stride must be a multiple of the network's stride {PatchClassifier.stride} to be computed in "
                f"one pass, got {self.opts.stride}; use sliding-window for other strides"
            )
        self._conv: tuple[nn.Module, nn.Module] | None = None  # (classifier, its converted copy)

    def build_model(self) -> nn.Module:
        o = self.opts
        return PatchClassifier(self.num_classes, window=o.window, width=o.width, hidden=o.hidden, dropout=o.dropout)

    def architecture(self) -> dict[str, Any]:
        arch = super().architecture()
        arch.pop("stride")  # how the classifier is applied, not what it is: weights are shared across strides
        return arch

    # -- heatmaps ---------------------------------------------------------------------------------------

    def heatmap(self, image: np.ndarray, *, one_pass: bool | None = None) -> np.ndarray:
        """Class scores (logits) of the windows centred every ``stride`` pixels of the working-size image.

        Args:
            image: ``(H, W, 3)`` image at any size; it is resized to the working size first, as by ``predict``.
            one_pass: True: the converted network on the whole image; False: the loop over windows;
                None: this method's way (``sliding-window-conv`` converts, ``sliding-window`` loops).

        Returns:
            ``(C, ceil((h - 1) / stride) + 1, ceil((w - 1) / stride) + 1) float32``; entry ``(i, j)`` scores
            working-size pixel ``(i * stride, j * stride)``.
        """
        image = to_rgb(image)
        small = resize_image(image, work_shape(*image.shape[:2], self.work_size))
        return self._scores(small[None], self.one_pass if one_pass is None else one_pass)[0].cpu().numpy()

    @torch.inference_mode()
    def _scores(self, images: np.ndarray, one_pass: bool) -> Tensor:
        """``(N, h, w, 3) uint8`` -> ``(N, C, gh, gw)`` window scores (the loop classifies N windows per call)."""
        if self.model is None or self.norm is None:
            raise RuntimeError(f"{self.name}: not fitted; call fit (or load a checkpoint) first")
        self.model.eval()
        x = self.norm.apply(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float().to(self.device))
        window, stride = self.opts.window, self.opts.stride
        padded, (gh, gw) = _pad_for_windows(x, window, stride)
        if one_pass:
            if self._conv is None or self._conv[0] is not self.model:
                self._conv = (self.model, dense_to_conv(self.model))
            step = stride // PatchClassifier.stride
            return self._conv[1](padded)[..., ::step, ::step][..., :gh, :gw].float()
        scores = torch.empty(len(images), self.num_classes, gh, gw, device=self.device)
        for i in range(gh):  # the textbook loop: one classifier call per window
            for j in range(gw):
                scores[..., i, j] = self.model.classify(padded[..., i * stride : i * stride + window, j * stride : j * stride + window])
        return scores

    def _proba_tensor(self, images: np.ndarray) -> Tensor:
        """``(N, h, w, 3) uint8`` at the working resolution -> ``(N, C, h, w)`` on the device: this method's own
        way in one call (``segbench latency --batch``): the loop classifies N windows per call, the one-pass network N images."""
        proba = F.softmax(self._scores(images, self.one_pass), dim=1)
        return _upsample_grid(proba, self.opts.stride, images.shape[1:3]).float()

    # -- training ---------------------------------------------------------------------------------------

    def _val_miou(self, samples: list[Sample]) -> float:
        self._conv = None  # the weights changed since the last conversion
        meter = SelectionScore(self.num_classes, ignore_index=self.ignore_index)  # segbench.methods.tuning
        for s in samples:  # the one-pass network: the same scores as the loop, many times faster
            with torch.inference_mode():
                proba = F.softmax(self._scores(s.image[None], True), dim=1)
            labels = _upsample_grid(proba, self.opts.stride, s.mask.shape)[0].argmax(0)
            meter.update(s.mask, labels.cpu().numpy(), ignore_mask=s.ignore)
        return meter.value()

    def _train(self, model: nn.Module, train: list[Sample], val: list[Sample] | None) -> TrainResult:
        data = PatchData(train, self.opts, num_classes=self.num_classes, ignore_index=self.ignore_index)
        self.model, self.norm = model, data.norm  # _val_miou runs the model being trained
        try:
            return train_loop(
                model, data, config=self.train_config(), evaluate=(lambda: self._val_miou(val)) if val else None,
                seed=self.seed, device=self.device, desc=self.name,
            )
        finally:
            self._conv = None  # converted from weights that training has since changed


class PatchData(TrainData):
    """``window x window`` patches labelled by their centre pixel, for the training loop.

    Each epoch draws ``patches_per_class`` centres per class and training image, with replacement (balanced
    sampling: small classes are not drowned out), shuffles them, and crops the patches from the reflect-padded,
    normalised images; each patch is flipped at random, each batch rotated by a random multiple of 90 degrees.

    Args:
        samples: Training samples at the working resolution.
        opts: The method's options (``window``, ``patches_per_class``, ``batch_size``, flips, ``rot90``).
        num_classes: Number of classes.
        ignore_index: Label of pixels never used as a centre.
    """

    def __init__(self, samples: list[Sample], opts: "SlidingWindowMethod.Options", *, num_classes: int, ignore_index: int) -> None:
        self.opts = opts
        self.norm = Normalization.from_samples(samples)
        self.widths = [s.mask.shape[1] for s in samples]
        self.padded, self.centres = [], []  # per image: padded tensor, and per class the flat indices of its pixels
        for s in samples:
            x = self.norm.apply(torch.from_numpy(np.ascontiguousarray(s.image.transpose(2, 0, 1)))[None].float())
            self.padded.append(_pad_for_windows(x, opts.window, 1)[0][0])
            valid = s.valid(ignore_index)
            self.centres.append([torch.from_numpy(np.flatnonzero((s.mask == c) & valid)) for c in range(num_classes)])
        self.per_epoch = sum(opts.patches_per_class for cls in self.centres for idx in cls if len(idx))
        self.batch_size = min(opts.batch_size, self.per_epoch)
        self.steps_per_epoch = max(1, self.per_epoch // self.batch_size)

    def batches(self, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        o, window, bs = self.opts, self.opts.window, self.batch_size
        picks = []  # (image, flat centre index, class) rows
        for n, cls in enumerate(self.centres):
            for c, idx in enumerate(cls):
                if len(idx):
                    flat = idx[torch.randint(len(idx), (o.patches_per_class,), generator=gen)]
                    picks.append(torch.stack([torch.full_like(flat, n), flat, torch.full_like(flat, c)], 1))
        order = torch.cat(picks)[torch.randperm(self.per_epoch, generator=gen)]
        for k in range(self.steps_per_epoch):
            batch = order[k * bs : (k + 1) * bs]
            crops = []
            for n, flat, _ in batch.tolist():
                y, x = divmod(flat, self.widths[n])  # the window at padded (y, x) is centred on pixel (y, x)
                crops.append(self.padded[n][:, y : y + window, x : x + window])
            images = torch.stack(crops)
            flips = torch.rand(2, len(batch), generator=gen) < 0.5
            if o.hflip:
                images = torch.where(flips[0].view(-1, 1, 1, 1), images.flip(-1), images)
            if o.vflip:
                images = torch.where(flips[1].view(-1, 1, 1, 1), images.flip(-2), images)
            if o.rot90:
                images = torch.rot90(images, int(torch.randint(0, 4, (), generator=gen)), dims=(2, 3))
            yield images, batch[:, 2]

    def forward(self, model: nn.Module, x: Tensor) -> Tensor:
        return model.classify(x)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets)


@METHODS.register("sliding-window-conv")
class SlidingWindowConvMethod(SlidingWindowMethod):
    """``sliding-window``'s classifier (same options and seed: the same weights) converted by ``dense_to_conv``
    and run on the whole padded image in one pass; its heatmap equals the loop's at every window."""

    description = "the sliding-window classifier with its dense head as convolutions: the same heatmap in one pass"
    one_pass = True
    loads_checkpoints_of = ("sliding-window",)  # the same classifier: --opt sliding-window-conv.checkpoint=PATH
