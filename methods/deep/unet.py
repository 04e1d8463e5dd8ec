"""U-Net (Ronneberger et al., MICCAI 2015): an encoder-decoder with skip connections by concatenation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from segbench.methods.base import METHODS
from segbench.methods.deep.method import DeepMethod, DeepOptions
from segbench.methods.deep.layers import DoubleConv, init_weights, pad_to_multiple

__all__ = ["UNet", "UNetMethod"]


class _Encoder(nn.Module):
    """``depth + 1`` double-conv stages, each after a 2x2 max-pool except the first; returns every stage's output."""

    def __init__(self, in_ch: int, widths: list[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        prev = in_ch
        for i, width in enumerate(widths):
            self.stages.append(nn.Sequential(nn.MaxPool2d(2) if i else nn.Identity(), DoubleConv(prev, width)))
            prev = width

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class _UpBlock(nn.Module):
    """Upsample x2, concatenate the skip, double conv."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, upsample: Literal["transpose", "bilinear"]) -> None:
        super().__init__()
        if upsample == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_ch, in_ch // 2, kernel_size=2, stride=2)
            up_ch = in_ch // 2
        else:
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(in_ch, in_ch // 2, 1))
            up_ch = in_ch // 2
        self.conv = DoubleConv(up_ch + skip_ch, out_ch)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class _Decoder(nn.Module):
    def __init__(self, widths: list[int], upsample: Literal["transpose", "bilinear"]) -> None:
        super().__init__()
        rev = widths[::-1]  # bottleneck first
        self.blocks = nn.ModuleList(_UpBlock(rev[i], rev[i + 1], rev[i + 1], upsample) for i in range(len(rev) - 1))

    def forward(self, features: list[Tensor]) -> Tensor:
        x, skips = features[-1], features[-2::-1]
        for block, skip in zip(self.blocks, skips):
            x = block(x, skip)
        return x


class UNet(nn.Module):
    """U-Net: encoder -> decoder (upsample, concatenate skip, two convs) -> 1x1 head.

    The input is padded (replicating the border) to a multiple of ``2 ** depth`` and the logits cropped
    back, so any size works, odd ones included.

    Args:
        num_classes: Output channels ``C``.
        width: Channels of the first stage; stage ``i`` has ``width * 2 ** i`` (the paper: 64, depth 4).
        depth: Number of 2x downsamplings.
        upsample: ``"transpose"`` (2x2 up-convolution, as in the paper) or ``"bilinear"`` + 1x1 conv.
        in_channels: Input channels.

    Shapes:
        ``(N, in_channels, H, W)`` -> ``(N, C, H, W)`` logits.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        width: int = 16,
        depth: int = 4,
        upsample: Literal["transpose", "bilinear"] = "transpose",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"UNet needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        if upsample not in ("transpose", "bilinear"):
            raise ValueError(f"UNet upsample must be 'transpose' or 'bilinear', got {upsample!r}")
        widths = [width * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.encoder = _Encoder(in_channels, widths)
        self.decoder = _Decoder(widths, upsample)
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x, (h, w) = pad_to_multiple(x, 2**self.depth)
        return self.head(self.decoder(self.encoder(x)))[..., :h, :w]


@METHODS.register("unet")
class UNetMethod(DeepMethod):
    """U-Net trained from scratch (Ronneberger et al. 2015); see ``UNet`` for the architecture options."""

    description = "U-Net: encoder-decoder with concatenated skips, trained from scratch"
    quick_options = {"width": 8, "depth": 3, "epochs": 15, "patience": None, "warmup_epochs": 1.0}

    @dataclass(kw_only=True)
    class Options(DeepOptions):
        width: int = 16
        depth: int = 4
        upsample: Literal["transpose", "bilinear"] = "transpose"

    def build_model(self) -> nn.Module:
        return UNet(self.num_classes, width=self.opts.width, depth=self.opts.depth, upsample=self.opts.upsample)
