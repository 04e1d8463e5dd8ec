"""DeepLabv3 (Chen, Papandreou, Schroff & Adam, 2017): a dilated residual encoder, atrous spatial pyramid
pooling (ASPP) with image-level pooling, and bilinear upsampling of the logits.

Compose with the dense CRF stage as ``deeplab+crf`` (DeepLab v1/v2's post-processing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segbench.methods.base import METHODS
from segbench.methods.deep.method import DeepMethod, DeepOptions
from segbench.methods.deep.layers import ConvBNReLU, init_weights

__all__ = ["BasicBlock", "DilatedResNet", "ASPP", "DeepLabV3", "DeepLabMethod"]


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convolutions and an identity or 1x1 projection shortcut), optionally dilated."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class DilatedResNet(nn.Module):
    """ResNet-style encoder whose last stages trade stride for dilation, to stop at ``output_stride``.

    Stem: 3x3 stride-2 conv and 3x3 conv, then a 3x3 stride-2 max-pool (stride 4). Stage 1 keeps the
    stride, stage 2 halves it (stride 8); stages 3 and 4 halve it again only up to ``output_stride`` and
    dilate their convolutions by the stride they skip, so the receptive field grows as in the strided
    network. The last stage's blocks multiply their dilation by ``multi_grid`` (DeepLabv3, Sec. 3.2).

    Shapes:
        ``(N, in_channels, H, W)`` -> ``(N, 8 * width, ceil(H / output_stride), ceil(W / output_stride))``
        (up to rounding of odd sides).
    """

    def __init__(
        self,
        *,
        width: int = 16,
        blocks: tuple[int, int, int, int] = (2, 2, 2, 2),
        output_stride: Literal[8, 16] = 8,
        multi_grid: tuple[int, ...] = (1, 2),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"blocks must give 4 positive block counts, got {blocks}")
        if len(multi_grid) != blocks[3]:
            raise ValueError(f"multi_grid {multi_grid} must have one rate per block of the last stage ({blocks[3]})")
        self.stem = nn.Sequential(
            ConvBNReLU(in_channels, width, stride=2), ConvBNReLU(width, width), nn.MaxPool2d(3, stride=2, padding=1)
        )
        widths = [width, 2 * width, 4 * width, 8 * width]
        # (stride, dilation) of stages 1-4: stride until output_stride is reached, dilation after.
        plan = [(1, 1), (2, 1), (2, 1), (1, 2)] if output_stride == 16 else [(1, 1), (2, 1), (1, 2), (1, 4)]
        self.stages = nn.ModuleList()
        prev = width
        for i, ((stride, dilation), n, w) in enumerate(zip(plan, blocks, widths)):
            grid = multi_grid if i == 3 else (1,) * n
            layers = [BasicBlock(prev if j == 0 else w, w, stride=stride if j == 0 else 1, dilation=dilation * grid[j]) for j in range(n)]
            self.stages.append(nn.Sequential(*layers))
            prev = w
        self.out_channels = prev

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 conv, 3x3 convs at each rate, and image-level pooling, concatenated
    and projected by a 1x1 conv.

    The image-pooling branch has no BatchNorm: it normalises over one value per image and channel, which
    breaks with a batch of one (torchvision's version has BatchNorm there and needs batches of two or more).

    Shapes:
        ``(N, in_ch, h, w)`` -> ``(N, out_ch, h, w)``.
    """

    def __init__(self, in_ch: int, out_ch: int, rates: tuple[int, ...], *, dropout: float = 0.1) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_ch, out_ch, kernel=1)] + [ConvBNReLU(in_ch, out_ch, dilation=r) for r in rates]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_ch, out_ch, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(ConvBNReLU((len(rates) + 2) * out_ch, out_ch, kernel=1), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool(x).expand(-1, -1, x.shape[-2], x.shape[-1])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3(nn.Module):
    """DeepLabv3: dilated ResNet encoder -> ASPP decoder -> 3x3 conv + 1x1 classifier -> bilinear upsampling.

    Args:
        num_classes: Output channels ``C``.
        width: Channels of the encoder's first stage (stages: 1x, 2x, 4x, 8x; ResNet-18 is 64).
        blocks: Residual blocks per stage (ResNet-18: ``(2, 2, 2, 2)``).
        output_stride: 8 or 16: input size / encoder output size.
        rates: ASPP atrous rates; None: ``(6, 12, 18)`` at output stride 16 (the paper's) and twice that at 8,
            scaled by ``aspp_rate_scale``.
        aspp_rate_scale: Multiplies the default rates. The paper's rates suit 33-px (stride 16) or 65-px
            (stride 8) feature maps from 513-px crops; a 128-px input gives 16-px maps at stride 8, on which
            the default 0.25 (rates 3-6-9) keeps the same proportions.
        aspp_channels: Channels of every ASPP branch (the paper: 256).
        multi_grid: Dilation multipliers of the last stage's blocks (the paper: ``(1, 2, 4)`` for 3 blocks).
        in_channels: Input channels.

    Shapes:
        ``(N, in_channels, H, W)`` -> ``(N, C, H, W)`` logits.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        width: int = 16,
        blocks: tuple[int, int, int, int] = (2, 2, 2, 2),
        output_stride: Literal[8, 16] = 8,
        rates: tuple[int, ...] | None = None,
        aspp_rate_scale: float = 0.25,
        aspp_channels: int = 64,
        multi_grid: tuple[int, ...] = (1, 2),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if rates is None:
            base = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
            rates = tuple(max(1, round(r * aspp_rate_scale)) for r in base)
        if not rates or min(rates) < 1:
            raise ValueError(f"ASPP rates must be positive integers, got {rates}")
        self.rates = tuple(rates)
        self.encoder = DilatedResNet(width=width, blocks=blocks, output_stride=output_stride, multi_grid=multi_grid, in_channels=in_channels)
        self.decoder = ASPP(self.encoder.out_channels, aspp_channels, self.rates)
        self.head = nn.Sequential(ConvBNReLU(aspp_channels, aspp_channels), nn.Conv2d(aspp_channels, num_classes, 1))
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        logits = self.head(self.decoder(self.encoder(x)))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


@METHODS.register("deeplab")
class DeepLabMethod(DeepMethod):
    """DeepLabv3 trained from scratch (Chen et al. 2017); see ``DeepLabV3`` for the architecture options."""

    description = "DeepLabv3: dilated ResNet + ASPP (atrous rates, image pooling), trained from scratch"
    quick_options = {
        "width": 8,
        "blocks": (1, 1, 1, 1),
        "multi_grid": (1,),
        "aspp_channels": 16,
        "epochs": 40,  # a third of U-Net's cost per epoch; 20 left it near chance on 10 ISBI slices
        "patience": None,
        "warmup_epochs": 1.0,
    }

    @dataclass(kw_only=True)
    class Options(DeepOptions):
        epochs: int = 80  # about a third of U-Net's cost per epoch: more epochs in the same budget
        width: int = 16
        blocks: tuple[int, int, int, int] = (2, 2, 2, 2)
        output_stride: Literal[8, 16] = 8
        rates: tuple[int, ...] | None = None
        aspp_rate_scale: float = 0.25
        aspp_channels: int = 64
        multi_grid: tuple[int, ...] = (1, 2)

    def build_model(self) -> nn.Module:
        o = self.opts
        return DeepLabV3(
            self.num_classes,
            width=o.width,
            blocks=tuple(o.blocks),
            output_stride=o.output_stride,
            rates=None if o.rates is None else tuple(o.rates),
            aspp_rate_scale=o.aspp_rate_scale,
            aspp_channels=o.aspp_channels,
            multi_grid=tuple(o.multi_grid),
        )
