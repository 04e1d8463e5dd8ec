"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer & Darrell, CVPR 2015): a VGG-like strided encoder, a 1x1
classifier on its stride-32 map, learned upsampling (transposed convolutions initialised to bilinear
interpolation) and, for 16s and 8s, skip scores from the pool4 (stride 16) and pool3 (stride 8) maps.

Differences from the paper, for a CPU budget: the encoder is narrow and trained from scratch (the paper
fine-tunes ImageNet VGG-16), "fc6" is a 3x3 instead of a 7x7 convolution, BatchNorm follows every
convolution, and the three nets are trained all at once rather than 16s from 32s and 8s from 16s (the
journal version, Shelhamer et al. 2017, reports all-at-once training as good as staged). As in the paper,
the skip score layers start at zero, so a fresh FCN-8s predicts what a fresh FCN-32s would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from segbench.methods.base import METHODS
from segbench.methods.deep.method import DeepMethod, DeepOptions
from segbench.methods.deep.layers import ConvBNReLU, init_weights, pad_to_multiple

__all__ = ["bilinear_kernel", "BilinearUp", "FCN", "FCN32sMethod", "FCN16sMethod", "FCN8sMethod"]


def bilinear_kernel(factor: int) -> Tensor:
    """``(2f, 2f)`` kernel that makes ``ConvTranspose2d(kernel=2f, stride=f, padding=f//2)`` a bilinear upsampling.

    Output pixel ``o`` then receives input ``i`` with weight ``1 - |(o + 0.5) / f - 0.5 - i|`` (clipped at 0):
    ``F.interpolate(..., mode="bilinear", align_corners=False)`` away from the border (at the border the
    transposed convolution sees zeros where ``interpolate`` repeats the edge).
    """
    size = 2 * factor
    centre = factor - 0.5
    og = torch.arange(size, dtype=torch.float32)
    filt = 1 - (og - centre).abs() / factor
    return filt[:, None] * filt[None, :]


class BilinearUp(nn.ConvTranspose2d):
    """Learnable ``factor``x upsampling of ``channels`` score maps, initialised to bilinear interpolation per channel
    (no mixing between classes at initialisation). ``(N, C, h, w) -> (N, C, h * factor, w * factor)``."""

    def __init__(self, channels: int, factor: int) -> None:
        if factor < 2 or factor % 2:
            raise ValueError(f"BilinearUp: factor must be an even integer >= 2, got {factor}")
        super().__init__(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
        self.reset_bilinear()

    def reset_bilinear(self) -> None:
        with torch.no_grad():
            self.weight.zero_()
            kernel = bilinear_kernel(self.stride[0])
            for c in range(self.in_channels):
                self.weight[c, c] = kernel


class FCN(nn.Module):
    """An FCN over a VGG-like encoder of five stages (each: two 3x3 ``Conv-BN-ReLU`` and a 2x2 max-pool).

    Args:
        num_classes: Output channels ``C``.
        variant: ``32`` (score of pool5 upsampled 32x), ``16`` (+ pool4 skip, 2x then 16x) or ``8`` (+ pool3
            skip, 2x, 2x then 8x).
        width: Channels of stage 1; stages have ``width * (1, 2, 4, 8, 8)`` (VGG-16: 64); "fc6/fc7" have ``16 * width``.
        dropout: Dropout after fc6 and fc7 (the paper: 0.5).
        in_channels: Input channels.

    The input is padded at the bottom and right (replicating the border) to a multiple of 32 and the logits
    are cropped back, so any size works, odd ones included.

    Shapes:
        ``(N, in_channels, H, W)`` -> ``(N, C, H, W)`` logits.
    """

    def __init__(self, num_classes: int, *, variant: Literal[32, 16, 8] = 8, width: int = 16, dropout: float = 0.5, in_channels: int = 3) -> None:
        super().__init__()
        if variant not in (32, 16, 8):
            raise ValueError(f"FCN variant must be 32, 16 or 8, got {variant}")
        if width < 1:
            raise ValueError(f"FCN width must be >= 1, got {width}")
        self.variant = variant
        widths = [width * m for m in (1, 2, 4, 8, 8)]
        self.stages = nn.ModuleList()
        prev = in_channels
        for w in widths:
            self.stages.append(nn.Sequential(ConvBNReLU(prev, w), ConvBNReLU(w, w), nn.MaxPool2d(2)))
            prev = w
        fc = 16 * width
        self.fc = nn.Sequential(ConvBNReLU(prev, fc), nn.Dropout(dropout), ConvBNReLU(fc, fc, kernel=1), nn.Dropout(dropout))
        self.score = nn.Conv2d(fc, num_classes, 1)
        init_weights(self)  # before the bilinear and zero initialisations below, which it would overwrite
        skips: list[nn.Conv2d] = []
        if variant <= 16:
            self.score_pool4 = nn.Conv2d(widths[3], num_classes, 1)
            self.up2 = BilinearUp(num_classes, 2)
            skips.append(self.score_pool4)
        if variant == 8:
            self.score_pool3 = nn.Conv2d(widths[2], num_classes, 1)
            self.up2_pool4 = BilinearUp(num_classes, 2)
            skips.append(self.score_pool3)
        self.up_final = BilinearUp(num_classes, variant)
        # The score layer keeps PyTorch's fan-in initialisation (logits of order 1); He's fan-out one gives
        # logits of ~10 from 16 * width channels, a saturated softmax. The skip scores start at zero (Long et al.,
        # Sec. 4.2): FCN-16s/8s begin as FCN-32s and training opens the skips.
        self.score.reset_parameters()
        for conv in skips:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        x, (h, w) = pad_to_multiple(x, 32)
        pools = []
        for stage in self.stages:
            x = stage(x)
            pools.append(x)
        score = self.score(self.fc(x))  # stride 32
        if self.variant <= 16:
            score = self.up2(score) + self.score_pool4(pools[3])  # stride 16
        if self.variant == 8:
            score = self.up2_pool4(score) + self.score_pool3(pools[2])  # stride 8
        return self.up_final(score)[..., :h, :w]


class _FCNMethod(DeepMethod):
    """An FCN trained from scratch with the shared loop; subclasses fix ``variant``."""

    variant: ClassVar[Literal[32, 16, 8]]
    quick_options = {"width": 8, "epochs": 25, "dropout": 0.0, "patience": None, "warmup_epochs": 1.0}

    @dataclass(kw_only=True)
    class Options(DeepOptions):
        epochs: int = 60
        width: int = 16
        dropout: float = 0.5

    def build_model(self) -> nn.Module:
        return FCN(self.num_classes, variant=self.variant, width=self.opts.width, dropout=self.opts.dropout)


@METHODS.register("fcn32s")
class FCN32sMethod(_FCNMethod):
    """FCN-32s: the stride-32 scores upsampled 32x by one bilinear-initialised transposed convolution."""

    description = "FCN-32s: VGG-like strided encoder, 1x1 classifier, learned 32x upsampling"
    variant = 32


@METHODS.register("fcn16s")
class FCN16sMethod(_FCNMethod):
    """FCN-16s: FCN-32s's scores upsampled 2x plus scores of pool4 (stride 16), then upsampled 16x."""

    description = "FCN-16s: FCN-32s plus a pool4 skip, learned 16x upsampling"
    variant = 16


@METHODS.register("fcn8s")
class FCN8sMethod(_FCNMethod):
    """FCN-8s: FCN-16s's fused scores upsampled 2x plus scores of pool3 (stride 8), then upsampled 8x."""

    description = "FCN-8s: FCN-16s plus a pool3 skip, learned 8x upsampling"
    variant = 8
